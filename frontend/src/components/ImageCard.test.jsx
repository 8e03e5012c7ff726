import { fireEvent, render, screen } from '@testing-library/react';
import { decode } from 'blurhash';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { makeJob } from '../test/fakes.js';
import ImageCard from './ImageCard.jsx';
import Lightbox from './job/Lightbox.jsx';

// jsdom draws nothing on a canvas: this one keeps the pixels put on it, and its data URL
// names its size and first pixel, so a test can tell what was drawn.
let canvases;
beforeEach(() => {
  canvases = [];
  vi.spyOn(HTMLCanvasElement.prototype, 'getContext').mockImplementation(function context() {
    const canvas = this;
    canvases.push(canvas);
    return {
      createImageData: (width, height) => ({ width, height, data: new Uint8ClampedArray(width * height * 4) }),
      putImageData(image) {
        canvas.drawnPixels = image.data;
      },
    };
  });
  vi.spyOn(HTMLCanvasElement.prototype, 'toDataURL').mockImplementation(function toDataURL() {
    const [r, g, b] = this.drawnPixels;
    return `data:image/png;base64,${btoa(`${this.width}x${this.height}:${r},${g},${b}`)}`;
  });
});

const HASH = 'LEHV6nWB2yk8pyo0adR*.7kCMdnj'; // the BlurHash project's example picture

function card(fields) {
  const [image] = makeJob({ status: 'completed', images: [{ filename: 'beach.jpg', status: 'succeeded' }] }).images;
  Object.assign(image, fields);
  render(
    <ul>
      <ImageCard image={image} />
    </ul>,
  );
  return { after: screen.getByAltText('beach.jpg, after'), before: screen.getByAltText('beach.jpg, before') };
}

describe('the placeholder of a result', () => {
  it("draws the BlurHash in the result's proportions until the preview has loaded", () => {
    const { after, before } = card({ blurhash: HASH, dominant_color: '#a4502c' });
    expect(after).toHaveAttribute('data-placeholder', 'blurhash');
    // 800×600 drawn 32×24, with the pixels the BlurHash decodes to.
    const expected = decode(HASH, 32, 24);
    expect(after.style.backgroundImage).toBe(`url("data:image/png;base64,${btoa(`32x24:${expected[0]},${expected[1]},${expected[2]}`)}")`);
    expect(canvases).toHaveLength(1);
    expect([...canvases[0].drawnPixels]).toEqual([...expected]);
    expect(after.style.backgroundSize).toBe('contain');
    // The original has no placeholder of its own: the result's would show the wrong picture.
    expect(before.style.backgroundImage).toBe('');

    fireEvent.load(after);
    expect(after.style.backgroundImage).toBe('');
    expect(after).not.toHaveAttribute('data-placeholder');
  });

  it('falls back to the dominant colour without a BlurHash, or with one that cannot be read', () => {
    const { after } = card({ blurhash: 'not a hash', dominant_color: '#a4502c' });
    expect(after).toHaveAttribute('data-placeholder', 'color');
    expect(after.style.backgroundColor).toBe('rgb(164, 80, 44)');
    expect(after.style.backgroundImage).toBe('none');
    expect(canvases).toHaveLength(0);
    fireEvent.load(after);
    expect(after.style.backgroundColor).toBe('');
  });

  it('shows none when the server gave neither', () => {
    const { after } = card({ blurhash: null, dominant_color: null });
    expect(after).not.toHaveAttribute('data-placeholder');
    expect(after.getAttribute('style')).toBeNull();
  });
});

describe('the lightbox', () => {
  it('draws the BlurHash behind the result until it has loaded', () => {
    const [image] = makeJob({ status: 'completed', images: [{ filename: 'beach.jpg', status: 'succeeded' }] }).images;
    Object.assign(image, { blurhash: HASH, dominant_color: '#a4502c' });
    render(<Lightbox images={[image]} names={{}} index={0} onIndex={() => {}} onClose={() => {}} />);
    const after = screen.getByAltText('beach.jpg, after');
    expect(after).toHaveAttribute('data-placeholder', 'shown');
    expect(after.style.backgroundImage).toMatch(/^url\("data:image\/png;base64,/);
    expect(after.style.aspectRatio).toBe('800 / 600'); // the box has the result's shape before it loads
    fireEvent.load(after);
    expect(after.style.backgroundImage).toBe('');
    expect(after).not.toHaveAttribute('data-placeholder');
  });
});
