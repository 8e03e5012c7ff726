// What a file really is, from its first bytes, as the server decides it
// (imageflow/engine/decoding.py: sniff and describe_unknown), so a PDF renamed ".jpg" is
// refused on the page with the server's reason, before it is uploaded.

export const SNIFF_BYTES = 512;

const AVIF_BRANDS = new Set(['avif', 'avis']);
const HEIC_BRANDS = new Set(['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'mif1', 'msf1']);

const OTHER_MAGIC = [
  ['PK\x03\x04', 'a ZIP archive (or an Office document)'],
  ['\x1f\x8b', 'a gzip archive'],
  ['Rar!', 'a RAR archive'],
  ['7z\xbc\xaf', 'a 7-Zip archive'],
  ['\x7fELF', 'a program'],
  ['MZ', 'a Windows program'],
  ['ID3', 'an MP3 file'],
  ['OggS', 'an Ogg media file'],
];

/** The MIME type the server lists (accepted_types) for each format sniffBytes names. */
export const KIND_TYPES = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  gif: 'image/gif',
  webp: 'image/webp',
  tiff: 'image/tiff',
  bmp: 'image/bmp',
  avif: 'image/avif',
  heic: 'image/heic',
  jxl: 'image/jxl',
  tga: 'image/x-tga',
  jpeg2000: 'image/jp2',
  ico: 'image/x-icon',
  pnm: 'image/x-portable-anymap',
  sgi: 'image/sgi',
  dds: 'image/vnd-ms.dds',
  psd: 'image/vnd.adobe.photoshop',
  svg: 'image/svg+xml',
  pdf: 'application/pdf',
  raw: 'image/x-adobe-dng',
};

// imageflow/engine/pillow_inputs.py: sniff. TGA has no signature: a header whose every field
// has one of its few legal values (text never passes: its second byte would be 0 or 1).
function isTga(bytes) {
  if (bytes.length < 18) return false;
  const [, colormap, kind] = bytes;
  const cmapLength = bytes[5] | (bytes[6] << 8);
  const cmapDepth = bytes[7];
  const width = bytes[12] | (bytes[13] << 8);
  const height = bytes[14] | (bytes[15] << 8);
  const depth = bytes[16];
  const descriptor = bytes[17];
  if (![1, 2, 3, 9, 10, 11].includes(kind) || colormap > 1 || !width || !height) return false;
  if (kind === 1 || kind === 9) return colormap === 1 && cmapLength > 0 && [15, 16, 24, 32].includes(cmapDepth) && [8, 16].includes(depth);
  if (colormap === 1 && ![15, 16, 24, 32].includes(cmapDepth)) return false;
  return ((kind === 3 || kind === 11) ? [8, 16] : [15, 16, 24, 32]).includes(depth) && (descriptor & 0xc0) === 0;
}

function sniffMore(bytes, head) {
  // imageflow/engine/camera_raw.py: sniff (a DNG, CR2 or NEF sniffs as TIFF here, also accepted)
  if (['IIRO', 'IIRS', 'MMOR', 'IIU\x00'].includes(head.slice(0, 4)) || head.startsWith('FUJIFILMCCD-RAW') || head.slice(4, 12) === 'ftypcrx ') return 'raw';
  // imageflow/engine/documents.py: sniff
  if (head.startsWith('%PDF-')) return 'pdf';
  const start = latin1(bytes.subarray(0, 4096)).replace(/^(\xef\xbb\xbf|[ \t\r\n])+/, '');
  if (start.startsWith('<') && latin1(bytes.subarray(0, 4096)).toLowerCase().includes('<svg')) return 'svg';
  if (head.startsWith('\x00\x00\x00\x0cjP  \r\n\x87\n') || head.startsWith('\xff\x4f\xff\x51')) return 'jpeg2000';
  if (head.startsWith('8BPS') && ['\x00\x01', '\x00\x02'].includes(head.slice(4, 6))) return 'psd';
  if (['\x00\x00\x01\x00', '\x00\x00\x02\x00'].includes(head.slice(0, 4)) && bytes.length >= 22 && head.slice(4, 6) !== '\x00\x00') return 'ico';
  if (head.startsWith('DDS ')) return 'dds';
  if (head.startsWith('\x01\xda') && bytes[2] <= 1 && (bytes[3] === 1 || bytes[3] === 2)) return 'sgi';
  if (/^P[1-7f]\s/.test(head)) return 'pnm';
  if (isTga(bytes)) return 'tga';
  return null;
}

// Bytes as a "binary string" (one char per byte), so magic numbers compare as text.
function latin1(bytes) {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}

/** The image format of these first bytes (a key of KIND_TYPES), or null. */
export function sniffBytes(bytes) {
  const head = latin1(bytes.subarray(0, 64));
  if (head.startsWith('\xff\xd8\xff')) return 'jpeg';
  if (head.startsWith('\x89PNG\r\n\x1a\n')) return 'png';
  if (head.startsWith('GIF87a') || head.startsWith('GIF89a')) return 'gif';
  if (head.slice(0, 4) === 'RIFF' && head.slice(8, 12) === 'WEBP') return 'webp';
  if (['II*\x00', 'MM\x00*', 'II+\x00', 'MM\x00+'].includes(head.slice(0, 4))) return 'tiff';
  if (head.startsWith('BM') && head.length >= 26) return 'bmp';
  if (head.slice(4, 12) === 'ftypcrx ') return 'raw';
  if (head.slice(4, 8) === 'ftyp' && head.length >= 16) {
    const size = ((bytes[0] << 24) >>> 0) + (bytes[1] << 16) + (bytes[2] << 8) + bytes[3];
    const all = latin1(bytes.subarray(0, 256));
    const brands = new Set([head.slice(8, 12)]);
    for (let i = 16; i < Math.min(Math.max(size, 16), 256); i += 4) brands.add(all.slice(i, i + 4));
    if ([...brands].some((brand) => AVIF_BRANDS.has(brand))) return 'avif';
    if ([...brands].some((brand) => HEIC_BRANDS.has(brand))) return 'heic';
  }
  return sniffMore(bytes, head);
}

function looksLikeText(bytes) {
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    // A character cut at the end of the sample is still text.
    let end = bytes.length;
    while (end > bytes.length - 4 && end > 0) {
      end -= 1;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, end));
        break;
      } catch {
        // keep trimming
      }
    }
    if (text === undefined) return false;
  }
  return [...text].every((ch) => ch === '\r' || ch === '\n' || ch === '\t' || (ch === ' ' || !/[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Z}]/u.test(ch)));
}

/** The server's sentence for a file that is no image it reads. */
export function describeUnknown(bytes) {
  const head = latin1(bytes.subarray(0, SNIFF_BYTES));
  for (const [magic, what] of OTHER_MAGIC) {
    if (head.startsWith(magic)) return `not a supported image: the content is ${what}`;
  }
  const start = head.trimStart();
  if (['<', '{', '['].includes(start.charAt(0)) || looksLikeText(bytes.subarray(0, SNIFF_BYTES))) {
    return 'not an image: the content is text';
  }
  return 'not a supported image: the content matches no known format (JPEG, PNG, WebP, GIF, TIFF, BMP, AVIF, HEIC, JPEG XL, TGA, JPEG 2000, ICO, PBM/PGM/PPM/PAM, SGI, DDS, PSD, SVG, PDF)';
}

async function headOf(file) {
  const blob = file.slice(0, SNIFF_BYTES);
  if (blob.arrayBuffer) return new Uint8Array(await blob.arrayBuffer());
  // Older engines (and jsdom) have only FileReader.
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(new Uint8Array(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsArrayBuffer(blob);
  });
}

/** `{kind, reason}` for a file: its sniffed format, or null and the server's reason. */
export async function sniffFile(file) {
  const bytes = await headOf(file);
  const kind = sniffBytes(bytes);
  return kind ? { kind, reason: '' } : { kind: null, reason: describeUnknown(bytes) };
}
