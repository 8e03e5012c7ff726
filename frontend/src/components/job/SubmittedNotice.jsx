import { plural, sentence } from '../../lib/format.js';
import Notice from '../Notice.jsx';

/** The server's reason for refusing a file, without the file name it starts with. */
export function refusalReason(entry) {
  const message = entry.error?.message || 'was refused.';
  const prefix = `${entry.filename}: `;
  return sentence(message.startsWith(prefix) ? message.slice(prefix.length) : message);
}

/** Right after the upload: what was sent, what the server refused, what the page left out. */
export default function SubmittedNotice({ submitted }) {
  const rejected = submitted.rejected || [];
  const leftOut = submitted.notAdded || 0;
  return (
    <>
      <Notice tone="success" title={`Upload complete: ${plural(submitted.count, 'photo')} sent.`}>
        <p>
          This page updates by itself.{' '}
          {submitted.email ? `We'll also email ${submitted.email} when the results are ready, so you can close it.` : 'Keep its address to come back later.'}
        </p>
        {leftOut > 0 && (
          <p data-testid="left-out">
            {plural(leftOut, 'file you picked was', 'files you picked were')} not sent: the upload page said why.
          </p>
        )}
      </Notice>
      {rejected.length > 0 && (
        <Notice tone="warning" title={`The server refused ${plural(rejected.length, 'file')}:`}>
          <ul className="refused-list">
            {rejected.map((entry, index) => (
              <li key={index}>
                <span className="file-name-inline">{entry.filename}</span>: {refusalReason(entry)}
              </li>
            ))}
          </ul>
        </Notice>
      )}
    </>
  );
}
