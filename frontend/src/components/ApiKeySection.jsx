import { useEffect, useRef, useState } from 'react';

/**
 * The API key, for a server that asks for one (GET /api/v1/operations says
 * `api_keys_required`, or a page's read answered 401). The key is kept for this tab only
 * (sessionStorage, see api.js) and sent with every call the page makes. `refused` is the
 * server's message after a 401. `focusField` moves the focus to the field whenever it shows
 * (or the key is refused again): on a page the key is all it waits for (the job page opened
 * from an email in a new tab).
 */
export default function ApiKeySection({ apiKey, onKey, refused, focusField = false }) {
  const [draft, setDraft] = useState('');
  const [editing, setEditing] = useState(!apiKey);
  const showInput = editing || !apiKey || Boolean(refused);
  const inputRef = useRef(null);
  useEffect(() => {
    if (focusField && showInput) inputRef.current?.focus();
  }, [focusField, showInput, refused]);
  const use = () => {
    if (!draft.trim()) return;
    onKey(draft.trim());
    setDraft('');
    setEditing(false);
  };
  return (
    <section className="card api-key" aria-labelledby="api-key-title">
      <h2 id="api-key-title" tabIndex={-1}>
        API key
      </h2>
      <p className="field-hint" id="api-key-hint">
        This ImageFlow server asks for an API key. It is kept in this browser tab only, until you close it, and sent
        with everything the page asks the server.
      </p>
      {apiKey && !refused && !showInput && (
        <p role="status" data-testid="api-key-status">
          Using the key ending in <code>{apiKey.slice(-4)}</code>.{' '}
          <button type="button" className="button button-small button-quiet" onClick={() => setEditing(true)}>
            Change it
          </button>{' '}
          <button type="button" className="button button-small button-quiet" onClick={() => { onKey(''); setEditing(true); }}>
            Forget it
          </button>
        </p>
      )}
      {showInput && (
        <div className="field">
          <label htmlFor="api-key">Your API key</label>
          <div className="add-step-row">
            <input
              ref={inputRef}
              id="api-key"
              type="password"
              autoComplete="off"
              spellCheck={false}
              value={draft}
              aria-invalid={refused ? true : undefined}
              aria-describedby={refused ? 'api-key-hint api-key-error' : 'api-key-hint'}
              onChange={(e) => setDraft(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === 'Enter') {
                  e.preventDefault();
                  use();
                }
              }}
            />
            <button type="button" className="button" onClick={use}>
              Use this key
            </button>
          </div>
          {refused && (
            <p className="field-error" id="api-key-error" role="alert">
              {refused}
            </p>
          )}
        </div>
      )}
    </section>
  );
}
