// The editor's words for people who process photos. The server's schema describes each
// operation for API users ("contain", "gravity", "upscale"); the page says the same in the
// words its controls use. Operations and fields not named here keep the server's words.

const PLACES = {
  center: 'Centre',
  north: 'Top',
  south: 'Bottom',
  east: 'Right',
  west: 'Left',
  northeast: 'Top right',
  northwest: 'Top left',
  southeast: 'Bottom right',
  southwest: 'Bottom left',
  smart: 'The busiest part (automatic)',
  face: 'The faces (else the busiest part)',
};

/** Words for option values, by field name; any other value is shown as it is. */
export const OPTION_LABELS = {
  fit: { contain: 'Fit inside', cover: 'Fill and crop', fill: 'Stretch' },
  direction: { horizontal: 'Horizontal (mirror)', vertical: 'Vertical (upside down)' },
  gravity: PLACES,
  position: PLACES,
  icc: { srgb: 'Convert to sRGB', keep: 'Keep the profile', drop: 'Drop the profile' },
  mode: { all: 'All frames', first: 'First frame only' },
};

/** Page labels for fields, by operation then field name. */
const FIELD_LABELS = {
  resize: { upscale: 'Enlarge smaller photos', gravity: 'Part to keep when cropping' },
  crop: { gravity: 'Part to keep', aspect: 'Aspect ratio' },
  format: { max_bytes: 'Largest file size', progressive: 'Progressive JPEG (shows sooner while loading)', lossless: 'Lossless (exact pixels, larger files)', background: 'Background colour' },
  rotate: { background: 'Corner colour', expand: 'Enlarge the canvas to fit' },
  pad: { background: 'Background colour', gravity: 'Where the photo sits' },
  watermark: { color: 'Colour' },
  blur: { radius: 'Radius' },
  overlay: { image: 'Logo', position: 'Where the logo goes', scale: 'Logo size', tile: 'Repeat the logo over the whole photo' },
};

/** Page help for fields, by operation then field name. */
const FIELD_HELP = {
  blur: { radius: 'In pixels: higher is blurrier.' },
  format: {
    quality: 'Lower makes smaller files. Used for JPEG, WebP and AVIF.',
    max_bytes: 'The quality is lowered until each photo fits in this size.',
    background: 'Fills transparent areas for formats without transparency: a colour name or a code like #ffffff.',
  },
  rotate: { degrees: 'Clockwise. 90, 180 and 270 turn the photo exactly.' },
  overlay: {
    scale: 'A fraction of the photo’s shorter side: 0.2 makes the logo a fifth of it. Empty keeps the logo’s own size.',
    opacity: '1 is solid, 0.5 half see-through.',
    margin: 'Pixels between the logo and the edge. Empty leaves a small margin.',
  },
};

/** Page help for whole operations. */
const OPERATION_HELP = {
  resize:
    'Make photos fit a size. “Fit inside” keeps the whole photo within the width and height, “Fill and crop” fills them exactly and cuts off what overflows, “Stretch” changes the proportions. Give one side only and the other follows. Smaller photos stay as they are unless you tick “Enlarge smaller photos”.',
  crop: 'Cut out part of each photo: a box from the top-left corner (in pixels), or the largest area of an aspect ratio.',
  format: 'Save the results as another file type. Without this step each photo keeps its own.',
  rotate: 'Turn each photo clockwise.',
  flip: 'Mirror each photo.',
  grayscale: 'Make each photo black and white.',
  blur: 'Soften each photo.',
  sharpen: 'Make edges crisper.',
  overlay: 'Put your logo on each photo. A PNG or WebP with a transparent background keeps its see-through parts.',
};

export function fieldLabel(op, field) {
  return FIELD_LABELS[op]?.[field.name] || field.label;
}

export function fieldHelp(op, field) {
  return FIELD_HELP[op]?.[field.name] ?? field.description;
}

export function operationHelp(operation) {
  return OPERATION_HELP[operation.op] ?? operation.description;
}

export function optionLabel(fieldName, option, formatName) {
  const name = fieldName.replace(/s$/, '');
  if (name === 'format') return formatName(option);
  return OPTION_LABELS[fieldName]?.[option] || OPTION_LABELS[name]?.[option] || String(option);
}

/** A duration in the words of a person waiting: "under a second", "about 40 seconds", "about 3 minutes". */
export function durationInWords(seconds) {
  const s = Number(seconds);
  if (!Number.isFinite(s) || s < 0) return '';
  if (s < 1) return 'under a second';
  if (s < 90) return `about ${Math.round(s)} second${Math.round(s) === 1 ? '' : 's'}`;
  if (s < 90 * 60) return `about ${Math.round(s / 60)} minutes`;
  const hours = Math.round(s / 360) / 10;
  return `about ${hours} hour${hours === 1 ? '' : 's'}`;
}
