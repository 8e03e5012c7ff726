import { plural } from '../../lib/format.js';

const SHOWN = 10;

/**
 * Refused image addresses, each `{line, url, reason}` ("Line 3: ftp://… is not …"): the
 * first few, then how many more, as the server's own lists are cut short.
 */
export default function RefusedRows({ rows, title, testId = 'refused-rows' }) {
  if (!rows.length) return null;
  return (
    <div className="refused-rows" data-testid={testId}>
      <p className="refused-rows-title">{title || `${plural(rows.length, 'address is', 'addresses are')} not sent:`}</p>
      <ul className="refused-list">
        {rows.slice(0, SHOWN).map((row, index) => (
          <li key={index}>
            {row.line ? `Line ${row.line}: ` : ''}
            <span className="file-name-inline">{row.url}</span> {row.reason}
          </li>
        ))}
        {rows.length > SHOWN && <li>…and {rows.length - SHOWN} more.</li>}
      </ul>
    </div>
  );
}

/**
 * The server's refusals of rows (`{row, url, error: {message}}`, as POST /api/v1/jobs gives
 * them) as RefusedRows' entries. `lines` maps the list sent back to the lines the person typed.
 */
export function serverRows(rejected, lines = null) {
  return (Array.isArray(rejected) ? rejected : []).map((entry) => {
    const message = String(entry?.error?.message || entry?.message || 'was refused').replace(/^row \d+: /, '');
    const row = Number.isInteger(entry?.row) ? entry.row : null;
    return { line: row && lines ? lines[row - 1] ?? row : row, url: entry?.url || '', reason: message };
  });
}
