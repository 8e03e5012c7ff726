import { urlLimitsText } from '../../lib/files.js';
import { formatBytes, plural } from '../../lib/format.js';
import RefusedRows from './RefusedRows.jsx';

/**
 * Images by address instead of files: pasted URLs (one a line) or a CSV file whose `url`
 * column the server reads. `refused` are the pasted lines that are not addresses.
 */
export default function UrlImport({ text, onText, csv, onCsv, parsed, limits, disabled }) {
  const tooMany = parsed.urls.length > (limits.max_urls_per_job || Infinity);
  return (
    <div className="url-import">
      <p className="field-hint" id="url-limits" data-testid="url-limits">
        {urlLimitsText(limits)}
      </p>
      <div className="field">
        <label htmlFor="url-list">Image addresses</label>
        <textarea
          id="url-list"
          rows={6}
          value={text}
          disabled={disabled || Boolean(csv)}
          placeholder={'https://example.com/photos/red-shoe.jpg\nhttps://example.com/photos/blue-shoe.jpg'}
          aria-describedby="url-limits url-count"
          onChange={(e) => onText(e.target.value)}
        />
        <p className="field-hint" id="url-count" role="status">
          {csv
            ? 'Using the CSV file below; remove it to paste addresses instead.'
            : parsed.urls.length
              ? `${plural(parsed.urls.length, 'address', 'addresses')} to import.`
              : ''}
          {tooMany && ` That is more than the ${Number(limits.max_urls_per_job).toLocaleString('en')} a job takes.`}
        </p>
      </div>
      {!csv && <RefusedRows rows={parsed.refused} />}
      <div className="field">
        <label htmlFor="url-csv">Or a CSV file of addresses</label>
        <input key={csv ? "with-csv" : "no-csv"} id="url-csv" type="file" accept=".csv,text/csv" data-testid="csv-input" disabled={disabled} onChange={(e) => onCsv(e.target.files?.[0] || null)} />
        {csv && (
          <p className="field-hint">
            {csv.name} ({formatBytes(csv.size)}){' '}
            <button type="button" className="button button-small button-quiet" onClick={() => onCsv(null)}>
              Remove the CSV
            </button>
          </p>
        )}
      </div>
    </div>
  );
}
