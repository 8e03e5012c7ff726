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
 * Checks the form: `{summary: [{key, text, target?}], steps: {stepId: {field: problem}},
 * email, operations}`; `operations` is the list to send for custom steps (null for a preset).
 */
export function checkForm({ items, choice, email, operationsByName }) {
  const summary = [];
  let steps = {};
  let operations = null;
  if (!items.length) summary.push({ key: 'files', target: 'photos-title', text: 'Add at least one photo.' });
  if (choice.mode === 'custom') {
    if (!choice.steps.length) summary.push({ key: 'steps', target: 'ops-title', text: 'Add at least one step, or use a preset.' });
    operations = choice.steps.map((step) => {
      const { value, errors } = buildOperation(operationsByName[step.op], step.values);
      if (Object.keys(errors).length) steps[step.id] = errors;
      return value;
    });
    summary.push(...stepSummary(choice.steps, steps));
  } else if (!choice.preset) {
    summary.push({ key: 'preset', target: 'ops-title', text: 'Choose a preset.' });
  }
  const trimmed = email.trim();
  const emailError = trimmed && !EMAIL_RE.test(trimmed) ? 'Enter a whole email address, like name@example.com, or leave it empty.' : '';
  if (emailError) summary.push({ key: 'email', target: 'email', text: emailError });
  return { summary, steps, email: emailError, operations, trimmedEmail: trimmed };
}
