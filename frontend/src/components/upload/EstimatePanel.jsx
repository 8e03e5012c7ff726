import { changeInWords, formatBytes, plural } from '../../lib/format.js';
import { durationInWords } from '../../lib/wording.js';

const SHOWN = 10;

/** The estimate's answer (services/image_handler/estimate.py) in a person's words. */
function EstimateAnswer({ estimate }) {
  const { answer, sent, total, scale } = estimate;
  const totals = answer.totals || {};
  const grow = (value) => (value == null ? null : value * (scale || 1));
  const bytesIn = grow(totals.bytes_in);
  const bytesOut = grow(totals.predicted_bytes_out);
  const cpu = grow(totals.cpu_seconds);
  const wall = grow(totals.wall_seconds);
  const refused = answer.refused || [];
  const saved = totals.predicted_saved_percent;
  return (
    <div className="estimate-answer" data-testid="estimate-answer">
      {answer.accepted === false && (answer.reasons || []).length > 0 && (
        <p className="field-error">The server would not take this job as it is: {(answer.reasons || []).map((r) => r.message).join('; ')}.</p>
      )}
      <ul className="estimate-figures">
        {bytesOut != null ? (
          <li data-testid="estimate-size">
            Results of about <strong>{formatBytes(Math.round(bytesOut))}</strong> from {formatBytes(Math.round(bytesIn))} of photos
            {saved != null && `: ${changeInWords(saved)}.`}
          </li>
        ) : (
          <li>The size of the results could not be predicted for these steps.</li>
        )}
        {wall != null && (
          <li data-testid="estimate-time">
            Ready in <strong>{durationInWords(wall)}</strong> once sent, with {plural(answer.processor_slots || 1, 'photo')} processed at a time
            {answer.images_queued_ahead ? ` and ${plural(answer.images_queued_ahead, 'photo')} of other jobs ahead` : ''} ({durationInWords(cpu)} of processing
            in all).
          </li>
        )}
        <li data-testid="estimate-count">
          {plural(totals.images || 0, 'photo')} would be processed{refused.length ? `, ${refused.length} refused` : ''}.
        </li>
      </ul>
      {sent < total && (
        <p className="field-hint" data-testid="estimate-sample">
          Measured on the first {sent} of {plural(total, 'photo')} (one request to the server takes only so much); the figures are scaled to all{' '}
          {total}.
        </p>
      )}
      {refused.length > 0 && (
        <div className="refused-rows" data-testid="estimate-refused">
          <p className="refused-rows-title">{plural(refused.length, 'photo', 'photos')} would be refused:</p>
          <ul className="refused-list">
            {refused.slice(0, SHOWN).map((entry, index) => (
              <li key={index}>
                <span className="file-name-inline">{entry.filename}</span>: {String(entry.error?.message || '').replace(`${entry.filename}: `, '')}
              </li>
            ))}
            {refused.length > SHOWN && <li>…and {refused.length - SHOWN} more.</li>}
          </ul>
        </div>
      )}
    </div>
  );
}

/**
 * "Estimate": what the job would do, asked of the server before "Process" and never in its
 * way. `stale` when the photos or steps changed since; `unavailable` says why there is none
 * (no photos yet, or a URL import).
 */
export default function EstimatePanel({ estimate, stale, onEstimate, unavailable }) {
  const running = estimate.status === 'running';
  return (
    <div className="estimate" aria-live="polite">
      <div className="estimate-head">
        <button type="button" className="button" onClick={onEstimate} disabled={running || Boolean(unavailable)}>
          {estimate.status === 'done' && stale ? 'Estimate again' : 'Estimate size and time'}
        </button>
        <span className="field-hint">
          {unavailable || (running ? 'Measuring a few of your photos on the server… nothing is kept.' : 'Optional: the server measures your photos with these steps and keeps nothing.')}
        </span>
      </div>
      {estimate.status === 'done' && !unavailable && (
        <>
          {stale && (
            <p className="field-hint" data-testid="estimate-stale">
              The photos or steps changed since this estimate.
            </p>
          )}
          <EstimateAnswer estimate={estimate} />
        </>
      )}
      {estimate.status === 'error' && !unavailable && (
        <p className="field-error" role="alert">
          No estimate: {estimate.error.message}
        </p>
      )}
    </div>
  );
}
