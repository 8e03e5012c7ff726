import { useCallback, useEffect, useState } from 'react';
import ApiKeySection from '../components/ApiKeySection.jsx';
import Notice from '../components/Notice.jsx';
import useApiKey from '../hooks/useApiKey.js';
import { fetchJobs } from '../lib/api.js';
import { formatTime, savingsText } from '../lib/format.js';
import { jobStatusText } from '../lib/jobs.js';
import { linkHandler } from '../lib/router.js';

const PAGE_SIZE = 20;
const FILTERS = [
  ['', 'All'],
  ['processing', 'Processing'],
  ['completed', 'Done'],
  ['completed_with_errors', 'Done, with some errors'],
  ['failed', 'Failed'],
  ['cancelled', 'Cancelled'],
];

function JobRow({ job }) {
  const savings = savingsText(job);
  return (
    <li className="jobs-row">
      <a href={`/jobs/${job.job_id}`} onClick={linkHandler(`/jobs/${job.job_id}`)}>
        {job.name || `Job ${job.job_id.slice(0, 8)}`}
      </a>{' '}
      <span className={`badge badge-job-${job.status}`}>{jobStatusText(job.status)}</span>
      <span className="muted">
        {' '}
        {job.succeeded}/{job.total} done{job.failed ? `, ${job.failed} failed` : ''}
        {job.skipped ? `, ${job.skipped} skipped` : ''} · {formatTime(job.created_at)}
        {savings ? ` · ${savings}` : ''}
      </span>
    </li>
  );
}

/** The page at /jobs: the caller's jobs, newest first, page by page (GET /api/v1/jobs). */
export default function JobsPage() {
  const [status, setStatus] = useState('');
  const [jobs, setJobs] = useState([]);
  const [cursor, setCursor] = useState(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState(null);

  const load = useCallback(async (from, filter, append) => {
    setLoading(true);
    setError(null);
    try {
      const page = await fetchJobs({ status: filter, cursor: from, limit: PAGE_SIZE });
      setJobs((current) => (append ? [...current, ...page.jobs] : page.jobs));
      setCursor(page.next_cursor);
    } catch (err) {
      setError(err);
    } finally {
      setLoading(false);
    }
  }, []);

  useEffect(() => {
    load(null, status, false);
  }, [status, load]);

  // A 401: the key is asked for here, and the list read again with it at once.
  const [apiKey, setApiKey] = useApiKey();
  const onKey = (key) => {
    setApiKey(key);
    load(null, status, false);
  };

  return (
    <div className="page jobs-page">
      <h1 tabIndex={-1} id="page-title">Your jobs</h1>
      <label htmlFor="jobs-filter">Show</label>{' '}
      <select id="jobs-filter" value={status} onChange={(event) => setStatus(event.target.value)}>
        {FILTERS.map(([value, label]) => (
          <option key={value} value={value}>
            {label}
          </option>
        ))}
      </select>
      {error?.status === 401 && <ApiKeySection apiKey={apiKey} onKey={onKey} refused={apiKey ? error.message : ''} focusField />}
      {error && error.status !== 401 && <Notice tone="error" title={error.message} />}
      {!error && !loading && jobs.length === 0 && <p className="muted">No jobs yet.</p>}
      <ul className="jobs-list">
        {jobs.map((job) => (
          <JobRow key={job.job_id} job={job} />
        ))}
      </ul>
      {loading && <p className="muted" role="status">Loading…</p>}
      {cursor && !loading && (
        <button type="button" className="button" onClick={() => load(cursor, status, true)}>
          Show older jobs
        </button>
      )}
    </div>
  );
}
