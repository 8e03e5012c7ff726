// Filling an open job (ARCHITECTURE.md, "Large jobs"): the files go up in small batches,
// a few at a time, each batch retried after a dropped connection or a busy server, and the
// job is closed once every batch is in. Nothing here waits for the last file before the
// first is processed: the server starts each image as it lands.
import { closeJob, uploadFiles } from './api.js';

export const BATCH_BYTES = 16 * 1024 * 1024;
// Room for a multipart request's own bytes (boundaries, headers) within max_request_bytes.
export const REQUEST_MARGIN = 1024 * 1024;
export const BATCH_FILES = 20;
export const PARALLEL = 3;
export const RETRIES = 4;
const RETRY_MS = [1000, 3000, 8000, 15000];

/** The bytes one batch may hold on a server that takes at most `maxRequestBytes` a request. */
export function batchBytes(maxRequestBytes) {
  return maxRequestBytes ? Math.max(1, Math.min(BATCH_BYTES, maxRequestBytes - REQUEST_MARGIN)) : BATCH_BYTES;
}

/** The files in batches of at most BATCH_FILES files and about BATCH_BYTES bytes. */
export function batches(files, maxBytes = BATCH_BYTES, maxFiles = BATCH_FILES) {
  const out = [];
  let current = [];
  let bytes = 0;
  for (const file of files) {
    if (current.length && (current.length >= maxFiles || bytes + file.size > maxBytes)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(file);
    bytes += file.size;
  }
  if (current.length) out.push(current);
  return out;
}

function retryable(error) {
  return error.isNetwork || error.status >= 500 || error.status === 429;
}

function wait(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        const error = new Error('Upload cancelled.');
        error.name = 'AbortError';
        reject(error);
      },
      { once: true },
    );
  });
}

/** Run `attempt()`, again after a pause while it fails in a way that can pass. */
async function withRetries(attempt, { signal, onRetry }) {
  for (let tries = 0; ; tries += 1) {
    try {
      return await attempt();
    } catch (error) {
      if (error.name === 'AbortError' || !retryable(error) || tries >= RETRIES) throw error;
      const pause = error.retryAfterMs ?? RETRY_MS[tries];
      onRetry?.(error, pause);
      await wait(pause, signal);
    }
  }
}

/**
 * Upload `files` into the open job `created` (the 201 answer, with links.files and
 * links.close) and close it. `onProgress(loaded, total)` counts bytes over every batch;
 * `onRetry(error, ms)` tells of a pause before another try; `onBatch(files, answer)` of a
 * batch the job now holds; `maxRequestBytes` is the server's per-request limit (each batch
 * stays within it, whatever the whole selection weighs). Resolves `{job_id, images, rejected}`; rejects with the error of
 * a batch that failed for good, or an AbortError.
 */
export async function fillOpenJob(created, files, { onProgress, onRetry, onBatch, signal, maxRequestBytes } = {}) {
  const total = files.reduce((sum, file) => sum + file.size, 0);
  const loaded = new Map();
  const report = () => onProgress?.([...loaded.values()].reduce((a, b) => a + b, 0), total);
  const images = [];
  const rejected = [];
  const queue = batches(files, batchBytes(maxRequestBytes)).map((batch, index) => ({ batch, index }));

  const worker = async () => {
    while (queue.length) {
      const { batch, index } = queue.shift();
      const bytes = batch.reduce((sum, file) => sum + file.size, 0);
      const answer = await withRetries(
        () =>
          uploadFiles(created.links.files, batch, {
            signal,
            onProgress: (sent, size) => {
              loaded.set(index, size > 0 ? Math.min(bytes, (sent / size) * bytes) : 0);
              report();
            },
          }),
        {
          signal,
          onRetry: (error, ms) => {
            loaded.set(index, 0);
            report();
            onRetry?.(error, ms);
          },
        },
      );
      loaded.set(index, bytes);
      report();
      images.push(...(answer.images || []));
      rejected.push(...(answer.rejected || []));
      onBatch?.(batch, answer);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, queue.length) }, worker));
  await withRetries(() => closeJob(created.links.close, { signal }), { signal, onRetry });
  return { job_id: created.job_id, images, rejected, links: created.links };
}

/**
 * The files still to send to an open job after an interruption: the `unsent` ones, less any
 * the job's image list holds beyond the `sentNames` already known to be there (a batch
 * whose answer was lost on the way). Names are counted, so two photos of one name count twice.
 */
export function stillToSend(unsent, heldFilenames, sentNames = []) {
  const held = new Map();
  for (const name of heldFilenames) held.set(name, (held.get(name) || 0) + 1);
  for (const name of sentNames) held.set(name, (held.get(name) || 0) - 1);
  return unsent.filter((file) => {
    const count = held.get(file.name) || 0;
    if (!count) return true;
    held.set(file.name, count - 1);
    return false;
  });
}
