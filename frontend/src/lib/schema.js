// Turns the operations' published JSON Schema (pydantic's output for a list of a
// discriminated union on "op") into form descriptions the editor renders, and turns the
// form's values back into operations. The page offers exactly what the schema allows:
// an operation whose required fields the editor cannot render is left out.

import { capitalize, formatBytes, formatName } from './format.js';

const MAX_REF_DEPTH = 20;

function resolveRef(root, node, depth = 0) {
  if (!node || typeof node !== 'object' || !node.$ref) return node;
  if (depth > MAX_REF_DEPTH) throw new Error(`schema reference loop at ${node.$ref}`);
  const ref = node.$ref;
  if (!ref.startsWith('#/')) throw new Error(`unsupported schema reference ${ref}`);
  let target = root;
  for (const raw of ref.slice(2).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    target = target?.[key];
  }
  if (!target) throw new Error(`schema reference ${ref} not found`);
  // Sibling keywords next to $ref (title, default, description) refine the target.
  const { $ref: _ignored, ...siblings } = node;
  return resolveRef(root, { ...target, ...siblings }, depth + 1);
}

/** Turn a label like "max_width" or "maxWidth" into "Max width" when the schema has no title. */
export function humanize(name) {
  const words = String(name)
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/[_-]+/g, ' ')
    .trim()
    .toLowerCase();
  return capitalize(words);
}

// pydantic titles a field "max_bytes" as "Max Bytes"; the page says "Max bytes".
function autoTitle(name) {
  return String(name)
    .split('_')
    .map(capitalize)
    .join(' ');
}

/** Docstring-style text ("``cover`` fills the box") as plain text for the page. */
export function cleanText(text) {
  return String(text || '')
    .replace(/``([^`]*)``/g, '“$1”')
    .replace(/\s*\n\s*/g, ' ')
    .trim();
}

function scalarItem(root, rawItem) {
  const item = resolveRef(root, rawItem || {});
  if (Array.isArray(item.enum)) return { kind: 'enum', options: item.enum.filter((v) => v !== null) };
  if (item.type === 'integer' || item.type === 'number') {
    return {
      kind: item.type,
      minimum: item.minimum ?? null,
      maximum: item.maximum ?? null,
      exclusiveMinimum: typeof item.exclusiveMinimum === 'number' ? item.exclusiveMinimum : null,
      exclusiveMaximum: typeof item.exclusiveMaximum === 'number' ? item.exclusiveMaximum : null,
    };
  }
  return null;
}

/** One property schema as a field: {kind: integer|number|boolean|enum|string|const|unsupported}. */
function describeField(root, name, rawProp, required) {
  let prop = resolveRef(root, rawProp);
  let nullable = false;
  let keywords = [];
  const union = prop.anyOf || prop.oneOf;
  if (union && !prop.type && !prop.enum && prop.const === undefined) {
    const options = union.map((option) => resolveRef(root, option));
    let nonNull = options.filter((option) => option.type !== 'null');
    nullable = nonNull.length < options.length;
    // a value or a keyword (quality: 1-100 or "auto"): the value's field, which also takes the keywords
    const isKeyword = (option) => typeof option.const === 'string';
    if (nonNull.length > 1 && nonNull.filter((option) => !isKeyword(option)).length === 1) {
      keywords = nonNull.filter(isKeyword).map((option) => option.const);
      nonNull = nonNull.filter((option) => !isKeyword(option));
    }
    if (nonNull.length !== 1) {
      return { name, kind: 'unsupported', required };
    }
    const { anyOf: _a, oneOf: _o, ...outer } = prop;
    prop = { ...nonNull[0], ...outer };
  }
  if (Array.isArray(prop.type)) {
    const types = prop.type.filter((t) => t !== 'null');
    nullable = nullable || types.length < prop.type.length;
    prop = { ...prop, type: types.length === 1 ? types[0] : types };
  }
  const field = {
    name,
    label: prop.title && prop.title !== autoTitle(name) ? prop.title : humanize(name),
    description: cleanText(prop.description),
    required,
    nullable,
    default: prop.default,
    keywords,
  };
  if (prop.const !== undefined) return { ...field, kind: 'const', value: prop.const };
  if (Array.isArray(prop.enum)) {
    const options = prop.enum.filter((value) => value !== null);
    if (options.length === 1 && required) return { ...field, kind: 'const', value: options[0] };
    return { ...field, kind: 'enum', options };
  }
  if (prop.type === 'integer' || prop.type === 'number') {
    return {
      ...field,
      kind: prop.type,
      minimum: prop.minimum ?? null,
      maximum: prop.maximum ?? null,
      exclusiveMinimum: typeof prop.exclusiveMinimum === 'number' ? prop.exclusiveMinimum : null,
      exclusiveMaximum: typeof prop.exclusiveMaximum === 'number' ? prop.exclusiveMaximum : null,
      multipleOf: prop.multipleOf ?? null,
    };
  }
  if (prop.type === 'boolean') return { ...field, kind: 'boolean' };
  if (prop.type === 'array') {
    const item = scalarItem(root, prop.items);
    if (!item) return { ...field, kind: 'unsupported' };
    return { ...field, kind: 'list', item, minItems: prop.minItems ?? null, maxItems: prop.maxItems ?? null };
  }
  if (prop.type === 'string') {
    return {
      ...field,
      kind: 'string',
      minLength: prop.minLength ?? null,
      maxLength: prop.maxLength ?? null,
      pattern: prop.pattern ?? null,
    };
  }
  return { ...field, kind: 'unsupported' };
}

// Friendlier names for the core operations; any other operation is named from its "op".
const OPERATION_TITLES = {
  resize: 'Resize',
  crop: 'Crop',
  rotate: 'Rotate',
  flip: 'Flip',
  grayscale: 'Black and white',
  blur: 'Blur',
  sharpen: 'Sharpen',
  format: 'Convert format',
};

function opNameOf(variant, mappingByRef, ref) {
  const opProp = variant.properties?.op;
  if (opProp?.const !== undefined) return opProp.const;
  if (Array.isArray(opProp?.enum) && opProp.enum.length === 1) return opProp.enum[0];
  if (opProp?.default !== undefined) return opProp.default;
  return ref ? mappingByRef[ref] : undefined;
}

/**
 * The operations an editor can offer, from the schema of the operations list:
 * `[{op, title, description, fields: [...]}]`, in the schema's order.
 */
export function parseOperationsSchema(schema) {
  if (!schema || typeof schema !== 'object') return [];
  let items = resolveRef(schema, schema.type === 'array' || schema.items ? schema.items : schema);
  items = resolveRef(schema, items);
  const variants = items?.oneOf || items?.anyOf || (items?.properties ? [items] : []);
  const mapping = items?.discriminator?.mapping || {};
  const mappingByRef = Object.fromEntries(Object.entries(mapping).map(([name, ref]) => [ref, name]));

  const operations = [];
  for (const rawVariant of variants) {
    const variant = resolveRef(schema, rawVariant);
    const op = opNameOf(variant, mappingByRef, rawVariant.$ref);
    if (typeof op !== 'string' || !variant.properties) continue;
    const required = new Set(variant.required || []);
    const fields = Object.entries(variant.properties)
      .filter(([name]) => name !== 'op')
      .map(([name, prop]) => describeField(schema, name, prop, required.has(name)));
    // Never offer an operation the page could not fill in correctly.
    if (fields.some((field) => field.kind === 'unsupported' && field.required)) continue;
    operations.push({
      op,
      title: OPERATION_TITLES[op] || humanize(op),
      description: cleanText(variant.description),
      fields: fields.filter((field) => field.kind !== 'unsupported'),
    });
  }
  return operations;
}

/** Whether a choice may be left empty ("Keep as is"): optional and without a default. */
export function enumAllowsEmpty(field) {
  return !field.required && (field.default === undefined || field.default === null);
}

/** The form values of a fresh step: each field's default, as the inputs hold it. */
export function initialValues(operation) {
  const values = {};
  for (const field of operation.fields) {
    if (field.kind === 'boolean') values[field.name] = field.default === true;
    else if (field.kind === 'const') values[field.name] = field.value;
    else if (field.kind === 'list') values[field.name] = listValue(field, field.default);
    // A select shows its first option when nothing is chosen: hold that option, so what
    // the step sends is what it shows.
    else if (field.kind === 'enum' && !enumAllowsEmpty(field) && (field.default === undefined || field.default === null)) {
      values[field.name] = String(field.options[0] ?? '');
    } else if (field.default === undefined || field.default === null) values[field.name] = '';
    else values[field.name] = String(field.default);
  }
  return values;
}

// A list field's form value: chosen options for a list of choices, "800, 1600" for numbers.
function listValue(field, value) {
  const list = Array.isArray(value) ? value : [];
  return field.item.kind === 'enum' ? list.map(String) : list.join(', ');
}

/** Form values for an existing operation (a preset's step being customised). */
export function valuesFromOperation(operation, op) {
  const values = initialValues(operation);
  for (const field of operation.fields) {
    const value = op[field.name];
    if (value === undefined || value === null) continue;
    if (field.kind === 'list') values[field.name] = listValue(field, value);
    else values[field.name] = field.kind === 'boolean' ? Boolean(value) : field.kind === 'const' ? value : String(value);
  }
  return values;
}

function numberProblem(field, raw) {
  // `field` is a numeric field or a list's item descriptor: both carry kind and bounds.
  const value = Number(raw);
  if (!Number.isFinite(value)) return { problem: 'must be a number' };
  if (field.kind === 'integer' && !Number.isInteger(value)) return { problem: 'must be a whole number' };
  if (field.minimum !== null && value < field.minimum) return { problem: `must be at least ${field.minimum}` };
  if (field.maximum !== null && value > field.maximum) return { problem: `must be at most ${field.maximum}` };
  if (field.exclusiveMinimum !== null && value <= field.exclusiveMinimum) {
    return { problem: `must be more than ${field.exclusiveMinimum}` };
  }
  if (field.exclusiveMaximum !== null && value >= field.exclusiveMaximum) {
    return { problem: `must be less than ${field.exclusiveMaximum}` };
  }
  return { value };
}

/**
 * The operation the API receives for one step's form values, and the problems found:
 * `{value: {op, ...}, errors: {field: "must be ..."}}`. Empty optional fields are left
 * out so the server applies its own defaults.
 */
export function buildOperation(operation, values) {
  const value = { op: operation.op };
  const errors = {};
  for (const field of operation.fields) {
    const raw = values[field.name];
    if (field.kind === 'const') {
      value[field.name] = field.value;
      continue;
    }
    if (field.kind === 'boolean') {
      value[field.name] = Boolean(raw);
      continue;
    }
    if (field.kind === 'list') {
      const { list, problem } = buildList(field, raw);
      if (problem) errors[field.name] = problem;
      else if (list.length) value[field.name] = list;
      else if (field.required) errors[field.name] = 'needs at least one value';
      continue;
    }
    const text = raw === undefined || raw === null ? '' : String(raw).trim();
    if (text === '') {
      if (field.required && field.default === undefined) errors[field.name] = 'is required';
      continue;
    }
    if (field.keywords?.includes(text)) {
      value[field.name] = text;
    } else if (field.kind === 'integer' || field.kind === 'number') {
      const { value: number, problem } = numberProblem(field, text);
      if (problem) errors[field.name] = problem;
      else value[field.name] = number;
    } else if (field.kind === 'enum') {
      const match = field.options.find((option) => String(option) === text);
      if (match === undefined) errors[field.name] = `must be one of ${field.options.join(', ')}`;
      else value[field.name] = match;
    } else {
      if (field.minLength !== null && text.length < field.minLength) {
        errors[field.name] = `must be at least ${field.minLength} characters`;
      } else if (field.maxLength !== null && text.length > field.maxLength) {
        errors[field.name] = `must be at most ${field.maxLength} characters`;
      } else if (field.pattern && !safeRegExp(field.pattern)?.test(text)) {
        errors[field.name] = 'is not in the expected form';
      } else {
        value[field.name] = text;
      }
    }
  }
  return { value, errors };
}

function buildList(field, raw) {
  let list;
  if (field.item.kind === 'enum') {
    const chosen = new Set((Array.isArray(raw) ? raw : []).map(String));
    list = field.item.options.filter((option) => chosen.has(String(option)));
  } else {
    const parts = String(raw ?? '').split(/[\s,;]+/).filter(Boolean);
    list = [];
    for (const part of parts) {
      const { value, problem } = numberProblem(field.item, part);
      if (problem) return { problem: `has “${part}”, which ${problem}` };
      list.push(value);
    }
  }
  if (field.maxItems !== null && list.length > field.maxItems) return { problem: `takes at most ${field.maxItems} values` };
  if (field.minItems !== null && list.length && list.length < field.minItems) {
    return { problem: `needs at least ${field.minItems} values` };
  }
  return { list };
}

/** "1 to 100" for a numeric field with both bounds (integers: exclusive bounds made inclusive). */
export function rangeText(field) {
  const integer = field.kind === 'integer';
  const show = /bytes$/.test(field.name || '') ? formatBytes : (value) => String(value);
  let low = field.minimum;
  let high = field.maximum;
  if (low === null && field.exclusiveMinimum !== null) low = integer ? field.exclusiveMinimum + 1 : null;
  if (high === null && field.exclusiveMaximum !== null) high = integer ? field.exclusiveMaximum - 1 : null;
  if (low !== null && high !== null) return `${show(low)} to ${show(high)}`;
  if (low !== null) return `at least ${show(low)}`;
  if (high !== null) return `at most ${show(high)}`;
  return '';
}

function safeRegExp(pattern) {
  try {
    return new RegExp(pattern, 'u');
  } catch {
    return null;
  }
}

/** One operation in a few plain words, e.g. "Resize to fit 1600 × 1600". */
export function describeOperation(op) {
  const size = (w, h) => `${w ?? 'auto'} × ${h ?? 'auto'}`;
  switch (op?.op) {
    case 'resize': {
      const fit = op.fit || 'contain';
      const how = { contain: 'to fit within', cover: 'and crop to', fill: 'stretched to' }[fit] || `(${fit}) to`;
      return `Resize ${how} ${size(op.width, op.height)}${op.upscale ? ', enlarging if smaller' : ''}`;
    }
    case 'crop':
      return `Crop ${size(op.width, op.height)} at (${op.x ?? 0}, ${op.y ?? 0})`;
    case 'rotate':
      return `Rotate ${op.degrees}°`;
    case 'flip':
      return `Flip ${op.direction}`;
    case 'grayscale':
      return 'Black and white';
    case 'blur':
      return op.radius !== undefined ? `Blur (radius ${op.radius})` : 'Blur';
    case 'sharpen':
      return 'Sharpen';
    case 'format': {
      const name = formatName(op.format);
      return `Save as ${name}${op.quality ? ` at quality ${op.quality}` : ''}`;
    }
    default: {
      const params = Object.entries(op || {})
        .filter(([key]) => key !== 'op')
        .map(([key, value]) => `${humanize(key).toLowerCase()} ${typeof value === 'object' ? JSON.stringify(value) : value}`);
      return `${humanize(op?.op || 'step')}${params.length ? ` (${params.join(', ')})` : ''}`;
    }
  }
}
