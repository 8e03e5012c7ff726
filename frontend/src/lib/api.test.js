import { beforeEach, describe, expect, it } from 'vitest';
import { FakeXHR, jsonResponse, makeFile, mockFetch, networkFailure } from '../test/fakes.js';
import { ApiError, cancelJob, errorFromResponse, fetchJob, fetchJobs, rerunJob, retryJob, submitJob, uploadFiles } from './api.js';

describe('errors', () => {
  it("uses the server's JSON error message", () => {
    const error = errorFromResponse(413, JSON.stringify({ error: { code: 'too_many_files', message: 'too many files', details: null } }));
    expect(error).toBeInstanceOf(ApiError);
    expect(error.message).toBe('too many files');
    expect(error.code).toBe('too_many_files');
  });

  it('falls back to a plain message when the body is not JSON', () => {
    const error = errorFromResponse(502, '<html>Bad Gateway</html>');
    expect(error.message).toMatch(/not answering/);
  });

  it('reports an unreachable server as a network error', async () => {
    mockFetch(() => networkFailure());
    await expect(fetchJob('x')).rejects.toMatchObject({ status: 0, isNetwork: true, message: expect.stringMatching(/Can't reach/) });
  });

  it('reports 404 with the server message', async () => {
    mockFetch(() => jsonResponse(404, { error: { code: 'job_not_found', message: "no job with id 'x'" } }));
    await expect(fetchJob('x')).rejects.toMatchObject({ status: 404, message: "no job with id 'x'" });
  });
});

describe('submitJob', () => {
  beforeEach(() => FakeXHR.install());

  it('posts the files and the preset as multipart, reporting upload progress', async () => {
    const seen = [];
    const promise = submitJob({ files: [makeFile('a.jpg'), makeFile('b.jpg')], preset: 'web', email: 'me@example.com' }, {
      onProgress: (loaded, total) => seen.push([loaded, total]),
    });
    const xhr = FakeXHR.last();
    expect(xhr.method).toBe('POST');
    expect(xhr.url).toBe('/api/v1/jobs');
    expect(xhr.body.getAll('files').map((f) => f.name)).toEqual(['a.jpg', 'b.jpg']);
    expect(xhr.body.get('preset')).toBe('web');
    expect(xhr.body.get('operations')).toBeNull();
    expect(xhr.body.get('email')).toBe('me@example.com');
    xhr.progress(500, 2000);
    xhr.progress(2000, 2000);
    xhr.respond(202, { job_id: 'j1', images: [], rejected: [] });
    await expect(promise).resolves.toMatchObject({ job_id: 'j1' });
    expect(seen).toEqual([[500, 2000], [2000, 2000]]);
  });

  it('sends an operations list as JSON', () => {
    submitJob({ files: [makeFile('a.jpg')], operations: [{ op: 'grayscale' }] });
    expect(JSON.parse(FakeXHR.last().body.get('operations'))).toEqual([{ op: 'grayscale' }]);
  });

  it("rejects with the server's message when it refuses the upload", async () => {
    const promise = submitJob({ files: [makeFile('a.jpg')], preset: 'web' });
    FakeXHR.last().respond(415, { error: { code: 'no_valid_images', message: 'none of the files could be accepted', details: [] } });
    await expect(promise).rejects.toMatchObject({ status: 415, message: 'none of the files could be accepted' });
  });

  it('rejects as a network error when the connection fails, and as AbortError when cancelled', async () => {
    const failing = submitJob({ files: [makeFile('a.jpg')], preset: 'web' });
    FakeXHR.last().fail();
    await expect(failing).rejects.toMatchObject({ isNetwork: true });
    const controller = new AbortController();
    const cancelled = submitJob({ files: [makeFile('a.jpg')], preset: 'web' }, { signal: controller.signal });
    controller.abort();
    await expect(cancelled).rejects.toMatchObject({ name: 'AbortError' });
  });
});

describe('fetchJob with an ETag', () => {
  it('sends the last ETag and reports a 304 as not modified', async () => {
    const fetch = mockFetch((url) => (url.endsWith('/jobs/x') ? new Response(null, { status: 304 }) : null));
    expect(await fetchJob('x', { etag: '"abc:gzip"' })).toEqual({ notModified: true, etag: '"abc:gzip"' });
    const [, init] = fetch.mock.calls[0];
    expect(init.headers['If-None-Match']).toBe('"abc:gzip"');
    expect(init.cache).toBe('no-store');
  });

  it('returns the job and its new ETag', async () => {
    mockFetch(() => jsonResponse(200, { job_id: 'x', status: 'queued' }, { ETag: '"v2"' }));
    expect(await fetchJob('x')).toEqual({ job: { job_id: 'x', status: 'queued' }, etag: '"v2"' });
  });
});

describe('the API key', () => {
  beforeEach(() => {
    FakeXHR.install();
    window.sessionStorage.clear();
  });

  it('is kept for the tab and sent on fetches, uploads and lifecycle actions', async () => {
    const { setApiKey, getApiKey } = await import('./api.js');
    const { cancelJob } = await import('./api.js');
    setApiKey('  key-0123456789abcdef ');
    expect(getApiKey()).toBe('key-0123456789abcdef');
    expect(window.sessionStorage.getItem('imageflow.apiKey')).toBe('key-0123456789abcdef');
    expect(window.localStorage.getItem('imageflow.apiKey')).toBeNull();
    const fetch = mockFetch(() => jsonResponse(200, { job_id: 'x', status: 'cancelled' }));
    await fetchJob('x');
    await cancelJob('x');
    expect(fetch.mock.calls.map(([, init]) => init.headers.Authorization)).toEqual(['Bearer key-0123456789abcdef', 'Bearer key-0123456789abcdef']);
    submitJob({ files: [makeFile('a.jpg')], preset: 'web' });
    expect(FakeXHR.last().headers.Authorization).toBe('Bearer key-0123456789abcdef');
    setApiKey('');
    expect(window.sessionStorage.getItem('imageflow.apiKey')).toBeNull();
    submitJob({ files: [makeFile('a.jpg')], preset: 'web' });
    expect(FakeXHR.last().headers.Authorization).toBeUndefined();
  });

  it('says where to enter the key on a 401', () => {
    expect(errorFromResponse(401, JSON.stringify({ error: { code: 'api_key_required', message: 'an API key is required' } })).message).toMatch(/needs an API key. Enter yours in the “API key” field/);
    expect(errorFromResponse(401, JSON.stringify({ error: { code: 'invalid_api_key', message: 'not valid' } })).message).toMatch(/The API key was not accepted/);
  });
});

describe('one client for every call', () => {
  beforeEach(() => {
    FakeXHR.install();
    window.sessionStorage.clear();
  });

  const refusal = { error: { code: 'job_not_retryable', message: 'job has no failed images to retry', details: { failed: 0 } } };

  it("maps a JSON error body to an ApiError with the server's code, message, details and status, on fetch and on XHR", async () => {
    mockFetch(() => jsonResponse(409, refusal));
    await expect(retryJob('j1')).rejects.toMatchObject({
      name: 'ApiError', status: 409, code: 'job_not_retryable', message: 'job has no failed images to retry', details: { failed: 0 },
    });
    const upload = uploadFiles('/api/v1/jobs/j1/files', [makeFile('a.jpg')]);
    FakeXHR.last().respond(409, refusal);
    await expect(upload).rejects.toMatchObject({ status: 409, code: 'job_not_retryable', details: { failed: 0 } });
  });

  it('carries Retry-After on a 429, from fetch and from XHR', async () => {
    const busy = { error: { code: 'rate_limited', message: 'too many requests' } };
    mockFetch(() => jsonResponse(429, busy, { 'Retry-After': '7' }));
    await expect(fetchJobs()).rejects.toMatchObject({ status: 429, code: 'rate_limited', retryAfter: '7', retryAfterMs: 7000, message: 'too many requests' });
    await expect(cancelJob('j1')).rejects.toMatchObject({ status: 429, retryAfter: '7' });
    const upload = uploadFiles('/api/v1/jobs/j1/files', [makeFile('a.jpg')]);
    FakeXHR.last().respond(429, 'slow down', { 'Retry-After': '3' });
    await expect(upload).rejects.toMatchObject({ status: 429, code: 'http_429', retryAfter: '3', retryAfterMs: 3000, message: expect.stringMatching(/Too many uploads/) });
  });

  it('lists jobs and runs the lifecycle actions through the same request, key included', async () => {
    window.sessionStorage.setItem('imageflow.apiKey', 'key-1');
    const fetch = mockFetch((url) => jsonResponse(200, url.includes('?') ? { jobs: [], next_cursor: null } : { job_id: 'j2' }));
    await fetchJobs({ status: 'failed', cursor: 'C', limit: 5 });
    await cancelJob('j 1');
    await retryJob('j1');
    await rerunJob('j1', { operations: [{ op: 'grayscale' }], only: 'failed' });
    const calls = fetch.mock.calls.map(([url, init]) => [url, init.method, init.body, init.headers.Authorization]);
    expect(calls).toEqual([
      ['/api/v1/jobs?limit=5&status=failed&cursor=C', 'GET', undefined, 'Bearer key-1'],
      ['/api/v1/jobs/j%201/cancel', 'POST', '{}', 'Bearer key-1'],
      ['/api/v1/jobs/j1/retry', 'POST', '{}', 'Bearer key-1'],
      ['/api/v1/jobs/j1/rerun', 'POST', JSON.stringify({ operations: [{ op: 'grayscale' }], only: 'failed' }), 'Bearer key-1'],
    ]);
  });

  it('is the only module of the page that calls fetch or XMLHttpRequest', async () => {
    const { readdirSync, readFileSync, statSync } = await import('node:fs');
    const { join, relative } = await import('node:path');
    const root = join(__dirname, '..');
    const sources = (dir) => readdirSync(dir).flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return name === 'test' ? [] : sources(path);
      return /\.jsx?$/.test(name) && !/\.test\.jsx?$/.test(name) ? [path] : [];
    });
    const callers = sources(root).filter((path) => /\bfetch\(|XMLHttpRequest/.test(readFileSync(path, 'utf8')));
    expect(callers.map((path) => relative(root, path))).toEqual(['lib/api.js']);
  });
});
