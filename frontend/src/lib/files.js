// Checks on the chosen files before anything is sent, against the limits the server
// publishes at GET /api/v1/operations, so a person learns at once what will be refused.
import { formatBytes, formatName, listInWords } from './format.js';
import { KIND_TYPES } from './sniff.js';

/** Used only until the server's own limits have loaded. */
export const DEFAULT_LIMITS = {
  max_upload_bytes: 25 * 1024 * 1024,
  max_request_bytes: 200 * 1024 * 1024,
  max_files_per_job: 100,
  max_urls_per_job: 100000,
  max_csv_bytes: 32 * 1024 * 1024,
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
  tga: 'image/x-tga',
  icb: 'image/x-tga',
  vda: 'image/x-tga',
  vst: 'image/x-tga',
  jp2: 'image/jp2',
  j2k: 'image/jp2',
  jpx: 'image/jp2',
  jpf: 'image/jp2',
  j2c: 'image/jp2',
  ico: 'image/x-icon',
  cur: 'image/x-icon',
  pbm: 'image/x-portable-anymap',
  pgm: 'image/x-portable-anymap',
  ppm: 'image/x-portable-anymap',
  pnm: 'image/x-portable-anymap',
  pam: 'image/x-portable-anymap',
  pfm: 'image/x-portable-anymap',
  sgi: 'image/sgi',
  rgb: 'image/sgi',
  rgba: 'image/sgi',
  bw: 'image/sgi',
  dds: 'image/vnd-ms.dds',
  psd: 'image/vnd.adobe.photoshop',
  psb: 'image/vnd.adobe.photoshop',
  svg: 'image/svg+xml',
  pdf: 'application/pdf',
  dng: 'image/x-adobe-dng',
  cr2: 'image/x-adobe-dng',
  cr3: 'image/x-adobe-dng',
  nef: 'image/x-adobe-dng',
  arw: 'image/x-adobe-dng',
  raf: 'image/x-adobe-dng',
  orf: 'image/x-adobe-dng',
  rw2: 'image/x-adobe-dng',
  pef: 'image/x-adobe-dng',
  srw: 'image/x-adobe-dng',
};

/** The MIME type a file claims, from the browser or else from its extension (a browser that
 * does not know the type says "" or application/octet-stream). */
export function fileType(file) {
  const type = (file.type || '').toLowerCase();
  if (type && type !== 'application/octet-stream') return type;
  const ext = (file.name || '').split('.').pop().toLowerCase();
  return TYPE_BY_EXTENSION[ext] || type;
}

/** The file picker's `accept`: the accepted types, and the extensions of those browsers may
 * not know (TGA, DDS...), so such files are not hidden. */
export function acceptAttribute(types) {
  const accepted = new Set((types || []).map((t) => t.toLowerCase()));
  const exts = Object.keys(TYPE_BY_EXTENSION).filter((ext) => accepted.has(TYPE_BY_EXTENSION[ext]));
  return [...accepted, ...exts.map((ext) => `.${ext}`)].join(',');
}

/** "JPEG, PNG or WebP" from a list of MIME types. */
export function describeTypes(types) {
  return listInWords([...new Set(types.map(formatName))], 'or');
}

/** A stable identity for a picked file, so the same photo is not added twice. */
export function fileKey(file) {
  return `${file.webkitRelativePath || file.name}|${file.size}|${file.lastModified}`;
}

const nameOrder = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

/** Files in the order a person reads their names ("IMG_2" before "IMG_10"), folder paths first. */
export function byName(a, b) {
  return nameOrder.compare(a.webkitRelativePath || a.name, b.webkitRelativePath || b.name);
}

/**
 * Split newly picked files into those to add and those refused, given the files already
 * chosen. `sniffed` maps a file to what its first bytes show (`{kind, reason}`, from
 * sniff.js). Returns `{accepted: File[], refused: [{name, reason, limit?}], duplicates: number}`.
 */
export function checkFiles(existing, incoming, limits = DEFAULT_LIMITS, sniffed = new Map()) {
  const accepted = [];
  const refused = [];
  let duplicates = 0;
  const seen = new Set(existing.map(fileKey));
  const accepts = new Set((limits.accepted_types || []).map((t) => t.toLowerCase()));
  let count = existing.length;

  // No limit on the selection's bytes: the page sends an open job's files in small requests
  // (openJobUpload.js), so only the job's file count bounds a shoot. Name order, so a folder
  // goes up (and is cut at MAX_FILES_PER_JOB) as a person lists it, not in file-system order.
  for (const file of [...incoming].sort(byName)) {
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
    const content = sniffed.get(file);
    if (content && !content.kind) {
      refused.push({ name: file.name, reason: `is ${content.reason}.` });
      continue;
    }
    if (content && accepts.size && !accepts.has(KIND_TYPES[content.kind] || `image/${content.kind}`)) {
      refused.push({ name: file.name, reason: `is a ${formatName(content.kind)} image; ImageFlow accepts ${describeTypes([...accepts])} images.` });
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
      refused.push({ name: file.name, limit: 'files', reason: `One job takes at most ${limits.max_files_per_job} photos.` });
      continue;
    }
    seen.add(key);
    accepted.push(file);
    count += 1;
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

// -- image addresses (URL import, issue 16) --------------------------------------------------

/** The problem with one pasted address, as the server's import rules would see it, or ''. */
function urlProblem(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    return 'is not a web address (it should start with https://)';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'is not an http:// or https:// address';
  if (!url.hostname) return 'has no server name';
  return '';
}

/**
 * Pasted addresses, one a line (blank lines skipped): `{urls, lines, refused}`. `urls` are
 * the ones to send, `lines[i]` the line number of `urls[i]`, and `refused` the others as
 * `{line, url, reason}`.
 */
export function parseUrlList(text) {
  const urls = [];
  const lines = [];
  const refused = [];
  String(text || '')
    .split(/\r?\n/)
    .forEach((raw, index) => {
      const url = raw.trim();
      if (!url) return;
      const reason = urlProblem(url);
      if (reason) refused.push({ line: index + 1, url, reason });
      else {
        urls.push(url);
        lines.push(index + 1);
      }
    });
  return { urls, lines, refused };
}

/** The limits of a URL import, said before anything is pasted or picked. */
export function urlLimitsText(limits) {
  const most = Number(limits.max_urls_per_job || DEFAULT_LIMITS.max_urls_per_job).toLocaleString('en');
  return `One address a line, or a CSV file with a “url” column (other columns, like “name”, are kept for the report) · up to ${most} addresses per job · a CSV of up to ${formatBytes(limits.max_csv_bytes || DEFAULT_LIMITS.max_csv_bytes)} · each image is downloaded by the server and checked like an upload (up to ${formatBytes(limits.max_fetch_bytes || limits.max_upload_bytes)})`;
}
