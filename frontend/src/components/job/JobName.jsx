import { useState } from 'react';
import { renameJob } from '../../lib/api.js';

export const MAX_NAME = 200; // as the API's limit on a job's name (docs/api.md)

/**
 * The job's name (as in the jobs list, the tab and the email's subject), and a form to
 * give or change it (PATCH /api/v1/jobs/<id>); `onRenamed` reads the job again.
 */
export default function JobName({ job, onRenamed }) {
  const [editing, setEditing] = useState(false);
  const [value, setValue] = useState('');
  const [error, setError] = useState('');
  const [saving, setSaving] = useState(false);

  if (!editing) {
    return (
      <div className="job-name-line">
        {job.name && (
          <p className="job-name" data-testid="job-name">
            {job.name}
          </p>
        )}
        <button
          type="button"
          className="button button-small button-quiet"
          onClick={() => {
            setValue(job.name || '');
            setError('');
            setEditing(true);
          }}
        >
          {job.name ? 'Rename' : 'Name this job'}
        </button>
      </div>
    );
  }

  const onSubmit = async (event) => {
    event.preventDefault();
    setSaving(true);
    setError('');
    try {
      await renameJob(job.job_id, value.trim());
      setEditing(false);
      onRenamed();
    } catch (err) {
      setError(err.message);
    } finally {
      setSaving(false);
    }
  };
  return (
    <form className="job-name-form" onSubmit={onSubmit}>
      <label htmlFor="job-name-field">Job name</label>
      <input
        id="job-name-field"
        value={value}
        maxLength={MAX_NAME}
        onChange={(event) => setValue(event.target.value)}
        aria-describedby={error ? 'job-name-error' : undefined}
        autoFocus
      />
      <button type="submit" className="button button-small button-primary" disabled={saving}>
        Save name
      </button>
      <button type="button" className="button button-small button-quiet" onClick={() => setEditing(false)}>
        Cancel
      </button>
      {error && (
        <p id="job-name-error" className="field-error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
