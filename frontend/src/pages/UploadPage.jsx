import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import DropZone from '../components/DropZone.jsx';
import FileList from '../components/FileList.jsx';
import Notice from '../components/Notice.jsx';
import OperationsEditor from '../components/OperationsEditor.jsx';
import ProgressBar from '../components/ProgressBar.jsx';
import { fetchOperations, submitJob } from '../lib/api.js';
import { DEFAULT_LIMITS, checkFiles, describeTypes, formatBytes, tooManyPixels } from '../lib/files.js';
import { navigate } from '../lib/router.js';
import { buildOperation, parseOperationsSchema } from '../lib/schema.js';
import ErrorDetails from '../components/ErrorDetails.jsx';

const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** The operations schema, presets and limits from the server, with a retry. */
function useServerOptions() {
  const [state, setState] = useState({ status: 'loading' });
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    const controller = new AbortController();
    setState({ status: 'loading' });
    fetchOperations({ signal: controller.signal })
      .then((data) => {
        let operations;
        try {
          operations = parseOperationsSchema(data.schema);
        } catch (err) {
          setState({ status: 'error', error: { message: `The server's list of operations could not be read (${err.message}).` } });
          return;
        }
        setState({
          status: 'ready',
          operations,
          presets: data.presets || {},
          limits: { ...DEFAULT_LIMITS, ...(data.limits || {}) },
        });
      })
      .catch((error) => {
        if (error.name !== 'AbortError') setState({ status: 'error', error });
      });
    return () => controller.abort();
  }, [attempt]);
  return [state, () => setAttempt((n) => n + 1)];
}

let nextFileId = 1;

function uploadErrorTitle(error) {
  if (error.isNetwork) return "Can't reach the ImageFlow server";
  if (error.status >= 500) return 'The server could not take the upload';
  return 'The server refused the upload';
}

/** The choice with the server's defaults filled in: the "web" preset if there is one. */
function withDefaults(choice, presets) {
  const names = Object.keys(presets || {});
  const preset = choice.preset ?? (names.includes('web') ? 'web' : names[0] || '');
  return { ...choice, preset, mode: choice.mode ?? (preset ? 'preset' : 'custom') };
}

function sentence(text) {
  const value = String(text || '').trim();
  return value ? `${value.charAt(0).toUpperCase()}${value.slice(1)}${/[.!?]$/.test(value) ? '' : '.'}` : '';
}

/**
 * The server's 422 details ({index, op, field, message} per problem) placed on the steps
 * they belong to: a field's problem beside the field, any other under the step's title.
 */
export function stepErrorsFromDetails(details, steps, operationsByName) {
  const errors = {};
  for (const detail of Array.isArray(details) ? details : []) {
    const step = Number.isInteger(detail?.index) ? steps[detail.index] : null;
    if (!step) continue;
    const field = String(detail.field || '').split(/[.[]/)[0];
    const known = operationsByName[step.op]?.fields.some((f) => f.name === field && f.kind !== 'const');
    const current = errors[step.id] || {};
    if (known) current[field] = detail.message;
    else current._step = sentence(field && field !== 'op' ? `${field} ${detail.message}` : detail.message);
    errors[step.id] = current;
  }
  return errors;
}

/** The page where photos are chosen, the operations picked, and the job sent. */
export default function UploadPage() {
  const [server, retry] = useServerOptions();
  const limits = server.limits || DEFAULT_LIMITS;
  const [items, setItems] = useState([]);
  const [notAdded, setNotAdded] = useState({ refused: [], duplicates: 0 });
  const [chosen, setChoice] = useState({ mode: null, preset: null, steps: [] });
  const choice = withDefaults(chosen, server.presets);
  const [email, setEmail] = useState('');
  const [problems, setProblems] = useState({ summary: [], steps: {}, email: '' });
  const [upload, setUpload] = useState({ status: 'idle' });
  const summaryRef = useRef(null);
  const uploadErrorRef = useRef(null);
  const abortRef = useRef(null);
  const itemsRef = useRef(items);
  itemsRef.current = items;

  // Object URLs hold the photos in memory: release them when the page goes away.
  useEffect(() => () => itemsRef.current.forEach((item) => URL.revokeObjectURL(item.url)), []);
  useEffect(() => () => abortRef.current?.abort(), []);

  const addFiles = useCallback(
    (files) => {
      const { accepted, refused, duplicates } = checkFiles(
        itemsRef.current.map((item) => item.file),
        files,
        limits,
      );
      setNotAdded({ refused, duplicates });
      if (accepted.length) {
        setItems((current) => [
          ...current,
          ...accepted.map((file) => ({ id: nextFileId++, file, url: URL.createObjectURL(file) })),
        ]);
        setProblems((p) => ({ ...p, summary: p.summary.filter((s) => s.key !== 'files') }));
      }
    },
    [limits],
  );

  const removeItem = useCallback((id) => {
    setItems((current) => {
      const item = current.find((i) => i.id === id);
      if (item) URL.revokeObjectURL(item.url);
      return current.filter((i) => i.id !== id);
    });
  }, []);

  const clearItems = () => {
    items.forEach((item) => URL.revokeObjectURL(item.url));
    setItems([]);
    setNotAdded({ refused: [], duplicates: 0 });
  };

  const onMeasured = useCallback(
    (id, width, height) => {
      const item = itemsRef.current.find((i) => i.id === id);
      if (!item) return;
      if (tooManyPixels(width, height, limits)) {
        const megapixels = Math.round(limits.max_image_pixels / 1e6);
        removeItem(id);
        setNotAdded((current) => ({
          ...current,
          refused: [...current.refused, { name: item.file.name, reason: `is ${width}×${height} pixels, over the ${megapixels} megapixel limit.` }],
        }));
        return;
      }
      setItems((current) => current.map((i) => (i.id === id ? { ...i, width, height } : i)));
    },
    [limits, removeItem],
  );

  const operationsByName = useMemo(
    () => Object.fromEntries((server.operations || []).map((operation) => [operation.op, operation])),
    [server.operations],
  );

  const validate = () => {
    const summary = [];
    const stepErrors = {};
    let operations = null;
    if (!items.length) summary.push({ key: 'files', text: 'Add at least one photo.' });
    if (choice.mode === 'custom') {
      if (!choice.steps.length) summary.push({ key: 'steps', text: 'Add at least one step, or use a preset.' });
      operations = choice.steps.map((step, index) => {
        const { value, errors } = buildOperation(operationsByName[step.op], step.values);
        if (Object.keys(errors).length) {
          stepErrors[step.id] = errors;
          summary.push({ key: `step-${step.id}`, text: `Check the settings of step ${index + 1}.` });
        }
        return value;
      });
    } else if (!choice.preset) {
      summary.push({ key: 'preset', text: 'Choose a preset.' });
    }
    const trimmed = email.trim();
    const emailError = trimmed && !EMAIL_RE.test(trimmed) ? 'Enter a whole email address, like name@example.com, or leave it empty.' : '';
    if (emailError) summary.push({ key: 'email', text: emailError });
    setProblems({ summary, steps: stepErrors, email: emailError });
    return summary.length ? null : { operations, email: trimmed };
  };

  const onSubmit = async (event) => {
    event.preventDefault();
    if (upload.status === 'uploading') return;
    const valid = validate();
    if (!valid) {
      requestAnimationFrame(() => summaryRef.current?.focus());
      return;
    }
    const files = items.map((item) => item.file);
    const total = files.reduce((sum, file) => sum + file.size, 0);
    const controller = new AbortController();
    abortRef.current = controller;
    setUpload({ status: 'uploading', loaded: 0, total });
    try {
      const job = await submitJob(
        {
          files,
          preset: choice.mode === 'preset' ? choice.preset : null,
          operations: valid.operations,
          email: valid.email,
        },
        {
          signal: controller.signal,
          onProgress: (loaded, sent) => setUpload({ status: 'uploading', loaded, total: sent }),
        },
      );
      abortRef.current = null;
      navigate(`/jobs/${encodeURIComponent(job.job_id)}`, {
        submitted: { count: (job.images || []).length, rejected: job.rejected || [], email: valid.email },
      });
    } catch (error) {
      abortRef.current = null;
      if (error.name === 'AbortError') {
        setUpload({ status: 'cancelled' });
      } else {
        if (error.status === 422 && choice.mode === 'custom') {
          setProblems((current) => ({ ...current, steps: stepErrorsFromDetails(error.details, choice.steps, operationsByName) }));
        }
        setUpload({ status: 'error', error });
        requestAnimationFrame(() => uploadErrorRef.current?.focus());
      }
    }
  };

  const uploading = upload.status === 'uploading';
  const accept = (limits.accepted_types || []).join(',');

  return (
    <div className="page upload-page">
      <h1 tabIndex={-1} id="page-title">Process a batch of photos</h1>
      <p className="lead">
        Add your photos, choose what to do with them, and ImageFlow does the rest. You can follow the progress
        and download the results on the next page.
      </p>

      {server.status === 'error' && (
        <Notice
          tone="error"
          title={server.error?.isNetwork ? "Can't reach the ImageFlow server" : 'The page could not load its settings'}
          actions={
            <button type="button" className="button" onClick={retry}>
              Try again
            </button>
          }
        >
          <p>{server.error?.message}</p>
        </Notice>
      )}

      <form onSubmit={onSubmit} noValidate aria-describedby={problems.summary.length ? 'form-problems' : undefined}>
        {problems.summary.length > 0 && (
          <Notice tone="error" title="Before sending, please fix:" id="form-problems" focusRef={summaryRef}>
            <ul>
              {problems.summary.map((problem) => (
                <li key={problem.key}>{problem.text}</li>
              ))}
            </ul>
          </Notice>
        )}

        <section className="card" aria-labelledby="photos-title">
          <h2 id="photos-title">
            <span className="step-number" aria-hidden="true">1</span> Your photos
          </h2>
          <DropZone
            onFiles={addFiles}
            accept={accept}
            disabled={uploading}
            hint={`${describeTypes(limits.accepted_types || [])} · up to ${formatBytes(limits.max_upload_bytes)} each · up to ${limits.max_files_per_job} photos per batch`}
          />
          {(notAdded.refused.length > 0 || notAdded.duplicates > 0) && (
            <Notice
              tone="warning"
              title={
                notAdded.refused.length
                  ? `${notAdded.refused.length} ${notAdded.refused.length === 1 ? 'file was' : 'files were'} not added`
                  : 'Already added'
              }
              actions={
                <button type="button" className="button button-small button-quiet" onClick={() => setNotAdded({ refused: [], duplicates: 0 })}>
                  Dismiss
                </button>
              }
            >
              {notAdded.refused.length > 0 && (
                <ul className="refused-list">
                  {notAdded.refused.slice(0, 20).map((entry, index) => (
                    <li key={index}>
                      <span className="file-name-inline">{entry.name}</span> {entry.reason}
                    </li>
                  ))}
                  {notAdded.refused.length > 20 && <li>…and {notAdded.refused.length - 20} more.</li>}
                </ul>
              )}
              {notAdded.duplicates > 0 && (
                <p>
                  {notAdded.duplicates} {notAdded.duplicates === 1 ? 'photo was' : 'photos were'} already in the list.
                </p>
              )}
            </Notice>
          )}
          <FileList items={items} onRemove={removeItem} onClear={clearItems} onMeasured={onMeasured} disabled={uploading} />
        </section>

        <section className="card" aria-labelledby="ops-title">
          <h2 id="ops-title">
            <span className="step-number" aria-hidden="true">2</span> What to do with them
          </h2>
          {server.status === 'loading' && <p className="muted" role="status">Loading the available operations…</p>}
          {server.status === 'ready' && (
            <OperationsEditor
              operations={server.operations}
              presets={server.presets}
              choice={choice}
              onChange={setChoice}
              errors={problems.steps}
            />
          )}
          {server.status === 'error' && <p className="muted">The operations appear here once the server answers.</p>}
        </section>

        <section className="card" aria-labelledby="notify-title">
          <h2 id="notify-title">
            <span className="step-number" aria-hidden="true">3</span> Get a link by email <span className="muted">(optional)</span>
          </h2>
          <div className="field">
            <label htmlFor="email">Email address</label>
            <input
              id="email"
              type="email"
              autoComplete="email"
              value={email}
              onChange={(e) => setEmail(e.target.value)}
              aria-invalid={problems.email ? true : undefined}
              aria-describedby={problems.email ? 'email-hint email-error' : 'email-hint'}
              disabled={uploading}
            />
            <p className="field-hint" id="email-hint">
              We'll send you a link to the results when they're ready. Leave it empty to just watch this page.
            </p>
            {problems.email && (
              <p className="field-error" id="email-error">
                {problems.email}
              </p>
            )}
          </div>
        </section>

        <div className="submit-area">
          {uploading && (
            <div className="upload-progress">
              <ProgressBar
                id="upload-progress"
                label={upload.loaded >= upload.total && upload.total > 0 ? 'Upload complete, starting the job…' : 'Uploading'}
                value={upload.loaded}
                max={upload.total}
                text={`${formatBytes(upload.loaded)} of ${formatBytes(upload.total)} sent`}
              />
              <button type="button" className="button button-quiet" onClick={() => abortRef.current?.abort()}>
                Cancel upload
              </button>
            </div>
          )}
          {upload.status === 'error' && (
            <Notice tone="error" title={uploadErrorTitle(upload.error)} focusRef={uploadErrorRef}>
              <p>{upload.error.message}</p>
              <ErrorDetails details={upload.error.details} />
            </Notice>
          )}
          {upload.status === 'cancelled' && <Notice tone="info" title="Upload cancelled. Nothing was sent to be processed." />}
          {!uploading && (
            <button type="submit" className="button button-primary button-large" disabled={server.status !== 'ready'}>
              {items.length ? `Process ${items.length} ${items.length === 1 ? 'photo' : 'photos'}` : 'Process photos'}
            </button>
          )}
        </div>
      </form>
    </div>
  );
}
