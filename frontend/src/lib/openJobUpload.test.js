import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeXHR, jsonResponse, makeFile, mockFetch } from '../test/fakes.js';
import { batchBytes, batches, fillOpenJob, REQUEST_MARGIN, stillToSend } from './openJobUpload.js';

const created = { job_id: 'j'.repeat(32), status: 'open', links: { files: '/api/v1/jobs/J/files', close: '/api/v1/jobs/J/close' } };

function answer(xhr) {
  const names = xhr.body.getAll('files').map((file) => file.name);
  xhr.respond(200, { images: names.map((filename, i) => ({ image_id: `${filename}-${i}`, filename })), rejected: [] });
}

beforeEach(() => {
  FakeXHR.install();
});

afterEach(() => {
  vi.useRealTimers();
});

describe('batches', () => {
  it('cuts the files by count and by bytes, never leaving one out', () => {
    const files = Array.from({ length: 45 }, (_, i) => makeFile(`p${i}.jpg`, 'image/jpeg', 100));
    expect(batches(files, 1e9, 20).map((b) => b.length)).toEqual([20, 20, 5]);
    const big = [makeFile('a.jpg', 'image/jpeg', 600), makeFile('b.jpg', 'image/jpeg', 600), makeFile('c.jpg', 'image/jpeg', 100)];
    expect(batches(big, 1000, 20).map((b) => b.map((f) => f.name))).toEqual([['a.jpg'], ['b.jpg', 'c.jpg']]);
  });
});

describe('batchBytes', () => {
  it("keeps every request within the server's max_request_bytes, whatever the selection weighs", () => {
    expect(batchBytes(undefined)).toBe(16 * 1024 * 1024);
    expect(batchBytes(200 * 1024 * 1024)).toBe(16 * 1024 * 1024);
    expect(batchBytes(3 * 1024 * 1024)).toBe(3 * 1024 * 1024 - REQUEST_MARGIN);
  });
});

describe('fillOpenJob', () => {
  it("sends a selection many times the server's request limit in requests within it", async () => {
    mockFetch(() => jsonResponse(200, { status: 'processing' }));
    const files = Array.from({ length: 12 }, (_, i) => makeFile(`p${i}.jpg`, 'image/jpeg', 400 * 1024));
    const done = fillOpenJob(created, files, { maxRequestBytes: REQUEST_MARGIN + 1024 * 1024 });
    const sent = [];
    while (sent.length < 12) {
      await vi.waitFor(() => expect(FakeXHR.instances.some((xhr) => !xhr.answered)).toBe(true));
      for (const xhr of FakeXHR.instances.filter((x) => !x.answered)) {
        const batch = xhr.body.getAll('files');
        expect(batch.reduce((sum, file) => sum + file.size, 0)).toBeLessThanOrEqual(1024 * 1024);
        sent.push(...batch.map((file) => file.name));
        xhr.answered = true;
        answer(xhr);
      }
    }
    const job = await done;
    expect(job.images).toHaveLength(12);
    expect(sent.sort()).toEqual(files.map((file) => file.name).sort());
  });

  it('sends the batches in parallel, counts the bytes of all of them, then closes the job', async () => {
    const fetch = mockFetch(() => jsonResponse(200, { status: 'processing' }));
    const files = Array.from({ length: 45 }, (_, i) => makeFile(`p${i}.jpg`, 'image/jpeg', 100));
    const progress = [];
    const done = fillOpenJob(created, files, { onProgress: (loaded, total) => progress.push([loaded, total]) });
    await vi.waitFor(() => expect(FakeXHR.instances).toHaveLength(3)); // three at once
    expect(FakeXHR.instances.every((xhr) => xhr.url === created.links.files)).toBe(true);
    FakeXHR.instances[0].progress(1000, 2000);
    expect(progress.at(-1)).toEqual([1000, 4500]);
    FakeXHR.instances.forEach(answer);
    const job = await done;
    expect(job.images).toHaveLength(45);
    expect(progress.at(-1)).toEqual([4500, 4500]);
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(fetch.mock.calls[0][0]).toBe(created.links.close);
    expect(fetch.mock.calls[0][1].method).toBe('POST');
  });

  it('tries a batch again after a dropped connection, without sending the others twice', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    mockFetch(() => jsonResponse(200, { status: 'processing' }));
    const files = Array.from({ length: 25 }, (_, i) => makeFile(`p${i}.jpg`, 'image/jpeg', 100));
    const retries = [];
    const done = fillOpenJob(created, files, { onRetry: (error, ms) => retries.push([error.isNetwork, ms]) });
    await vi.waitFor(() => expect(FakeXHR.instances).toHaveLength(2));
    FakeXHR.instances[0].fail();
    answer(FakeXHR.instances[1]);
    await vi.waitFor(() => expect(retries).toEqual([[true, 1000]]));
    await vi.advanceTimersByTimeAsync(1000);
    await vi.waitFor(() => expect(FakeXHR.instances).toHaveLength(3));
    expect(FakeXHR.instances[2].body.getAll('files').map((f) => f.name)).toEqual(FakeXHR.instances[0].body.getAll('files').map((f) => f.name));
    answer(FakeXHR.instances[2]);
    expect((await done).images).toHaveLength(25);
  });

  it('stops at a refusal that another try cannot change', async () => {
    mockFetch(() => jsonResponse(200, {}));
    const done = fillOpenJob(created, [makeFile('a.jpg')]);
    await vi.waitFor(() => expect(FakeXHR.instances).toHaveLength(1));
    FakeXHR.last().respond(413, { error: { code: 'too_many_files', message: 'this job already has 10000 files, the most one job takes' } });
    await expect(done).rejects.toMatchObject({ status: 413, message: /10000 files/ });
    expect(FakeXHR.instances).toHaveLength(1);
  });
});

describe('stillToSend', () => {
  it('leaves out what the job holds beyond what is known sent, counting names', () => {
    const a1 = makeFile('IMG_0001.jpg');
    const a2 = makeFile('IMG_0001.jpg', 'image/jpeg', 1200);
    const b = makeFile('b.jpg');
    // One IMG_0001.jpg was known sent; the job holds two and b.jpg: the second landed too.
    expect(stillToSend([a2, b], ['IMG_0001.jpg', 'IMG_0001.jpg'], ['IMG_0001.jpg'])).toEqual([b]);
    expect(stillToSend([a2, b], ['IMG_0001.jpg'], ['IMG_0001.jpg'])).toEqual([a2, b]);
    expect(stillToSend([a1, a2], [], [])).toEqual([a1, a2]);
  });
});

describe('a busy server', () => {
  it("waits as long as a 429's Retry-After says, then sends the batch again", async () => {
    mockFetch(() => jsonResponse(202, { job_id: created.job_id, status: 'queued' }));
    vi.useFakeTimers();
    const pauses = [];
    const done = fillOpenJob(created, [makeFile('a.jpg')], { onRetry: (error, ms) => pauses.push([error.status, ms]) });
    FakeXHR.last().respond(429, { error: { code: 'rate_limited', message: 'slow down' } }, { 'Retry-After': '2' });
    await vi.waitFor(() => expect(pauses).toEqual([[429, 2000]]));
    expect(FakeXHR.instances).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2000);
    expect(FakeXHR.instances).toHaveLength(2);
    answer(FakeXHR.last());
    await expect(done).resolves.toMatchObject({ images: [{ filename: 'a.jpg' }] });
  });
});
