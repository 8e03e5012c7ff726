import { useCallback, useEffect, useState } from 'react';
import { deletePreset, fetchSavedPresets, savePreset } from '../lib/api.js';
import useApiKey from './useApiKey.js';

/**
 * The caller's saved presets (GET/POST/DELETE /api/v1/presets): `{available, presets,
 * save(name, operations), remove(name)}`. A server without them (404) leaves `available`
 * false and the page offers none. `enabled` false waits (for the server's options, or a key). They belong to the caller: a new API key reads them again.
 */
export default function useSavedPresets(enabled = true) {
  const [state, setState] = useState({ available: false, presets: [] });
  const [apiKey] = useApiKey();
  useEffect(() => {
    // Not before the server's options say whether a key is needed and the key is there.
    if (!enabled) return undefined;
    const controller = new AbortController();
    fetchSavedPresets({ signal: controller.signal })
      .then((presets) => setState({ available: true, presets }))
      .catch(() => setState({ available: false, presets: [] }));
    return () => controller.abort();
  }, [apiKey, enabled]);

  const save = useCallback(async (name, operations) => {
    const saved = await savePreset(name, operations);
    setState((current) => ({
      available: true,
      presets: [...current.presets.filter((p) => p.name !== saved.name), saved].sort((a, b) => a.name.localeCompare(b.name)),
    }));
    return saved;
  }, []);

  const remove = useCallback(async (name) => {
    await deletePreset(name);
    setState((current) => ({ ...current, presets: current.presets.filter((p) => p.name !== name) }));
  }, []);

  return { ...state, save, remove };
}
