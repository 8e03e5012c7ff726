import { useState } from 'react';
import { formatBytes } from '../lib/files.js';
import { explainImageError, formatName, imageStatusText } from '../lib/jobs.js';

const EXTENSIONS = { 'image/jpeg': 'jpg', 'image/png': 'png', 'image/webp': 'webp', 'image/avif': 'avif', 'image/gif': 'gif', 'image/tiff': 'tiff' };

/** The name a downloaded result gets: the original's stem, the variant, the new extension. */
export function downloadName(filename, contentType, variant) {
  const base = String(filename || 'image').split(/[\\/]/).pop();
  const stem = base.includes('.') ? base.slice(0, base.lastIndexOf('.')) : base;
  const ext = EXTENSIONS[contentType] || (base.includes('.') ? base.slice(base.lastIndexOf('.') + 1) : 'img');
  return `${stem || 'image'}${variant ? `-${variant}` : ''}.${ext}`;
}

function Picture({ src, alt, className }) {
  // Signed storage URLs change on every poll; keep showing the first one so the picture
  // does not reload each second, and move to the newest only if the one shown fails
  // (it may have expired).
  const [shown, setShown] = useState(src);
  const [broken, setBroken] = useState(false);
  const current = shown || src;
  const onError = () => {
    if (src && src !== current) setShown(src);
    else setBroken(true);
  };
  if (!current || broken) {
    return (
      <div className={`picture picture-empty ${className || ''}`}>
        <span>{current ? 'No preview' : ''}</span>
      </div>
    );
  }
  return <img className={`picture ${className || ''}`} src={current} alt={alt} loading="lazy" decoding="async" onError={onError} />;
}

function describeOutput(output) {
  return [output.width && output.height ? `${output.width}×${output.height}` : '', formatBytes(output.bytes ?? NaN), formatName(output.content_type)]
    .filter(Boolean)
    .join(' · ');
}

/** One image of a job: its status, the before and after pictures, downloads or the error. */
export default function ImageCard({ image }) {
  const outputs = image.outputs?.length
    ? image.outputs
    : image.output_url
      ? [{ variant: '', url: image.output_url, width: image.width, height: image.height, bytes: image.bytes, content_type: image.content_type }]
      : [];
  const main = outputs[0];
  const failure = image.status === 'failed' ? explainImageError(image.error) : null;

  return (
    <li className={`image-card image-${image.status}`} data-image-id={image.image_id}>
      <div className="image-card-head">
        <h3 className="file-name" title={image.filename}>
          {image.filename}
        </h3>
        <span className={`badge badge-${image.status}`}>{imageStatusText(image.status)}</span>
      </div>
      <div className="before-after">
        <figure>
          <Picture src={image.input_url} alt={`${image.filename}, before`} />
          <figcaption>Before</figcaption>
        </figure>
        <figure>
          {image.status === 'succeeded' && main ? (
            <Picture src={main.url} alt={`${image.filename}, after`} />
          ) : image.status === 'failed' || image.status === 'skipped' ? (
            <div className="picture picture-empty picture-failed">
              <span>{image.status === 'skipped' ? 'Skipped: the job was cancelled' : 'No result'}</span>
            </div>
          ) : (
            <div className="picture picture-empty picture-waiting">
              <span className="spinner" aria-hidden="true" />
              <span>Working on it…</span>
            </div>
          )}
          <figcaption>After{main ? ` · ${describeOutput(main)}` : ''}</figcaption>
        </figure>
      </div>
      {failure && (
        <div className="image-error">
          <p>{failure.summary}</p>
          {failure.detail && <p className="muted image-error-detail">Details: {failure.detail}</p>}
        </div>
      )}
      {image.status === 'succeeded' && outputs.length > 0 && (
        <div className="image-downloads">
          {outputs.map((output, index) => (
            <a
              key={output.variant || index}
              className="button button-small"
              href={output.url}
              download={downloadName(image.filename, output.content_type, output.variant)}
              aria-label={`Download ${image.filename}${output.variant ? ` (${output.variant})` : ''}`}
            >
              Download{output.variant ? ` ${output.variant}` : ''}
            </a>
          ))}
        </div>
      )}
    </li>
  );
}
