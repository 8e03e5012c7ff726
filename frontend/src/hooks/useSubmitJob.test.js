import { act, renderHook, waitFor } from '@testing-library/react';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeXHR, jsonResponse, makeFile, mockFetch } from '../test/fakes.js';
import { PARALLEL, REQUEST_MARGIN } from '../lib/openJobUpload.js';
import { CHUNK_BYTES, LARGE_FILE_BYTES } from '../lib/resumableUpload.js';
import useSubmitJob from './useSubmitJob.js';

const JOB_ID = 'c'.repeat(32);
const links = { self: `/api/v1/jobs/${JOB_ID}`, files: `/api/v1/jobs/${JOB_ID}/files`, close: `/api/v1/jobs/${JOB_ID}/close` };
const request = { preset: null, operations: [{ op: 'grayscale' }], overlays: [] };
const items = ['a.jpg', 'b.jpg', 'c.jpg', 'd.jpg', 'e.jpg'].map((name, index) => ({ id: `id-${index}`, file: makeFile(name, 'image/jpeg', 1000) }));

/** A server with open jobs: the steps check out, the job opens, takes its files and closes. */
function openJobServer({ validate = () => jsonResponse(200, { operations: request.operations }) } = {}) {
  return mockFetch((url, init) => {
    if (url === '/api/v1/operations/validate') return validate();
    if (url === '/api/v1/jobs' && init?.method === 'POST') return jsonResponse(201, { job_id: JOB_ID, status: 'open', links });
    if (url === links.close) return jsonResponse(202, { job_id: JOB_ID, status: 'queued' });
    return jsonResponse(404, { error: { code: 'not_found', message: 'not found' } });
  });
}

/** Answer every upload request as it arrives, until `count` have; returns their file names. */
async function answerUploads(count) {
  const sent = [];
  for (let answered = 0; answered < count; answered += 1) {
    await waitFor(() => expect(FakeXHR.instances.length).toBeGreaterThan(answered));
    const xhr = FakeXHR.instances[answered];
    const names = xhr.body.getAll('files').map((file) => file.name);
    sent.push(names);
    xhr.respond(200, { images: names.map((filename) => ({ filename })), rejected: [] });
  }
  return sent;
}

beforeEach(() => {
  FakeXHR.install();
  window.localStorage.clear();
  window.history.replaceState(null, '', '/');
});

describe('useSubmitJob', () => {
  it('checks the steps, fills an open job in batches within max_request_bytes in the order given, closes it and opens the job page', async () => {
    const fetch = openJobServer();
    // room for two 1000-byte photos a request beside the multipart margin
    const { result } = renderHook(() => useSubmitJob({ limits: { max_request_bytes: REQUEST_MARGIN + 2500 } }));
    let done;
    act(() => {
      done = result.current.submit({ request, email: 'me@example.com', items, notAdded: 1 });
    });
    const batches = await answerUploads(3);
    await act(() => done);
    expect(batches.flat().sort()).toEqual(['a.jpg', 'b.jpg', 'c.jpg', 'd.jpg', 'e.jpg']);
    expect(batches.map((names) => names.length)).toEqual([2, 2, 1]);
    expect(batches[0]).toEqual(['a.jpg', 'b.jpg']);
    const urls = fetch.mock.calls.map(([url]) => url);
    expect(urls[0]).toBe('/api/v1/operations/validate');
    expect(urls[urls.length - 1]).toBe(links.close);
    expect(result.current.upload.status).toBe('sent');
    expect(window.location.pathname).toBe(`/jobs/${JOB_ID}`);
    expect(window.history.state.submitted).toMatchObject({ count: 5, email: 'me@example.com', notAdded: 1 });
  });

  it('puts a 422 beside the steps and sends nothing', async () => {
    openJobServer({ validate: () => jsonResponse(422, { error: { code: 'invalid_operations', message: 'bad steps', details: [{ step: 0, field: 'width' }] } }) });
    const showStepErrors = vi.fn(() => true);
    const { result } = renderHook(() => useSubmitJob({ limits: {}, showStepErrors }));
    await act(() => result.current.submit({ request, items }));
    expect(showStepErrors).toHaveBeenCalledWith(expect.objectContaining({ status: 422, code: 'invalid_operations' }));
    expect(result.current.upload.status).toBe('idle');
    expect(FakeXHR.instances).toHaveLength(0);
    expect(window.location.pathname).toBe('/');
  });

  it('says a refused key beside the key field and under the button, and clears it when a new key is given', async () => {
    openJobServer({ validate: () => jsonResponse(401, { error: { code: 'invalid_api_key', message: 'not valid' } }) });
    const { result } = renderHook(() => useSubmitJob({ limits: {} }));
    await act(() => result.current.submit({ request, items }));
    expect(result.current.keyRefused).toMatch(/The API key was not accepted/);
    expect(result.current.upload).toMatchObject({ status: 'error', error: { status: 401, code: 'invalid_api_key' } });
    act(() => result.current.clearKeyRefused());
    expect(result.current.keyRefused).toBe('');
  });

  it('holds a failed upload as the error state, with the server code and status', async () => {
    openJobServer();
    const { result } = renderHook(() => useSubmitJob({ limits: {} }));
    let done;
    act(() => {
      done = result.current.submit({ request, items: items.slice(0, 1) });
    });
    await waitFor(() => expect(FakeXHR.instances).toHaveLength(1));
    FakeXHR.last().respond(413, { error: { code: 'too_large', message: 'the request is too large' } });
    await act(() => done);
    expect(result.current.upload).toMatchObject({ status: 'error', error: { status: 413, code: 'too_large', message: 'the request is too large' } });
    expect(window.location.pathname).toBe('/');
  });

  it('imports addresses in one request and names the refused lines on the job page', async () => {
    const fetch = mockFetch((url, init) => {
      if (url === '/api/v1/operations/validate') return jsonResponse(200, {});
      if (url === '/api/v1/jobs' && init?.method === 'POST') {
        return jsonResponse(202, { job_id: JOB_ID, images: [{ filename: 'x' }], rejected: [{ row: 2, url: 'ftp://x', error: { message: 'row 2: not http' } }] });
      }
      return jsonResponse(404, {});
    });
    const { result } = renderHook(() => useSubmitJob({ limits: {} }));
    await act(() => result.current.submit({ request, urls: ['https://a/1.jpg', 'ftp://x'], lines: [1, 3], notAdded: 2 }));
    const [, init] = fetch.mock.calls.find(([url, call]) => url === '/api/v1/jobs' && call?.method === 'POST');
    expect(JSON.parse(init.body).urls).toEqual(['https://a/1.jpg', 'ftp://x']);
    expect(FakeXHR.instances).toHaveLength(0);
    expect(window.history.state.submitted).toEqual({ count: 1, rejected: [{ filename: 'ftp://x', error: { message: 'line 3: not http' } }], email: '', notAdded: 2 });
  });

  it('pauses: no new request starts, those in flight finish; resuming carries on; each photo says its state', async () => {
    openJobServer();
    // one photo a request
    const { result } = renderHook(() => useSubmitJob({ limits: { max_request_bytes: REQUEST_MARGIN + 1500 } }));
    let done;
    act(() => {
      done = result.current.submit({ request, items });
    });
    await waitFor(() => expect(FakeXHR.instances).toHaveLength(PARALLEL));
    expect(result.current.upload.files).toMatchObject({ 'id-0': { state: 'sending' }, 'id-3': { state: 'waiting' } });
    act(() => result.current.pause());
    expect(result.current.upload.paused).toBe(true);
    // the requests in flight finish...
    act(() => FakeXHR.instances[0].progress(500, 1000));
    await waitFor(() => expect(result.current.upload.files['id-0']).toEqual({ state: 'sending', percent: 50 }));
    act(() => FakeXHR.instances[0].respond(200, { images: [{ filename: 'a.jpg' }], rejected: [] }));
    act(() => FakeXHR.instances[1].respond(200, { images: [], rejected: [{ filename: 'b.jpg', error: { code: 'unsupported_image', message: 'b.jpg: not an image' } }] }));
    act(() => FakeXHR.instances[2].respond(200, { images: [{ filename: 'c.jpg' }], rejected: [] }));
    await waitFor(() => expect(result.current.upload.sentFiles).toBe(3));
    // ...and no new one starts while paused
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(FakeXHR.instances).toHaveLength(PARALLEL);
    expect(result.current.upload).toMatchObject({
      status: 'uploading',
      paused: true,
      fileCount: 5,
      jobId: JOB_ID, // the job holds photos: its page can show them already
      files: { 'id-0': { state: 'sent' }, 'id-1': { state: 'refused', reason: 'b.jpg: not an image' }, 'id-2': { state: 'sent' }, 'id-3': { state: 'waiting' } },
    });
    act(() => result.current.unpause());
    expect(result.current.upload.paused).toBe(false);
    await waitFor(() => expect(FakeXHR.instances).toHaveLength(5));
    FakeXHR.instances[3].respond(200, { images: [{ filename: 'd.jpg' }], rejected: [] });
    FakeXHR.instances[4].respond(200, { images: [{ filename: 'e.jpg' }], rejected: [] });
    await act(() => done);
    expect(window.location.pathname).toBe(`/jobs/${JOB_ID}`);
  });

  it('cancels a paused upload', async () => {
    openJobServer();
    const { result } = renderHook(() => useSubmitJob({ limits: { max_request_bytes: REQUEST_MARGIN + 1500 } }));
    let done;
    act(() => {
      done = result.current.submit({ request, items });
    });
    await waitFor(() => expect(FakeXHR.instances).toHaveLength(PARALLEL));
    act(() => result.current.pause());
    act(() => result.current.cancel());
    await act(() => done);
    expect(result.current.upload.status).toBe('cancelled');
  });

  it('sends a large file to its upload target in resumable chunks, the rest in multipart batches, then closes', async () => {
    const targets = [];
    const fetch = mockFetch((url, init) => {
      if (url === '/api/v1/operations/validate') return jsonResponse(200, {});
      if (url === '/api/v1/jobs' && init?.method === 'POST') return jsonResponse(201, { job_id: JOB_ID, status: 'open', links });
      if (url === links.files && init?.method === 'POST') {
        const { files } = JSON.parse(init.body);
        targets.push(files);
        return jsonResponse(201, { job_id: JOB_ID, rejected: [], uploads: [{ image_id: 'big', filename: files[0].filename, method: 'PUT', url: `/api/v1/jobs/${JOB_ID}/uploads/big?sig=s`, headers: { 'Content-Type': 'image/png' } }] });
      }
      if (url === links.close) return jsonResponse(202, { job_id: JOB_ID, status: 'queued' });
      return jsonResponse(404, {});
    });
    const size = LARGE_FILE_BYTES + 1000;
    const big = { id: 'big', file: makeFile('big.png', 'image/png', size) };
    const { result } = renderHook(() => useSubmitJob({ limits: {} }));
    let done;
    act(() => {
      done = result.current.submit({ request, items: [big, ...items.slice(0, 2)] });
    });
    await waitFor(() => expect(FakeXHR.instances).toHaveLength(2));
    const chunk = FakeXHR.instances.find((xhr) => xhr.method === 'PUT');
    const batch = FakeXHR.instances.find((xhr) => xhr.method === 'POST');
    expect(targets).toEqual([[{ filename: 'big.png', bytes: size, content_type: 'image/png' }]]);
    expect([chunk.method, chunk.headers['Content-Range']]).toEqual(['PUT', `bytes 0-${CHUNK_BYTES - 1}/${size}`]);
    expect(batch.body.getAll('files').map((file) => file.name)).toEqual(['a.jpg', 'b.jpg']);
    batch.respond(200, { images: [{ filename: 'a.jpg' }, { filename: 'b.jpg' }], rejected: [] });
    chunk.respond(308, '', { Range: `bytes=0-${CHUNK_BYTES - 1}` });
    await waitFor(() => expect(FakeXHR.instances).toHaveLength(3));
    expect(FakeXHR.last().headers['Content-Range']).toBe(`bytes ${CHUNK_BYTES}-${2 * CHUNK_BYTES - 1}/${size}`);
    await waitFor(() => expect(result.current.upload.files.big).toEqual({ state: 'sending', percent: 49 }));
    FakeXHR.last().respond(308, '', { Range: `bytes=0-${2 * CHUNK_BYTES - 1}` });
    await waitFor(() => expect(FakeXHR.instances).toHaveLength(4));
    expect(FakeXHR.last().headers['Content-Range']).toBe(`bytes ${2 * CHUNK_BYTES}-${size - 1}/${size}`);
    FakeXHR.last().respond(200, {});
    await act(() => done);
    expect(fetch.mock.calls.map(([url]) => url).pop()).toBe(links.close);
    expect(window.history.state.submitted.count).toBe(3);
  });
});
