import { useEffect, useMemo, useState } from 'react';
import ApiKeySection from '../components/ApiKeySection.jsx';
import JobLifecycle from '../components/JobLifecycle.jsx';
import Notice from '../components/Notice.jsx';
import ContactSheet from '../components/job/ContactSheet.jsx';
import Gallery from '../components/job/Gallery.jsx';
import JobName from '../components/job/JobName.jsx';
import JobSummary, { NewBatchLink } from '../components/job/JobSummary.jsx';
import Lightbox from '../components/job/Lightbox.jsx';
import StatusFilter, { filterImages } from '../components/job/StatusFilter.jsx';
import SubmittedNotice from '../components/job/SubmittedNotice.jsx';
import useApiKey from '../hooks/useApiKey.js';
import { SIZES, SORTS, loadPrefs, savePrefs, sortImages } from '../lib/contactSheet.js';
import { distinctNames } from '../lib/format.js';
import { isTerminal, jobStatusText } from '../lib/jobs.js';
import useJob from '../lib/useJob.js';

const HEADINGS = {
  open: 'Receiving your photos',
  queued: 'Your photos are waiting to start',
  processing: 'Processing your photos',
  completed: 'Your photos are ready',
  completed_with_errors: 'Your photos are ready, with some errors',
  failed: 'Your photos could not be processed',
  cancelled: 'This job was cancelled',
};

/** The buttons of a choice of a few: one pressed. */
function Choice({ label, options, value, onChange }) {
  return (
    <div className="choice" role="group" aria-label={label}>
      {options.map((option) => (
        <button
          key={option.key}
          type="button"
          className={`button button-small${value === option.key ? ' is-selected' : ' button-quiet'}`}
          aria-pressed={value === option.key}
          aria-label={option.title}
          title={option.title}
          onClick={() => onChange(option.key)}
        >
          {option.label}
        </button>
      ))}
    </div>
  );
}

const VIEWS = [
  { key: 'sheet', label: 'Contact sheet' },
  { key: 'cards', label: 'Details' },
];

/**
 * The job's photos: a contact sheet (or the detailed cards), sorted, filtered by state, in
 * the size last chosen in this browser, and the lightbox over the photos shown.
 */
function Photos({ images }) {
  const [filter, setFilter] = useState('all');
  const [prefs, setPrefs] = useState(loadPrefs);
  const choose = (change) => {
    const next = { ...prefs, ...change };
    setPrefs(next);
    savePrefs(next);
  };
  const [open, setOpen] = useState(null); // image id shown in the lightbox
  const names = useMemo(() => {
    const distinct = distinctNames(images.map((image) => image.filename));
    return Object.fromEntries(images.map((image, index) => [image.image_id, distinct[index]]));
  }, [images]);
  const shown = useMemo(() => sortImages(filterImages(images, filter), prefs.sort, names), [images, filter, prefs.sort, names]);
  // The cards' lightbox compares results; the sheet's goes through every photo shown.
  const browsed = prefs.view === 'cards' ? shown.filter((image) => image.status === 'succeeded') : shown;
  const openIndex = browsed.findIndex((image) => image.image_id === open);
  return (
    <section aria-labelledby="gallery-title">
      <div className="gallery-head">
        <h2 id="gallery-title" className="gallery-title">
          Photos <span className="muted">({images.length})</span>
        </h2>
        {images.length > 0 && <StatusFilter images={images} value={filter} onChange={setFilter} />}
      </div>
      {images.length > 0 && (
        <div className="sheet-controls">
          <Choice label="View" options={VIEWS} value={prefs.view} onChange={(view) => choose({ view })} />
          <label className="sheet-sort">
            Sort by{' '}
            <select value={prefs.sort} onChange={(event) => choose({ sort: event.target.value })}>
              {SORTS.map((sort) => (
                <option key={sort.key} value={sort.key}>
                  {sort.label}
                </option>
              ))}
            </select>
          </label>
          {prefs.view === 'sheet' && (
            <Choice
              label="Thumbnail size"
              options={SIZES.map((size) => ({ key: size.key, label: size.key, title: `${size.label} thumbnails` }))}
              value={prefs.size}
              onChange={(size) => choose({ size })}
            />
          )}
        </div>
      )}
      {images.length === 0 && <p className="muted">This job has no photos.</p>}
      {images.length > 0 && shown.length === 0 && <p className="muted">No photos in this state.</p>}
      {shown.length > 0 && prefs.view === 'sheet' && <ContactSheet images={shown} names={names} size={prefs.size} onOpen={setOpen} />}
      {shown.length > 0 && prefs.view === 'cards' && <Gallery images={shown} names={names} onCompare={setOpen} />}
      {openIndex >= 0 && (
        <Lightbox
          images={browsed}
          names={names}
          index={openIndex}
          onIndex={(index) => setOpen(browsed[index]?.image_id ?? null)}
          onClose={() => setOpen(null)}
        />
      )}
    </section>
  );
}

/** The page at /jobs/<job_id>: live progress, per-image results and downloads. */
export default function JobPage({ jobId, submitted }) {
  const { status, job, error, retrying, updatedAt, retryNow } = useJob(jobId);
  // A 401 (no key in this tab, as in a new tab opened from the email, or a key refused): the
  // key is asked for here, and the job read again with it at once.
  const [apiKey, setApiKey] = useApiKey();
  const needsKey = error?.status === 401;
  const onKey = (key) => {
    setApiKey(key);
    retryNow();
  };
  const keySection = (focusField) => (
    <ApiKeySection apiKey={apiKey} onKey={onKey} refused={apiKey ? error.message : ''} focusField={focusField} />
  );

  useEffect(() => {
    if (job) {
      const done = (job.succeeded || 0) + (job.failed || 0);
      const state = isTerminal(job.status) ? jobStatusText(job.status) : `${done}/${job.total} done`;
      document.title = `${job.name ? `${job.name} · ` : ''}${state} · ImageFlow`;
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

  if (status === 'error' && needsKey) {
    return (
      <div className="page job-page">
        <h1 tabIndex={-1} id="page-title">Enter your API key to see this job</h1>
        <p className="muted job-id-line">
          Job <code className="job-id">{jobId}</code>
        </p>
        {keySection(true)}
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

  return (
    <div className="page job-page">
      <JobName job={job} onRenamed={retryNow} />
      <h1 tabIndex={-1} id="page-title">{HEADINGS[job.status] || 'Your job'}</h1>
      <p className="muted job-id-line">
        Job <code className="job-id">{job.job_id}</code>
      </p>
      {submitted && <SubmittedNotice submitted={submitted} />}
      {needsKey && keySection(false)}
      {error && !needsKey && (
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
      <Photos images={job.images || []} />
    </div>
  );
}
