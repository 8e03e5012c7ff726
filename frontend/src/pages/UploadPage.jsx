import { useEffect, useMemo, useRef, useState } from 'react';
import { reserveStepIds } from '../components/OperationsEditor.jsx';
import Notice from '../components/Notice.jsx';
import EmailSection from '../components/upload/EmailSection.jsx';
import PhotosSection from '../components/upload/PhotosSection.jsx';
import ProblemSummary from '../components/upload/ProblemSummary.jsx';
import StepsSection from '../components/upload/StepsSection.jsx';
import SubmitArea from '../components/upload/SubmitArea.jsx';
import useChosenPhotos from '../hooks/useChosenPhotos.js';
import useServerOptions from '../hooks/useServerOptions.js';
import useUploadQueue from '../hooks/useUploadQueue.js';
import { DEFAULT_LIMITS } from '../lib/files.js';
import { checkForm, stepErrorsFromDetails, stepSummary } from '../lib/formProblems.js';
import { loadChoice, saveChoice } from '../lib/savedWork.js';
import { navigate } from '../lib/router.js';

const NO_PROBLEMS = { summary: [], steps: {}, email: '' };

/** The choice with the server's defaults filled in: the "web" preset if there is one. */
function withDefaults(choice, presets) {
  const names = Object.keys(presets || {});
  const preset = choice.preset ?? (names.includes('web') ? 'web' : names[0] || '');
  return { ...choice, preset, mode: choice.mode ?? (preset ? 'preset' : 'custom') };
}

/** The steps, preset and email of the last visit (savedWork.js), or a fresh start. */
function savedChoice() {
  const saved = loadChoice();
  if (!saved) return { mode: null, preset: null, steps: [], email: '' };
  reserveStepIds(saved.steps);
  return { mode: saved.mode ?? null, preset: saved.preset ?? null, steps: saved.steps, email: typeof saved.email === 'string' ? saved.email : '' };
}

/** The page where photos are chosen, the operations picked, and the job sent. */
export default function UploadPage() {
  const [server, retry] = useServerOptions();
  const limits = server.limits || DEFAULT_LIMITS;
  const photos = useChosenPhotos(limits);
  const [saved] = useState(savedChoice);
  const [chosen, setChoice] = useState({ mode: saved.mode, preset: saved.preset, steps: saved.steps });
  const choice = withDefaults(chosen, server.presets);
  const [email, setEmail] = useState(saved.email);
  useEffect(() => saveChoice({ ...chosen, email }), [chosen, email]);
  const [problems, setProblems] = useState(NO_PROBLEMS);
  const { upload, uploading, start, cancel, reset } = useUploadQueue();
  const summaryRef = useRef(null);
  const uploadErrorRef = useRef(null);

  const operationsByName = useMemo(
    () => Object.fromEntries((server.operations || []).map((operation) => [operation.op, operation])),
    [server.operations],
  );

  const addFiles = async (files) => {
    if (await photos.add(files)) setProblems((p) => ({ ...p, summary: p.summary.filter((s) => s.key !== 'files') }));
  };

  const onSubmit = async (event) => {
    event.preventDefault();
    if (uploading) return;
    const checked = checkForm({ items: photos.items, choice, email, operationsByName });
    setProblems(checked);
    if (checked.summary.length) {
      requestAnimationFrame(() => summaryRef.current?.focus());
      return;
    }
    const { job, error } = await start({
      files: photos.items.map((item) => item.file),
      preset: choice.mode === 'preset' ? choice.preset : null,
      operations: checked.operations,
      email: checked.trimmedEmail,
    });
    if (job) {
      navigate(`/jobs/${encodeURIComponent(job.job_id)}`, {
        submitted: { count: (job.images || []).length, rejected: job.rejected || [], email: checked.trimmedEmail, notAdded: photos.notAdded.refused.length },
      });
    } else if (error) {
      // Reasons the server gives for steps go beside those steps, said once, with the
      // summary linking to them; any other refusal is shown by the send button.
      const steps = error.status === 422 && choice.mode === 'custom' ? stepErrorsFromDetails(error.details, choice.steps, operationsByName) : {};
      if (Object.keys(steps).length) {
        reset();
        setProblems((current) => ({ ...current, summary: stepSummary(choice.steps, steps), steps }));
        requestAnimationFrame(() => summaryRef.current?.focus());
      } else {
        requestAnimationFrame(() => uploadErrorRef.current?.focus());
      }
    }
  };

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
        <ProblemSummary problems={problems.summary} focusRef={summaryRef} />
        <PhotosSection photos={{ ...photos, add: addFiles }} limits={limits} disabled={uploading} />
        <StepsSection server={server} choice={choice} onChange={setChoice} errors={problems.steps} />
        <EmailSection email={email} onChange={setEmail} error={problems.email} disabled={uploading} />
        <SubmitArea upload={upload} count={photos.items.length} ready={server.status === 'ready'} onCancel={cancel} errorRef={uploadErrorRef} />
      </form>
    </div>
  );
}
