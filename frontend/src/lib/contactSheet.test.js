import { describe, expect, it } from 'vitest';
import { filterImages } from '../components/job/StatusFilter.jsx';
import { columnsFor, nextIndex, sortImages } from './contactSheet.js';

const image = (id, filename, status, inputBytes, outputBytes) => ({
  image_id: id,
  filename,
  status,
  input_bytes: inputBytes,
  outputs: status === 'succeeded' ? [{ variant: '', url: `/o/${id}`, bytes: outputBytes }] : [],
});

// in upload (file-system) order, which looks random
const shoot = [
  image('a', 'IMG_0010.jpg', 'succeeded', 4_000_000, 1_000_000), // 75 % saved
  image('b', 'IMG_0002.jpg', 'failed', 9_000_000),
  image('c', 'IMG_0001.jpg', 'succeeded', 2_000_000, 1_800_000), // 10 % saved
  image('d', 'IMG_0100.jpg', 'queued', 6_000_000),
  image('e', 'img_0003.jpg', 'succeeded', 3_000_000, 600_000), // 80 % saved
];
const ids = (images) => images.map((i) => i.image_id).join('');

describe('sorting the contact sheet', () => {
  it('sorts by name as people count: 2 before 10 before 100, whatever the case', () => {
    expect(sortImages(shoot).map((i) => i.filename)).toEqual(['IMG_0001.jpg', 'IMG_0002.jpg', 'img_0003.jpg', 'IMG_0010.jpg', 'IMG_0100.jpg']);
  });

  it('sorts by the names shown, so two photos of one name keep their shown order', () => {
    const twins = [image('y', 'IMG_0001.jpg', 'succeeded', 1, 1), image('x', 'IMG_0001.jpg', 'succeeded', 1, 1)];
    expect(ids(sortImages(twins, 'name', { y: 'IMG_0001.jpg', x: 'IMG_0001 (2).jpg' }))).toBe('yx');
  });

  it('sorts by status with the problems first, then the waiting, then the done, each by name', () => {
    expect(ids(sortImages(shoot, 'status'))).toBe('bdcea');
  });

  it('sorts by size, the largest original first', () => {
    expect(ids(sortImages(shoot, 'size'))).toBe('bdaec');
  });

  it('sorts by saving, the largest first, the photos without a result last', () => {
    expect(ids(sortImages(shoot, 'saving'))).toBe('eacbd');
  });

  it('does not change the list it is given, and falls back to name for an unknown sort', () => {
    const before = ids(shoot);
    expect(ids(sortImages(shoot, 'nonsense'))).toBe(ids(sortImages(shoot, 'name')));
    expect(ids(shoot)).toBe(before);
  });

  it('sorts the photos a filter keeps', () => {
    expect(ids(sortImages(filterImages(shoot, 'succeeded'), 'saving'))).toBe('eac');
    expect(ids(sortImages(filterImages(shoot, 'failed'), 'name'))).toBe('b');
  });
});

describe('the contact sheet grid', () => {
  it('fits 8 medium thumbnails a row in the page column of a 1440 px desktop, 10 small, 5 large', () => {
    const column = 1040 - 32; // main's max width, less its padding
    expect(columnsFor(column, 112)).toBe(8);
    expect(columnsFor(column, 88)).toBe(10);
    expect(columnsFor(column, 180)).toBe(5);
    expect(columnsFor(0, 112)).toBe(1);
  });

  it('moves the focus with the arrows by a tile or a row, and stays in the grid at its edges', () => {
    // 10 tiles, 4 a row: rows 0-3, 4-7, 8-9
    expect(nextIndex(0, 'ArrowRight', 4, 10)).toBe(1);
    expect(nextIndex(3, 'ArrowRight', 4, 10)).toBe(4); // on to the next row
    expect(nextIndex(9, 'ArrowRight', 4, 10)).toBe(9);
    expect(nextIndex(0, 'ArrowLeft', 4, 10)).toBe(0);
    expect(nextIndex(1, 'ArrowDown', 4, 10)).toBe(5);
    expect(nextIndex(6, 'ArrowDown', 4, 10)).toBe(9); // the last row is short: its last tile
    expect(nextIndex(5, 'ArrowUp', 4, 10)).toBe(1);
    expect(nextIndex(2, 'ArrowUp', 4, 10)).toBe(2);
    expect(nextIndex(5, 'Home', 4, 10)).toBe(0);
    expect(nextIndex(5, 'End', 4, 10)).toBe(9);
    expect(nextIndex(1, 'PageDown', 4, 10, 2)).toBe(9);
    expect(nextIndex(9, 'PageUp', 4, 10, 2)).toBe(1);
    expect(nextIndex(5, 'a', 4, 10)).toBeNull();
    expect(nextIndex(0, 'ArrowRight', 4, 0)).toBeNull();
  });
});
