// Words for job and image states, and plain-language explanations of processing errors.

export const TERMINAL_STATUSES = ['completed', 'completed_with_errors', 'failed'];

export function isTerminal(status) {
  return TERMINAL_STATUSES.includes(status);
}

const JOB_STATUS_TEXT = {
  queued: 'Waiting to start',
  processing: 'Processing',
  completed: 'Done',
  completed_with_errors: 'Done, with some errors',
  failed: 'Failed',
};

/** The job's status in words. */
export function jobStatusText(status) {
  return JOB_STATUS_TEXT[status] || status || 'Unknown';
}

const IMAGE_STATUS_TEXT = { queued: 'Waiting', succeeded: 'Done', failed: 'Failed' };

export function imageStatusText(status) {
  return IMAGE_STATUS_TEXT[status] || status || 'Unknown';
}

// The processor reports what went wrong in technical terms; these say it for a person.
const EXPLANATIONS = [
  [/cannot identify image|unidentified ?image|not an image|unsupported (image|file)/i,
    "This file isn't an image ImageFlow can read. It may be damaged, or in a format that isn't supported."],
  [/decompression ?bomb|too many pixels|exceeds .*pixel|pixel limit/i,
    'This image has too many pixels to process safely. Try a smaller version of it.'],
  [/truncated|premature end|broken data stream|image file is truncated/i,
    'This image file is incomplete or damaged, so it could not be read to the end.'],
  [/crop.*(outside|beyond|exceed)|outside the image|out of bounds/i,
    'The crop area lies outside this image. Check the crop position and size against the image size.'],
  [/timed? ?out|deadline/i, 'Processing this image took too long and was stopped.'],
  [/dead[- ]?letter|too many attempts|max(imum)? delivery/i,
    'Processing this image failed repeatedly, so ImageFlow gave up on it.'],
  [/(cannot|can't) (write|save)|encoder|not supported for (writing|saving)/i,
    'The image could not be saved in the chosen format.'],
];

/** `{summary, detail}`: a sentence for a person, and the server's own words when they differ. */
export function explainImageError(error) {
  const raw = typeof error === 'string' ? error : error?.message || '';
  if (!raw) return { summary: 'Something went wrong while processing this image.', detail: '' };
  for (const [pattern, summary] of EXPLANATIONS) {
    if (pattern.test(raw)) return { summary, detail: raw };
  }
  return { summary: raw, detail: '' };
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
