import { useState } from 'react';
import { fileType } from '../lib/files.js';
import { distinctNames, formatBytes, formatName, plural } from '../lib/format.js';

function Thumbnail({ item, onMeasured }) {
  const [broken, setBroken] = useState(false);
  if (broken) {
    return (
      <div className="thumb thumb-empty" aria-hidden="true">
        <span>No preview</span>
      </div>
    );
  }
  return (
    <img
      className="thumb"
      src={item.url}
      alt=""
      decoding="async"
      loading="lazy"
      onLoad={(event) => onMeasured(item.id, event.currentTarget.naturalWidth, event.currentTarget.naturalHeight)}
      onError={() => setBroken(true)}
    />
  );
}

/** A photo's part in the upload under way, in words: "Sending 40 %", "Refused: <the server's reason>". */
export function fileStateText(state) {
  switch (state?.state) {
    case 'waiting':
      return 'Waiting';
    case 'sending':
      return `Sending ${state.percent ?? 0} %`;
    case 'sent':
      return 'Sent';
    case 'retrying':
      return `Retrying${state.reason ? ` (${state.reason})` : ''}`;
    case 'refused':
      return `Refused: ${state.reason}`;
    default:
      return '';
  }
}

/**
 * The chosen photos, each with a thumbnail, its size and type, and a remove button; while they
 * upload, each says its state (`states`, by item id: see useUploadQueue).
 */
export default function FileList({ items, onRemove, onClear, onMeasured, disabled, states = null }) {
  if (!items.length) return null;
  const total = items.reduce((sum, item) => sum + item.file.size, 0);
  const labels = distinctNames(items.map((item) => item.file.webkitRelativePath || item.file.name));
  return (
    <section className="file-list" aria-labelledby="file-list-title">
      <div className="file-list-head">
        <h3 id="file-list-title">
          {plural(items.length, 'photo')} chosen <span className="muted">({formatBytes(total)})</span>
        </h3>
        <button type="button" className="button button-small button-quiet" onClick={onClear} disabled={disabled}>
          Remove all
        </button>
      </div>
      <ul className="file-grid">
        {items.map((item, index) => (
          <li key={item.id} className="file-card">
            <Thumbnail item={item} onMeasured={onMeasured} />
            <div className="file-meta">
              <span className="file-name" title={labels[index]}>{labels[index]}</span>
              <span className="muted">
                {formatBytes(item.file.size)} · {formatName(item.kind || fileType(item.file)) || 'unknown type'}
                {item.width ? ` · ${item.width}×${item.height}` : ''}
              </span>
              {states?.[item.id] && (
                <span className={`file-state file-state-${states[item.id].state}`} data-testid="file-state">
                  {fileStateText(states[item.id])}
                </span>
              )}
            </div>
            <button
              type="button"
              className="icon-button"
              onClick={() => onRemove(item.id)}
              aria-label={`Remove ${labels[index]}`}
              disabled={disabled}
            >
              <span aria-hidden="true">×</span>
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}
