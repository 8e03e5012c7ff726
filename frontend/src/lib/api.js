// The REST API of image-handler (ARCHITECTURE.md), as the page uses it: the one module that
// calls fetch or XMLHttpRequest. Every call sends the API key (when one is given), and every
// failure becomes an ApiError carrying the server's error code, message, details, HTTP status
// and Retry-After, whose message can be shown to a person as it is.

const API = '/api/v1';

/** Messages for when the server gave no JSON error body of its own. */
const FALLBACK_MESSAGES = {
  0: "Can't reach the ImageFlow server. Check your connection; if it persists the service may be down.",
  400: 'The server could not understand the request.',
  403: 'The server refused this request: the link has expired or the API key may not do this.',
  404: 'Not found.',
  413: 'The upload is too large for the server.',
  415: 'The server does not accept this type of file.',
  422: 'The server rejected the chosen operations.',
  429: 'Too many uploads right now. Please wait a minute and try again.',
  500: 'The server ran into a problem. Please try again.',
  502: 'The ImageFlow server is not answering right now. Please try again shortly.',
  503: 'The ImageFlow server is busy or starting up. Please try again shortly.',
  504: 'The ImageFlow server took too long to answer. Please try again.',
};

/** An API failure: `status` 0 means the server could not be reached at all. */
export class ApiError extends Error {
  constructor({ status, code, message, details = null, retryAfter = null }) {
    super(message || FALLBACK_MESSAGES[status] || FALLBACK_MESSAGES[500]);
    this.name = 'ApiError';
    this.status = status;
    this.code = code || (status === 0 ? 'network' : `http_${status}`);
    this.details = details;
    this.retryAfter = retryAfter;
  }

  /** The server's Retry-After (a 429 or 503) in milliseconds, or null when it gave none. */
  get retryAfterMs() {
    const seconds = Number(this.retryAfter);
    return this.retryAfter != null && seconds > 0 ? seconds * 1000 : null;
  }

  /** True when the server could not be reached (down, offline, connection reset). */
  get isNetwork() {
    return this.status === 0;
  }
}

// -- the API key (issue 16) ------------------------------------------------------------------
// Kept in sessionStorage: it is a credential, so it lasts as long as the tab (reloads and the
// job page included) and is gone when the tab closes, rather than staying on a shared computer
// in localStorage. A link opened in a new tab asks for it again.
const KEY_STORAGE = 'imageflow.apiKey';
const keyListeners = new Set();

/** The API key the page sends, or '' when none was given. */
export function getApiKey() {
  try {
    return window.sessionStorage.getItem(KEY_STORAGE) || '';
  } catch {
    return '';
  }
}

/** Keep `key` for this tab ('' forgets it); every later call sends it. */
export function setApiKey(key) {
  const value = String(key || '').trim();
  try {
    if (value) window.sessionStorage.setItem(KEY_STORAGE, value);
    else window.sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage refused (private mode): the key is not kept
  }
  keyListeners.forEach((listener) => listener(value));
}

/** Call `listener(key)` when the key changes; returns the unsubscribe function. */
export function onApiKeyChange(listener) {
  keyListeners.add(listener);
  return () => keyListeners.delete(listener);
}

/** The headers that carry the key, for every call the page makes to the API. */
export function authHeaders() {
  const key = getApiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// The server's 401 said in the page's words: where to put the key (every page that reads
// the API shows the “API key” field after a 401, see components/ApiKeySection.jsx).
const KEY_MESSAGES = {
  api_key_required: 'This ImageFlow server needs an API key. Enter yours in the “API key” field.',
  invalid_api_key: 'The API key was not accepted. Check it and enter it again in the “API key” field.',
};

/** Build an ApiError from a status and a response body text, using the JSON error if any. */
export function errorFromResponse(status, bodyText, retryAfter = null) {
  let error = null;
  try {
    error = JSON.parse(bodyText)?.error ?? null;
  } catch {
    // Not JSON (a proxy's HTML error page, say): fall back to a message for the status.
  }
  const fallback = FALLBACK_MESSAGES[status] || (status >= 500 ? FALLBACK_MESSAGES[500] : `Request failed (HTTP ${status}).`);
  const keyMessage = status === 401 ? KEY_MESSAGES[error?.code] || (error?.message ? null : KEY_MESSAGES.api_key_required) : null;
  return new ApiError({
    status,
    code: error?.code,
    message: keyMessage || (typeof error?.message === 'string' && error.message ? error.message : fallback),
    details: error?.details ?? null,
    retryAfter,
  });
}

function abortError() {
  const error = new Error('Upload cancelled.');
  error.name = 'AbortError';
  return error;
}

function networkError() {
  return new ApiError({ status: 0, code: 'network' });
}

async function requestJson(path, { signal, method = 'GET', body, headers = {}, cache } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      signal,
      cache,
      headers: { Accept: 'application/json', ...authHeaders(), ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch (err) {
    if (err?.name === 'AbortError') throw err;
    throw networkError();
  }
  return response;
}

async function readJson(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!response.ok) {
    throw errorFromResponse(response.status, text, response.headers.get('Retry-After'));
  }
  try {
    return JSON.parse(text);
  } catch {
    // A 200 that is not JSON means something other than image-handler answered.
    throw new ApiError({ status: 502, code: 'bad_response' });
  }
}

export async function getJson(path, options) {
  return readJson(await requestJson(path, options));
}

/** POST `body` (an empty object by default) as JSON; resolves with the JSON answer (null for a 204). */
export function postJson(path, body = {}, options) {
  return getJson(path, { ...options, method: 'POST', body });
}

/**
 * GET /api/v1/jobs: one page of the caller's jobs, newest first, as `{jobs, next_cursor}`;
 * `status` filters, `cursor` is the last page's `next_cursor`.
 */
export function fetchJobs({ status, cursor, limit = 20 } = {}, options) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (status) query.set('status', status);
  if (cursor) query.set('cursor', cursor);
  return getJson(`${API}/jobs?${query}`, options);
}

// The job lifecycle routes (issue 16): cancel, retry, re-run.
const jobAction = (jobId, action) => `${API}/jobs/${encodeURIComponent(jobId)}/${action}`;

/** POST /jobs/<id>/cancel: images not started are skipped, those in flight finish. */
export const cancelJob = (jobId, options) => postJson(jobAction(jobId, 'cancel'), {}, options);

/** POST /jobs/<id>/retry: the failed images run again with the same steps. */
export const retryJob = (jobId, options) => postJson(jobAction(jobId, 'retry'), {}, options);

/** PATCH /jobs/<id> {name}: renames the job ("" clears the name); resolves with the job. */
export const renameJob = (jobId, name, options) =>
  getJson(`${API}/jobs/${encodeURIComponent(jobId)}`, { ...options, method: 'PATCH', body: { name } });

/** POST /jobs/<id>/rerun: a new job over the stored originals; resolves with {job_id, parent_job_id}. */
export const rerunJob = (jobId, { operations, only }, options) => postJson(jobAction(jobId, 'rerun'), { operations, only }, options);

/** GET /api/v1/operations: the operations' JSON Schema, the presets and the upload limits. */
export function fetchOperations(options) {
  return getJson(`${API}/operations`, options);
}

/**
 * GET /api/v1/jobs/<job_id>: the job's status, counts and images, as `{job, etag}`. Given
 * the `etag` of the last answer, an unchanged job comes back as `{notModified: true}`
 * (the server's 304) and nothing is downloaded.
 */
export async function fetchJob(jobId, { etag, ...options } = {}) {
  const response = await requestJson(`${API}/jobs/${encodeURIComponent(jobId)}`, {
    ...options,
    // The page keeps the last answer itself, so the browser's cache stays out of it.
    cache: 'no-store',
    headers: etag ? { 'If-None-Match': etag } : {},
  });
  if (response.status === 304) return { notModified: true, etag };
  const job = await readJson(response);
  return { job, etag: response.headers.get('ETag') };
}

/**
 * The job with every one of its images: the job view holds the first page, and `links.next`
 * leads page by page to the rest (ARCHITECTURE.md, "Large jobs").
 */
export async function withAllImages(job, options) {
  const images = [...(job.images || [])];
  let next = job.links?.next;
  while (next) {
    const page = await getJson(next, options);
    images.push(...(page.images || []));
    next = page.links?.next;
  }
  return { ...job, images };
}

/** Every image of a job (see withAllImages). */
export async function fetchAllImages(jobId, options) {
  const { job } = await fetchJob(jobId, options);
  return (await withAllImages(job, options)).images;
}

/**
 * POST /api/v1/operations/validate: the operations (or preset) resolved, or an ApiError
 * (422) whose details name each step and field. Creates nothing.
 */
export function validateOperations({ operations, preset }, options) {
  return postJson(`${API}/operations/validate`, preset ? { preset } : { operations }, options);
}

/** GET /api/v1/presets: the caller's saved presets, `[{name, operations, ...}]`. */
export async function fetchSavedPresets(options) {
  return (await getJson(`${API}/presets`, options)).presets || [];
}

/** POST /api/v1/presets: save (or replace) a named list of operations. */
export function savePreset(name, operations, options) {
  return postJson(`${API}/presets`, { name, operations }, options);
}

/** DELETE /api/v1/presets/<name>. */
export function deletePreset(name, options) {
  return getJson(`${API}/presets/${encodeURIComponent(name)}`, { ...options, method: 'DELETE' });
}

/** True when `url` is on the API's own origin: the only place the API key is sent. */
export function isApiOrigin(url) {
  try {
    return new URL(url, window.location.href).origin === window.location.origin;
  } catch {
    return false;
  }
}

/**
 * One request with XMLHttpRequest, which (unlike fetch) reports upload progress. The key goes
 * only to the API's origin: an upload target elsewhere (a Cloud Storage session) never sees it.
 * `accept(xhr)` turns an answer the caller expects into its value; any other answer rejects
 * with the server's error.
 */
function sendXhr(method, url, body, { headers = {}, onProgress, signal, accept } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    const auth = isApiOrigin(url) ? authHeaders() : {};
    for (const [name, value] of Object.entries({ ...auth, ...headers })) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (onProgress && event.lengthComputable) onProgress(event.loaded, event.total);
    };
    xhr.onload = () => {
      let value;
      try {
        value = accept(xhr);
      } catch (error) {
        reject(error);
        return;
      }
      if (value === undefined) reject(errorFromResponse(xhr.status, xhr.responseText, xhr.getResponseHeader('Retry-After')));
      else resolve(value);
    };
    xhr.onerror = () => reject(networkError());
    xhr.onabort = () => reject(abortError());
    if (signal) {
      if (signal.aborted) {
        reject(abortError());
        return;
      }
      signal.addEventListener('abort', () => xhr.abort(), { once: true });
    }
    xhr.send(body);
  });
}

/** POST a multipart form; resolves with the JSON answer of a 2xx. */
function postForm(url, form, options = {}) {
  return sendXhr('POST', url, form, {
    ...options,
    headers: { Accept: 'application/json' },
    accept: (xhr) => {
      if (xhr.status < 200 || xhr.status >= 300) return undefined;
      try {
        return JSON.parse(xhr.responseText);
      } catch {
        throw new ApiError({ status: 502, code: 'bad_response' });
      }
    },
  });
}

/**
 * POST <links.files> as JSON: upload targets for `files` (docs/api.md, "Direct uploads");
 * resolves `{uploads: [{image_id, filename, url, method, headers}], rejected}`.
 */
export function requestUploadTargets(url, files, options) {
  const announced = files.map((file) => ({ filename: file.name, bytes: file.size, ...(file.type ? { content_type: file.type } : {}) }));
  return postJson(url, { files: announced }, options);
}

/** The bytes an upload session holds after `xhr`'s answer: all of them (200/201), or its Range. */
function keptBytes(xhr, size) {
  if (xhr.status === 200 || xhr.status === 201) return size;
  if (xhr.status !== 308) return undefined;
  const last = /bytes=0-(\d+)/.exec(xhr.getResponseHeader('Range') || '');
  return last ? Number(last[1]) + 1 : 0;
}

/**
 * PUT part of a file to its upload `target` (Cloud Storage's resumable protocol, which the
 * local store speaks too): `chunk` (a Blob) goes as bytes `from`.. of the file's `size`; with
 * no chunk it asks how far the session got (`Content-Range: bytes *\/size`). Resolves with
 * the bytes the session holds now (`size` once the file is complete).
 */
export function putUploadChunk(target, { chunk = null, from = 0, size }, options = {}) {
  const range = chunk ? `bytes ${from}-${from + chunk.size - 1}/${size}` : `bytes */${size}`;
  return sendXhr(target.method || 'PUT', target.url, chunk, {
    ...options,
    headers: { ...(target.headers || {}), 'Content-Range': range },
    accept: (xhr) => keptBytes(xhr, size),
  });
}

/** The job's options as multipart fields: the steps (or preset), email, and the overlay files. */
function jobForm({ operations, preset, email, overlays = [] }) {
  const form = new FormData();
  if (preset) form.append('preset', preset);
  else form.append('operations', JSON.stringify(operations));
  if (email) form.append('email', email);
  for (const file of overlays) form.append('overlay', file, file.name);
  return form;
}

/**
 * POST /api/v1/jobs: the whole batch in one multipart request, with the `overlays` (logo
 * files) the overlay steps name. `onProgress(loaded, total)` is called as the body goes out.
 * Resolves with the 202 body; rejects with an ApiError, or an Error named AbortError when
 * `signal` aborts it.
 */
export function submitJob({ files, ...options }, requestOptions = {}) {
  const form = jobForm(options);
  for (const file of files) form.append('files', file, file.name);
  return postForm(`${API}/jobs`, form, requestOptions);
}

/**
 * POST /api/v1/jobs `{..., open: true}`: an open job that many uploads fill (ARCHITECTURE.md,
 * "Large jobs"). With `overlays` (logo files) it is a multipart request with `open=true`, so
 * the logos are stored before any photo. Resolves with the 201 body (`links.files`,
 * `links.close`), or with null when the server has no open jobs (it answers such a body 415,
 * 400 or 404).
 */
export async function createOpenJob({ operations, preset, email, overlays = [] }, options = {}) {
  try {
    if (overlays.length) {
      const form = jobForm({ operations, preset, email, overlays });
      form.append('open', 'true');
      return await postForm(`${API}/jobs`, form, options);
    }
    const body = { open: true, ...(preset ? { preset } : { operations }), ...(email ? { email } : {}) };
    return await postJson(`${API}/jobs`, body, options);
  } catch (error) {
    if ([400, 404, 405, 415].includes(error.status)) return null;
    throw error;
  }
}

/**
 * POST /api/v1/jobs with image URLs instead of files: JSON `{urls, ...}`, or the `csv` file
 * (multipart) the server reads its `url` column from. Resolves with the 202 body, whose
 * `rejected` lists each refused row `{row, url, error}`.
 */
export function submitUrlJob({ urls, csv, operations, preset, email }, options = {}) {
  if (csv) {
    const form = jobForm({ operations, preset, email });
    form.append('csv', csv, csv.name);
    return postForm(`${API}/jobs`, form, options);
  }
  const body = { urls, ...(preset ? { preset } : { operations }), ...(email ? { email } : {}) };
  return postJson(`${API}/jobs`, body, options);
}

/**
 * POST /api/v1/jobs with `estimate=true` and the same body as the job: what it would do
 * (accepted and refused files with reasons, predicted bytes, CPU and wall seconds). Creates
 * nothing.
 */
export function estimateJob({ files, ...options }, requestOptions = {}) {
  const form = jobForm(options);
  form.append('estimate', 'true');
  for (const file of files) form.append('files', file, file.name);
  return postForm(`${API}/jobs`, form, requestOptions);
}

/** POST <links.files>: some of an open job's files; resolves `{images, rejected}`. */
export function uploadFiles(url, files, options) {
  const form = new FormData();
  for (const file of files) form.append('files', file, file.name);
  return postForm(url, form, options);
}

/** POST <links.close>: no more files for this open job. */
export function closeJob(url, options) {
  return postJson(url, {}, options);
}
