import { plural } from '../../lib/format.js';
import Notice from '../Notice.jsx';

const SHOWN = 20;

/** Which picked files were not added, and why. */
export default function NotAddedNotice({ notAdded, onDismiss }) {
  const { refused, duplicates } = notAdded;
  if (!refused.length && !duplicates) return null;
  // Files over a limit of the whole batch share one reason: say it once, with their names.
  const own = refused.filter((entry) => !entry.limit);
  const byLimit = new Map();
  for (const entry of refused.filter((e) => e.limit)) byLimit.set(entry.limit, [...(byLimit.get(entry.limit) || []), entry]);
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
          {own.slice(0, SHOWN).map((entry, index) => (
            <li key={index}>
              <span className="file-name-inline">{entry.name}</span> {entry.reason}
            </li>
          ))}
          {own.length > SHOWN && <li>…and {own.length - SHOWN} more.</li>}
          {[...byLimit.entries()].map(([limit, entries]) => (
            <li key={limit}>
              {entries[0].reason} Not added: {plural(entries.length, 'file')} (
              <span className="file-name-inline">{entries.slice(0, 5).map((e) => e.name).join(', ')}</span>
              {entries.length > 5 ? `, and ${entries.length - 5} more` : ''}). Send them in another job.
            </li>
          ))}
        </ul>
      )}
      {duplicates > 0 && <p>{plural(duplicates, 'photo was', 'photos were')} already in the list.</p>}
    </Notice>
  );
}
