import { useState } from 'react';
import './JobLifecycle.css';
import Notice from './Notice.jsx';
import { cancelJob, rerunJob, retryJob } from '../lib/api.js';
import { savingsText } from '../lib/format.js';
import { linkHandler, navigate } from '../lib/router.js';

const ACTIVE = ['queued', 'processing'];

function JobLink({ jobId, children }) {
  return (
    <a href={`/jobs/${jobId}`} onClick={linkHandler(`/jobs/${jobId}`)}>
      {children}
    </a>
  );
}

function RerunForm({ job, onError }) {
  const [text, setText] = useState(JSON.stringify(job.operations || [], null, 1));
  const [only, setOnly] = useState('all');
  const [busy, setBusy] = useState(false);
  const [invalid, setInvalid] = useState('');

  const submit = async (event) => {
    event.preventDefault();
    let operations;
    try {
      operations = JSON.parse(text);
    } catch {
      setInvalid('The steps are not valid JSON.');
      return;
    }
    setInvalid('');
    setBusy(true);
    try {
      const created = await rerunJob(job.job_id, { operations, only });
      navigate(`/jobs/${created.job_id}`);
    } catch (error) {
      onError(error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="rerun-form" onSubmit={submit} aria-label="Run again with other steps">
      <label htmlFor="rerun-steps">Steps (JSON, as in the API)</label>
      <textarea id="rerun-steps" rows={4} value={text} onChange={(e) => setText(e.target.value)} />
      {invalid && <p className="field-error" role="alert">{invalid}</p>}
      <label htmlFor="rerun-only">Which photos</label>
      <select id="rerun-only" value={only} onChange={(e) => setOnly(e.target.value)}>
        <option value="all">All of them</option>
        <option value="failed">Only the failed ones</option>
        <option value="succeeded">Only the successful ones</option>
      </select>
      <button type="submit" className="button button-primary" disabled={busy}>
        {busy ? 'Starting…' : 'Run again (no upload)'}
      </button>
    </form>
  );
}

/**
 * The job's lifecycle on its page: savings, links to the job it re-runs and its re-runs,
 * and the actions its state allows: Cancel, Retry failed, Run again with other steps.
 * `onChanged(job)` gets the job the server answers after an action.
 */
export default function JobLifecycle({ job, onChanged = () => {} }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState('');
  const [rerunOpen, setRerunOpen] = useState(false);
  const active = ACTIVE.includes(job.status);
  const unfinished = (job.failed || 0) + (job.skipped || 0);
  const savings = savingsText(job);

  const act = (name, call) => async () => {
    setBusy(name);
    setError(null);
    try {
      onChanged(await call(job.job_id));
    } catch (err) {
      setError(err);
    } finally {
      setBusy('');
    }
  };

  return (
    <div className="job-lifecycle">
      {savings && <p className="job-savings" data-testid="savings">{savings}</p>}
      {job.status === 'cancelled' && (
        <p className="muted">
          Cancelled: {job.skipped || 0} {job.skipped === 1 ? 'photo was' : 'photos were'} skipped before they started.
        </p>
      )}
      {job.parent_job_id && (
        <p className="muted">
          A re-run of <JobLink jobId={job.parent_job_id}>an earlier job</JobLink>, from its stored originals.
        </p>
      )}
      {(job.child_job_ids || []).length > 0 && (
        <p className="muted">
          Run again as{' '}
          {job.child_job_ids.map((id, index) => (
            <span key={id}>
              {index > 0 && ', '}
              <JobLink jobId={id}>{`job ${id.slice(0, 8)}`}</JobLink>
            </span>
          ))}
          .
        </p>
      )}
      {error && <Notice tone="error" title={error.message} />}
      <div className="job-actions">
        {active && !job.cancel_requested_at && (
          <button type="button" className="button button-small" disabled={!!busy} onClick={act('cancel', cancelJob)}>
            {busy === 'cancel' ? 'Cancelling…' : 'Cancel'}
          </button>
        )}
        {active && job.cancel_requested_at && (
          <p className="muted" role="status">Cancelling: photos not started will be skipped.</p>
        )}
        {!active && unfinished > 0 && (
          <button type="button" className="button button-small" disabled={!!busy} onClick={act('retry', retryJob)}>
            {busy === 'retry' ? 'Retrying…' : `Retry failed (${unfinished})`}
          </button>
        )}
        {!active && (
          <button type="button" className="button button-small button-quiet" aria-expanded={rerunOpen}
                  onClick={() => setRerunOpen(!rerunOpen)}>
            Run again with other steps
          </button>
        )}
      </div>
      {rerunOpen && !active && <RerunForm job={job} onError={setError} />}
    </div>
  );
}
