// Filling an open job (ARCHITECTURE.md, "Large jobs"): the files go up in small batches,
// a few at a time, each batch retried after a dropped connection or a busy server, and the
// job is closed once every batch is in. Nothing here waits for the last file before the
// first is processed: the server starts each image as it lands.
import { closeJob, requestUploadTargets, uploadFiles } from './api.js';
import { LARGE_FILE_BYTES, sendResumable } from './resumableUpload.js';
import { withRetries } from './retry.js';

export const BATCH_BYTES = 16 * 1024 * 1024;
// Room for a multipart request's own bytes (boundaries, headers) within max_request_bytes.
export const REQUEST_MARGIN = 1024 * 1024;
export const BATCH_FILES = 20;
export const PARALLEL = 3;
export { RETRIES } from './retry.js';

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

/** The files of `batch` the server refused, by the names its answer gives, with their reasons. */
function refusedIn(batch, rejected = []) {
  const reasons = new Map();
  for (const row of rejected) reasons.set(row.filename, [...(reasons.get(row.filename) || []), row.error?.message || 'refused']);
  const out = new Map();
  for (const file of batch) {
    const left = reasons.get(file.name);
    if (left?.length) out.set(file, left.shift());
  }
  return out;
}

/**
 * Upload `files` into the open job `created` (the 201 answer, with links.files and
 * links.close) and close it. Files of `largeBytes` and more go one by one to an upload target
 * in resumable chunks (resumableUpload.js); the rest in multipart batches, each within the
 * server's per-request limit `maxRequestBytes` (whatever the selection weighs), in the order
 * given, PARALLEL requests at a time.
 *
 * Callbacks: `onProgress(loaded, total)` counts bytes over every request; `onFile(file, state)`
 * says each file's state (before the `onProgress` of the same event) (`{state: 'sending', percent}`, `'retrying'` with the `reason`, `'sent'`,
 * `'refused'` with the server's `reason`); `onRetry(error, ms)` tells of a pause before another
 * try; `onBatch(files, answer)` of files the job now holds. `gate()` is awaited before each new
 * request (a paused upload holds there; requests in flight finish). Resolves `{job_id, images,
 * rejected}`; rejects with the error of a request that failed for good, or an AbortError.
 */
export async function fillOpenJob(created, files, { onProgress, onFile, onRetry, onBatch, gate, signal, maxRequestBytes, largeBytes = LARGE_FILE_BYTES, chunkBytes } = {}) {
  const total = files.reduce((sum, file) => sum + file.size, 0);
  const loaded = new Map();
  const report = () => onProgress?.([...loaded.values()].reduce((a, b) => a + b, 0), total);
  const images = [];
  const rejected = [];
  const large = files.filter((file) => file.size >= largeBytes);
  const small = files.filter((file) => file.size < largeBytes);
  // the large files first, as the CLI sends them: they take longest
  const queue = [...large.map((file) => ({ file })), ...batches(small, batchBytes(maxRequestBytes)).map((batch) => ({ batch }))];
  queue.forEach((task, index) => {
    task.index = index;
  });
  const retrying = (targets, key) => (error, ms) => {
    loaded.set(key, 0);
    report();
    targets.forEach((file) => onFile?.(file, { state: 'retrying', reason: error.message }));
    onRetry?.(error, ms);
  };

  const sendBatch = async (batch, index) => {
    const bytes = batch.reduce((sum, file) => sum + file.size, 0);
    batch.forEach((file) => onFile?.(file, { state: 'sending', percent: 0 }));
    const answer = await withRetries(
      () =>
        uploadFiles(created.links.files, batch, {
          signal,
          onProgress: (sent, size) => {
            const share = size > 0 ? Math.min(1, sent / size) : 0;
            loaded.set(index, share * bytes);
            batch.forEach((file) => onFile?.(file, { state: 'sending', percent: Math.round(share * 100) }));
            report();
          },
        }),
      { signal, onRetry: retrying(batch, index) },
    );
    loaded.set(index, bytes);
    report();
    const refused = refusedIn(batch, answer.rejected);
    batch.forEach((file) => onFile?.(file, refused.has(file) ? { state: 'refused', reason: refused.get(file) } : { state: 'sent' }));
    images.push(...(answer.images || []));
    rejected.push(...(answer.rejected || []));
    onBatch?.(batch, answer);
  };

  const sendLarge = async (file, index) => {
    onFile?.(file, { state: 'sending', percent: 0 });
    const answer = await withRetries(() => requestUploadTargets(created.links.files, [file], { signal }), { signal, onRetry: retrying([file], index) });
    if (answer.rejected?.length || !answer.uploads?.length) {
      onFile?.(file, { state: 'refused', reason: answer.rejected?.[0]?.error?.message || 'refused' });
      rejected.push(...(answer.rejected || []));
      onBatch?.([file], answer);
      return;
    }
    const [target] = answer.uploads;
    await sendResumable(target, file, {
      chunkBytes,
      signal,
      gate,
      onRetry: retrying([file], index),
      onProgress: (bytes) => {
        loaded.set(index, bytes);
        onFile?.(file, { state: 'sending', percent: Math.floor((bytes / file.size) * 100) });
        report();
      },
    });
    onFile?.(file, { state: 'sent' });
    // it joins the job when its object lands (or at the close at the latest)
    const image = { image_id: target.image_id, filename: target.filename || file.name };
    images.push(image);
    onBatch?.([file], { images: [image], rejected: [] });
  };

  const worker = async () => {
    for (;;) {
      const held = gate?.(); // awaited only when paused: a request starts at once otherwise
      if (held) await held;
      const task = queue.shift();
      if (!task) return;
      if (task.file) await sendLarge(task.file, task.index);
      else await sendBatch(task.batch, task.index);
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
