import { useCallback, useEffect, useRef, useState } from 'react';
import { checkFiles, tooManyPixels } from '../lib/files.js';
import { formatMegapixels } from '../lib/format.js';
import { getPhotoStore, quietly } from '../lib/savedWork.js';
import { sniffFile } from '../lib/sniff.js';

let nextFileId = 1;

const NOTHING_REFUSED = { refused: [], duplicates: 0 };

/** What each file's first bytes show, as sniff.js reads them (empty files are left out). */
async function sniffAll(files) {
  const results = await Promise.all(
    files.map((file) => (file.size > 0 ? sniffFile(file).catch(() => null) : null)),
  );
  return new Map(files.map((file, index) => [file, results[index]]).filter(([, result]) => result));
}

/**
 * The photos chosen for the next job: each `{id, file, kind, url, width, height}`, checked
 * against the server's limits and sniffed as they come in. `notAdded` says which were
 * refused and why. The list is kept in the photo store (savedWork.js), so it survives
 * leaving the page and reloading it; `restoring` is true until it has been read back, and
 * `restored` counts the photos it gave back.
 */
export default function useChosenPhotos(limits) {
  const [items, setItems] = useState([]);
  const [notAdded, setNotAdded] = useState(NOTHING_REFUSED);
  const [restoring, setRestoring] = useState(true);
  const [restored, setRestored] = useState(0);
  const itemsRef = useRef(items);
  itemsRef.current = items;

  // Object URLs hold the photos in memory: release them when the page goes away.
  useEffect(() => () => itemsRef.current.forEach((item) => URL.revokeObjectURL(item.url)), []);

  useEffect(() => {
    let live = true;
    quietly(getPhotoStore().load(), []).then((records) => {
      if (!live) return;
      const restored = records
        .filter((r) => r && r.file && Number.isInteger(r.id))
        .map((r) => ({ id: r.id, file: r.file, kind: r.kind || null, url: URL.createObjectURL(r.file) }));
      nextFileId = Math.max(nextFileId, ...restored.map((r) => r.id + 1));
      if (restored.length) {
        itemsRef.current = [...restored, ...itemsRef.current];
        setItems(itemsRef.current);
      }
      setRestored(restored.length);
      setRestoring(false);
    });
    return () => {
      live = false;
    };
  }, []);

  const add = useCallback(
    async (files) => {
      const sniffed = await sniffAll(files);
      const { accepted, refused, duplicates } = checkFiles(
        itemsRef.current.map((item) => item.file),
        files,
        limits,
        sniffed,
      );
      setNotAdded({ refused, duplicates });
      if (!accepted.length) return 0;
      const added = accepted.map((file) => ({ id: nextFileId++, file, kind: sniffed.get(file)?.kind || null, url: URL.createObjectURL(file) }));
      const next = [...itemsRef.current, ...added];
      itemsRef.current = next;
      setItems(next);
      quietly(getPhotoStore().add(added.map(({ id, file, kind }) => ({ id, file, kind })), next.map((i) => i.id)));
      return accepted.length;
    },
    [limits],
  );

  const remove = useCallback((id) => {
    const item = itemsRef.current.find((i) => i.id === id);
    if (!item) return;
    URL.revokeObjectURL(item.url);
    const next = itemsRef.current.filter((i) => i.id !== id);
    itemsRef.current = next;
    setItems(next);
    quietly(getPhotoStore().remove([id], next.map((i) => i.id)));
  }, []);

  const clear = useCallback(() => {
    const ids = itemsRef.current.map((item) => item.id);
    itemsRef.current.forEach((item) => URL.revokeObjectURL(item.url));
    itemsRef.current = [];
    setItems([]);
    setNotAdded(NOTHING_REFUSED);
    setRestored(0);
    quietly(getPhotoStore().clear(ids));
  }, []);

  const dismissRefused = useCallback(() => setNotAdded(NOTHING_REFUSED), []);

  // The browser has drawn a thumbnail, so the photo's pixel size is known: refuse it if
  // the server would.
  const measured = useCallback(
    (id, width, height) => {
      const item = itemsRef.current.find((i) => i.id === id);
      if (!item) return;
      if (tooManyPixels(width, height, limits)) {
        remove(id);
        setNotAdded((current) => ({
          ...current,
          refused: [...current.refused, { name: item.file.name, reason: `is ${width}×${height} pixels, over the limit of ${formatMegapixels(limits.max_image_pixels)}.` }],
        }));
        return;
      }
      const next = itemsRef.current.map((i) => (i.id === id ? { ...i, width, height } : i));
      itemsRef.current = next;
      setItems(next);
    },
    [limits, remove],
  );

  return { items, notAdded, restoring, restored, add, remove, clear, measured, dismissRefused };
}
