// Words for job and image states, and plain-language explanations of processing errors.

export const TERMINAL_STATUSES = ['completed', 'completed_with_errors', 'failed', 'cancelled'];

export function isTerminal(status) {
  return TERMINAL_STATUSES.includes(status);
}

const JOB_STATUS_TEXT = {
  queued: 'Waiting to start',
  processing: 'Processing',
  completed: 'Done',
  completed_with_errors: 'Done, with some errors',
  failed: 'Failed',
  cancelled: 'Cancelled',
  expired: 'Expired',
};

/** The job's status in words. */
export function jobStatusText(status) {
  return JOB_STATUS_TEXT[status] || status || 'Unknown';
}

const IMAGE_STATUS_TEXT = { queued: 'Waiting', succeeded: 'Done', failed: 'Failed', skipped: 'Skipped' };

export function imageStatusText(status) {
  return IMAGE_STATUS_TEXT[status] || status || 'Unknown';
}

// The processor reports what went wrong in technical terms; these say it for a person.
const EXPLANATIONS = [
  [/not (a supported image|an image)|cannot identify image|unidentified ?image|unsupported/i,
    "This file isn't an image ImageFlow can read, or its format isn't supported."],
  [/megapixels|more pixels than|decompression ?bomb|too many pixels|more memory to decode/i,
    'This image is too big (too many pixels) to process. Try a smaller version of it.'],
  [/more than \d+ frames|frames of/i, 'This animation has too many frames to process.'],
  [/truncated|ends early|unreadable|corrupt|premature end|broken data stream/i,
    'This image file is damaged or incomplete, so it could not be read.'],
  [/crop box|outside the \d+x\d+ image|out of bounds/i,
    'The crop area lies outside this image. Check the crop position against the image size.'],
  [/would make a \d+x\d+ image|not enough memory for operations/i,
    'The chosen steps would make this image too large. Try smaller sizes.'],
  [/max_bytes|even at quality 1|output is \d+ bytes/i,
    "The result couldn't be made small enough for the size limit you chose."],
  [/cannot encode|not supported for (writing|saving)/i, "The result couldn't be saved in the chosen format."],
  [/missing from storage/i, 'The uploaded original is no longer stored, so it could not be processed.'],
  [/timed? ?out|deadline/i, 'Processing this image took too long and was stopped.'],
  [/dead[- ]?letter|too many attempts|gave up|max(imum)? delivery/i,
    'Processing this image failed repeatedly, so ImageFlow gave up on it.'],
];

/** `{summary, detail}`: a sentence for a person, and the server's own words when they differ. */
export function explainImageError(error) {
  const raw = typeof error === 'string' ? error : error?.message || '';
  if (!raw) return { summary: 'Something went wrong while processing this image.', detail: '' };
  for (const [pattern, summary] of EXPLANATIONS) {
    if (pattern.test(raw)) return { summary, detail: raw };
  }
  return { summary: `${raw.charAt(0).toUpperCase()}${raw.slice(1)}${/[.!?]$/.test(raw) ? '' : '.'}`, detail: '' };
}

/** A content type like "image/webp" as "WebP". */
export function formatName(contentType) {
  const sub = String(contentType || '').replace(/^image\//, '').toLowerCase();
  return { jpeg: 'JPEG', png: 'PNG', webp: 'WebP', avif: 'AVIF', gif: 'GIF', tiff: 'TIFF', bmp: 'BMP' }[sub] || sub.toUpperCase();
}

/** A time stamp from the API ("2024-05-01T10:00:00.000Z") in the reader's locale. */
export function formatTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleString();
}
