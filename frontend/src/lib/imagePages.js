// The images of a job being followed, kept page by page (ARCHITECTURE.md, "Large jobs": the
// job view holds the first page and `links.next` leads to the rest). When the job changes,
// a page whose photos had all finished is not read again: a finished photo stays as it is,
// so each poll of a big job reads the first page, the pages still in progress and the last
// one (where an open job grows), not the whole list.
import { getJson } from './api.js';

const FINAL = new Set(['succeeded', 'failed', 'skipped']);
// Signed picture URLs expire (SIGNED_URL_TTL_SECONDS); a kept page is read again after this.
const KEEP_MS = 5 * 60 * 1000;

/** An empty store of pages, for one job followed by one page. */
export function imagePages() {
  return { pages: [], run: undefined, done: 0 };
}

/**
 * The job with all its images: `job` is a fresh job view, `store` what earlier polls read
 * (updated in place). A job run again (a retry: its run grows, its finished count falls)
 * starts the store over.
 */
export async function withImagePages(job, store, options, now = Date.now()) {
  const done = (job.succeeded || 0) + (job.failed || 0) + (job.skipped || 0);
  if (store.run !== job.run || done < store.done) {
    store.pages = [];
    store.run = job.run;
  }
  store.done = done;
  const pages = [{ url: null, images: job.images || [], next: job.links?.next || null, at: now }];
  let next = pages[0].next;
  while (next) {
    const kept = store.pages[pages.length];
    const reuse = kept && kept.url === next && kept.next && now - kept.at < KEEP_MS && kept.images.every((image) => FINAL.has(image.status));
    const page = reuse ? kept : await getJson(next, options).then((answer) => ({ url: next, images: answer.images || [], next: answer.links?.next || null, at: now }));
    pages.push(page);
    next = page.next;
  }
  store.pages = pages;
  return { ...job, images: pages.flatMap((page) => page.images) };
}
