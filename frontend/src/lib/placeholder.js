// The picture shown while an output's preview loads (issue 17): its BlurHash drawn small,
// else its dominant colour. The server computes both (imageflow/engine/placeholders.py).
import { decode, isBlurhashValid } from 'blurhash';

const LONG_SIDE = 32; // pixels: the browser scales it up smoothly, and a blur needs no more
const KEEP = 500; // drawn placeholders kept, so scrolling back does not draw them again
const drawn = new Map();

/** The placeholder's size: LONG_SIDE on the long side, in the output's proportions. */
function sizeFor(width, height) {
  if (!(width > 0 && height > 0)) return [LONG_SIDE, LONG_SIDE];
  const scale = LONG_SIDE / Math.max(width, height);
  return [Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale))];
}

/** A PNG data URL of the BlurHash `hash`, in the proportions of width×height; null if it cannot be drawn. */
export function blurhashDataUrl(hash, width, height) {
  if (!hash || !isBlurhashValid(hash).result) return null;
  const [w, h] = sizeFor(width, height);
  const key = `${hash}:${w}x${h}`;
  if (drawn.has(key)) return drawn.get(key);
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = h;
  const context = canvas.getContext('2d');
  if (!context) return null;
  const pixels = context.createImageData(w, h);
  pixels.data.set(decode(hash, w, h));
  context.putImageData(pixels, 0, 0);
  const url = canvas.toDataURL('image/png');
  drawn.set(key, url);
  if (drawn.size > KEEP) drawn.delete(drawn.keys().next().value);
  return url;
}

/**
 * The inline style that shows an output's placeholder behind its <img> (object-fit:
 * contain), or undefined when there is none: the BlurHash where the picture will be, else
 * the dominant colour over the whole box.
 */
export function placeholderStyle({ blurhash, color, width, height } = {}) {
  const url = blurhashDataUrl(blurhash, width, height);
  if (url) {
    return {
      backgroundImage: `url("${url}")`,
      backgroundSize: 'contain',
      backgroundPosition: 'center',
      backgroundRepeat: 'no-repeat',
    };
  }
  return color ? { backgroundImage: 'none', backgroundColor: color } : undefined;
}

/** The placeholder of an image's main output, as the API gives it. */
export function placeholderOf(image, output) {
  if (!image?.blurhash && !image?.dominant_color) return null;
  return { blurhash: image.blurhash, color: image.dominant_color, width: output?.width ?? image.width, height: output?.height ?? image.height };
}
