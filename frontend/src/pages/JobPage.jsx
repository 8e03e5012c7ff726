import { useEffect, useState } from 'react';
import ImageCard from '../components/ImageCard.jsx';
import JobLifecycle from '../components/JobLifecycle.jsx';
import Notice from '../components/Notice.jsx';
import ProgressBar from '../components/ProgressBar.jsx';
import { isTerminal, jobStatusText, formatTime } from '../lib/jobs.js';
import { linkHandler } from '../lib/router.js';
import { describeOperation } from '../lib/schema.js';
import useJob from '../lib/useJob.js';

const HEADINGS = {
  queued: 'Your photos are waiting to start',
  processing: 'Processing your photos',
  completed: 'Your photos are ready',
  completed_with_errors: 'Your photos are ready, with some errors',
  failed: 'Your photos could not be processed',
  cancelled: 'This job was cancelled',
};

function NewBatchLink({ children = 'Process more photos', className = 'button' }) {
  return (
    <a href="/" className={className} onClick={linkHandler('/')}>
      {children}
    </a>
  );
}

function CopyLink() {
  const [copied, setCopied] = useState(false);
  const url = window.location.href;
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(url);
      setCopied(true);
      setTimeout(() => setCopied(false), 2500);
    } catch {
      setCopied(false);
    }
  };
  if (!navigator.clipboard) return null;
  return (
    <button type="button" className="button button-small button-quiet" onClick={copy}>
      {copied ? 'Link copied' : 'Copy link to this page'}
    </button>
  );
}

/** The server's reason for refusing a file, without the file name it starts with. */
export function refusalReason(entry) {
  const message = entry.error?.message || 'was refused.';
  const prefix = `${entry.filename}: `;
  const reason = message.startsWith(prefix) ? message.slice(prefix.length) : message;
  return `${reason.charAt(0).toUpperCase()}${reason.slice(1)}${/[.!?]$/.test(reason) ? '' : '.'}`;
}

function SubmittedNotice({ submitted }) {
  const rejected = submitted.rejected || [];
  return (
    <>
      <Notice tone="success" title={`Upload complete: ${submitted.count} ${submitted.count === 1 ? 'photo' : 'photos'} sent.`}>
        <p>
          This page updates by itself.{' '}
          {submitted.email ? `We'll also email ${submitted.email} when the results are ready, so you can close it.` : 'Keep its address to come back later.'}
        </p>
      </Notice>
      {rejected.length > 0 && (
        <Notice tone="warning" title={`The server refused ${rejected.length} ${rejected.length === 1 ? 'file' : 'files'}:`}>
          <ul className="refused-list">
            {rejected.map((entry, index) => (
              <li key={index}>
                <span className="file-name-inline">{entry.filename}</span>: {refusalReason(entry)}
              </li>
            ))}
          </ul>
        </Notice>
      )}
    </>
  );
}

function JobSummary({ job }) {
  const done = (job.succeeded || 0) + (job.failed || 0);
  const total = job.total || 0;
  const pending = job.pending ?? Math.max(0, total - done);
  const terminal = isTerminal(job.status);
  return (
    <section className="card job-summary" aria-labelledby="summary-title">
      <div className="job-summary-head">
        <h2 id="summary-title">
          Status: <span className={`badge badge-job-${job.status}`}>{jobStatusText(job.status)}</span>
        </h2>
        {job.succeeded > 0 && job.links?.archive && (
          <a className="button button-primary" href={job.links.archive} download={`imageflow-${job.job_id}.zip`}>
            {terminal ? 'Download all (zip)' : `Download the ${job.succeeded} finished (zip)`}
          </a>
        )}
      </div>
      <ProgressBar
        id="job-progress"
        label={terminal ? 'Finished' : 'Progress'}
        value={done}
        max={total}
        text={`${done} of ${total} ${total === 1 ? 'photo' : 'photos'} done`}
      />
      <p className="visually-hidden" role="status">
        {jobStatusText(job.status)}: {done} of {total} done.
      </p>
      <dl className="counts">
        <div>
          <dt>Succeeded</dt>
          <dd data-testid="count-succeeded">{job.succeeded || 0}</dd>
        </div>
        <div>
          <dt>Failed</dt>
          <dd data-testid="count-failed">{job.failed || 0}</dd>
        </div>
        <div>
          <dt>Waiting</dt>
          <dd data-testid="count-pending">{pending}</dd>
        </div>
      </dl>
      <p className="muted job-meta">
        Started {formatTime(job.created_at)}
        {job.completed_at ? ` · finished ${formatTime(job.completed_at)}` : ''}
        {job.email ? ` · results link sent to ${job.email}` : ''}
      </p>
      {Array.isArray(job.operations) && job.operations.length > 0 && (
        <p className="muted job-meta">Steps: {job.operations.map(describeOperation).join(' → ')}</p>
      )}
      <div className="job-actions">
        <CopyLink />
        <NewBatchLink className="button button-small button-quiet" />
      </div>
    </section>
  );
}

/** The page at /jobs/<job_id>: live progress, per-image results and downloads. */
export default function JobPage({ jobId, submitted }) {
  const { status, job, error, retrying, updatedAt, retryNow } = useJob(jobId);

  useEffect(() => {
    if (job) {
      const done = (job.succeeded || 0) + (job.failed || 0);
      document.title = isTerminal(job.status)
        ? `${jobStatusText(job.status)} · ImageFlow`
        : `${done}/${job.total} done · ImageFlow`;
    } else if (status === 'not-found') {
      document.title = 'Job not found · ImageFlow';
    }
    return () => {
      document.title = 'ImageFlow';
    };
  }, [job, status]);

  if (status === 'loading') {
    return (
      <div className="page job-page">
        <h1 tabIndex={-1} id="page-title">Loading your job…</h1>
        <p className="muted" role="status">
          <span className="spinner" aria-hidden="true" /> Fetching the latest status.
        </p>
      </div>
    );
  }

  if (status === 'not-found') {
    return (
      <div className="page job-page">
        <h1 tabIndex={-1} id="page-title">We couldn't find this job</h1>
        <Notice tone="error" title="No job has this id.">
          <p>
            There is no job <code className="job-id">{jobId}</code>. The link may be incomplete (check that it was
            copied whole), or the job may have been removed.
          </p>
        </Notice>
        <NewBatchLink className="button button-primary">Start a new batch</NewBatchLink>
      </div>
    );
  }

  if (status === 'error') {
    return (
      <div className="page job-page">
        <h1 tabIndex={-1} id="page-title">
          {error.isNetwork ? "Can't reach the ImageFlow server" : error.status === 410 ? 'This job has expired' : 'This job could not be loaded'}
        </h1>
        <Notice
          tone="error"
          title={error.message}
          actions={
            <button type="button" className="button" onClick={retryNow}>
              Try again now
            </button>
          }
        >
          {retrying && <p>We'll keep trying every few seconds; your photos are safe on the server.</p>}
        </Notice>
      </div>
    );
  }

  const images = job.images || [];
  return (
    <div className="page job-page">
      <h1 tabIndex={-1} id="page-title">{HEADINGS[job.status] || 'Your job'}</h1>
      <p className="muted job-id-line">
        Job <code className="job-id">{job.job_id}</code>
      </p>
      {submitted && <SubmittedNotice submitted={submitted} />}
      {error && (
        <Notice
          tone="warning"
          title={error.isNetwork ? 'Lost contact with the server.' : error.message}
          actions={
            <button type="button" className="button button-small" onClick={retryNow}>
              Try again now
            </button>
          }
        >
          <p>
            {retrying ? 'Retrying automatically. ' : ''}
            {updatedAt ? `What you see is from ${updatedAt.toLocaleTimeString()}.` : ''}
          </p>
        </Notice>
      )}
      <JobSummary job={job} />
      <JobLifecycle job={job} onChanged={retryNow} />
      <section aria-labelledby="gallery-title">
        <h2 id="gallery-title" className="gallery-title">
          Photos <span className="muted">({images.length})</span>
        </h2>
        {images.length === 0 ? (
          <p className="muted">This job has no photos.</p>
        ) : (
          <ul className="gallery">
            {images.map((image) => (
              <ImageCard key={image.image_id} image={image} />
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}
