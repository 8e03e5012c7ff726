import { describe, expect, it } from 'vitest';
import { checkForm, overlayUploads, presetLogoNames } from './formProblems.js';

describe('overlayUploads', () => {
  it('sends each logo once, under a name no other logo of the job has', () => {
    const logo = new File(['a'], 'logo.png', { type: 'image/png' });
    const other = new File(['b'], 'logo.png', { type: 'image/png' });
    const steps = [
      { id: 1, op: 'overlay', values: { _source: 'file' } },
      { id: 2, op: 'overlay', values: { _source: 'file' } },
      { id: 3, op: 'overlay', values: { _source: 'file' } },
      { id: 4, op: 'overlay', values: { _source: 'url', image: 'https://x.example/l.png' } },
      { id: 5, op: 'grayscale', values: {} },
    ];
    const { files, names } = overlayUploads(steps, { 1: logo, 2: other, 3: logo, 4: logo });
    expect(files.map((f) => f.name)).toEqual(['logo.png', '2-logo.png']);
    expect(names).toEqual({ 1: 'logo.png', 2: '2-logo.png', 3: 'logo.png' });
  });
});

describe('a preset with a logo', () => {
  const operations = [
    { op: 'overlay', image: 'logo.png' },
    { op: 'overlay', image: 'https://brand.example/mark.png' },
    { op: 'overlay', image: 'logo.png', position: 'north' },
    { op: 'overlay', image: 'badge.webp' },
  ];
  const choice = { mode: 'preset', preset: 'saved:Shop', steps: [] };

  it('names each logo file once, leaving out web addresses', () => {
    expect(presetLogoNames(operations)).toEqual(['logo.png', 'badge.webp']);
    expect(presetLogoNames(null)).toEqual([]);
  });

  it('is refused until each logo file is chosen, then sends each under the name the preset uses', () => {
    const missing = checkForm({ items: [{}], choice, email: '', operationsByName: {}, presetOperations: operations, presetLogoFiles: {} });
    expect(Object.keys(missing.presetLogos)).toEqual(['logo.png', 'badge.webp']);
    expect(missing.summary.map((p) => p.target)).toEqual(['preset-logo-0', 'preset-logo-1']);
    expect(missing.overlays).toEqual([]);

    const picked = { 'logo.png': new File(['a'], 'My logo (final).png', { type: 'image/png' }), 'badge.webp': new File(['b'], 'badge.webp', { type: 'image/webp' }) };
    const ready = checkForm({ items: [{}], choice, email: '', operationsByName: {}, presetOperations: operations, presetLogoFiles: picked });
    expect(ready.summary).toEqual([]);
    expect(ready.presetLogos).toEqual({});
    expect(ready.overlays.map((f) => [f.name, f.type])).toEqual([['logo.png', 'image/png'], ['badge.webp', 'image/webp']]);
  });
});
