import { useEffect, useState } from 'react';
import { fetchJob } from './api.js';
import { imagePages, withImagePages } from './imagePages.js';
import { isTerminal } from './jobs.js';

const POLL_MS = 1000;
const HIDDEN_POLL_MS = 5000;

/** How often a running job is read: each second, less often for a big one (each changed poll
 * reads its first page of images and the pages still in progress, ~10 KB each). */
export function pollInterval(job, hidden = false) {
  if (hidden) return HIDDEN_POLL_MS;
  const total = job?.total || 0;
  return total <= 100 ? POLL_MS : total <= 1000 ? 2 * POLL_MS : 5 * POLL_MS;
}
const MAX_BACKOFF_MS = 15000;

function retryable(error) {
  return error.isNetwork || error.status >= 500 || error.status === 429;
}

/**
 * Follows a job: fetches it, then polls while it is still running, backing off while the
 * server cannot be reached and keeping the last answer on screen meanwhile. Each poll sends
 * the last answer's ETag, so an unchanged job is a 304 with no body; a changed one reads
 * again only the pages of images that can have changed (lib/imagePages.js).
 * Returns {status: loading|ready|not-found|error, job, error, retrying, updatedAt, retryNow}.
 */
export default function useJob(jobId) {
  const [state, setState] = useState({ status: 'loading', job: null, error: null, retrying: false, updatedAt: null });
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    const controller = new AbortController();
    let timer = null;
    let failures = 0;
    let stopped = false;
    let etag = null; // of the answer on screen: an unchanged job costs a 304 and no body
    let last = null;
    const pages = imagePages(); // the job's images page by page: finished pages are not read again

    const schedule = (ms) => {
      if (!stopped) timer = setTimeout(poll, ms);
    };
    async function poll() {
      try {
        const answer = await fetchJob(jobId, { signal: controller.signal, etag: last ? etag : null });
        if (stopped) return;
        failures = 0;
        if (answer.notModified) {
          setState((current) => (current.error ? { ...current, error: null, retrying: false, updatedAt: new Date() } : current));
        } else {
          // a changed job: its counts come with the first page, so the rest is read only then,
          // and only the pages that can have changed
          last = await withImagePages(answer.job, pages, { signal: controller.signal });
          if (stopped) return;
          etag = answer.etag;
          setState({ status: 'ready', job: last, error: null, retrying: false, updatedAt: new Date() });
        }
        const job = last;
        if (!isTerminal(job.status)) schedule(pollInterval(job, document.hidden));
      } catch (error) {
        if (stopped || error.name === 'AbortError') return;
        if (error.status === 404) {
          setState({ status: 'not-found', job: null, error, retrying: false, updatedAt: null });
          return;
        }
        const again = retryable(error);
        setState((current) => ({
          ...current,
          status: current.job ? 'ready' : 'error',
          error,
          retrying: again,
        }));
        if (again) {
          failures += 1;
          const wait = error.retryAfterMs ?? POLL_MS * 2 ** failures;
          schedule(Math.min(MAX_BACKOFF_MS, wait));
        }
      }
    }

    setState((current) =>
      current.job?.job_id === jobId ? current : { status: 'loading', job: null, error: null, retrying: false, updatedAt: null },
    );
    poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
      controller.abort();
    };
  }, [jobId, attempt]);

  return { ...state, retryNow: () => setAttempt((n) => n + 1) };
}
