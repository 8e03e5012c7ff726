import { describe, expect, it } from 'vitest';
import { makeFile } from '../test/fakes.js';
import { acceptAttribute, checkFiles, describeTypes, fileType, tooManyPixels } from './files.js';
import { formatBytes } from './format.js';

const limits = {
  max_upload_bytes: 5000,
  max_request_bytes: 12000,
  max_files_per_job: 3,
  max_image_pixels: 1000000,
  accepted_types: ['image/jpeg', 'image/png'],
};

describe('the formats browsers do not name', () => {
  it('are known by their extension, and the picker offers them', () => {
    expect(fileType(makeFile('sky.TGA', ''))).toBe('image/x-tga');
    expect(fileType(makeFile('design.psb', 'application/octet-stream'))).toBe('image/vnd.adobe.photoshop');
    expect(acceptAttribute(['image/x-tga', 'image/jpeg'])).toBe('image/x-tga,image/jpeg,.jpg,.jpeg,.jpe,.tga,.icb,.vda,.vst');
    expect(describeTypes(['image/x-tga', 'image/jp2', 'image/x-icon', 'image/vnd.microsoft.icon', 'image/vnd.adobe.photoshop'])).toBe('TGA, JPEG 2000, ICO or PSD');
  });

  it('a sniffed TGA is checked against the type the server lists for it', () => {
    const file = makeFile('sky.tga', '');
    const { accepted } = checkFiles([], [file], { ...limits, accepted_types: ['image/x-tga'] }, new Map([[file, { kind: 'tga', reason: '' }]]));
    expect(accepted).toEqual([file]);
  });
});

describe('checkFiles', () => {
  it('accepts images of an accepted type within the limits', () => {
    const files = [makeFile('a.jpg'), makeFile('b.png', 'image/png')];
    expect(checkFiles([], files, limits)).toEqual({ accepted: files, refused: [], duplicates: 0 });
  });

  it('refuses other types, saying which types are accepted', () => {
    const { accepted, refused } = checkFiles([], [makeFile('notes.pdf', 'application/pdf')], limits);
    expect(accepted).toEqual([]);
    expect(refused).toEqual([{ name: 'notes.pdf', reason: 'is a application/pdf file; ImageFlow accepts JPEG or PNG images.' }]);
  });

  it('refuses a file over the per-file limit, with both sizes', () => {
    const { refused } = checkFiles([], [makeFile('big.jpg', 'image/jpeg', 6000)], limits);
    expect(refused[0].reason).toBe('is 5.9 KB, over the 4.9 KB limit per file.');
  });

  it('takes a selection of any total size and stops at the number of files per job', () => {
    const existing = [makeFile('1.jpg', 'image/jpeg', 4000), makeFile('2.jpg', 'image/jpeg', 4000)];
    const incoming = [makeFile('3.jpg', 'image/jpeg', 4500), makeFile('4.jpg'), makeFile('5.jpg')];
    const { accepted, refused } = checkFiles(existing, incoming, limits);
    expect(accepted.map((f) => f.name)).toEqual(['3.jpg']); // 12.2 KB in all, over max_request_bytes
    expect(refused.map((r) => r.name)).toEqual(['4.jpg', '5.jpg']);
    expect(refused[0].reason).toMatch(/at most 3 photos/);
  });

  it('adds a folder in name order, so the same photos make the cut each time', () => {
    const names = ['IMG_10.jpg', 'IMG_2.jpg', 'IMG_1.jpg', 'b.jpg', 'A.jpg'];
    const { accepted } = checkFiles([], names.map((name) => makeFile(name)), { ...limits, max_files_per_job: 10 });
    expect(accepted.map((f) => f.name)).toEqual(['A.jpg', 'b.jpg', 'IMG_1.jpg', 'IMG_2.jpg', 'IMG_10.jpg']);
  });

  it('skips a photo already chosen, and empty files', () => {
    const photo = makeFile('a.jpg');
    const result = checkFiles([photo], [makeFile('a.jpg'), makeFile('empty.jpg', 'image/jpeg', 0)], limits);
    expect(result.duplicates).toBe(1);
    expect(result.refused).toEqual([{ name: 'empty.jpg', reason: 'is empty.' }]);
  });

  it('trusts the extension when the browser gives no type', () => {
    expect(fileType(makeFile('IMG_1.JPG', ''))).toBe('image/jpeg');
    expect(checkFiles([], [makeFile('IMG_1.JPG', '')], limits).accepted).toHaveLength(1);
  });
});

describe('helpers', () => {
  it('formats sizes as people read them', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KB');
    expect(formatBytes(25 * 1024 * 1024)).toBe('25 MB');
  });

  it('names types and checks pixels', () => {
    expect(describeTypes(['image/jpeg', 'image/png', 'image/webp'])).toBe('JPEG, PNG or WebP');
    expect(tooManyPixels(1001, 1000, limits)).toBe(true);
    expect(tooManyPixels(1000, 1000, limits)).toBe(false);
  });
});

describe('parseUrlList', () => {
  it('keeps the addresses with their line numbers and refuses the rest with a reason', async () => {
    const { parseUrlList } = await import('./files.js');
    const parsed = parseUrlList('https://a.example/1.jpg\n\n  mailto:x@y.z \nnot a url\r\nhttp://b.example/2.png\n');
    expect(parsed.urls).toEqual(['https://a.example/1.jpg', 'http://b.example/2.png']);
    expect(parsed.lines).toEqual([1, 5]);
    expect(parsed.refused).toEqual([
      { line: 3, url: 'mailto:x@y.z', reason: 'is not an http:// or https:// address' },
      { line: 4, url: 'not a url', reason: 'is not a web address (it should start with https://)' },
    ]);
  });
});
