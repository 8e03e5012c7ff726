/** A labelled progress bar: `value` of `max`, with the words shown beside it. */
export default function ProgressBar({ id, label, value, max, text }) {
  const percent = max > 0 ? Math.min(100, Math.round((value / max) * 100)) : 0;
  return (
    <div className="progress">
      <div className="progress-head">
        <label htmlFor={id}>{label}</label>
        <span className="progress-percent" aria-hidden="true">{percent}%</span>
      </div>
      <progress id={id} value={value} max={max > 0 ? max : 1} aria-valuetext={text || `${percent}%`}>
        {percent}%
      </progress>
      {text && <p className="progress-text">{text}</p>}
    </div>
  );
}
