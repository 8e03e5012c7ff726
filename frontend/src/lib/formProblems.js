// What is wrong with the upload form, found before anything is sent: the summary lines
// at the top of the form, and each step's problems placed on its fields.
import { buildOperation } from './schema.js';
import { sentence } from './format.js';

const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

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

/** The summary line of each step that has problems, linking to that step. */
export function stepSummary(steps, stepErrors) {
  return steps
    .map((step, index) => (stepErrors[step.id] ? { key: `step-${step.id}`, target: `step-${step.id}`, text: `Check the settings of step ${index + 1}.` } : null))
    .filter(Boolean);
}

/**
 * The logo files of the overlay steps (`overlayFiles` maps a step id to its File) as they
 * are sent: `{files, names: {stepId: name}}`, each file once, under a name no other logo of
 * the job has (the server tells them apart by name). A step whose logo is a web address or
 * has no file yet is left out.
 */
export function overlayUploads(steps, overlayFiles = {}) {
  const files = [];
  const names = {};
  const used = new Map();
  for (const step of steps) {
    const file = step.op === 'overlay' && step.values._source !== 'url' ? overlayFiles[step.id] : null;
    if (!file) continue;
    const already = used.get(file);
    if (already) {
      names[step.id] = already;
      continue;
    }
    let name = file.name || 'logo.png';
    for (let n = 2; files.some((f) => f.name === name); n += 1) name = `${n}-${file.name}`;
    const sent = name === file.name ? file : new File([file], name, { type: file.type });
    files.push(sent);
    used.set(file, name);
    names[step.id] = name;
  }
  return { files, names };
}

/**
 * A logo step's own problem, before the schema's: no file picked, or not a web address.
 * `needFile` false (saving the steps as a preset) asks only for the file's name, which is
 * what a preset keeps.
 */
function overlayProblem(step, overlayFiles, needFile = true) {
  if (step.op !== 'overlay') return '';
  const image = String(step.values.image || '').trim();
  if (step.values._source === 'url') return image && !/^https?:\/\/\S+$/i.test(image) ? 'must be a web address starting with https://' : '';
  if (overlayFiles[step.id] || (image && !needFile)) return '';
  return image ? `file “${image}” must be chosen again (picked files are not kept after the page is left)` : 'needs a file: choose a PNG or WebP';
}

/**
 * The logo files a preset's overlay operations name (its `image`s that are not web
 * addresses), each once, in order: the files to send with a job that uses the preset.
 */
export function presetLogoNames(operations) {
  const names = (Array.isArray(operations) ? operations : [])
    .filter((op) => op?.op === 'overlay' && typeof op.image === 'string' && op.image && !/^https?:\/\//i.test(op.image))
    .map((op) => op.image);
  return [...new Set(names)];
}

/** The id of the file input of a preset's `index`-th logo (presetLogoNames). */
export function presetLogoInputId(index) {
  return `preset-logo-${index}`;
}

/**
 * A preset's logo files as they are sent: `{files, errors: {name: problem}}`. `chosen` maps
 * each name the preset uses to the File picked for it; the server finds a logo by its file
 * name (the multipart file name is the operation's `image`), so a file picked under another
 * name is sent under the preset's.
 */
function presetLogoUploads(operations, chosen = {}) {
  const files = [];
  const errors = {};
  for (const name of presetLogoNames(operations)) {
    const file = chosen[name];
    if (!file) errors[name] = `Choose the logo file for “${name}”: this preset puts it on every photo, and a picked file is not kept with the preset.`;
    else files.push(file.name === name ? file : new File([file], name, { type: file.type }));
  }
  return { files, errors };
}

/**
 * Checks the form: `{summary: [{key, text, target?}], steps: {stepId: {field: problem}},
 * presetLogos: {name: problem}, email, operations, overlays}`; `operations` is the list to
 * send for custom steps (null for a preset), `overlays` the logo files the steps or the
 * preset name. A preset is checked with its operations (`presetOperations`) and the logo
 * files picked for it by name (`presetLogoFiles`). `needLogoFiles` false (saving the steps
 * as a preset) asks only for the logos' names.
 */
export function checkForm({ items, choice, email, operationsByName, overlayFiles = {}, needsPhotos = true, presetOperations = null, presetLogoFiles = {}, needLogoFiles = true }) {
  const summary = [];
  let steps = {};
  let presetLogos = {};
  let operations = null;
  let overlays = [];
  if (needsPhotos && !items.length) summary.push({ key: 'files', target: 'photos-title', text: 'Add at least one photo.' });
  if (choice.mode === 'custom') {
    if (!choice.steps.length) summary.push({ key: 'steps', target: 'ops-title', text: 'Add at least one step, or use a preset.' });
    const logos = overlayUploads(choice.steps, overlayFiles);
    overlays = logos.files;
    operations = choice.steps.map((step) => {
      const { value, errors } = buildOperation(operationsByName[step.op], step.values);
      const logoProblem = overlayProblem(step, overlayFiles, needLogoFiles);
      if (logoProblem) errors.image = logoProblem;
      if (logos.names[step.id]) value.image = logos.names[step.id];
      if (Object.keys(errors).length) steps[step.id] = errors;
      return value;
    });
    summary.push(...stepSummary(choice.steps, steps));
  } else if (!choice.preset) {
    summary.push({ key: 'preset', target: 'ops-title', text: 'Choose a preset.' });
  } else {
    const logos = presetLogoUploads(presetOperations, presetLogoFiles);
    overlays = logos.files;
    presetLogos = logos.errors;
    presetLogoNames(presetOperations).forEach((name, index) => {
      if (presetLogos[name]) summary.push({ key: `preset-logo-${index}`, target: presetLogoInputId(index), text: `Choose the logo file “${name}” the preset uses.` });
    });
  }
  const trimmed = email.trim();
  const emailError = trimmed && !EMAIL_RE.test(trimmed) ? 'Enter a whole email address, like name@example.com, or leave it empty.' : '';
  if (emailError) summary.push({ key: 'email', target: 'email', text: emailError });
  return { summary, steps, presetLogos, email: emailError, operations, overlays, trimmedEmail: trimmed };
}
