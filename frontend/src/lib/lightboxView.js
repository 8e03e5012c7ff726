// The lightbox's zoom: fitted to the screen (the previews), or the full-size result at 100 %
// panned by dragging or the arrow keys. A reducer, so the page and its tests share the rules.

export const PAN_STEP = 120; // CSS pixels an arrow key moves a zoomed picture

export const FITTED = { zoomed: false, x: 0, y: 0 };

/**
 * How far the picture may move from the centre each way: half of what overflows the frame
 * (`picture` and `frame` are {width, height}; nothing moves along a side that fits).
 */
export function panLimits(picture, frame) {
  return {
    x: Math.max(0, ((picture?.width || 0) - (frame?.width || 0)) / 2),
    y: Math.max(0, ((picture?.height || 0) - (frame?.height || 0)) / 2),
  };
}

const clamp = (value, limit) => Math.max(-limit, Math.min(limit, value));

/**
 * `{zoomed, x, y}`: x and y move the picture from the centre (positive: right and down).
 * Actions: zoom (to 100 %, centred), fit, toggle, pan {dx, dy, limits}, key {key, limits}
 * (the arrows pan the way they point: the picture moves the other way), reset (another photo).
 */
export function lightboxView(state, action) {
  switch (action.type) {
    case 'zoom':
      return state.zoomed ? state : { zoomed: true, x: 0, y: 0 };
    case 'fit':
    case 'reset':
      return FITTED;
    case 'toggle':
      return state.zoomed ? FITTED : { zoomed: true, x: 0, y: 0 };
    case 'pan': {
      if (!state.zoomed) return state;
      const limits = action.limits || { x: Infinity, y: Infinity };
      return { ...state, x: clamp(state.x + action.dx, limits.x), y: clamp(state.y + action.dy, limits.y) };
    }
    case 'key': {
      const step = { ArrowLeft: [PAN_STEP, 0], ArrowRight: [-PAN_STEP, 0], ArrowUp: [0, PAN_STEP], ArrowDown: [0, -PAN_STEP] }[action.key];
      if (!state.zoomed || !step) return state;
      return lightboxView(state, { type: 'pan', dx: step[0], dy: step[1], limits: action.limits });
    }
    default:
      return state;
  }
}
