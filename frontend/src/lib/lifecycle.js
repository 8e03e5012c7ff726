// The job lifecycle routes (issue 16): cancel, retry, re-run. Failures are ApiErrors, as in api.js.
import { ApiError, authHeaders, errorFromResponse } from './api.js';

async function postJson(path, body) {
  let response;
  try {
    response = await fetch(path, {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/json', ...authHeaders() },
      body: JSON.stringify(body ?? {}),
    });
  } catch {
    throw new ApiError({ status: 0, code: 'network' });
  }
  const text = await response.text();
  if (!response.ok) throw errorFromResponse(response.status, text, response.headers.get('Retry-After'));
  return JSON.parse(text);
}

const jobPath = (jobId, action) => `/api/v1/jobs/${encodeURIComponent(jobId)}/${action}`;

/** POST /jobs/<id>/cancel: images not started are skipped, those in flight finish. */
export const cancelJob = (jobId) => postJson(jobPath(jobId, 'cancel'));

/** POST /jobs/<id>/retry: the failed images run again with the same steps. */
export const retryJob = (jobId) => postJson(jobPath(jobId, 'retry'));

/** POST /jobs/<id>/rerun: a new job over the stored originals; resolves with {job_id, parent_job_id}. */
export const rerunJob = (jobId, { operations, only }) => postJson(jobPath(jobId, 'rerun'), { operations, only });

/** "812 MB" from a byte count. */
export function formatBytes(count) {
  let size = Number(count) || 0;
  for (const unit of ['bytes', 'KB', 'MB', 'GB']) {
    if (Math.abs(size) < 1000 || unit === 'GB') return unit === 'bytes' ? `${size} bytes` : `${size.toFixed(size < 10 ? 1 : 0)} ${unit}`;
    size /= 1000;
  }
  return `${count} bytes`;
}

/** "Saved 812 MB (88 %)", or how much larger the outputs are; '' without sizes. */
export function savingsText(job) {
  const bytesIn = job?.bytes_in || 0;
  const bytesOut = job?.bytes_out || 0;
  if (!bytesIn || !bytesOut) return '';
  const percent = Math.round((100 * (bytesIn - bytesOut)) / bytesIn);
  return bytesOut <= bytesIn
    ? `Saved ${formatBytes(bytesIn - bytesOut)} (${percent} %)`
    : `The results are ${formatBytes(bytesOut - bytesIn)} larger than the originals (${-percent} %)`;
}
