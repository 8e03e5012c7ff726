import { useEffect, useRef, useState } from 'react';
import { savingText } from '../../lib/format.js';
import { placeholderOf, placeholderStyle } from '../../lib/placeholder.js';
import { describeFile, outputsOf } from '../ImageCard.jsx';

/**
 * One photo large, before and after side by side, with their sizes and the saving.
 * Escape or the close button closes it; the arrows (buttons or keys) go through `images`.
 */
export default function Lightbox({ images, names, index, onIndex, onClose }) {
  const closeRef = useRef(null);
  // The API gives the original's bytes and type; its pixel size is read from the picture.
  const [drawn, setDrawn] = useState({});
  const [afterLoaded, setAfterLoaded] = useState({}); // image id -> its result has been drawn
  const image = images[index];
  const main = image ? outputsOf(image)[0] : null;

  useEffect(() => {
    const opener = document.activeElement;
    closeRef.current?.focus();
    return () => opener?.focus?.();
  }, []);

  useEffect(() => {
    const onKey = (event) => {
      if (event.key === 'Escape') onClose();
      else if (event.key === 'ArrowRight' && index < images.length - 1) onIndex(index + 1);
      else if (event.key === 'ArrowLeft' && index > 0) onIndex(index - 1);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [index, images.length, onClose, onIndex]);

  if (!image) return null;
  const name = names[image.image_id] || image.filename;
  const size = drawn[image.image_id] || {};
  const before = { width: image.input_width || size.width, height: image.input_height || size.height, bytes: image.input_bytes, content_type: image.input_content_type };
  const saving = main ? savingText(image.input_bytes, main.bytes) : '';

  return (
    <div className="lightbox-backdrop" onClick={(e) => e.target === e.currentTarget && onClose()}>
      <div className="lightbox" role="dialog" aria-modal="true" aria-labelledby="lightbox-title">
        <div className="lightbox-head">
          <h2 id="lightbox-title" className="file-name">
            {name}
          </h2>
          <button type="button" ref={closeRef} className="button button-small" onClick={onClose}>
            Close
          </button>
        </div>
        <div className="lightbox-pictures">
          <figure>
            <img
              src={image.input_url}
              alt={`${name}, before`}
              onLoad={(e) => {
                const { naturalWidth: width, naturalHeight: height } = e.currentTarget;
                setDrawn((current) => ({ ...current, [image.image_id]: { width, height } }));
              }}
            />
            <figcaption>Before · {describeFile(before) || 'original'}</figcaption>
          </figure>
          <figure>
            {main ? (
              <img
                key={image.image_id}
                src={main.url}
                alt={`${name}, after`}
                // its placeholder, in the result's proportions, until the result is drawn
                style={{
                  ...(main.width && main.height ? { aspectRatio: `${main.width} / ${main.height}` } : {}),
                  ...(afterLoaded[image.image_id] ? {} : placeholderStyle(placeholderOf(image, main) || {})),
                }}
                data-placeholder={afterLoaded[image.image_id] || !placeholderOf(image, main) ? undefined : 'shown'}
                onLoad={() => setAfterLoaded((current) => ({ ...current, [image.image_id]: true }))}
              />
            ) : (
              <div className="picture picture-empty">
                <span>No result</span>
              </div>
            )}
            <figcaption>After{main ? ` · ${describeFile(main)}` : ''}</figcaption>
          </figure>
        </div>
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
