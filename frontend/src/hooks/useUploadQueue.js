import { useCallback, useEffect, useRef, useState } from 'react';
import { createOpenJob, fetchAllImages, submitJob } from '../lib/api.js';
import { fillOpenJob, stillToSend } from '../lib/openJobUpload.js';
import { createRateMeter } from '../lib/rate.js';
import { abortError } from '../lib/retry.js';
import { clearOpenUpload, loadOpenUpload, saveOpenUpload } from '../lib/savedWork.js';

/**
 * Sends a job and follows its upload: `upload` is {status: idle|uploading|sent|cancelled|
 * error, loaded, total, retrying, error}. `start(request)` takes `{items: [{id, file}],
 * operations, preset, email}` and resolves with `{job}` (the create answer, or the open
 * job's images), `{error}` or `{cancelled: true}`. While bytes are going out, leaving the
 * page asks first.
 *
 * A server with open jobs takes the files in many small requests, each retried on its own,
 * and the job is remembered (savedWork.js) until it is closed: `interrupted` is such a job
 * from a cancelled upload or an earlier visit, and `resume(items)` carries on with the
 * photos it does not hold yet; each request stays within the server's `max_request_bytes`
 * (from `limits`), whatever the selection weighs. Any other server takes the whole batch in
 * one request.
 *
 * While an open job fills, `upload` also holds `files` (each photo's state by item id:
 * `{state: waiting|sending|sent|refused|retrying, percent, reason}`), `sentFiles` and
 * `fileCount`, `secondsLeft` (from the measured rate, null until there is enough of it),
 * `paused`, and `jobId` once the job holds its first photos (its page shows results while the
 * rest goes up). `pause()` starts no new request (those in flight finish); `unpause()` carries on.
 */
const PROGRESS_MS = 200;

export default function useUploadQueue(limits = {}) {
  const maxRequestBytes = limits.max_request_bytes;
  const [upload, setUpload] = useState({ status: 'idle' });
  const [interrupted, setInterrupted] = useState(loadOpenUpload);
  const abortRef = useRef(null);
  const uploading = upload.status === 'uploading';
  const meterRef = useRef(null);
  // While paused: the resolvers of the requests waiting to start.
  const pausedRef = useRef(null);

  const gate = useCallback((signal) => {
    if (!pausedRef.current) return undefined;
    return new Promise((resolve, reject) => {
      pausedRef.current.push(resolve);
      signal?.addEventListener('abort', () => reject(abortError()), { once: true });
    });
  }, []);

  const pause = useCallback(() => {
    if (!abortRef.current || pausedRef.current) return;
    pausedRef.current = [];
    setUpload((state) => (state.status === 'uploading' ? { ...state, paused: true, secondsLeft: null } : state));
  }, []);

  const unpause = useCallback(() => {
    const waiting = pausedRef.current;
    if (!waiting) return;
    pausedRef.current = null;
    meterRef.current?.reset(); // the pause says nothing of the speed
    setUpload((state) => ({ ...state, paused: false }));
    waiting.forEach((resolve) => resolve());
  }, []);

  useEffect(() => () => abortRef.current?.abort(), []);

  useEffect(() => {
    if (!uploading) return undefined;
    const warn = (event) => {
      event.preventDefault();
      event.returnValue = ''; // older browsers need a value to show their dialog
    };
    window.addEventListener('beforeunload', warn);
    return () => window.removeEventListener('beforeunload', warn);
  }, [uploading]);

  // Send `items` into the open job `record`, keeping track of what it holds, then close it.
  // `total` and `count` are the whole upload's bytes and photos, `done` the photos it held before.
  const fill = useCallback(async (record, items, total, controller, done = { bytes: 0, files: {} }) => {
    const idOf = new Map(items.map((item) => [item.file, item.id]));
    let current = record;
    const meter = createRateMeter();
    meterRef.current = meter;
    const before = done.bytes;
    const files = { ...done.files, ...Object.fromEntries(items.map((item) => [item.id, { state: 'waiting' }])) };
    const countSent = () => Object.values(files).filter((f) => f.state === 'sent' || f.state === 'refused').length;
    let sentFiles = countSent();
    const fileCount = Object.keys(files).length;
    let jobId = record.sent.length ? record.job_id : null;
    const show = (loaded) =>
      setUpload((state) => ({
        ...state,
        status: 'uploading',
        loaded,
        total,
        files: { ...files },
        sentFiles,
        fileCount,
        jobId,
        secondsLeft: state.paused ? null : meter.secondsLeft(total - loaded),
      }));
    let loadedNow = before;
    let shownAt = -Infinity;
    const onProgress = (loaded) => {
      loadedNow = before + loaded;
      const now = performance.now();
      if (!pausedRef.current) meter.add(now, loadedNow);
      // a shoot's list is long: redraw it a few times a second, not at every progress event
      if (now - shownAt < PROGRESS_MS && loadedNow < total) return;
      shownAt = now;
      show(loadedNow);
    };
    show(before);
    const result = await fillOpenJob(record, items.map((item) => item.file), {
      signal: controller.signal,
      maxRequestBytes,
      gate: () => gate(controller.signal),
      onProgress,
      onFile: (file, state) => {
        const id = idOf.get(file);
        const moving = state.state === 'sending' && files[id]?.state === 'sending';
        files[id] = state;
        sentFiles = countSent();
        if (!moving) show(loadedNow); // a percentage shows with the progress it comes with
      },
      onRetry: (error, ms) => setUpload((state) => ({ ...state, retrying: { message: error.message, seconds: Math.round(ms / 1000) } })),
      onBatch: (batchFiles, answer) => {
        current = { ...current, sent: [...current.sent, ...batchFiles.map((file) => idOf.get(file))] };
        saveOpenUpload(current);
        if ((answer.images || []).length) jobId = record.job_id;
        show(loadedNow);
      },
    });
    clearOpenUpload();
    setInterrupted(null);
    return result;
  }, [maxRequestBytes, gate]);

  const run = useCallback(async (work, total) => {
    const controller = new AbortController();
    abortRef.current = controller;
    setUpload({ status: 'uploading', loaded: 0, total });
    try {
      const job = await work(controller);
      setUpload({ status: 'sent', loaded: total, total });
      return { job };
    } catch (error) {
      setInterrupted(loadOpenUpload());
      if (error.name === 'AbortError') {
        setUpload({ status: 'cancelled' });
        return { cancelled: true };
      }
      setUpload({ status: 'error', error });
      return { error };
    } finally {
      abortRef.current = null;
      pausedRef.current = null;
      meterRef.current = null;
    }
  }, []);

  const start = useCallback(
    (request) => {
      const { items, ...options } = request;
      const files = items.map((item) => item.file);
      const total = sumOf(items);
      return run(async (controller) => {
        const created = await createOpenJob(options, { signal: controller.signal });
        if (!created?.links?.files) {
          return submitJob({ ...options, files }, { signal: controller.signal, onProgress: (loaded, sent) => setUpload({ status: 'uploading', loaded, total: sent }) });
        }
        const record = { job_id: created.job_id, links: created.links, email: options.email || '', ids: items.map((item) => item.id), sent: [] };
        saveOpenUpload(record);
        return fill(record, items, total, controller);
      }, total);
    },
    [fill, run],
  );

  const resume = useCallback(
    (allItems) => {
      const record = loadOpenUpload();
      if (!record) return Promise.resolve({ error: new Error('There is no upload to continue.') });
      const sent = new Set(record.sent);
      const items = allItems.filter((item) => record.ids.includes(item.id));
      const unsent = items.filter((item) => !sent.has(item.id));
      const total = sumOf(items);
      return run(async (controller) => {
        // The job's own list says what landed after the last answer the page saw.
        const held = (await fetchAllImages(record.job_id, { signal: controller.signal })).map((image) => image.filename);
        const sentNames = items.filter((item) => sent.has(item.id)).map((item) => item.file.name);
        const toSend = new Set(stillToSend(unsent.map((item) => item.file), held, sentNames));
        const toFill = unsent.filter((item) => toSend.has(item.file));
        const inJob = items.filter((item) => !toFill.includes(item));
        const done = { bytes: sumOf(inJob), files: Object.fromEntries(inJob.map((item) => [item.id, { state: 'sent' }])) };
        const result = await fill(record, toFill, total, controller, done);
        return { ...result, images: held.map((filename) => ({ filename })).concat(result.images) };
      }, total);
    },
    [fill, run],
  );

  const discard = useCallback(() => {
    clearOpenUpload();
    setInterrupted(null);
  }, []);

  const cancel = useCallback(() => abortRef.current?.abort(), []);
  const reset = useCallback(() => setUpload({ status: 'idle' }), []);
  // A failure before any byte went out (the check of the steps), shown as the upload's.
  const fail = useCallback((error) => setUpload({ status: 'error', error }), []);

  return { upload, uploading, interrupted, start, resume, discard, cancel, reset, fail, pause, unpause };
}

function sumOf(items) {
  return items.reduce((sum, item) => sum + item.file.size, 0);
}
