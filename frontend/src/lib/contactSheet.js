// The contact sheet's rules, written once and tested apart from the page: how the photos are
// sorted, how big the thumbnails are, where the arrow keys move the focus, and the choices
// remembered in this browser.
import { outputsOf } from '../components/ImageCard.jsx';

/** Thumbnail sizes: the narrowest a tile may be, in CSS pixels. M fits 8 a row in the page's
 * 1040 px column (a 1440 px desktop), S 10, L 5. */
export const SIZES = [
  { key: 'S', label: 'Small', minWidth: 88 },
  { key: 'M', label: 'Medium', minWidth: 112 },
  { key: 'L', label: 'Large', minWidth: 180 },
];
export const GAP = 8; // as .sheet's gap in styles.css
export const NAME_HEIGHT = 22; // the file name under each thumbnail

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
// Problems first: what a photographer must look at before delivering.
const STATUS_ORDER = { failed: 0, skipped: 1, queued: 2, processing: 2, succeeded: 3 };

/** The fraction of the original saved (0.75 for 75 % smaller); null without a result. */
export function savedFraction(image) {
  const main = outputsOf(image)[0];
  if (image.status !== 'succeeded' || !main || !image.input_bytes || main.bytes == null) return null;
  return 1 - main.bytes / image.input_bytes;
}

const stem = (name) => (name.lastIndexOf('.') > 0 ? name.slice(0, name.lastIndexOf('.')) : name);
// By stem first, so "IMG_0001.jpg" comes before "IMG_0001 (2).jpg" and "IMG_0001a.jpg".
const byName = (names) => (a, b) => {
  const na = String(names[a.image_id] ?? a.filename ?? '');
  const nb = String(names[b.image_id] ?? b.filename ?? '');
  return collator.compare(stem(na), stem(nb)) || collator.compare(na, nb) || collator.compare(a.image_id, b.image_id);
};

/** Descending by `value`, those without one last, ties by name. */
const byValue = (value, names) => (a, b) => {
  const va = value(a);
  const vb = value(b);
  if (va == null || vb == null) return va == null && vb == null ? byName(names)(a, b) : va == null ? 1 : -1;
  return vb - va || byName(names)(a, b);
};

export const SORTS = [
  { key: 'name', label: 'Name', compare: byName },
  { key: 'status', label: 'Status (problems first)', compare: (names) => (a, b) => (STATUS_ORDER[a.status] ?? 2) - (STATUS_ORDER[b.status] ?? 2) || byName(names)(a, b) },
  { key: 'size', label: 'Size (largest first)', compare: (names) => byValue((image) => image.input_bytes ?? null, names) },
  { key: 'saving', label: 'Saving (largest first)', compare: (names) => byValue(savedFraction, names) },
];

/** A sorted copy of `images`; `names` maps image ids to the names shown (made distinct). */
export function sortImages(images, key = 'name', names = {}) {
  const sort = SORTS.find((s) => s.key === key) || SORTS[0];
  return [...images].sort(sort.compare(names));
}

/** How many tiles of at least `minWidth` fit side by side in `width` (at least 1). */
export function columnsFor(width, minWidth, gap = GAP) {
  return Math.max(1, Math.floor((width + gap) / (minWidth + gap)));
}

/**
 * Where a key moves the focus in a grid of `count` tiles, `columns` a row: the arrows by one
 * tile or one row, Home and End to the ends, PageUp and PageDown by `pageRows` rows. Null for
 * a key that does not move it; the focus stays in the grid at its edges.
 */
export function nextIndex(index, key, columns, count, pageRows = 3) {
  if (count === 0) return null;
  const moves = {
    ArrowRight: index + 1,
    ArrowLeft: index - 1,
    ArrowDown: index + columns,
    ArrowUp: index - columns,
    Home: 0,
    End: count - 1,
    PageDown: index + columns * pageRows,
    PageUp: index - columns * pageRows,
  };
  if (!(key in moves)) return null;
  let target = moves[key];
  // a row down from the last full row ends on the last tile; a row up from the first stays
  if (key === 'ArrowDown' || key === 'PageDown') target = Math.min(target, count - 1);
  if (key === 'ArrowUp' || key === 'PageUp') target = target < 0 ? index % columns : target;
  return Math.min(count - 1, Math.max(0, target));
}

const PREFS_KEY = 'imageflow.contactSheet';
const DEFAULTS = { view: 'sheet', size: 'M', sort: 'name' };

/** The view (sheet or cards), size and sort last chosen in this browser. */
export function loadPrefs() {
  try {
    const saved = JSON.parse(window.localStorage.getItem(PREFS_KEY) || '{}');
    return {
      view: ['sheet', 'cards'].includes(saved.view) ? saved.view : DEFAULTS.view,
      size: SIZES.some((s) => s.key === saved.size) ? saved.size : DEFAULTS.size,
      sort: SORTS.some((s) => s.key === saved.sort) ? saved.sort : DEFAULTS.sort,
    };
  } catch {
    return { ...DEFAULTS };
  }
}

export function savePrefs(prefs) {
  try {
    window.localStorage.setItem(PREFS_KEY, JSON.stringify(prefs));
  } catch {
    // private mode or full storage: the choice lasts for this page only
  }
}
