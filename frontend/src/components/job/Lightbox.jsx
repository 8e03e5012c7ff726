import { useEffect, useReducer, useRef, useState } from 'react';
import { savingText } from '../../lib/format.js';
import { explainImageError } from '../../lib/jobs.js';
import { FITTED, lightboxView, panLimits } from '../../lib/lightboxView.js';
import { placeholderOf, placeholderStyle } from '../../lib/placeholder.js';
import { describeFile, outputsOf, thumbnails } from '../ImageCard.jsx';

const PHONE = '(max-width: 600px)'; // as the phone layout in styles.css

/** Whether the media query matches now, following it as the window changes. */
function useMedia(query) {
  const get = () => typeof window.matchMedia === 'function' && window.matchMedia(query).matches;
  const [matches, setMatches] = useState(get);
  useEffect(() => {
    if (typeof window.matchMedia !== 'function') return undefined;
    const list = window.matchMedia(query);
    const onChange = () => setMatches(list.matches);
    list.addEventListener?.('change', onChange);
    return () => list.removeEventListener?.('change', onChange);
  }, [query]);
  return matches;
}

/** Before and after over each other, a slider uncovering the after from the right. */
function SwipeCompare({ before, after, name, afterStyle }) {
  const [position, setPosition] = useState(50);
  return (
    <div className="swipe-compare" data-testid="swipe-compare">
      <img className="swipe-before" src={before} alt={`${name}, before`} />
      <img className="swipe-after" src={after} alt={`${name}, after`} style={{ ...afterStyle, clipPath: `inset(0 0 0 ${position}%)` }} />
      <span className="swipe-line" style={{ left: `${position}%` }} aria-hidden="true" />
      <span className="swipe-label swipe-label-before" aria-hidden="true">Before</span>
      <span className="swipe-label swipe-label-after" aria-hidden="true">After</span>
      <input
        type="range"
        className="swipe-slider"
        min="0"
        max="100"
        value={position}
        onChange={(event) => setPosition(Number(event.target.value))}
        aria-label="Before and after: slide to compare"
        aria-valuetext={`${Math.round(position)}% before`}
      />
    </div>
  );
}

/** The full-size result at 100 %, moved by dragging or the arrow keys (lib/lightboxView.js). */
function ZoomedPicture({ output, name, view, dispatch }) {
  const frameRef = useRef(null);
  const [natural, setNatural] = useState(null);
  const drag = useRef(null);
  const limits = () => panLimits(natural || { width: output.width, height: output.height }, frameRef.current && { width: frameRef.current.clientWidth, height: frameRef.current.clientHeight });

  useEffect(() => {
    const onKey = (event) => {
      if (!event.key.startsWith('Arrow')) return;
      event.preventDefault();
      dispatch({ type: 'key', key: event.key, limits: limits() });
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  });

  return (
    <div
      ref={frameRef}
      className="lightbox-zoom"
      data-testid="lightbox-zoom"
      onPointerDown={(event) => {
        drag.current = { x: event.clientX, y: event.clientY };
        event.currentTarget.setPointerCapture?.(event.pointerId);
      }}
      onPointerMove={(event) => {
        if (!drag.current) return;
        const dx = event.clientX - drag.current.x;
        const dy = event.clientY - drag.current.y;
        drag.current = { x: event.clientX, y: event.clientY };
        dispatch({ type: 'pan', dx, dy, limits: limits() });
      }}
      onPointerUp={() => {
        drag.current = null;
      }}
      onPointerCancel={() => {
        drag.current = null;
      }}
    >
      {!natural && (
        <p className="lightbox-loading muted" role="status">
          <span className="spinner" aria-hidden="true" /> Loading the full-size result…
        </p>
      )}
      <img
        src={output.url}
        alt={`${name}, after, at 100%`}
        draggable={false}
        style={{ transform: `translate(calc(-50% + ${view.x}px), calc(-50% + ${view.y}px))` }}
        onLoad={(event) => setNatural({ width: event.currentTarget.naturalWidth, height: event.currentTarget.naturalHeight })}
      />
    </div>
  );
}

/**
 * One photo large: the previews first, before and after side by side (a swipe slider on a
 * phone), with their sizes and the saving. "Zoom to 100 %" (or Z, or a double click) loads
 * the full-size result, and only then; it pans by dragging or with the arrows. Escape or the
 * close button closes; the arrows (buttons or keys) go through `images` when not zoomed.
 */
export default function Lightbox({ images, names, index, onIndex, onClose }) {
  const closeRef = useRef(null);
  const phone = useMedia(PHONE);
  const [view, dispatch] = useReducer(lightboxView, FITTED);
  const [afterLoaded, setAfterLoaded] = useState({}); // image id -> its result has been drawn
  const image = images[index];
  const main = image ? outputsOf(image)[0] : null;

  useEffect(() => {
    const opener = document.activeElement;
    closeRef.current?.focus();
    return () => opener?.focus?.();
  }, []);

  // another photo opens fitted
  const imageId = image?.image_id;
  useEffect(() => dispatch({ type: 'reset' }), [imageId]);

  useEffect(() => {
    const onKey = (event) => {
      if (event.key === 'Escape') return onClose();
      if (event.target?.type === 'range' || event.target?.tagName === 'INPUT') return undefined; // the slider's own keys
      if ((event.key === 'z' || event.key === '+' || event.key === '=') && main) dispatch({ type: 'zoom' });
      else if ((event.key === '-' || event.key === '0') && view.zoomed) dispatch({ type: 'fit' });
      else if (view.zoomed) return undefined; // the arrows pan (ZoomedPicture)
      else if (event.key === 'ArrowRight' && index < images.length - 1) onIndex(index + 1);
      else if (event.key === 'ArrowLeft' && index > 0) onIndex(index - 1);
      return undefined;
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [index, images.length, onClose, onIndex, main, view.zoomed]);

  if (!image) return null;
  const name = names[image.image_id] || image.filename;
  const thumbs = thumbnails(image);
  // The pixel size of the original is known only from the original itself, never loaded here.
  const before = { bytes: image.input_bytes, content_type: image.input_content_type };
  const saving = main ? savingText(image.input_bytes, main.bytes) : '';
  const failure = image.status === 'failed' ? explainImageError(image) : null;
  const placeholder = main && !afterLoaded[image.image_id] ? placeholderOf(image, main) : null;
  const afterStyle = {
    ...(main?.width && main?.height ? { aspectRatio: `${main.width} / ${main.height}` } : {}),
    ...(placeholder ? placeholderStyle(placeholder) : {}),
  };
  const afterPicture = main ? (
    <img
      key={image.image_id}
      src={thumbs.after}
      alt={`${name}, after`}
      style={afterStyle}
      data-placeholder={placeholder ? 'shown' : undefined}
      onLoad={() => setAfterLoaded((current) => ({ ...current, [image.image_id]: true }))}
      onDoubleClick={() => dispatch({ type: 'zoom' })}
    />
  ) : (
    <div className="picture picture-empty">
      <span>{failure ? failure.summary : image.status === 'skipped' ? 'Skipped: the job was cancelled' : 'No result yet'}</span>
    </div>
  );
  const beforePicture = thumbs.before ? (
    <img key={`before-${image.image_id}`} src={thumbs.before} alt={`${name}, before`} />
  ) : (
    <div className="picture picture-empty">
      <span>No preview yet</span>
    </div>
  );

  return (
    <div className="lightbox-backdrop" onClick={(e) => e.target === e.currentTarget && onClose()}>
      <div className={`lightbox${view.zoomed ? ' is-zoomed' : ''}`} role="dialog" aria-modal="true" aria-labelledby="lightbox-title">
        <div className="lightbox-head">
          <h2 id="lightbox-title" className="file-name">
            {name}
          </h2>
          <div className="lightbox-actions">
            {main && (
              <button type="button" className="button button-small" aria-pressed={view.zoomed} onClick={() => dispatch({ type: 'toggle' })}>
                {view.zoomed ? 'Fit to screen' : 'Zoom to 100%'}
              </button>
            )}
            <button type="button" ref={closeRef} className="button button-small" onClick={onClose}>
              Close
            </button>
          </div>
        </div>
        {view.zoomed && main ? (
          <>
            <ZoomedPicture key={image.image_id} output={main} name={name} view={view} dispatch={dispatch} />
            <p className="muted lightbox-hint">The result at 100%: drag or use the arrow keys to move around.</p>
          </>
        ) : phone && main && thumbs.before ? (
          <SwipeCompare before={thumbs.before} after={thumbs.after} name={name} afterStyle={afterStyle} />
        ) : (
          <div className="lightbox-pictures">
            <figure>
              {beforePicture}
              <figcaption>Before · {describeFile(before) || 'original'}</figcaption>
            </figure>
            <figure>
              {afterPicture}
              <figcaption>After{main ? ` · ${describeFile(main)}` : ''}</figcaption>
            </figure>
          </div>
        )}
        {!view.zoomed && phone && main && thumbs.before && (
          <p className="muted lightbox-captions">
            Before · {describeFile(before) || 'original'} — After · {describeFile(main)}
          </p>
        )}
        {saving && <p className="lightbox-saving" data-testid="lightbox-saving">{saving} than the original</p>}
        <div className="lightbox-nav">
          <button type="button" className="button button-small" onClick={() => onIndex(index - 1)} disabled={index === 0}>
            ← Previous
          </button>
          <span className="muted">
            {index + 1} of {images.length}
          </span>
          <button type="button" className="button button-small" onClick={() => onIndex(index + 1)} disabled={index === images.length - 1}>
            Next →
          </button>
        </div>
      </div>
    </div>
  );
}
