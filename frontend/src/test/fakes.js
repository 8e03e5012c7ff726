// Test doubles for the browser's network APIs: a scripted fetch and a controllable XHR.
import { vi } from 'vitest';
import operationsFixture from './fixtures/operations.json';

export { operationsFixture };

export function jsonResponse(status, body, headers = {}) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });
}

/**
 * Replace global fetch with `routes`: a function (url, init) => Response | Error | Promise, so a
 * test says what the server answers. Returns the mock (its .mock.calls list the URLs).
 */
export function mockFetch(routes) {
  const mock = vi.fn(async (url, init) => {
    const answer = await routes(String(url), init);
    if (answer instanceof Error) throw answer;
    return answer;
  });
  vi.stubGlobal('fetch', mock);
  return mock;
}

/** The server is down: fetch fails the way browsers fail it. */
export function networkFailure() {
  return new TypeError('Failed to fetch');
}

/** An XMLHttpRequest whose answer the test gives; every instance is kept in FakeXHR.instances. */
export class FakeXHR {
  static instances = [];

  constructor() {
    this.upload = {};
    this.headers = {};
    this.status = 0;
    this.responseText = '';
    this.responseHeaders = {};
    FakeXHR.instances.push(this);
  }

  open(method, url) {
    this.method = method;
    this.url = url;
  }

  setRequestHeader(name, value) {
    this.headers[name] = value;
  }

  getResponseHeader(name) {
    return this.responseHeaders[name] ?? null;
  }

  send(body) {
    this.body = body;
  }

  abort() {
    this.onabort?.();
  }

  progress(loaded, total) {
    this.upload.onprogress?.({ lengthComputable: true, loaded, total });
  }

  respond(status, body, headers = {}) {
    this.status = status;
    this.responseText = typeof body === 'string' ? body : JSON.stringify(body);
    this.responseHeaders = headers;
    this.onload?.();
  }

  fail() {
    this.onerror?.();
  }

  static install() {
    FakeXHR.instances = [];
    vi.stubGlobal('XMLHttpRequest', FakeXHR);
  }

  static last() {
    return FakeXHR.instances[FakeXHR.instances.length - 1];
  }
}

// The first bytes of each format, as the page's sniffing (lib/sniff.js) expects them.
const MAGIC = {
  'image/jpeg': [0xff, 0xd8, 0xff, 0xe0],
  'image/png': [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a],
  'image/gif': [...'GIF89a'].map((c) => c.charCodeAt(0)),
  'image/webp': [...'RIFF\0\0\0\0WEBP'].map((c) => c.charCodeAt(0)),
};

/** A File of `size` bytes with a name and type; `content` (bytes or text) replaces the image header. */
export function makeFile(name, type = 'image/jpeg', size = 1000, content = null) {
  const bytes = new Uint8Array(size);
  const head = typeof content === 'string' ? [...new TextEncoder().encode(content)] : content || MAGIC[type] || [];
  bytes.set(head.slice(0, size));
  return new File([bytes], name, { type, lastModified: 1700000000000 });
}

/** A job as GET /api/v1/jobs/<id> returns it, with `images` given in short form. */
export function makeJob({ jobId = 'a'.repeat(32), status = 'processing', images = [], email = null } = {}) {
  const succeeded = images.filter((i) => i.status === 'succeeded').length;
  const failed = images.filter((i) => i.status === 'failed').length;
  return {
    job_id: jobId,
    status,
    created_at: '2024-05-01T10:00:00.000Z',
    updated_at: '2024-05-01T10:00:05.000Z',
    completed_at: ['completed', 'completed_with_errors', 'failed'].includes(status) ? '2024-05-01T10:00:09.000Z' : null,
    total: images.length,
    succeeded,
    failed,
    pending: images.length - succeeded - failed,
    operations: [{ op: 'resize', width: 800, fit: 'contain' }],
    email,
    links: {
      self: `/api/v1/jobs/${jobId}`,
      results_page: `/jobs/${jobId}`,
      archive: `/api/v1/jobs/${jobId}/archive.zip`,
    },
    images: images.map((image, index) => {
      const imageId = String(index + 1).padStart(32, '0');
      const base = `/api/v1/jobs/${jobId}/images/${imageId}`;
      const done = image.status === 'succeeded';
      return {
        image_id: imageId,
        filename: image.filename,
        status: image.status,
        error: image.error ?? null,
        ...(image.error_code ? { error_code: image.error_code } : {}),
        input_bytes: 208000,
        input_content_type: 'image/jpeg',
        width: done ? 800 : null,
        height: done ? 600 : null,
        bytes: done ? 52000 : null,
        content_type: done ? 'image/jpeg' : null,
        input_url: `${base}/input`,
        output_url: done ? `${base}/output` : null,
        outputs: done ? [{ variant: '', url: `${base}/output`, width: 800, height: 600, bytes: 52000, content_type: 'image/jpeg' }] : [],
      };
    }),
  };
}
