// The "details" of an API error (a list of field problems, per-file errors, or a mapping)
// as short lines of text. Everything is rendered as text: details can echo user input.

function describeLocation(loc) {
  if (Array.isArray(loc)) {
    return loc.map((part) => (typeof part === 'number' ? `#${part + 1}` : String(part))).join(' › ');
  }
  return loc ? String(loc) : '';
}

/** Lines of text for an error's details, whatever their shape. */
export function detailLines(details, limit = 20) {
  if (details === null || details === undefined || details === '') return [];
  if (typeof details === 'string') return [details];
  const entries = Array.isArray(details) ? details.map((value) => [null, value]) : Object.entries(details);
  const lines = entries.map(([key, value]) => {
    if (value && typeof value === 'object' && !Array.isArray(value)) {
      const where = describeLocation(value.loc ?? value.field ?? value.filename ?? value.path ?? key);
      const what = value.msg ?? value.message ?? value.error?.message ?? value.error ?? JSON.stringify(value);
      return where ? `${where}: ${what}` : String(what);
    }
    const text = Array.isArray(value) ? value.join(', ') : String(value);
    return key ? `${key}: ${text}` : text;
  });
  return lines.length > limit ? [...lines.slice(0, limit), `…and ${lines.length - limit} more.`] : lines;
}

/** A list of an error's details, or nothing when there are none. */
export default function ErrorDetails({ details }) {
  const lines = detailLines(details);
  if (!lines.length) return null;
  return (
    <ul className="error-details">
      {lines.map((line, index) => (
        <li key={index}>{line}</li>
      ))}
    </ul>
  );
}
