// The work in progress on the upload page, kept across Back, "Process more photos" and a
// reload: the chosen photos in IndexedDB (File objects, which it stores as they are) and
// the steps, preset and email in localStorage. Storage may be missing or full (private
// windows): then the page simply starts empty.
import { createStore, del, delMany, get, getMany, set, setMany } from 'idb-keyval';

const INDEX_KEY = 'photo-ids';
const CHOICE_KEY = 'imageflow.upload-choice';

/** Photos in IndexedDB, one record per photo plus the list of their ids in order. */
export function indexedDbPhotoStore() {
  let store = null;
  const db = () => {
    store ??= createStore('imageflow', 'chosen-photos');
    return store;
  };
  return {
    async load() {
      const ids = (await get(INDEX_KEY, db())) || [];
      const records = await getMany(ids.map((id) => `photo-${id}`), db());
      return records.filter(Boolean);
    },
    async add(records, ids) {
      await setMany([...records.map((r) => [`photo-${r.id}`, r]), [INDEX_KEY, ids]], db());
    },
    async remove(removedIds, ids) {
      await delMany(removedIds.map((id) => `photo-${id}`), db());
      await set(INDEX_KEY, ids, db());
    },
    async clear(removedIds) {
      await delMany(removedIds.map((id) => `photo-${id}`), db());
      await del(INDEX_KEY, db());
    },
  };
}

/** The same, in memory: for browsers without IndexedDB, and for the component tests. */
export function memoryPhotoStore() {
  const records = new Map();
  let order = [];
  return {
    async load() {
      return order.map((id) => records.get(id)).filter(Boolean);
    },
    async add(added, ids) {
      added.forEach((r) => records.set(r.id, r));
      order = [...ids];
    },
    async remove(removedIds, ids) {
      removedIds.forEach((id) => records.delete(id));
      order = [...ids];
    },
    async clear() {
      records.clear();
      order = [];
    },
  };
}

let photoStore = typeof indexedDB === 'undefined' ? memoryPhotoStore() : indexedDbPhotoStore();

export function getPhotoStore() {
  return photoStore;
}

/** Use another store (the tests give each test a fresh memory store). */
export function setPhotoStore(store) {
  photoStore = store;
}

/** Run a storage call; a failing store (quota, private mode) only means nothing is kept. */
export async function quietly(promise, fallback) {
  try {
    return await promise;
  } catch {
    return fallback;
  }
}

/** The saved {mode, preset, steps, email}, or null. */
export function loadChoice() {
  try {
    const saved = JSON.parse(window.localStorage.getItem(CHOICE_KEY) || 'null');
    return saved && typeof saved === 'object' && Array.isArray(saved.steps) ? saved : null;
  } catch {
    return null;
  }
}

export function saveChoice(choice) {
  try {
    window.localStorage.setItem(CHOICE_KEY, JSON.stringify(choice));
  } catch {
    // full or disabled: nothing is kept
  }
}

const OPEN_UPLOAD_KEY = 'imageflow.open-upload';

/**
 * An open job being filled: `{job_id, links, ids, sent}` (the photo ids of the upload, and
 * those the job already holds), so the upload can carry on after a reload. Null if none.
 */
export function loadOpenUpload() {
  try {
    const saved = JSON.parse(window.localStorage.getItem(OPEN_UPLOAD_KEY) || 'null');
    return saved?.job_id && saved.links?.files && Array.isArray(saved.ids) && Array.isArray(saved.sent) ? saved : null;
  } catch {
    return null;
  }
}

export function saveOpenUpload(record) {
  try {
    window.localStorage.setItem(OPEN_UPLOAD_KEY, JSON.stringify(record));
  } catch {
    // full or disabled: a reload starts the upload again
  }
}

export function clearOpenUpload() {
  try {
    window.localStorage.removeItem(OPEN_UPLOAD_KEY);
  } catch {
    // nothing kept
  }
}
