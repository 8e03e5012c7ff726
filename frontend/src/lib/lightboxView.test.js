import { describe, expect, it } from 'vitest';
import { FITTED, PAN_STEP, lightboxView, panLimits } from './lightboxView.js';

const run = (actions, state = FITTED) => actions.reduce(lightboxView, state);

describe("the lightbox's zoom", () => {
  it('opens fitted; zooming shows 100 % centred, fitting or another photo goes back', () => {
    expect(FITTED).toEqual({ zoomed: false, x: 0, y: 0 });
    expect(run([{ type: 'zoom' }])).toEqual({ zoomed: true, x: 0, y: 0 });
    expect(run([{ type: 'toggle' }, { type: 'toggle' }])).toEqual(FITTED);
    expect(run([{ type: 'zoom' }, { type: 'pan', dx: 10, dy: 5 }, { type: 'reset' }])).toEqual(FITTED);
    expect(run([{ type: 'zoom' }, { type: 'fit' }])).toEqual(FITTED);
  });

  it('pans only when zoomed, and no further than the picture overflows the frame', () => {
    const limits = panLimits({ width: 4000, height: 3000 }, { width: 1000, height: 800 });
    expect(limits).toEqual({ x: 1500, y: 1100 });
    expect(run([{ type: 'pan', dx: 50, dy: 50, limits }])).toEqual(FITTED);
    expect(run([{ type: 'zoom' }, { type: 'pan', dx: -300, dy: 40, limits }])).toEqual({ zoomed: true, x: -300, y: 40 });
    expect(run([{ type: 'zoom' }, { type: 'pan', dx: 9000, dy: -9000, limits }])).toEqual({ zoomed: true, x: 1500, y: -1100 });
    // a side that fits does not move
    const narrow = panLimits({ width: 600, height: 3000 }, { width: 1000, height: 800 });
    expect(run([{ type: 'zoom' }, { type: 'pan', dx: 200, dy: 0, limits: narrow }]).x).toBe(0);
  });

  it('pans the way the arrow keys point, and zooming again keeps the place', () => {
    const limits = { x: 1000, y: 1000 };
    const right = run([{ type: 'zoom' }, { type: 'key', key: 'ArrowRight', limits }]);
    expect(right).toEqual({ zoomed: true, x: -PAN_STEP, y: 0 }); // to see more on the right, the picture moves left
    expect(run([{ type: 'key', key: 'ArrowDown', limits }, { type: 'zoom' }], right)).toEqual({ zoomed: true, x: -PAN_STEP, y: -PAN_STEP });
    expect(run([{ type: 'key', key: 'Enter', limits }], right)).toBe(right);
    expect(run([{ type: 'key', key: 'ArrowLeft', limits }])).toEqual(FITTED);
  });
});
