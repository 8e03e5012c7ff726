import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeXHR, makeFile } from '../test/fakes.js';
import { setApiKey } from './api.js';
import { sendResumable } from './resumableUpload.js';

const target = { url: '/api/v1/jobs/j/uploads/i?sig=x', method: 'PUT', headers: { 'Content-Type': 'image/png' } };

/** Wait for request number `n` (from 1) and return it. */
async function request(n) {
  await vi.waitFor(() => expect(FakeXHR.instances.length).toBeGreaterThanOrEqual(n));
  return FakeXHR.instances[n - 1];
}

// jsdom's Blob has no arrayBuffer(): read it as a browser of old would.
function bytesOf(blob) {
  return new Promise((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve(new Uint8Array(reader.result));
    reader.readAsArrayBuffer(blob);
  });
}

const bodyBytes = (xhr) => bytesOf(xhr.body);

beforeEach(() => {
  FakeXHR.install();
  window.sessionStorage.clear();
});

afterEach(() => {
  vi.useRealTimers();
});

describe('the resumable uploader', () => {
  it('sends a file in chunks with Content-Range, each one after the 308 of the last', async () => {
    const file = makeFile('big.png', 'image/png', 25, Array.from({ length: 25 }, (_, i) => i));
    const progress = [];
    const done = sendResumable(target, file, { chunkBytes: 10, onProgress: (bytes) => progress.push(bytes) });
    const first = await request(1);
    expect([first.method, first.url]).toEqual(['PUT', target.url]);
    expect(first.headers).toMatchObject({ 'Content-Type': 'image/png', 'Content-Range': 'bytes 0-9/25' });
    expect(await bodyBytes(first)).toEqual(await bytesOf(file.slice(0, 10)));
    first.progress(5, 10);
    first.respond(308, '', { Range: 'bytes=0-9' });
    const second = await request(2);
    expect(second.headers['Content-Range']).toBe('bytes 10-19/25');
    second.respond(308, '', { Range: 'bytes=0-19' });
    const third = await request(3);
    expect(third.headers['Content-Range']).toBe('bytes 20-24/25');
    expect(third.body.size).toBe(5);
    third.respond(200, { image_id: 'i' });
    await expect(done).resolves.toBe(25);
    expect(progress).toEqual([5, 10, 20, 25]);
  });

  it('after a dropped chunk asks how far the session got and goes on from there, not from the first byte', async () => {
    vi.useFakeTimers();
    const file = makeFile('big.png', 'image/png', 30, Array.from({ length: 30 }, (_, i) => i));
    const retries = [];
    const done = sendResumable(target, file, { chunkBytes: 10, onRetry: (error, ms) => retries.push([error.code, ms]) });
    (await request(1)).respond(308, '', { Range: 'bytes=0-9' });
    (await request(2)).fail(); // the connection drops during bytes 10-19
    await vi.waitFor(() => expect(retries).toEqual([['network', 1000]]));
    await vi.advanceTimersByTimeAsync(1000);
    const query = await request(3);
    expect(query.headers['Content-Range']).toBe('bytes */30');
    expect(query.body).toBeNull();
    query.respond(308, '', { Range: 'bytes=0-14' }); // half of the chunk had landed
    const rest = await request(4);
    expect(rest.headers['Content-Range']).toBe('bytes 15-24/30');
    rest.respond(308, '', { Range: 'bytes=0-24' });
    (await request(5)).respond(201, {});
    await expect(done).resolves.toBe(30);
    expect(FakeXHR.instances).toHaveLength(5);
    vi.useRealTimers(); // jsdom's FileReader runs on timers
    expect(await bodyBytes(rest)).toEqual(await bytesOf(file.slice(15, 25)));
  });

  it('stops on a refusal the server will not change its mind about', async () => {
    const done = sendResumable(target, makeFile('big.png', 'image/png', 20), { chunkBytes: 10 });
    (await request(1)).respond(409, { error: { code: 'already_uploaded', message: 'big.png: already uploaded' } });
    await expect(done).rejects.toMatchObject({ status: 409, message: 'big.png: already uploaded' });
  });

  it('sends the API key to the API only, never to a storage session elsewhere', async () => {
    setApiKey('secret-key-0123456789');
    const file = makeFile('big.png', 'image/png', 10);
    const own = sendResumable(target, file);
    const local = await request(1);
    expect(local.headers.Authorization).toBe('Bearer secret-key-0123456789');
    local.respond(200, {});
    await own;
    const gcs = { url: 'https://storage.googleapis.com/upload/storage/v1/b/in/o?uploadType=resumable&upload_id=abc', method: 'PUT', headers: {} };
    const far = sendResumable(gcs, file);
    const session = await request(2);
    expect(session.headers.Authorization).toBeUndefined();
    expect(session.headers['Content-Range']).toBe('bytes 0-9/10');
    session.respond(200, {});
    await far;
  });

  it('holds between chunks while paused', async () => {
    let open;
    let paused = false;
    const gate = () => (paused ? new Promise((resolve) => (open = resolve)) : undefined);
    const done = sendResumable(target, makeFile('big.png', 'image/png', 20), { chunkBytes: 10, gate });
    const first = await request(1);
    paused = true;
    first.respond(308, '', { Range: 'bytes=0-9' });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(FakeXHR.instances).toHaveLength(1);
    paused = false;
    open();
    (await request(2)).respond(200, {});
    await expect(done).resolves.toBe(20);
  });
});
