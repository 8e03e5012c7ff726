import { plural } from '../../lib/format.js';
import Notice from '../Notice.jsx';

const SHOWN = 20;

/** Which picked files were not added, and why. */
export default function NotAddedNotice({ notAdded, onDismiss }) {
  const { refused, duplicates } = notAdded;
  if (!refused.length && !duplicates) return null;
  return (
    <Notice
      tone="warning"
      title={refused.length ? `${plural(refused.length, 'file was', 'files were')} not added` : 'Already added'}
      actions={
        <button type="button" className="button button-small button-quiet" onClick={onDismiss}>
          Dismiss
        </button>
      }
    >
      {refused.length > 0 && (
        <ul className="refused-list">
          {refused.slice(0, SHOWN).map((entry, index) => (
            <li key={index}>
              <span className="file-name-inline">{entry.name}</span> {entry.reason}
            </li>
          ))}
          {refused.length > SHOWN && <li>…and {refused.length - SHOWN} more.</li>}
        </ul>
      )}
      {duplicates > 0 && <p>{plural(duplicates, 'photo was', 'photos were')} already in the list.</p>}
    </Notice>
  );
}
