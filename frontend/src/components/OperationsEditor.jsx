import { useState } from 'react';
import { capitalize, formatBytes, formatName } from '../lib/format.js';
import { fieldHelp, fieldLabel, operationHelp, optionLabel } from '../lib/wording.js';
import { describeOperation, enumAllowsEmpty, initialValues, rangeText, valuesFromOperation } from '../lib/schema.js';
import { presetLogoInputId, presetLogoNames } from '../lib/formProblems.js';

const PRESET_BLURBS = {
  thumbnail: 'Small previews for galleries and lists.',
  web: 'Sized and compressed for web pages.',
  compress: 'Much smaller files, same size in pixels.',
};

let nextStepId = 1;

/** Steps read back from storage keep their ids: new ones must not reuse them. */
export function reserveStepIds(steps) {
  for (const step of steps) if (Number.isInteger(step.id)) nextStepId = Math.max(nextStepId, step.id + 1);
}

/** A new step for the custom list, with the operation's default values. */
export function newStep(operation, op = null) {
  const values = op ? valuesFromOperation(operation, op) : initialValues(operation);
  // An overlay's logo is a file to pick unless the step already names a web address.
  if (operation.op === 'overlay') values._source = /^https?:\/\//i.test(values.image || '') ? OVERLAY_SOURCES.url : OVERLAY_SOURCES.file;
  return { id: nextStepId++, op: operation.op, values };
}

function ListInput({ id, field, value, error, hintId, errorId, onChange }) {
  if (field.item.kind === 'enum') {
    const chosen = new Set(value || []);
    const toggle = (option, on) => {
      const next = new Set(chosen);
      if (on) next.add(option);
      else next.delete(option);
      onChange(field.item.options.map(String).filter((o) => next.has(o)));
    };
    return (
      <fieldset className="field field-list" aria-describedby={[hintId, errorId].filter(Boolean).join(' ') || undefined}>
        <legend>
          {field.label}
          {field.required ? '' : <span className="muted"> (optional)</span>}
        </legend>
        <div className="choice-row">
          {field.item.options.map((option) => {
            const optionId = `${id}-${option}`;
            return (
              <span key={String(option)} className="choice">
                <input
                  type="checkbox"
                  id={optionId}
                  checked={chosen.has(String(option))}
                  onChange={(e) => toggle(String(option), e.target.checked)}
                />
                <label htmlFor={optionId}>{optionLabel(field.name, option, formatName)}</label>
              </span>
            );
          })}
        </div>
        {field.maxItems !== null && (
          <p className="field-hint" id={hintId}>
            Pick up to {field.maxItems}.
          </p>
        )}
        {error && (
          <p className="field-error" id={errorId}>
            {field.label} {error}.
          </p>
        )}
      </fieldset>
    );
  }
  return (
    <input
      id={id}
      type="text"
      inputMode="numeric"
      value={value}
      placeholder="e.g. 400, 800, 1600"
      aria-describedby={[hintId, errorId].filter(Boolean).join(' ') || undefined}
      aria-invalid={error ? true : undefined}
      onChange={(e) => onChange(e.target.value)}
    />
  );
}

// "1 to 100" as "Between 1 and 100.", "at most 50" as "At most 50.".
function rangeSentence(range) {
  if (!range) return '';
  return range.startsWith('at ') ? `${capitalize(range)}.` : `Between ${range.replace(' to ', ' and ')}.`;
}

/** Where an overlay step's logo comes from: a file sent with the photos, or a web address. */
export const OVERLAY_SOURCES = { file: 'file', url: 'url' };
const LOGO_TYPES = 'image/png,image/webp';

/**
 * The overlay step's logo: a file picked here (sent in the job's `overlay` field, named by
 * its file name) or an http(s) address the server fetches. `source` is the step's `_source`.
 */
function OverlayImageInput({ id, label, source, value, file, error, onSource, onText, onFile }) {
  const errorId = error ? `${id}-error` : undefined;
  const hintId = `${id}-hint`;
  return (
    <fieldset className="field overlay-image" aria-describedby={[hintId, errorId].filter(Boolean).join(' ')}>
      <legend>{label}</legend>
      <div className="choice-row">
        <span className="choice">
          <input type="radio" id={`${id}-from-file`} name={`${id}-source`} checked={source !== OVERLAY_SOURCES.url} onChange={() => onSource(OVERLAY_SOURCES.file)} />
          <label htmlFor={`${id}-from-file`}>A file from this computer</label>
        </span>
        <span className="choice">
          <input type="radio" id={`${id}-from-url`} name={`${id}-source`} checked={source === OVERLAY_SOURCES.url} onChange={() => onSource(OVERLAY_SOURCES.url)} />
          <label htmlFor={`${id}-from-url`}>An address (URL)</label>
        </span>
      </div>
      {source === OVERLAY_SOURCES.url ? (
        <>
          <label htmlFor={id} className="visually-hidden">
            Address of the logo
          </label>
          <input key="url" id={id} type="url" inputMode="url" placeholder="https://example.com/logo.png" value={value} aria-invalid={error ? true : undefined} aria-describedby={[hintId, errorId].filter(Boolean).join(' ')} onChange={(e) => onText(e.target.value)} />
          <p className="field-hint" id={hintId}>
            The server downloads it once for the whole job.
          </p>
        </>
      ) : (
        <>
          <label htmlFor={id} className="visually-hidden">
            Logo file
          </label>
          <input key="file" id={id} type="file" accept={LOGO_TYPES} data-testid="overlay-file" aria-invalid={error ? true : undefined} aria-describedby={[hintId, errorId].filter(Boolean).join(' ')} onChange={(e) => onFile(e.target.files?.[0] || null)} />
          <p className="field-hint" id={hintId}>
            {file ? `Chosen: ${file.name} (${formatBytes(file.size)}). It is sent with the photos.` : 'A PNG or WebP; it is sent with the photos.'}
          </p>
        </>
      )}
      {error && (
        <p className="field-error" id={errorId}>
          {label} {error}.
        </p>
      )}
    </fieldset>
  );
}

/**
 * The logo files a preset's overlay operations name by file name (a saved preset keeps the
 * name, not the file): one file input each, labelled with that name. `files` maps a name
 * to the File picked for it, `errors` a name to its problem.
 */
function PresetLogoInputs({ preset, names, files = {}, errors = {}, onFile }) {
  return (
    <div className="preset-logos" role="group" aria-labelledby="preset-logos-title">
      <p className="preset-logos-title" id="preset-logos-title">
        “{preset}” puts {names.length === 1 ? 'a logo' : 'logos'} on the photos: choose {names.length === 1 ? 'its file' : 'their files'} to send with them.
      </p>
      {names.map((name, index) => {
        const id = presetLogoInputId(index);
        const file = files[name];
        const error = errors[name];
        const describedBy = [`${id}-hint`, error ? `${id}-error` : null].filter(Boolean).join(' ');
        return (
          <div className="field" key={name}>
            <label htmlFor={id}>Logo file “{name}”</label>
            <input id={id} type="file" accept={LOGO_TYPES} aria-invalid={error ? true : undefined} aria-describedby={describedBy} onChange={(e) => onFile(name, e.target.files?.[0] || null)} />
            <p className="field-hint" id={`${id}-hint`}>
              {file
                ? `Chosen: ${file.name} (${formatBytes(file.size)}). It is sent with the photos as “${name}”, the name the preset uses.`
                : 'A PNG or WebP. The preset keeps only the name, so the file is asked for each time the page is opened.'}
            </p>
            {error && (
              <p className="field-error" id={`${id}-error`}>
                {error}
              </p>
            )}
          </div>
        );
      })}
    </div>
  );
}

function FieldInput({ stepId, field: schemaField, op, value, error, onChange }) {
  // The page's words for the field, where it has its own.
  const field = { ...schemaField, label: fieldLabel(op, schemaField), description: fieldHelp(op, schemaField) };
  const id = `step-${stepId}-${field.name}`;
  const range = field.kind === 'integer' || field.kind === 'number' ? rangeText(field) : '';
  const listHint =
    field.kind === 'list' && field.item.kind !== 'enum'
      ? `Separate values with commas${field.maxItems !== null ? `, up to ${field.maxItems}` : ''}${rangeText(field.item) ? `; each ${rangeText(field.item)}` : ''}.`
      : '';
  const hint = [field.description, rangeSentence(range), listHint].filter(Boolean).join(' ');
  const hintId = hint || field.kind === 'list' ? `${id}-hint` : undefined;
  const errorId = error ? `${id}-error` : undefined;
  const describedBy = [hintId, errorId].filter(Boolean).join(' ') || undefined;
  const common = { id, 'aria-describedby': describedBy, 'aria-invalid': error ? true : undefined };

  if (field.kind === 'const') return null;
  if (field.kind === 'list' && field.item.kind === 'enum') {
    return <ListInput id={id} field={field} value={value} error={error} hintId={field.maxItems !== null ? hintId : undefined} errorId={errorId} onChange={onChange} />;
  }
  if (field.kind === 'boolean') {
    return (
      <div className="field field-check">
        <input type="checkbox" {...common} checked={Boolean(value)} onChange={(e) => onChange(e.target.checked)} />
        <label htmlFor={id}>{field.label}</label>
        {hint && <p className="field-hint" id={hintId}>{hint}</p>}
      </div>
    );
  }

  let control;
  if (field.kind === 'list') {
    control = <ListInput id={id} field={field} value={value} error={error} hintId={hintId} errorId={errorId} onChange={onChange} />;
  } else if (field.kind === 'enum') {
    const allowEmpty = enumAllowsEmpty(field);
    control = (
      <select {...common} value={value} onChange={(e) => onChange(e.target.value)}>
        {allowEmpty && <option value="">Keep as is</option>}
        {field.options.map((option) => (
          <option key={String(option)} value={String(option)}>
            {optionLabel(field.name, option, formatName)}
          </option>
        ))}
      </select>
    );
  } else if (field.kind === 'integer' || field.kind === 'number') {
    const min = field.minimum ?? (field.exclusiveMinimum !== null && field.kind === 'integer' ? field.exclusiveMinimum + 1 : undefined);
    const max = field.maximum ?? (field.exclusiveMaximum !== null && field.kind === 'integer' ? field.exclusiveMaximum - 1 : undefined);
    control = (
      <input
        {...common}
        type={field.keywords?.length ? 'text' : 'number'}
        inputMode={field.kind === 'integer' ? 'numeric' : 'decimal'}
        min={min}
        max={max}
        step={field.kind === 'integer' ? 1 : field.multipleOf || 'any'}
        value={value}
        placeholder={field.keywords?.length ? `a number or ${field.keywords.join(', ')}` : field.required ? '' : 'auto'}
        onChange={(e) => onChange(e.target.value)}
      />
    );
  } else {
    control = (
      <input {...common} type="text" maxLength={field.maxLength ?? undefined} value={value} onChange={(e) => onChange(e.target.value)} />
    );
  }
  return (
    <div className="field">
      <label htmlFor={id}>
        {field.label}
        {field.required ? '' : <span className="muted"> (optional)</span>}
      </label>
      {control}
      {hint && <p className="field-hint" id={hintId}>{hint}</p>}
      {error && (
        <p className="field-error" id={errorId}>
          {field.label} {error}.
        </p>
      )}
    </div>
  );
}

function StepEditor({ step, index, count, operation, errors, onChange, onMove, onRemove, overlayFile, onOverlayFile }) {
  const titleId = `step-${step.id}-title`;
  return (
    <li className="step" id={`step-${step.id}`} tabIndex={-1}>
      <fieldset aria-labelledby={titleId}>
        <div className="step-head">
          <h4 id={titleId}>
            Step {index + 1}: {operation.title}
          </h4>
          <div className="step-actions">
            <button type="button" className="icon-button" onClick={() => onMove(-1)} disabled={index === 0} aria-label={`Move step ${index + 1} up`}>
              <span aria-hidden="true">↑</span>
            </button>
            <button type="button" className="icon-button" onClick={() => onMove(1)} disabled={index === count - 1} aria-label={`Move step ${index + 1} down`}>
              <span aria-hidden="true">↓</span>
            </button>
            <button type="button" className="icon-button" onClick={onRemove} aria-label={`Remove step ${index + 1} (${operation.title})`}>
              <span aria-hidden="true">×</span>
            </button>
          </div>
        </div>
        {operationHelp(operation) && <p className="field-hint">{operationHelp(operation)}</p>}
        {errors?._step && (
          <p className="field-error" role="alert">
            {errors._step}
          </p>
        )}
        {operation.fields.some((field) => field.kind !== 'const') ? (
          <div className="step-fields">
            {operation.fields.map((field) =>
              step.op === 'overlay' && field.name === 'image' ? (
                <OverlayImageInput
                  key={field.name}
                  id={`step-${step.id}-image`}
                  label={fieldLabel(step.op, field)}
                  source={step.values._source}
                  value={step.values.image ?? ''}
                  file={overlayFile}
                  error={errors?.image}
                  onSource={(source) => onChange({ ...step, values: { ...step.values, _source: source, image: source === OVERLAY_SOURCES.file ? overlayFile?.name || '' : '' } })}
                  onText={(text) => onChange({ ...step, values: { ...step.values, image: text } })}
                  onFile={(file) => {
                    onOverlayFile?.(step.id, file);
                    onChange({ ...step, values: { ...step.values, _source: OVERLAY_SOURCES.file, image: file?.name || '' } });
                  }}
                />
              ) : (
              <FieldInput
                key={field.name}
                stepId={step.id}
                field={field}
                op={step.op}
                value={step.values[field.name]}
                error={errors?.[field.name]}
                onChange={(value) => onChange({ ...step, values: { ...step.values, [field.name]: value } })}
              />
              ),
            )}
          </div>
        ) : (
          <p className="muted">No settings needed.</p>
        )}
      </fieldset>
    </li>
  );
}

/**
 * Choose what happens to the photos: a named preset, or a list of steps built from the
 * operations the server publishes. `choice` is {mode, preset, steps}; `errors` maps a
 * step id to its fields' problems.
 */
/** Key of a saved preset among the built-in ones. */
export const SAVED_PREFIX = 'saved:';

function presetTitle(key) {
  return key.startsWith(SAVED_PREFIX) ? key.slice(SAVED_PREFIX.length) : capitalize(key);
}

/** "Save these steps as a preset": a name and a button; `onSave(name)` resolves with a message. */
function SavePresetForm({ onSave }) {
  const [name, setName] = useState('');
  const [status, setStatus] = useState({ text: '', tone: '' });
  const [busy, setBusy] = useState(false);
  const save = async () => {
    if (!name.trim()) {
      setStatus({ text: 'Give the preset a name.', tone: 'error' });
      return;
    }
    setBusy(true);
    const result = await onSave(name.trim());
    setBusy(false);
    setStatus(result.ok ? { text: `Saved as “${name.trim()}”. It is now among the presets.`, tone: 'ok' } : { text: result.message, tone: 'error' });
  };
  return (
    <div className="save-preset">
      <label htmlFor="save-preset-name">Save these steps as a preset</label>
      <div className="add-step-row">
        <input id="save-preset-name" type="text" maxLength={60} value={name} placeholder="e.g. Shop, small" onChange={(e) => setName(e.target.value)} aria-describedby={status.text ? 'save-preset-status' : undefined} />
        <button type="button" className="button" onClick={save} disabled={busy}>
          Save preset
        </button>
      </div>
      {status.text && (
        <p id="save-preset-status" className={status.tone === 'error' ? 'field-error' : 'field-hint'} role="status">
          {status.text}
        </p>
      )}
    </div>
  );
}

export default function OperationsEditor({
  operations,
  presets,
  choice,
  onChange,
  errors,
  onSavePreset,
  onDeletePreset,
  overlayFiles = {},
  onOverlayFile,
  presetLogoFiles = {},
  presetLogoErrors = {},
  onPresetLogo,
}) {
  const byName = Object.fromEntries(operations.map((operation) => [operation.op, operation]));
  const presetNames = Object.keys(presets || {});
  const [toAdd, setToAdd] = useState(operations[0]?.op || '');
  const logoNames = choice.mode === 'preset' ? presetLogoNames(presets?.[choice.preset]) : [];

  const setMode = (mode) => onChange({ ...choice, mode });
  const setSteps = (steps) => onChange({ ...choice, steps });

  const customise = () => {
    const ops = presets[choice.preset] || [];
    const steps = ops.filter((op) => byName[op.op]).map((op) => newStep(byName[op.op], op));
    // a logo file already picked for the preset goes on with its steps
    for (const step of steps) {
      const file = step.op === 'overlay' ? presetLogoFiles[step.values.image] : null;
      if (file) {
        onOverlayFile?.(step.id, file);
        step.values = { ...step.values, image: file.name };
      }
    }
    onChange({ ...choice, mode: 'custom', steps });
  };

  const addStep = () => {
    if (byName[toAdd]) setSteps([...choice.steps, newStep(byName[toAdd])]);
  };

  const moveStep = (index, delta) => {
    const steps = [...choice.steps];
    const [step] = steps.splice(index, 1);
    steps.splice(index + delta, 0, step);
    setSteps(steps);
  };

  return (
    <div className="operations">
      <fieldset className="mode-switch">
        <legend className="visually-hidden">How to choose the operations</legend>
        {presetNames.length > 0 && (
          <label className={`mode-option${choice.mode === 'preset' ? ' is-selected' : ''}`}>
            <input type="radio" name="mode" value="preset" checked={choice.mode === 'preset'} onChange={() => setMode('preset')} />
            Use a preset
          </label>
        )}
        <label className={`mode-option${choice.mode === 'custom' ? ' is-selected' : ''}`}>
          <input type="radio" name="mode" value="custom" checked={choice.mode === 'custom'} onChange={() => setMode('custom')} />
          Build my own steps
        </label>
      </fieldset>

      {choice.mode === 'preset' && presetNames.length > 0 && (
        <fieldset className="presets">
          <legend className="visually-hidden">Preset</legend>
          {presetNames.map((name) => (
            <label key={name} className={`preset${choice.preset === name ? ' is-selected' : ''}`}>
              <input type="radio" name="preset" value={name} checked={choice.preset === name} onChange={() => onChange({ ...choice, preset: name })} />
              <span className="preset-name">{presetTitle(name)}</span>
              {PRESET_BLURBS[name] && <span className="preset-blurb">{PRESET_BLURBS[name]}</span>}
              {name.startsWith(SAVED_PREFIX) && <span className="preset-blurb">Saved by you.</span>}
              <span className="preset-steps">
                {(presets[name] || []).map((op, i) => (
                  <span key={i} className="preset-step">
                    {describeOperation(op)}
                  </span>
                ))}
              </span>
            </label>
          ))}
          {logoNames.length > 0 && onPresetLogo && (
            <PresetLogoInputs preset={presetTitle(choice.preset)} names={logoNames} files={presetLogoFiles} errors={presetLogoErrors || {}} onFile={onPresetLogo} />
          )}
          <div className="preset-actions">
            <button type="button" className="button button-small button-quiet" onClick={customise}>
              Customise this preset
            </button>
            {onDeletePreset && choice.preset?.startsWith(SAVED_PREFIX) && (
              <button type="button" className="button button-small button-quiet" onClick={() => onDeletePreset(choice.preset.slice(SAVED_PREFIX.length))}>
                Delete “{presetTitle(choice.preset)}”
              </button>
            )}
          </div>
        </fieldset>
      )}

      {choice.mode === 'custom' && (
        <div className="custom">
          {choice.steps.length === 0 ? (
            <p className="muted">No steps yet. Add one below; the steps run in order, top to bottom.</p>
          ) : (
            <ol className="steps">
              {choice.steps.map((step, index) =>
                byName[step.op] ? (
                  <StepEditor
                    key={step.id}
                    step={step}
                    index={index}
                    count={choice.steps.length}
                    operation={byName[step.op]}
                    errors={errors?.[step.id]}
                    onChange={(updated) => setSteps(choice.steps.map((s) => (s.id === step.id ? updated : s)))}
                    onMove={(delta) => moveStep(index, delta)}
                    onRemove={() => setSteps(choice.steps.filter((s) => s.id !== step.id))}
                    overlayFile={overlayFiles[step.id] || null}
                    onOverlayFile={onOverlayFile}
                  />
                ) : null,
              )}
            </ol>
          )}
          <div className="add-step">
            <label htmlFor="add-step-op">Add a step</label>
            <div className="add-step-row">
              <select id="add-step-op" value={toAdd} onChange={(e) => setToAdd(e.target.value)}>
                {operations.map((operation) => (
                  <option key={operation.op} value={operation.op}>
                    {operation.title}
                  </option>
                ))}
              </select>
              <button type="button" className="button" onClick={addStep} disabled={!toAdd}>
                Add step
              </button>
            </div>
          </div>
          {onSavePreset && choice.steps.length > 0 && <SavePresetForm onSave={onSavePreset} />}
        </div>
      )}
    </div>
  );
}
