// What a file really is, from its first bytes, as the server decides it
// (imageflow/engine/decoding.py: sniff and describe_unknown), so a PDF renamed ".jpg" is
// refused on the page with the server's reason, before it is uploaded.

export const SNIFF_BYTES = 512;

const AVIF_BRANDS = new Set(['avif', 'avis']);
const HEIC_BRANDS = new Set(['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'mif1', 'msf1']);

const OTHER_MAGIC = [
  ['%PDF', 'a PDF document'],
  ['PK\x03\x04', 'a ZIP archive (or an Office document)'],
  ['\x1f\x8b', 'a gzip archive'],
  ['Rar!', 'a RAR archive'],
  ['7z\xbc\xaf', 'a 7-Zip archive'],
  ['8BPS', 'a Photoshop document'],
  ['\x00\x00\x01\x00', 'a Windows icon'],
  ['\x7fELF', 'a program'],
  ['MZ', 'a Windows program'],
  ['ID3', 'an MP3 file'],
  ['OggS', 'an Ogg media file'],
  ['\x00\x00\x00\x0cjP  ', 'a JPEG 2000 image (not supported)'],
];

// Bytes as a "binary string" (one char per byte), so magic numbers compare as text.
function latin1(bytes) {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}

/** The image format of these first bytes (jpeg, png, gif, webp, tiff, bmp, avif, heic), or null. */
export function sniffBytes(bytes) {
  const head = latin1(bytes.subarray(0, 64));
  if (head.startsWith('\xff\xd8\xff')) return 'jpeg';
  if (head.startsWith('\x89PNG\r\n\x1a\n')) return 'png';
  if (head.startsWith('GIF87a') || head.startsWith('GIF89a')) return 'gif';
  if (head.slice(0, 4) === 'RIFF' && head.slice(8, 12) === 'WEBP') return 'webp';
  if (['II*\x00', 'MM\x00*', 'II+\x00', 'MM\x00+'].includes(head.slice(0, 4))) return 'tiff';
  if (head.startsWith('BM') && head.length >= 26) return 'bmp';
  if (head.slice(4, 8) === 'ftyp' && head.length >= 16) {
    const size = ((bytes[0] << 24) >>> 0) + (bytes[1] << 16) + (bytes[2] << 8) + bytes[3];
    const all = latin1(bytes.subarray(0, 256));
    const brands = new Set([head.slice(8, 12)]);
    for (let i = 16; i < Math.min(Math.max(size, 16), 256); i += 4) brands.add(all.slice(i, i + 4));
    if ([...brands].some((brand) => AVIF_BRANDS.has(brand))) return 'avif';
    if ([...brands].some((brand) => HEIC_BRANDS.has(brand))) return 'heic';
  }
  return null;
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
  if (start.slice(0, 5).toLowerCase() === '<?xml' || start.slice(0, 5).toLowerCase() === '<svg ' || start.slice(0, 256).toLowerCase().includes('<svg')) {
    return 'not a supported image: SVG (vector) files are not supported';
  }
  if (['<', '{', '['].includes(start.charAt(0)) || looksLikeText(bytes.subarray(0, SNIFF_BYTES))) {
    return 'not an image: the content is text';
  }
  return 'not a supported image: the content matches no known format (JPEG, PNG, WebP, GIF, TIFF, BMP, AVIF, HEIC)';
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
