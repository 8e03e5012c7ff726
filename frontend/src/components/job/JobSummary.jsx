import { useState } from 'react';
import { formatBytes, formatTime, plural, savingText } from '../../lib/format.js';
import { isTerminal, jobStatusText } from '../../lib/jobs.js';
import { linkHandler } from '../../lib/router.js';
import { describeOperation } from '../../lib/schema.js';
import ProgressBar from '../ProgressBar.jsx';

export function NewBatchLink({ children = 'Process more photos', className = 'button' }) {
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

/** What the email does, true at each state: it goes out once every photo is done. */
export function emailSentence(job) {
  if (!job.email) return '';
  return isTerminal(job.status) ? `A link to these results was emailed to ${job.email}.` : `We'll email a link to ${job.email} when every photo is done.`;
}

/** Bytes in and out over the finished photos whose sizes are known. */
function totalSaving(images) {
  let before = 0;
  let after = 0;
  for (const image of images || []) {
    if (image.status === 'succeeded' && image.input_bytes > 0 && Number.isFinite(image.bytes)) {
      before += image.input_bytes;
      after += image.bytes;
    }
  }
  return before > 0 ? `${formatBytes(before)} of originals became ${formatBytes(after)} (${savingText(before, after)}).` : '';
}

/** The job's state, progress, counts, the zip download and what the job does. */
export default function JobSummary({ job }) {
  const done = (job.succeeded || 0) + (job.failed || 0) + (job.skipped || 0);
  const total = job.total || 0;
  const pending = job.pending ?? Math.max(0, total - done);
  const terminal = isTerminal(job.status);
  const saving = totalSaving(job.images);
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
      <ProgressBar id="job-progress" label={terminal ? 'Finished' : 'Progress'} value={done} max={total} text={`${done} of ${plural(total, 'photo')} done`} />
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
      {job.status === 'open' && (
        <p className="job-meta" data-testid="job-open">
          This job is still taking photos: it finishes once their upload is complete.
        </p>
      )}
      {saving && (
        <p className="job-saving" data-testid="job-saving">
          {saving}
        </p>
      )}
      <p className="muted job-meta">
        Started {formatTime(job.created_at)}
        {job.completed_at ? ` · finished ${formatTime(job.completed_at)}` : ''}
      </p>
      {job.email && <p className="muted job-meta">{emailSentence(job)}</p>}
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
