// The page's formatting helpers, each written once: sizes, counts, format names, times
// and sentences.

/**
 * "1.5 MB" style sizes: base 1024 (as file managers show them, and as the server states its
 * limits: MAX_UPLOAD_BYTES' 25 * 1024 * 1024 is its "25 MB"). The page's one byte formatter.
 */
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

/** "1 photo", "3 photos"; `many` for irregular plurals. */
export function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

const FORMAT_NAMES = {
  jpeg: 'JPEG', jpg: 'JPEG', png: 'PNG', webp: 'WebP', avif: 'AVIF', gif: 'GIF', tiff: 'TIFF', bmp: 'BMP', heic: 'HEIC', jxl: 'JPEG XL',
  'x-tga': 'TGA', 'x-targa': 'TGA', tga: 'TGA', jp2: 'JPEG 2000', jpx: 'JPEG 2000', j2k: 'JPEG 2000', jpm: 'JPEG 2000', jpeg2000: 'JPEG 2000',
  'x-icon': 'ICO', 'vnd.microsoft.icon': 'ICO', ico: 'ICO', 'x-portable-anymap': 'Netpbm', 'x-portable-bitmap': 'Netpbm',
  'x-portable-graymap': 'Netpbm', 'x-portable-pixmap': 'Netpbm', 'x-portable-arbitrarymap': 'Netpbm', pnm: 'Netpbm',
  sgi: 'SGI', 'x-sgi': 'SGI', 'x-rgb': 'SGI', 'vnd-ms.dds': 'DDS', 'vnd.ms-dds': 'DDS', 'x-dds': 'DDS', dds: 'DDS',
  'vnd.adobe.photoshop': 'PSD', 'x-photoshop': 'PSD', psd: 'PSD', 'application/x-photoshop': 'PSD', 'application/photoshop': 'PSD',
  'svg+xml': 'SVG', svg: 'SVG', 'application/pdf': 'PDF', 'application/x-pdf': 'PDF', pdf: 'PDF',
  'x-adobe-dng': 'camera RAW', 'x-canon-cr2': 'camera RAW', 'x-canon-cr3': 'camera RAW', 'x-nikon-nef': 'camera RAW',
  'x-sony-arw': 'camera RAW', 'x-fuji-raf': 'camera RAW', 'x-olympus-orf': 'camera RAW', 'x-panasonic-rw2': 'camera RAW',
  'x-pentax-pef': 'camera RAW', 'x-samsung-srw': 'camera RAW', raw: 'camera RAW',
};

/** A content type ("image/webp") or format name ("webp") as people write it ("WebP"). */
export function formatName(typeOrFormat) {
  const sub = String(typeOrFormat || '').replace(/^image\//, '').toLowerCase();
  return FORMAT_NAMES[sub] || sub.toUpperCase();
}

/** A pixel count in whole megapixels: 50000000 as "50 megapixels". */
export function formatMegapixels(pixels) {
  return `${Math.round(pixels / 1e6)} megapixels`;
}

/** A time stamp from the API ("2024-05-01T10:00:00.000Z") in the reader's locale. */
export function formatTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleString();
}

/** The first letter in capitals. */
export function capitalize(text) {
  const value = String(text ?? '');
  return value.charAt(0).toUpperCase() + value.slice(1);
}

/** Text as a sentence: a capital first letter and a full stop, unless it has its own. */
export function sentence(text) {
  const value = String(text || '').trim();
  return value ? `${capitalize(value)}${/[.!?]$/.test(value) ? '' : '.'}` : '';
}

/** "a, b and c". */
export function listInWords(words, last = 'and') {
  if (words.length <= 1) return words.join('');
  return `${words.slice(0, -1).join(', ')} ${last} ${words[words.length - 1]}`;
}

/** A percentage as the page writes it: 88.4 as "88%". */
export function formatPercent(value) {
  return `${Math.round(value)}%`;
}

/** "62% smaller", "50% larger" or "same size", from the percent saved (negative: grown). */
export function changeInWords(savedPercent) {
  const change = Math.round(savedPercent);
  if (change > 0) return `${formatPercent(change)} smaller`;
  if (change < 0) return `${formatPercent(-change)} larger`;
  return 'same size';
}

/** "62% smaller" style change from `before` to `after` bytes, or '' when either is unknown. */
export function savingText(before, after) {
  if (!(before > 0) || !Number.isFinite(after)) return '';
  return changeInWords((1 - after / before) * 100);
}

/** A job's "Saved 774 MB (88%)", or how much larger its outputs are; '' without sizes. */
export function savingsText(job) {
  const bytesIn = job?.bytes_in || 0;
  const bytesOut = job?.bytes_out || 0;
  if (!bytesIn || !bytesOut) return '';
  const percent = (100 * (bytesIn - bytesOut)) / bytesIn;
  return bytesOut <= bytesIn
    ? `Saved ${formatBytes(bytesIn - bytesOut)} (${formatPercent(percent)})`
    : `The results are ${formatBytes(bytesOut - bytesIn)} larger than the originals (${formatPercent(-percent)})`;
}

/**
 * Names made distinct for showing and saving: the second "IMG_0001.jpg" becomes
 * "IMG_0001 (2).jpg". Paths are shortened to their last part unless that is what differs.
 */
export function distinctNames(paths) {
  const base = paths.map((p) => String(p || '').split(/[\\/]/).pop());
  const counts = new Map();
  base.forEach((name) => counts.set(name, (counts.get(name) || 0) + 1));
  const seen = new Map();
  return base.map((name, index) => {
    if (counts.get(name) === 1) return name;
    const full = String(paths[index] || '');
    if (full !== name && paths.filter((p) => p === full).length === 1) return full; // a folder tells them apart
    const n = (seen.get(name) || 0) + 1;
    seen.set(name, n);
    return n === 1 ? name : numbered(name, n);
  });
}

/** "IMG_0001.jpg" as "IMG_0001 (2).jpg". */
export function numbered(name, n) {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? `${name.slice(0, dot)} (${n})${name.slice(dot)}` : `${name} (${n})`;
}
