import { useCallback, useEffect, useRef, useState } from 'react';
import { createOpenJob, submitJob } from '../lib/api.js';
import { fillOpenJob } from '../lib/openJobUpload.js';

/**
 * Sends a job and follows its upload: `upload` is {status: idle|uploading|sent|cancelled|error,
 * loaded, total, error}. `start(request)` resolves with `{job}` (the 202 answer), `{error}`
 * or `{cancelled: true}`. While bytes are going out,
 * leaving the page asks first.
 */
export default function useUploadQueue() {
  const [upload, setUpload] = useState({ status: 'idle' });
  const abortRef = useRef(null);
  const uploading = upload.status === 'uploading';

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

  const start = useCallback(async (request) => {
    const total = request.files.reduce((sum, file) => sum + file.size, 0);
    const controller = new AbortController();
    abortRef.current = controller;
    setUpload({ status: 'uploading', loaded: 0, total });
    try {
      const onProgress = (loaded, sent) => setUpload({ status: 'uploading', loaded, total: sent });
      // A server with open jobs takes the files in many small requests, each retried on
      // its own; any other takes the whole batch in one.
      const created = await createOpenJob(request, { signal: controller.signal });
      const job = created?.links?.files
        ? await fillOpenJob(created, request.files, {
            signal: controller.signal,
            onProgress,
            onRetry: (error, ms) =>
              setUpload((current) => ({ ...current, retrying: { message: error.message, seconds: Math.round(ms / 1000) } })),
          })
        : await submitJob(request, { signal: controller.signal, onProgress });
      setUpload({ status: 'sent', loaded: total, total });
      return { job };
    } catch (error) {
      if (error.name === 'AbortError') {
        setUpload({ status: 'cancelled' });
        return { cancelled: true };
      }
      setUpload({ status: 'error', error });
      return { error };
    } finally {
      abortRef.current = null;
    }
  }, []);

  const cancel = useCallback(() => abortRef.current?.abort(), []);
  const reset = useCallback(() => setUpload({ status: 'idle' }), []);
  // A failure before any byte went out (the check of the steps), shown as the upload's.
  const fail = useCallback((error) => setUpload({ status: 'error', error }), []);

  return { upload, uploading, start, cancel, reset, fail };
}
