import { formatBytes, plural } from '../../lib/format.js';
import { timeLeftText } from '../../lib/rate.js';
import ErrorDetails from '../ErrorDetails.jsx';
import Notice from '../Notice.jsx';
import ProgressBar from '../ProgressBar.jsx';

function uploadErrorTitle(error) {
  if (error.isNetwork) return "Can't reach the ImageFlow server";
  if (error.status === 422) return 'The server refused the chosen steps';
  if (error.status >= 500) return 'The server could not take the upload';
  return 'The server refused the upload';
}

/** The send button, the upload's progress with a cancel button, and how the upload ended. */
/** An open job that holds part of an upload, with buttons to carry on or to start over. */
function Interrupted({ record, onResume, onDiscard }) {
  return (
    <Notice
      tone="warning"
      title={`The upload stopped: ${record.sent.length} of ${plural(record.ids.length, 'photo')} are in the job.`}
      actions={
        <>
          <button type="button" className="button button-primary" onClick={onResume}>
            Continue the upload
          </button>
          <button type="button" className="button button-quiet" onClick={onDiscard}>
            Start a new job instead
          </button>
        </>
      }
    >
      <p>
        Continuing sends only the photos the job does not have yet. The ones already sent are being processed (job{' '}
        <code className="job-id">{record.job_id}</code>).
      </p>
    </Notice>
  );
}

/** "210 MB of 609 MB sent · 12 of 147 photos done · about 3 min left" */
export function uploadProgressText(upload) {
  const parts = [`${formatBytes(upload.loaded)} of ${formatBytes(upload.total)} sent`];
  if (upload.fileCount) parts.push(`${upload.sentFiles || 0} of ${plural(upload.fileCount, 'photo')} done`);
  if (upload.paused) parts.push('paused');
  else if (upload.secondsLeft != null && upload.loaded < upload.total) parts.push(timeLeftText(upload.secondsLeft));
  return parts.join(' · ');
}

export default function SubmitArea({ upload, count, ready, onCancel, onPause, onUnpause, errorRef, showErrorDetails = true, interrupted, onResume, onDiscard, label, errorExtra, children }) {
  const uploading = upload.status === 'uploading';
  return (
    <div className="submit-area">
      {(uploading || upload.status === 'sent') && (
        <div className="upload-progress">
          <ProgressBar
            id="upload-progress"
            label={upload.loaded >= upload.total && upload.total > 0 ? 'Upload complete, starting the job…' : upload.paused ? 'Upload paused' : 'Uploading'}
            value={upload.loaded}
            max={upload.total}
            text={uploadProgressText(upload)}
          />
          {uploading && upload.jobId && (
            <p className="upload-job-link" data-testid="upload-job-link">
              The job is under way with the photos sent so far:{' '}
              <a href={`/jobs/${encodeURIComponent(upload.jobId)}`} target="_blank">
                see its results as they come (opens in a new tab)
              </a>
              . Keep this page open until every photo is sent.
            </p>
          )}
          {uploading && upload.retrying && (
            <p className="upload-retrying" role="status">
              {upload.retrying.message} Trying again in {upload.retrying.seconds} s; what was sent is kept.
            </p>
          )}
          {uploading && (
            <div className="upload-actions">
              {onPause && upload.fileCount > 0 &&
                (upload.paused ? (
                  <button type="button" className="button" onClick={onUnpause}>
                    Resume upload
                  </button>
                ) : (
                  <button type="button" className="button" onClick={onPause}>
                    Pause upload
                  </button>
                ))}
              <button type="button" className="button button-quiet" onClick={onCancel}>
                Cancel upload
              </button>
            </div>
          )}
        </div>
      )}
      {upload.status === 'error' && (
        <Notice tone="error" title={uploadErrorTitle(upload.error)} focusRef={errorRef}>
          <p>{upload.error.message}</p>
          {showErrorDetails && <ErrorDetails details={upload.error.details} />}
          {errorExtra}
        </Notice>
      )}
      {upload.status === 'cancelled' && !interrupted && <Notice tone="info" title="Upload cancelled. Nothing was sent to be processed." />}
      {interrupted && <Interrupted record={interrupted} onResume={onResume} onDiscard={onDiscard} />}
      {!uploading && upload.status !== 'sent' && children}
      {!uploading && upload.status !== 'sent' && (
        <button type="submit" className="button button-primary button-large" disabled={!ready}>
          {label || (count ? `Process ${plural(count, 'photo')}` : 'Process photos')}
        </button>
      )}
    </div>
  );
}
