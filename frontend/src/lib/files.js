// Checks on the chosen files before anything is sent, against the limits the server
// publishes at GET /api/v1/operations, so a person learns at once what will be refused.

/** Used only until the server's own limits have loaded. */
export const DEFAULT_LIMITS = {
  max_upload_bytes: 25 * 1024 * 1024,
  max_request_bytes: 200 * 1024 * 1024,
  max_files_per_job: 100,
  max_image_pixels: 50_000_000,
  accepted_types: ['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/tiff', 'image/bmp'],
};

// Some systems give files no MIME type; their extension says what they claim to be.
const TYPE_BY_EXTENSION = {
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  jpe: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  gif: 'image/gif',
  tif: 'image/tiff',
  tiff: 'image/tiff',
  bmp: 'image/bmp',
  avif: 'image/avif',
  heic: 'image/heic',
  heif: 'image/heif',
  jxl: 'image/jxl',
};

/** "1.5 MB" style sizes (base 1024, as file managers show them). */
export function formatBytes(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return '';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 100 ? Math.round(value) : value.toFixed(1).replace(/\.0$/, '')} ${units[unit]}`;
}

/** The MIME type a file claims, from the browser or else from its extension. */
export function fileType(file) {
  if (file.type) return file.type.toLowerCase();
  const ext = (file.name || '').split('.').pop().toLowerCase();
  return TYPE_BY_EXTENSION[ext] || '';
}

/** "JPEG, PNG or WebP" from a list of MIME types. */
export function describeTypes(types) {
  const names = [...new Set(types.map((t) => t.replace(/^image\//, '').replace('jpeg', 'jpg').toUpperCase()))]
    .map((name) => (name === 'JPG' ? 'JPEG' : name === 'WEBP' ? 'WebP' : name === 'JXL' ? 'JPEG XL' : name));
  if (names.length <= 1) return names.join('');
  return `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}`;
}

/** A stable identity for a picked file, so the same photo is not added twice. */
export function fileKey(file) {
  return `${file.webkitRelativePath || file.name}|${file.size}|${file.lastModified}`;
}

/**
 * Split newly picked files into those to add and those refused, given the files already
 * chosen. Returns `{accepted: File[], refused: [{name, reason}], duplicates: number}`.
 */
export function checkFiles(existing, incoming, limits = DEFAULT_LIMITS) {
  const accepted = [];
  const refused = [];
  let duplicates = 0;
  const seen = new Set(existing.map(fileKey));
  const accepts = new Set((limits.accepted_types || []).map((t) => t.toLowerCase()));
  let count = existing.length;
  let total = existing.reduce((sum, file) => sum + file.size, 0);

  for (const file of incoming) {
    const key = fileKey(file);
    if (seen.has(key)) {
      duplicates += 1;
      continue;
    }
    const type = fileType(file);
    if (accepts.size && !accepts.has(type)) {
      refused.push({
        name: file.name,
        reason: type
          ? `is a ${type} file; ImageFlow accepts ${describeTypes([...accepts])} images.`
          : `is not an image ImageFlow can read (it accepts ${describeTypes([...accepts])}).`,
      });
      continue;
    }
    if (file.size === 0) {
      refused.push({ name: file.name, reason: 'is empty.' });
      continue;
    }
    if (limits.max_upload_bytes && file.size > limits.max_upload_bytes) {
      refused.push({
        name: file.name,
        reason: `is ${formatBytes(file.size)}, over the ${formatBytes(limits.max_upload_bytes)} limit per file.`,
      });
      continue;
    }
    if (limits.max_files_per_job && count >= limits.max_files_per_job) {
      refused.push({ name: file.name, reason: `was not added: one job takes at most ${limits.max_files_per_job} files.` });
      continue;
    }
    if (limits.max_request_bytes && total + file.size > limits.max_request_bytes) {
      refused.push({
        name: file.name,
        reason: `was not added: one upload takes at most ${formatBytes(limits.max_request_bytes)} in all.`,
      });
      continue;
    }
    seen.add(key);
    accepted.push(file);
    count += 1;
    total += file.size;
  }
  return { accepted, refused, duplicates };
}

/** Whether an image of this size is over the server's pixel limit. */
export function tooManyPixels(width, height, limits = DEFAULT_LIMITS) {
  return Boolean(limits.max_image_pixels && width * height > limits.max_image_pixels);
}

function readAllEntries(reader) {
  // readEntries returns at most ~100 entries per call: read until it returns none.
  return new Promise((resolve, reject) => {
    const entries = [];
    const next = () =>
      reader.readEntries((batch) => {
        if (!batch.length) resolve(entries);
        else {
          entries.push(...batch);
          next();
        }
      }, reject);
    next();
  });
}

async function filesOfEntry(entry, depth = 0) {
  if (entry.isFile) {
    return new Promise((resolve) => entry.file((file) => resolve([file]), () => resolve([])));
  }
  if (entry.isDirectory && depth < 10) {
    const children = await readAllEntries(entry.createReader());
    const nested = await Promise.all(children.map((child) => filesOfEntry(child, depth + 1)));
    return nested.flat();
  }
  return [];
}

/** Every file in a drop, walking into dropped folders; hidden files (".DS_Store") are skipped. */
export async function filesFromDrop(dataTransfer) {
  const items = [...(dataTransfer.items || [])].filter((item) => item.kind === 'file');
  const entries = items.map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  let files;
  if (entries.length && entries.length === items.length) {
    files = (await Promise.all(entries.map((entry) => filesOfEntry(entry)))).flat();
  } else {
    files = [...(dataTransfer.files || [])];
  }
  return files.filter((file) => !file.name.startsWith('.'));
}
