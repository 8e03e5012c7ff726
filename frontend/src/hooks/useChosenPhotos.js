import { useCallback, useEffect, useRef, useState } from 'react';
import { checkFiles, tooManyPixels } from '../lib/files.js';

let nextFileId = 1;

const NOTHING_REFUSED = { refused: [], duplicates: 0 };

/**
 * The photos chosen for the next job: each `{id, file, url, width, height}`, checked
 * against the server's limits as they come in. `notAdded` says which were refused and why.
 */
export default function useChosenPhotos(limits) {
  const [items, setItems] = useState([]);
  const [notAdded, setNotAdded] = useState(NOTHING_REFUSED);
  const itemsRef = useRef(items);
  itemsRef.current = items;

  // Object URLs hold the photos in memory: release them when the page goes away.
  useEffect(() => () => itemsRef.current.forEach((item) => URL.revokeObjectURL(item.url)), []);

  const add = useCallback(
    (files) => {
      const { accepted, refused, duplicates } = checkFiles(
        itemsRef.current.map((item) => item.file),
        files,
        limits,
      );
      setNotAdded({ refused, duplicates });
      if (accepted.length) {
        setItems((current) => [
          ...current,
          ...accepted.map((file) => ({ id: nextFileId++, file, url: URL.createObjectURL(file) })),
        ]);
      }
      return accepted.length;
    },
    [limits],
  );

  const remove = useCallback((id) => {
    setItems((current) => {
      const item = current.find((i) => i.id === id);
      if (item) URL.revokeObjectURL(item.url);
      return current.filter((i) => i.id !== id);
    });
  }, []);

  const clear = useCallback(() => {
    itemsRef.current.forEach((item) => URL.revokeObjectURL(item.url));
    setItems([]);
    setNotAdded(NOTHING_REFUSED);
  }, []);

  const dismissRefused = useCallback(() => setNotAdded(NOTHING_REFUSED), []);

  // The browser has drawn a thumbnail, so the photo's pixel size is known: refuse it if
  // the server would.
  const measured = useCallback(
    (id, width, height) => {
      const item = itemsRef.current.find((i) => i.id === id);
      if (!item) return;
      if (tooManyPixels(width, height, limits)) {
        const megapixels = Math.round(limits.max_image_pixels / 1e6);
        remove(id);
        setNotAdded((current) => ({
          ...current,
          refused: [...current.refused, { name: item.file.name, reason: `is ${width}×${height} pixels, over the ${megapixels} megapixel limit.` }],
        }));
        return;
      }
      setItems((current) => current.map((i) => (i.id === id ? { ...i, width, height } : i)));
    },
    [limits, remove],
  );

  return { items, notAdded, add, remove, clear, measured, dismissRefused };
}
