import { useEffect, useState } from 'react';
import { fetchOperations } from '../lib/api.js';
import { DEFAULT_LIMITS } from '../lib/files.js';
import { parseOperationsSchema } from '../lib/schema.js';

/**
 * The operations schema, presets and limits from GET /api/v1/operations, with a retry.
 * Returns `[state, retry]`; state is {status: loading|ready|error, operations, presets,
 * limits, apiKeysRequired, error}.
 */
export default function useServerOptions() {
  const [state, setState] = useState({ status: 'loading' });
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    const controller = new AbortController();
    setState({ status: 'loading' });
    fetchOperations({ signal: controller.signal })
      .then((data) => {
        let operations;
        try {
          operations = parseOperationsSchema(data.schema);
        } catch (err) {
          setState({ status: 'error', error: { message: `The server's list of operations could not be read (${err.message}).` } });
          return;
        }
        setState({
          status: 'ready',
          operations,
          presets: data.presets || {},
          apiKeysRequired: data.api_keys_required === true,
          limits: { ...DEFAULT_LIMITS, ...(data.limits || {}) },
        });
      })
      .catch((error) => {
        if (error.name !== 'AbortError') setState({ status: 'error', error });
      });
    return () => controller.abort();
  }, [attempt]);
  return [state, () => setAttempt((n) => n + 1)];
}
