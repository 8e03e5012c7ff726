// One large file straight to storage through its upload target (docs/api.md, "Direct uploads"):
// in CHUNK_BYTES chunks, each a PUT with Content-Range, as Cloud Storage's resumable sessions
// take them (the local store speaks the same protocol). After a failed chunk the session is
// asked how far it got (`bytes */size`) and the file goes on from there, not from its first byte.
import { putUploadChunk } from './api.js';
import { RETRIES, pauseFor, retryable, wait, withRetries } from './retry.js';

// The CLI's figures (imageflow_cli LARGE_FILE_BYTES, CHUNK_BYTES): files this large go direct...
export const LARGE_FILE_BYTES = 16 * 1024 * 1024;
// ...in chunks this size (a multiple of 256 KiB, as Cloud Storage asks of every chunk but the last).
export const CHUNK_BYTES = 8 * 1024 * 1024;

/**
 * Send `file` to `target` ({url, method, headers}). `onProgress(bytes)` tells how much of the
 * file is sent (counting the chunk under way); `onRetry(error, ms)` of a pause before carrying
 * on; `gate()`, awaited before each chunk, holds the upload while it is paused. Resolves once
 * the session holds the whole file; rejects with the error of a chunk that failed for good, or
 * an AbortError when `signal` aborts.
 */
export async function sendResumable(target, file, { chunkBytes = CHUNK_BYTES, onProgress, onRetry, gate, signal } = {}) {
  const size = file.size;
  let kept = 0;
  let failures = 0;
  while (kept < size) {
    const held = gate?.();
    if (held) await held;
    const from = kept;
    const chunk = file.slice(from, Math.min(size, from + chunkBytes));
    try {
      kept = await putUploadChunk(target, { chunk, from, size }, { signal, onProgress: (loaded) => onProgress?.(from + Math.min(loaded, chunk.size)) });
      failures = 0;
    } catch (error) {
      if (error.name === 'AbortError' || !retryable(error) || failures >= RETRIES) throw error;
      const pause = pauseFor(error, failures);
      failures += 1;
      onRetry?.(error, pause);
      onProgress?.(from);
      await wait(pause, signal);
      // The chunk may have landed whole, in part or not at all: the session says which.
      kept = await withRetries(() => putUploadChunk(target, { size }, { signal }), { signal, onRetry });
    }
    onProgress?.(kept);
  }
  return kept;
}
