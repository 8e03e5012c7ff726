import { useCallback, useRef, useState } from 'react';
import { serverRows } from '../components/upload/RefusedRows.jsx';
import { submitUrlJob, validateOperations } from '../lib/api.js';
import { navigate } from '../lib/router.js';
import useUploadQueue from './useUploadQueue.js';

/**
 * The upload page's submission, from a checked form to the job page. `submit(job)` has the
 * server check the steps before a byte of the photos goes out, then sends the photos
 * (useUploadQueue: an open job filled in batches within `limits.max_request_bytes`, then
 * closed; or the whole batch in one request on a server without open jobs), or, given
 * `urls` or a `csv`, asks the server to import the images itself; then the job page opens.
 *
 * A failure is said where it belongs: beside the steps it names (`showStepErrors(error)`, the
 * page's, says whether it put it there), beside the API key field (a 401: `keyRefused`), and
 * otherwise under the submit button (`upload.error`, focused through `errorRef`).
 */
export default function useSubmitJob({ limits, showStepErrors = () => false }) {
  const { upload, uploading, interrupted, start, resume, discard, cancel, reset, fail, pause, unpause } = useUploadQueue(limits);
  const [checking, setChecking] = useState(false);
  const [sendingUrls, setSendingUrls] = useState(false);
  const [keyRefused, setKeyRefused] = useState('');
  const errorRef = useRef(null);

  const focusError = () => requestAnimationFrame(() => errorRef.current?.focus());
  const noteKeyProblem = useCallback((error) => {
    if (error?.status === 401) setKeyRefused(error.message);
  }, []);
  const clearKeyRefused = useCallback(() => setKeyRefused(''), []);

  const failed = (error) => {
    noteKeyProblem(error);
    if (showStepErrors(error)) {
      reset();
    } else {
      fail(error);
      focusError();
    }
  };

  const openJobPage = (job, submitted) =>
    navigate(`/jobs/${encodeURIComponent(job.job_id)}`, { submitted: { count: (job.images || []).length, rejected: job.rejected || [], ...submitted } });

  // An import by address: one small request; the server fetches the images. `lines` maps
  // the addresses sent to the lines typed, so a refusal names the line.
  const sendUrls = async ({ request, email, urls, csv, lines, notAdded }) => {
    setSendingUrls(true);
    try {
      const job = await submitUrlJob({ ...request, email, ...(csv ? { csv } : { urls }) });
      const rejected = serverRows(job.rejected, csv ? null : lines).map((row) => ({
        filename: row.url,
        error: { message: `${row.line ? `line ${row.line}: ` : ''}${row.reason}` },
      }));
      openJobPage(job, { rejected, email, notAdded: csv ? 0 : notAdded });
    } catch (error) {
      failed(error);
    } finally {
      setSendingUrls(false);
    }
  };

  /**
   * Send a job: `{request: {operations, preset, overlays}, email, notAdded}` with `items`
   * (`[{id, file}]`, sent in this order), or with `urls` (and their `lines`) or a `csv`.
   */
  const submit = async ({ request, email = '', items = [], urls, csv, lines = null, notAdded = 0 }) => {
    if (uploading || checking || sendingUrls) return;
    reset();
    setChecking(true);
    try {
      await validateOperations(request);
    } catch (error) {
      // A server without the check (404) checks at the upload instead.
      if (error.status !== 404) {
        failed(error);
        return;
      }
    } finally {
      setChecking(false);
    }
    if (urls || csv) {
      await sendUrls({ request, email, urls, csv, lines, notAdded });
      return;
    }
    const { job, error } = await start({ items: items.map(({ id, file }) => ({ id, file })), ...request, email });
    if (job) openJobPage(job, { email, notAdded });
    else if (error) failed(error);
  };

  // An open job whose upload stopped (cancelled, or the page was closed): carry on.
  const resumeUpload = async (items) => {
    const { job, error } = await resume(items);
    if (job) openJobPage(job, { email: interrupted?.email || '', notAdded: 0 });
    else if (error) focusError();
  };

  return {
    upload,
    uploading,
    checking,
    sendingUrls,
    busy: uploading || checking || sendingUrls,
    interrupted,
    keyRefused,
    errorRef,
    submit,
    resume: resumeUpload,
    discard,
    cancel,
    pause,
    unpause,
    fail,
    noteKeyProblem,
    clearKeyRefused,
  };
}
