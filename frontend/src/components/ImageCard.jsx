import { useMemo, useState } from 'react';
import { formatBytes, formatName, savingText } from '../lib/format.js';
import { explainImageError, imageStatusText } from '../lib/jobs.js';
import { placeholderOf, placeholderStyle } from '../lib/placeholder.js';

const EXTENSIONS = { 'image/jpeg': 'jpg', 'image/png': 'png', 'image/webp': 'webp', 'image/avif': 'avif', 'image/gif': 'gif', 'image/tiff': 'tiff', 'image/jxl': 'jxl', 'image/heic': 'heic' };

/** The name a downloaded result gets: the original's stem, the variant, the new extension. */
export function downloadName(filename, contentType, variant) {
  const base = String(filename || 'image').split(/[\\/]/).pop();
  const stem = base.includes('.') ? base.slice(0, base.lastIndexOf('.')) : base;
  const ext = EXTENSIONS[contentType] || (base.includes('.') ? base.slice(base.lastIndexOf('.') + 1) : 'img');
  return `${stem || 'image'}${variant ? `-${variant}` : ''}.${ext}`;
}

/** The image's outputs, one per variant (a job without variants has one, named ''). */
export function outputsOf(image) {
  if (image.outputs?.length) return image.outputs;
  return image.output_url
    ? [{ variant: '', url: image.output_url, preview_url: image.output_preview_url, width: image.width, height: image.height, bytes: image.bytes, content_type: image.content_type }]
    : [];
}

/**
 * The small pictures of a card: the server's previews. The processor writes the "before"
 * preview when it takes the image, so a waiting image has none yet and shows no picture
 * rather than its original (which may be 30 MB). Only a finished image without previews
 * (a job from before they existed) falls back to the files themselves.
 */
export function thumbnails(image) {
  const main = outputsOf(image)[0];
  const finished = image.status === 'succeeded' || image.status === 'failed' || image.status === 'skipped';
  return {
    before: image.input_preview_url || (finished ? image.input_url : null),
    after: main ? main.preview_url || image.output_preview_url || main.url : null,
  };
}

/** "800×600 · 50.8 KB · JPEG" for whatever of these is known. */
export function describeFile({ width, height, bytes, content_type: contentType }) {
  return [width && height ? `${width}×${height}` : '', formatBytes(bytes ?? NaN), formatName(contentType)].filter(Boolean).join(' · ');
}

/**
 * A picture that keeps its first URL (see below). `placeholder` ({blurhash, color, width,
 * height}, see lib/placeholder.js) is drawn behind it until it has loaded.
 */
export function Picture({ src, alt, className, placeholder }) {
  // Signed storage URLs change on every poll; keep showing the first one so the picture
  // does not reload each second, and move to the newest only if the one shown fails
  // (it may have expired).
  const [shown, setShown] = useState(src);
  const [broken, setBroken] = useState(false);
  const [loaded, setLoaded] = useState(false);
  const current = shown || src;
  const { blurhash, color, width, height } = placeholder || {};
  const waiting = useMemo(() => placeholderStyle({ blurhash, color, width, height }), [blurhash, color, width, height]);
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
  // Once drawn, the picture's own background (the checkerboard behind transparency) is back.
  return (
    <img
      className={`picture ${className || ''}`}
      style={loaded ? undefined : waiting}
      data-placeholder={!loaded && waiting ? (waiting.backgroundImage !== 'none' ? 'blurhash' : 'color') : undefined}
      src={current}
      alt={alt}
      loading="lazy"
      decoding="async"
      // a picture from the cache may be drawn before React listens for its load event
      ref={(img) => {
        if (img?.complete && img.naturalWidth > 0 && !loaded) setLoaded(true);
      }}
      onLoad={() => setLoaded(true)}
      onError={onError}
    />
  );
}

/**
 * One image of a job: its status, the before and after pictures, downloads or the error.
 * `name` is its file name made distinct within the job; `onCompare` opens the lightbox.
 */
export default function ImageCard({ image, name = image.filename, onCompare }) {
  const outputs = outputsOf(image);
  const main = outputs[0];
  const thumbs = thumbnails(image);
  const failure = image.status === 'failed' ? explainImageError(image) : null;
  const saving = image.status === 'succeeded' && main ? savingText(image.input_bytes, main.bytes) : '';

  return (
    <li className={`image-card image-${image.status}`} data-image-id={image.image_id}>
      <div className="image-card-head">
        <h3 className="file-name" title={name}>
          {name}
        </h3>
        <span className={`badge badge-${image.status}`}>{imageStatusText(image.status)}</span>
      </div>
      <div className="before-after">
        <figure>
          {/* a new picture (not a re-signed URL of the same one) once the preview comes */}
          <Picture key={thumbs.before === image.input_preview_url ? 'preview' : 'file'} src={thumbs.before} alt={`${name}, before`} />
          <figcaption>Before</figcaption>
        </figure>
        <figure>
          {image.status === 'succeeded' && main ? (
            <Picture src={thumbs.after} alt={`${name}, after`} placeholder={placeholderOf(image, main)} />
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
          <figcaption>After{main ? ` · ${describeFile(main)}` : ''}</figcaption>
        </figure>
      </div>
      {saving && <p className="muted image-saving">{saving} than the original</p>}
      {failure && (
        <div className="image-error">
          <p>{failure.summary}</p>
          {failure.detail && <p className="muted image-error-detail">Details: {failure.detail}</p>}
        </div>
      )}
      {image.status === 'succeeded' && outputs.length > 0 && (
        <div className="image-downloads">
          {onCompare && (
            <button type="button" className="button button-small button-quiet" onClick={() => onCompare(image.image_id)} aria-label={`Compare ${name} before and after`}>
              Compare
            </button>
          )}
          {outputs.map((output, index) => (
            <a
              key={output.variant || index}
              className="button button-small"
              href={output.url}
              download={downloadName(name, output.content_type, output.variant)}
              aria-label={`Download ${name}${output.variant ? ` (${output.variant})` : ''}`}
            >
              Download{output.variant ? ` ${output.variant}` : ''}
            </a>
          ))}
        </div>
      )}
    </li>
  );
}
