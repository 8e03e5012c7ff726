// Trying a request again after a failure that can pass (a dropped connection, a busy server),
// shared by the batch uploads (openJobUpload.js) and the resumable ones (resumableUpload.js).

export const RETRIES = 4;
export const RETRY_MS = [1000, 3000, 8000, 15000];

/** True for a failure worth another try: no answer, a 5xx, or a 429. */
export function retryable(error) {
  return Boolean(error.isNetwork || error.status >= 500 || error.status === 429);
}

export function abortError() {
  const error = new Error('Upload cancelled.');
  error.name = 'AbortError';
  return error;
}

/** A pause of `ms` that `signal` cuts short (rejecting with an AbortError). */
export function wait(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError());
      return;
    }
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(abortError());
      },
      { once: true },
    );
  });
}

/** The pause before try number `tries + 1`: the server's Retry-After, else the next of RETRY_MS. */
export function pauseFor(error, tries) {
  return error.retryAfterMs ?? RETRY_MS[Math.min(tries, RETRY_MS.length - 1)];
}

/** Run `attempt()`, again after a pause while it fails in a way that can pass. */
export async function withRetries(attempt, { signal, onRetry } = {}) {
  for (let tries = 0; ; tries += 1) {
    try {
      return await attempt();
    } catch (error) {
      if (error.name === 'AbortError' || !retryable(error) || tries >= RETRIES) throw error;
      const pause = pauseFor(error, tries);
      onRetry?.(error, pause);
      await wait(pause, signal);
    }
  }
}
