// Words for job and image states, and plain-language explanations of processing errors.
import { sentence } from './format.js';

export const TERMINAL_STATUSES = ['completed', 'completed_with_errors', 'failed', 'cancelled'];

export function isTerminal(status) {
  return TERMINAL_STATUSES.includes(status);
}

const JOB_STATUS_TEXT = {
  open: 'Receiving photos',
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

// What went wrong with an image, by the error code the server gives it (domain.ErrorCode in
// imageflow/domain.py, published in the OpenAPI document), said for a person. jobs.test.js
// holds this list to docs/api.md's table of `error_code`s.
const ERROR_WORDS = {
  empty: 'This file is empty.',
  unsupported: "This file isn't an image ImageFlow can read, or its format isn't supported.",
  unsupported_compression: "This image's format is supported, but the way its pixels are compressed isn't.",
  corrupt: 'This image file is damaged or incomplete, so it could not be read.',
  too_large: 'This image is too big (too many pixels) to process. Try a smaller version of it.',
  too_many_frames: 'This animation has too many frames to process.',
  output_too_large: "The chosen steps would make this image too large, or the result couldn't be made small enough for the size you chose.",
  invalid: "The chosen steps don't fit this image (a crop outside it, say). Check the steps against the image's size.",
  missing_input: 'The uploaded original is no longer stored, so it could not be processed.',
  timeout: 'Processing this image took too long and was stopped.',
  worker_crashed: 'Processing this image failed repeatedly, so ImageFlow gave up on it.',
  fetch_failed: 'The image could not be downloaded from its address.',
  file_too_large: 'This file is larger than the server takes for one photo.',
  quota_exceeded: 'Your account had too many photos in progress when this one arrived. Send it again once some have finished.',
};

/** The image error codes the page has words for. */
export const IMAGE_ERROR_CODES = Object.keys(ERROR_WORDS);

/**
 * `{summary, detail}` for a failed image: words for its `error_code` with the server's
 * message as the detail, or, for a code the page does not know, the message itself.
 */
export function explainImageError(image) {
  const raw = typeof image?.error === 'string' ? image.error : image?.error?.message || '';
  const words = ERROR_WORDS[image?.error_code];
  if (words) return { summary: words, detail: raw && sentence(raw) !== words ? raw : '' };
  if (!raw) return { summary: 'Something went wrong while processing this image.', detail: '' };
  return { summary: sentence(raw), detail: '' };
}
