import { describe, expect, it } from 'vitest';
import { changeInWords, distinctNames, formatBytes, formatMegapixels, formatName, listInWords, numbered, plural, savingText, savingsText, sentence } from './format.js';

describe('format helpers', () => {
  it('counts in words', () => {
    expect(plural(1, 'photo')).toBe('1 photo');
    expect(plural(3, 'photo')).toBe('3 photos');
    expect(plural(2, 'file was', 'files were')).toBe('2 files were');
    expect(listInWords(['JPEG', 'PNG', 'WebP'], 'or')).toBe('JPEG, PNG or WebP');
  });

  it('names formats and sizes as people write them', () => {
    expect(formatName('image/webp')).toBe('WebP');
    expect(formatName('jpg')).toBe('JPEG');
    expect(formatMegapixels(50_000_000)).toBe('50 megapixels');
    expect(sentence('give width, height or both')).toBe('Give width, height or both.');
    expect(sentence('Done!')).toBe('Done!');
  });

  it('says the saving from one size to another', () => {
    expect(savingText(1000, 250)).toBe('75% smaller');
    expect(savingText(1000, 1500)).toBe('50% larger');
    expect(savingText(1000, 1000)).toBe('same size');
    expect(savingText(null, 10)).toBe('');
  });

  it('tells files of the same name apart', () => {
    expect(distinctNames(['IMG_0001.jpg', 'b.jpg', 'IMG_0001.jpg', 'IMG_0001.jpg'])).toEqual(['IMG_0001.jpg', 'b.jpg', 'IMG_0001 (2).jpg', 'IMG_0001 (3).jpg']);
    // From different folders: the folder tells them apart.
    expect(distinctNames(['2023/IMG_0001.jpg', '2024/IMG_0001.jpg'])).toEqual(['2023/IMG_0001.jpg', '2024/IMG_0001.jpg']);
    expect(numbered('README', 2)).toBe('README (2)');
  });
});

describe('one way to write sizes and percentages', () => {
  it('writes bytes in base 1024, as the server states its limits', () => {
    expect(formatBytes(500)).toBe('500 B');
    expect(formatBytes(1536)).toBe('1.5 KB');
    expect(formatBytes(25 * 1024 * 1024)).toBe('25 MB');
    expect(formatBytes(-1)).toBe('');
  });

  it("gives a job's savings in the sizes the job page uses for the same bytes", () => {
    const job = { bytes_in: 923_000_000, bytes_out: 111_000_000 };
    expect(savingsText(job)).toBe(`Saved ${formatBytes(job.bytes_in - job.bytes_out)} (88%)`);
    expect(savingsText(job)).toBe('Saved 774 MB (88%)');
  });

  it('says a change in percent the same way for an estimate and a result', () => {
    expect(changeInWords(90.2)).toBe('90% smaller');
    expect(changeInWords(-12.6)).toBe('13% larger');
    expect(changeInWords(0.2)).toBe('same size');
    expect(savingText(1000, 98)).toBe(changeInWords(90.2));
  });
});
