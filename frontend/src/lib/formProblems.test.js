import { describe, expect, it } from 'vitest';
import { overlayUploads } from './formProblems.js';

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
