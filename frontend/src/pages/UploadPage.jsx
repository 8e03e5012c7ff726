import { useEffect, useMemo, useRef, useState } from 'react';
import { SAVED_PREFIX, reserveStepIds } from '../components/OperationsEditor.jsx';
import useSavedPresets from '../hooks/useSavedPresets.js';
import Notice from '../components/Notice.jsx';
import ApiKeySection from '../components/ApiKeySection.jsx';
import EmailSection from '../components/upload/EmailSection.jsx';
import EstimatePanel from '../components/upload/EstimatePanel.jsx';
import RefusedRows, { serverRows } from '../components/upload/RefusedRows.jsx';
import PhotosSection from '../components/upload/PhotosSection.jsx';
import ProblemSummary from '../components/upload/ProblemSummary.jsx';
import ScriptPanel from '../components/upload/ScriptPanel.jsx';
import StepsSection from '../components/upload/StepsSection.jsx';
import SubmitArea from '../components/upload/SubmitArea.jsx';
import useApiKey from '../hooks/useApiKey.js';
import useChosenPhotos from '../hooks/useChosenPhotos.js';
import useEstimate from '../hooks/useEstimate.js';
import useServerOptions from '../hooks/useServerOptions.js';
import useSubmitJob from '../hooks/useSubmitJob.js';
import { DEFAULT_LIMITS, parseUrlList } from '../lib/files.js';
import { checkForm, presetLogoInputId, presetLogoNames, stepErrorsFromDetails, stepSummary } from '../lib/formProblems.js';
import { loadChoice, saveChoice } from '../lib/savedWork.js';

const NO_PROBLEMS = { summary: [], steps: {}, presetLogos: {}, email: '' };

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
  const [apiKey, setApiKey] = useApiKey();
  // The caller's saved presets, read once the server says whether a key is needed and it is there.
  const saved = useSavedPresets(server.status === 'ready' && (!server.apiKeysRequired || Boolean(apiKey)));
  const [kept] = useState(savedChoice);
  const [chosen, setChoice] = useState({ mode: kept.mode, preset: kept.preset, steps: kept.steps });

  // The built-in presets, then the caller's own.
  const presets = useMemo(
    () => ({ ...(server.presets || {}), ...Object.fromEntries(saved.presets.map((p) => [`${SAVED_PREFIX}${p.name}`, p.operations])) }),
    [server.presets, saved.presets],
  );
  const choice = withDefaults(chosen, presets);
  const [email, setEmail] = useState(kept.email);
  useEffect(() => saveChoice({ ...chosen, email }), [chosen, email]);
  const [problems, setProblems] = useState(NO_PROBLEMS);
  const summaryRef = useRef(null);
  // Where the photos come from: files picked here, or image addresses the server imports.
  const [source, setSource] = useState('files');
  const [urlText, setUrlText] = useState('');
  const [csvFile, setCsvFile] = useState(null);
  const parsedUrls = useMemo(() => parseUrlList(urlText), [urlText]);
  // The logo file of each overlay step, by step id (files cannot be kept with the saved steps).
  const [overlayFiles, setOverlayFiles] = useState({});
  const onOverlayFile = (stepId, file) => setOverlayFiles((current) => ({ ...current, [stepId]: file }));
  // The logo files of a preset's overlay operations, by preset and the file name they use: a
  // saved preset keeps the name only, so the file is asked for again when the preset is used.
  const [presetLogos, setPresetLogos] = useState({});
  const chosenPresetLogos = (choice.mode === 'preset' && presetLogos[choice.preset]) || {};
  const onPresetLogo = (name, file) => {
    const preset = choice.preset;
    setPresetLogos((current) => ({ ...current, [preset]: { ...(current[preset] || {}), [name]: file } }));
    // the problem said beside this logo (and in the summary) is solved once a file is picked
    const index = presetLogoNames(presets[preset]).indexOf(name);
    if (file) {
      setProblems((current) => {
        const { [name]: solved, ...others } = current.presetLogos || {};
        return { ...current, presetLogos: others, summary: current.summary.filter((p) => p.key !== `preset-logo-${index}`) };
      });
    }
  };
  const { estimate, run: runEstimate } = useEstimate();

  const operationsByName = useMemo(
    () => Object.fromEntries((server.operations || []).map((operation) => [operation.op, operation])),
    [server.operations],
  );

  const addFiles = async (files) => {
    if (await photos.add(files)) setProblems((p) => ({ ...p, summary: p.summary.filter((s) => s.key !== 'files') }));
  };

  // The server's reasons for refusing steps go beside those steps, said once, with the
  // summary linking to them. False when the error is about something else.
  const showStepErrors = (error) => {
    const steps = error.status === 422 && choice.mode === 'custom' ? stepErrorsFromDetails(error.details, choice.steps, operationsByName) : {};
    if (!Object.keys(steps).length) return false;
    setProblems((current) => ({ ...current, summary: stepSummary(choice.steps, steps), steps }));
    requestAnimationFrame(() => summaryRef.current?.focus());
    return true;
  };

  const { upload, uploading, checking, sendingUrls, busy, interrupted, keyRefused, errorRef, submit, resume, discard, cancel, pause, unpause, noteKeyProblem, clearKeyRefused } =
    useSubmitJob({ limits, showStepErrors });
  const needsKey = Boolean(server.apiKeysRequired) || Boolean(keyRefused);
  const onKey = (key) => {
    setApiKey(key);
    clearKeyRefused();
  };

  // What checkForm needs besides the photos and email: the steps' or the preset's logo files.
  const logoInputs = {
    operationsByName,
    overlayFiles,
    presetOperations: choice.mode === 'preset' ? presets[choice.preset] : null,
    presetLogoFiles: chosenPresetLogos,
  };

  // The request both the estimate and the job send: the steps (or preset) and the logo files
  // (checked.overlays: the custom steps' or the preset's, under the names the operations use).
  const jobRequest = (checked) => {
    const savedPreset = choice.mode === 'preset' && choice.preset.startsWith(SAVED_PREFIX);
    return savedPreset
      ? { preset: null, operations: presets[choice.preset], overlays: checked.overlays }
      : { preset: choice.mode === 'preset' ? choice.preset : null, operations: checked.operations, overlays: checked.overlays };
  };
  const logoSignature = [...Object.values(overlayFiles), ...Object.values(chosenPresetLogos)].map((f) => f?.name).join(',');
  const estimateSignature = `${photos.items.map((item) => item.id).join(',')}|${JSON.stringify(choice.mode === 'custom' ? choice.steps : choice.preset)}|${logoSignature}`;

  const onEstimate = () => {
    const checked = checkForm({ items: photos.items, choice, email: '', ...logoInputs });
    if (checked.summary.length) {
      setProblems(checked);
      requestAnimationFrame(() => summaryRef.current?.focus());
      return;
    }
    runEstimate({ files: photos.items.map((item) => item.file), request: jobRequest(checked), signature: estimateSignature, limits });
  };
  useEffect(() => {
    if (estimate.status === 'error') noteKeyProblem(estimate.error);
  }, [estimate]);

  // "Save these steps as a preset": the steps are checked here, then by the server. A logo
  // file is kept by its name only: the preset asks for the file again when it is used.
  const onSavePreset = async (name) => {
    const checked = checkForm({ items: [{}], choice: { ...choice, mode: 'custom' }, email: '', operationsByName, overlayFiles, needLogoFiles: false });
    if (Object.keys(checked.steps).length) {
      setProblems((current) => ({ ...current, steps: checked.steps }));
      return { ok: false, message: 'Fix the steps marked below first.' };
    }
    try {
      await saved.save(name, checked.operations);
      return { ok: true };
    } catch (error) {
      showStepErrors(error);
      return { ok: false, message: error.message };
    }
  };

  const onDeletePreset = async (name) => {
    try {
      await saved.remove(name);
      setChoice((current) => ({ ...current, preset: null }));
    } catch {
      // still listed: the user can try again
    }
  };

  // The job as the scripts would send it: the steps as they stand (a step still missing a value
  // shows as it is), a saved preset as its steps, the logo files by the names the steps use.
  // Only once the server's operations are known (kept steps are restored before), and only
  // steps of operations it has.
  const scriptReady = server.status === 'ready' && (choice.mode !== 'custom' || choice.steps.every((step) => operationsByName[step.op]));
  const script = !scriptReady ? null : (() => {
    const checked = checkForm({ items: [{}], choice, email: '', ...logoInputs, needLogoFiles: false });
    const savedPreset = choice.mode === 'preset' && choice.preset.startsWith(SAVED_PREFIX);
    const builtIn = choice.mode === 'preset' && !savedPreset;
    const operations = choice.mode === 'custom' ? checked.operations : savedPreset ? presets[choice.preset] : null;
    const overlays = choice.mode === 'custom' ? checked.overlays.map((file) => file.name) : presetLogoNames(presets[choice.preset]);
    return { preset: builtIn ? choice.preset : null, operations, overlays };
  })();

  // The problems of an import by address, added to the form's.
  const checkUrls = (checked) => {
    if (!csvFile && !parsedUrls.urls.length) {
      checked.summary.unshift({ key: 'urls', target: 'url-list', text: 'Paste at least one image address, or choose a CSV file.' });
    } else if (!csvFile && parsedUrls.urls.length > limits.max_urls_per_job) {
      checked.summary.unshift({ key: 'urls', target: 'url-list', text: `Import at most ${limits.max_urls_per_job} addresses in one job; there are ${parsedUrls.urls.length}.` });
    }
    // The server fetches a URL job's images itself: a logo must be an address too.
    for (const step of choice.mode === 'custom' ? choice.steps : []) {
      if (step.op === 'overlay' && step.values._source !== 'url') {
        checked.steps[step.id] = { ...(checked.steps[step.id] || {}), image: 'must be a web address when the photos come from web addresses' };
      }
    }
    if (Object.keys(checked.steps).length) {
      checked.summary = [...checked.summary.filter((p) => !p.key.startsWith('step-')), ...stepSummary(choice.steps, checked.steps)];
    }
    // likewise a preset's logo file
    if (choice.mode === 'preset') {
      checked.overlays = [];
      presetLogoNames(presets[choice.preset]).forEach((name, index) => {
        checked.presetLogos[name] = `“${name}” is a file, and a job of web addresses cannot send one. Send photos from this computer, or choose “Customise this preset” and give the logo's web address.`;
        checked.summary = [...checked.summary.filter((p) => p.key !== `preset-logo-${index}`), { key: `preset-logo-${index}`, target: presetLogoInputId(index), text: `The preset's logo “${name}” is a file: use its web address to import by address.` }];
      });
    }
  };

  // The form is checked here; useSubmitJob sends it.
  const onSubmit = (event) => {
    event.preventDefault();
    if (busy) return;
    const byUrl = source === 'urls';
    const checked = checkForm({ items: photos.items, choice, email, ...logoInputs, needsPhotos: !byUrl });
    if (byUrl) checkUrls(checked);
    if (needsKey && !apiKey) checked.summary.unshift({ key: 'api-key', target: 'api-key', text: 'Enter your API key: this server asks for one.' });
    // A saved preset is sent as its operations; the server knows only the built-in names.
    const savedPreset = choice.mode === 'preset' && choice.preset.startsWith(SAVED_PREFIX);
    if (savedPreset && !presets[choice.preset]) checked.summary.push({ key: 'preset', target: 'ops-title', text: 'Choose a preset.' });
    setProblems(checked);
    if (checked.summary.length) {
      requestAnimationFrame(() => summaryRef.current?.focus());
      return;
    }
    const job = { request: jobRequest(checked), email: checked.trimmedEmail };
    if (!byUrl) submit({ ...job, items: photos.items, notAdded: photos.notAdded.refused.length });
    else if (csvFile) submit({ ...job, csv: csvFile });
    else submit({ ...job, urls: parsedUrls.urls, lines: parsedUrls.lines, notAdded: parsedUrls.refused.length });
  };

  // The server's refusals of addresses (400 no_valid_urls), line by line.
  const urlErrorRows =
    source === 'urls' && upload.status === 'error' && Array.isArray(upload.error?.details) && upload.error.details.some((d) => d && 'url' in d)
      ? serverRows(upload.error.details, csvFile ? null : parsedUrls.lines)
      : null;

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
        {needsKey && <ApiKeySection apiKey={apiKey} onKey={onKey} refused={keyRefused} />}
        <PhotosSection
          photos={{ ...photos, add: addFiles }}
          limits={limits}
          disabled={uploading || sendingUrls}
          fileStates={upload.status === 'uploading' || upload.status === 'error' || upload.status === 'cancelled' ? upload.files : null}
          source={source}
          onSource={setSource}
          urlImport={{ text: urlText, onText: setUrlText, csv: csvFile, onCsv: setCsvFile, parsed: parsedUrls }}
        />
        <StepsSection
          server={server}
          presets={presets}
          choice={choice}
          onChange={setChoice}
          errors={problems.steps}
          onSavePreset={saved.available ? onSavePreset : null}
          onDeletePreset={saved.available ? onDeletePreset : null}
          overlayFiles={overlayFiles}
          onOverlayFile={onOverlayFile}
          presetLogoFiles={chosenPresetLogos}
          presetLogoErrors={problems.presetLogos}
          onPresetLogo={onPresetLogo}
        />
        <EmailSection email={email} onChange={setEmail} error={problems.email} disabled={uploading} />
        {source === 'files' && script && (
          <ScriptPanel {...script} email={email.trim()} needsKey={needsKey} files={photos.items.map((item) => item.file)} />
        )}
        <SubmitArea
          upload={upload}
          count={photos.items.length}
          ready={server.status === 'ready' && !checking && !sendingUrls}
          label={sendingUrls ? 'Sending the addresses…' : source === 'urls' ? (csvFile ? 'Import the images of the CSV' : parsedUrls.urls.length ? `Import ${parsedUrls.urls.length === 1 ? '1 image' : `${parsedUrls.urls.length} images`}` : 'Import images') : null}
          showErrorDetails={!urlErrorRows}
          errorExtra={urlErrorRows && <RefusedRows rows={urlErrorRows} title="The server refused these addresses:" testId="server-refused-rows" />}
          onCancel={cancel}
          onPause={pause}
          onUnpause={unpause}
          errorRef={errorRef}
          interrupted={!uploading && !photos.restoring ? interrupted : null}
          onResume={() => resume(photos.items)}
          onDiscard={discard}
        >
          <EstimatePanel
            estimate={estimate}
            stale={estimate.signature !== estimateSignature}
            onEstimate={onEstimate}
            unavailable={
              source === 'urls'
                ? 'An estimate measures photos you send; imported addresses are fetched only when the job runs.'
                : !photos.items.length
                  ? 'Add photos to get an estimate.'
                  : ''
            }
          />
        </SubmitArea>
      </form>
    </div>
  );
}
