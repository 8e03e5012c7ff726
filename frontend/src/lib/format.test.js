import { describe, expect, it } from 'vitest';
import { distinctNames, formatMegapixels, formatName, listInWords, numbered, plural, savingText, sentence } from './format.js';

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
