import { describe, expect, it } from 'vitest';
import { makeFile } from '../test/fakes.js';
import { sniffFile } from './sniff.js';

// The same answers as the server's imageflow/engine/decoding.py (sniff, describe_unknown).
describe('sniffFile', () => {
  it('reads the image formats from their first bytes, whatever the name says', async () => {
    expect(await sniffFile(makeFile('a.jpg'))).toEqual({ kind: 'jpeg', reason: '' });
    expect((await sniffFile(makeFile('really-a-png.jpg', 'image/jpeg', 100, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).kind).toBe('png');
    const avif = [0, 0, 0, 0x1c, ...'ftypavif'].map((c) => (typeof c === 'string' ? c.charCodeAt(0) : c));
    expect((await sniffFile(makeFile('a.avif', 'image/avif', 100, avif))).kind).toBe('avif');
  });

  it('reads the formats Pillow reads besides the web ones, as the server does (pillow_inputs.sniff)', async () => {
    const tga = [0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 0, 30, 0, 24, 0, 1, 2, 3];
    const sgi = [0x01, 0xda, 0, 1, 0, 3, 0, 40, 0, 30, 0, 3];
    const ico = [0, 0, 1, 0, 1, 0, 16, 16, 0, 0, 1, 0, 32, 0, 0, 0, 0, 0, 22, 0, 0, 0];
    const cases = [
      ['photo.tga', tga, 'tga'],
      ['scan.jp2', [0, 0, 0, 12, ...'jP  \r\n'].map((c) => (typeof c === 'string' ? c.charCodeAt(0) : c)).concat([0x87, 0x0a]), 'jpeg2000'],
      ['icon.ico', ico, 'ico'],
      ['plain.pgm', 'P2\n2 2\n255\n0 64\n128 255\n', 'pnm'],
      ['a.pam', 'P7\nWIDTH 2\n', 'pnm'],
      ['a.sgi', sgi, 'sgi'],
      ['a.dds', 'DDS |\x00\x00\x00', 'dds'],
      ['design.psd', '8BPS\x00\x01\x00\x00\x00\x00\x00\x00', 'psd'],
      ['big.psb', '8BPS\x00\x02\x00\x00\x00\x00\x00\x00', 'psd'],
      ['logo.svg', '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>', 'svg'],
      ['proof.pdf', '%PDF-1.7\n', 'pdf'],
      ['IMG_1.CR3', '\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01', 'raw'],
      ['DSC_1.RAF', 'FUJIFILMCCD-RAW 0201', 'raw'],
    ];
    for (const [name, bytes, kind] of cases) {
      expect((await sniffFile(makeFile(name, '', 100, bytes))).kind, name).toBe(kind);
    }
    expect((await sniffFile(makeFile('notes.txt', '', 100, 'hello world, this is some text\n'))).kind).toBe(null);
  });

  it("gives the server's reason for what is not an image", async () => {
    expect(await sniffFile(makeFile('scan.jpg', 'image/jpeg', 2000, 'PK\x03\x04'))).toEqual({
      kind: null,
      reason: 'not a supported image: the content is a ZIP archive (or an Office document)',
    });
    expect((await sniffFile(makeFile('fake.png', 'image/png', 22, 'this is not a picture\n'))).reason).toBe('not an image: the content is text');
    expect((await sniffFile(makeFile('page.html', 'text/html', 60, '<!doctype html><p>hi</p>'))).reason).toBe('not an image: the content is text');
    expect((await sniffFile(makeFile('noise.jpg', 'image/jpeg', 20, [1, 2, 3, 0, 0, 200]))).reason).toMatch(/matches no known format/);
  });
});
