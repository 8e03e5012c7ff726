import { describe, expect, it } from 'vitest';
import { jsonResponse, mockFetch } from '../test/fakes.js';
import { imagePages, withImagePages } from './imagePages.js';

const image = (n, status) => ({ image_id: String(n), filename: `p${n}.jpg`, status });
const PAGE2 = '/api/v1/jobs/j/images?limit=2&cursor=A';
const PAGE3 = '/api/v1/jobs/j/images?limit=2&cursor=B';

/** A job of 6 images in pages of 2, with the statuses given; the server's answers to the pages. */
function serve(statuses, extra = {}) {
  const images = statuses.map((status, i) => image(i + 1, status));
  const job = {
    job_id: 'j',
    run: 1,
    succeeded: statuses.filter((s) => s === 'succeeded').length,
    failed: statuses.filter((s) => s === 'failed').length,
    images: images.slice(0, 2),
    links: { next: PAGE2 },
    ...extra,
  };
  const fetch = mockFetch((url) => {
    if (url === PAGE2) return jsonResponse(200, { images: images.slice(2, 4), links: { next: PAGE3 } });
    if (url === PAGE3) return jsonResponse(200, { images: images.slice(4, 6), links: { next: null } });
    throw new Error(`unexpected ${url}`);
  });
  return { job, fetch, read: () => fetch.mock.calls.map(([url]) => url) };
}

describe('the pages of a followed job', () => {
  it('reads every page once, then only the pages that can still change', async () => {
    const store = imagePages();
    const first = serve(['succeeded', 'queued', 'succeeded', 'failed', 'queued', 'queued']);
    const all = await withImagePages(first.job, store, {}, 0);
    expect(all.images.map((i) => i.status)).toEqual(['succeeded', 'queued', 'succeeded', 'failed', 'queued', 'queued']);
    expect(first.read()).toEqual([PAGE2, PAGE3]);

    // Page 2 had finished: not read again. Page 3 (still working, and the last) is.
    const second = serve(['succeeded', 'succeeded', 'succeeded', 'failed', 'succeeded', 'queued']);
    const now = await withImagePages(second.job, store, {}, 1000);
    expect(second.read()).toEqual([PAGE3]);
    expect(now.images.map((i) => i.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'failed', 'succeeded', 'queued']);
  });

  it('reads a kept page again once its signed URLs may have expired', async () => {
    const store = imagePages();
    await withImagePages(serve(['succeeded', 'queued', 'succeeded', 'succeeded', 'queued', 'queued']).job, store, {}, 0);
    const later = serve(['succeeded', 'queued', 'succeeded', 'succeeded', 'queued', 'queued']);
    await withImagePages(later.job, store, {}, 6 * 60 * 1000);
    expect(later.read()).toEqual([PAGE2, PAGE3]);
  });

  it('starts over when the job is run again (a retry sends failed photos back to the queue)', async () => {
    const store = imagePages();
    await withImagePages(serve(['succeeded', 'succeeded', 'succeeded', 'failed', 'succeeded', 'succeeded']).job, store, {}, 0);
    const retried = serve(['succeeded', 'succeeded', 'succeeded', 'queued', 'succeeded', 'succeeded'], { run: 2 });
    const now = await withImagePages(retried.job, store, {}, 1000);
    expect(retried.read()).toEqual([PAGE2, PAGE3]);
    expect(now.images[3].status).toBe('queued');
  });
});
