import { describe, expect, it } from 'vitest';
import { operationsFixture } from '../test/fakes.js';
import { buildOperation, describeOperation, initialValues, parseOperationsSchema, valuesFromOperation } from './schema.js';

// The fixture is the server's real answer (imageflow.operations), saved by
// `npm run fixture`; the e2e test checks the page against the live one.
const operations = parseOperationsSchema(operationsFixture.schema);
const byName = Object.fromEntries(operations.map((o) => [o.op, o]));

describe('parseOperationsSchema', () => {
  it('offers every core operation of the API', () => {
    for (const op of ['resize', 'crop', 'rotate', 'flip', 'grayscale', 'blur', 'sharpen', 'format']) {
      expect(byName[op], op).toBeDefined();
    }
  });

  it('offers exactly the operations the schema lists, in its order', () => {
    const mapping = Object.keys(operationsFixture.schema.items.discriminator.mapping);
    expect(operations.map((o) => o.op).sort()).toEqual([...mapping].sort());
    expect(operations[0].op).toBe('resize');
  });

  it('reads field kinds, bounds, choices and defaults', () => {
    const fields = Object.fromEntries(byName.resize.fields.map((f) => [f.name, f]));
    expect(fields.width).toMatchObject({ kind: 'integer', exclusiveMinimum: 0, maximum: 16384, required: false, label: 'Width' });
    expect(fields.fit).toMatchObject({ kind: 'enum', options: ['contain', 'cover', 'fill'], default: 'contain' });
    expect(fields.upscale).toMatchObject({ kind: 'boolean', default: false });
    const quality = byName.format.fields.find((f) => f.name === 'quality');
    expect(quality).toMatchObject({ kind: 'integer', minimum: 1, maximum: 100 });
    const degrees = byName.rotate.fields.find((f) => f.name === 'degrees');
    expect(degrees).toMatchObject({ kind: 'number', required: true });
    const formats = byName.variants.fields.find((f) => f.name === 'formats');
    expect(formats).toMatchObject({ kind: 'list', maxItems: 4, item: { kind: 'enum' } });
  });

  it('says labels and descriptions in plain text', () => {
    const maxBytes = byName.format.fields.find((f) => f.name === 'max_bytes');
    expect(maxBytes.label).toBe('Max bytes');
    expect(byName.resize.description).not.toContain('``');
    expect(byName.resize.description).toContain('“contain”');
  });

  it('leaves out an operation whose required field the page cannot fill in', () => {
    const schema = {
      type: 'array',
      items: {
        oneOf: [{ $ref: '#/$defs/A' }, { $ref: '#/$defs/B' }],
        discriminator: { propertyName: 'op', mapping: { a: '#/$defs/A', b: '#/$defs/B' } },
      },
      $defs: {
        A: { type: 'object', properties: { op: { const: 'a' }, n: { type: 'integer' } }, required: ['op'] },
        B: {
          type: 'object',
          properties: { op: { const: 'b' }, shape: { type: 'object', properties: {} } },
          required: ['op', 'shape'],
        },
      },
    };
    expect(parseOperationsSchema(schema).map((o) => o.op)).toEqual(['a']);
  });

  it('follows $ref to enum definitions (pydantic Enum classes)', () => {
    const schema = {
      type: 'array',
      items: { $ref: '#/$defs/Op' },
      $defs: {
        Dir: { enum: ['up', 'down'], type: 'string', title: 'Dir' },
        Op: { type: 'object', properties: { op: { const: 'turn' }, dir: { $ref: '#/$defs/Dir', default: 'up' } }, required: ['op'] },
      },
    };
    const [turn] = parseOperationsSchema(schema);
    expect(turn.fields[0]).toMatchObject({ name: 'dir', kind: 'enum', options: ['up', 'down'], default: 'up' });
  });
});

describe('buildOperation', () => {
  it('turns form values into the operation the API takes', () => {
    const values = { ...initialValues(byName.resize), width: '800', fit: 'cover' };
    const { value, errors } = buildOperation(byName.resize, values);
    expect(errors).toEqual({});
    expect(value).toEqual({ op: 'resize', width: 800, fit: 'cover', upscale: false, gravity: 'center' });
  });

  it('leaves empty optional fields out so the server applies its defaults', () => {
    const { value } = buildOperation(byName.format, { ...initialValues(byName.format), format: 'webp' });
    expect(value).not.toHaveProperty('quality');
    expect(value.format).toBe('webp');
  });

  it('refuses values outside the schema, naming the problem', () => {
    const resize = (width) => buildOperation(byName.resize, { ...initialValues(byName.resize), width }).errors.width;
    expect(resize('0')).toBe('must be more than 0');
    expect(resize('1.5')).toBe('must be a whole number');
    expect(resize('99999')).toBe('must be at most 16384');
    const quality = buildOperation(byName.format, { ...initialValues(byName.format), format: 'jpeg', quality: '101' });
    expect(quality.errors.quality).toBe('must be at most 100');
    expect(buildOperation(byName.rotate, initialValues(byName.rotate)).errors.degrees).toBe('is required');
  });

  it('takes a number or a keyword where the schema allows both (quality 1-100 or "auto")', () => {
    const quality = byName.format.fields.find((f) => f.name === 'quality');
    expect(quality).toMatchObject({ kind: 'integer', keywords: ['auto'] });
    const build = (value) => buildOperation(byName.format, { ...initialValues(byName.format), format: 'jpeg', quality: value });
    expect(build('auto').value.quality).toBe('auto');
    expect(build('70').value.quality).toBe(70);
    expect(build('high').errors.quality).toBe('must be a number');
  });

  it('offers the new operations: overlay, trim, face gravity, JPEG XL and HEIC', () => {
    expect(byName.overlay.fields.find((f) => f.name === 'image')).toMatchObject({ kind: 'string', required: true });
    expect(byName.trim.fields.find((f) => f.name === 'background')).toMatchObject({ kind: 'string', keywords: ['auto'] });
    expect(byName.resize.fields.find((f) => f.name === 'gravity').options).toContain('face');
    expect(byName.format.fields.find((f) => f.name === 'format').options).toEqual(expect.arrayContaining(['jxl', 'heic']));
  });

  it('builds list fields from checkboxes and comma-separated numbers', () => {
    const values = { ...initialValues(byName.variants), widths: '400, 800 1600', formats: ['webp', 'jpeg'] };
    const { value, errors } = buildOperation(byName.variants, values);
    expect(errors).toEqual({});
    expect(value).toEqual({ op: 'variants', widths: [400, 800, 1600], formats: ['jpeg', 'webp'] });
    const bad = buildOperation(byName.variants, { ...values, widths: '400, big' });
    expect(bad.errors.widths).toMatch(/“big”, which must be a number/);
  });

  it('only ever sends properties the schema declares', () => {
    for (const operation of operations) {
      const { value } = buildOperation(operation, initialValues(operation));
      const declared = Object.keys(operationsFixture.schema.$defs).map((k) => operationsFixture.schema.$defs[k])
        .find((def) => def.properties?.op?.const === operation.op).properties;
      for (const key of Object.keys(value)) expect(declared, `${operation.op}.${key}`).toHaveProperty(key);
    }
  });

  it("round-trips a preset's steps through the form", () => {
    for (const ops of Object.values(operationsFixture.presets)) {
      for (const op of ops) {
        const operation = byName[op.op];
        const { value, errors } = buildOperation(operation, valuesFromOperation(operation, op));
        expect(errors).toEqual({});
        expect(value).toEqual(op);
      }
    }
  });
});

describe('describeOperation', () => {
  it('says what a step does in words', () => {
    expect(describeOperation({ op: 'resize', width: 256, height: 256, fit: 'cover' })).toBe('Resize and crop to 256 × 256');
    expect(describeOperation({ op: 'format', format: 'webp', quality: 80 })).toBe('Save as WebP at quality 80');
    expect(describeOperation({ op: 'grayscale' })).toBe('Black and white');
    expect(describeOperation({ op: 'pad', width: 10 })).toBe('Pad (width 10)');
  });
});
