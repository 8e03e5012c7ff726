import { useWindowVirtualizer } from '@tanstack/react-virtual';
import { useEffect, useLayoutEffect, useRef, useState } from 'react';
import { GAP, NAME_HEIGHT, SIZES, columnsFor, nextIndex } from '../../lib/contactSheet.js';
import { savingText } from '../../lib/format.js';
import { imageStatusText } from '../../lib/jobs.js';
import { placeholderOf } from '../../lib/placeholder.js';
import { Picture, outputsOf, thumbnails } from '../ImageCard.jsx';
import { usePageTop, useWidth } from './Gallery.jsx';

/** One thumbnail: the result's preview (the original's while it waits), its name and state. */
function Tile({ image, name, index, active, onOpen, onFocus }) {
  const main = outputsOf(image)[0];
  const thumbs = thumbnails(image);
  const done = image.status === 'succeeded' && main;
  const src = done ? thumbs.after : thumbs.before;
  const saving = done ? savingText(image.input_bytes, main.bytes) : '';
  const state = imageStatusText(image.status);
  // The button is named by what it shows (name, then state; the saving for screen readers),
  // in that order, so the name heard is the text seen.
  return (
    <li className={`sheet-tile sheet-${image.status}`} data-image-id={image.image_id}>
      <button type="button" className="sheet-button" data-tile-index={index} tabIndex={active ? 0 : -1} title={name} onClick={() => onOpen(image.image_id)} onFocus={() => onFocus(index)}>
        <span className="sheet-name">{name}</span>
        <span className="visually-hidden">:</span>{' '}
        <span className="sheet-picture">
          {src ? (
            // a new picture (not a re-signed URL of the same one) once the result comes
            <Picture key={done ? 'after' : 'before'} src={src} alt="" placeholder={done ? placeholderOf(image, main) : null} />
          ) : (
            <span className="picture picture-empty picture-waiting">
              <span className="spinner" aria-hidden="true" />
            </span>
          )}
          {image.status !== 'succeeded' ? <span className={`sheet-badge badge badge-${image.status}`}>{state}</span> : <span className="visually-hidden">{state}</span>}
        </span>
        {saving && <span className="visually-hidden">, {saving}</span>}
      </button>
    </li>
  );
}

/**
 * The job's photos as a contact sheet: small previews in a dense grid of `size` (S, M, L),
 * drawn a few rows around the screen at a time, so a job of thousands stays light. The arrow
 * keys (and Home, End, PageUp, PageDown) move the focus, scrolling as they go; Enter or space
 * opens the photo (`onOpen`).
 */
export default function ContactSheet({ images, names, size = 'M', onOpen }) {
  const listRef = useRef(null);
  const width = useWidth(listRef);
  const { minWidth } = SIZES.find((s) => s.key === size) || SIZES[1];
  const columns = columnsFor(width, minWidth);
  const tileWidth = width ? (width - GAP * (columns - 1)) / columns : minWidth;
  const rowHeight = Math.round(tileWidth + NAME_HEIGHT + GAP);
  const rows = Math.ceil(images.length / columns);
  const offset = usePageTop(listRef);
  const [active, setActive] = useState(0);
  const focusWanted = useRef(false);
  const virtualizer = useWindowVirtualizer({
    count: rows,
    estimateSize: () => rowHeight,
    overscan: 2,
    scrollMargin: offset,
    useFlushSync: false, // React 19 warns about flushSync inside a render
  });
  useEffect(() => virtualizer.measure(), [virtualizer, rowHeight]);

  const current = Math.min(active, Math.max(0, images.length - 1)); // the filter may have shortened the list

  // A tile the keys moved to may be drawn only after the scroll: focus it once it is there.
  useLayoutEffect(() => {
    if (!focusWanted.current) return;
    const tile = listRef.current?.querySelector(`[data-tile-index="${current}"]`);
    if (tile) {
      focusWanted.current = false;
      tile.focus({ preventScroll: true });
      tile.scrollIntoView?.({ block: 'nearest' });
    }
  });

  // Tab comes back to the tile last focused, or to the first drawn when that one is off screen.
  const drawn = virtualizer.getVirtualItems();
  const firstDrawn = drawn.length ? drawn[0].index * columns : 0;
  const lastDrawn = drawn.length ? (drawn[drawn.length - 1].index + 1) * columns - 1 : 0;
  const tabbable = current >= firstDrawn && current <= lastDrawn ? current : firstDrawn;

  const onKeyDown = (event) => {
    const visibleRows = Math.max(1, Math.floor(window.innerHeight / rowHeight));
    const next = nextIndex(current, event.key, columns, images.length, visibleRows);
    if (next === null) return;
    event.preventDefault();
    focusWanted.current = true;
    setActive(next);
    virtualizer.scrollToIndex(Math.floor(next / columns), { align: 'auto' });
  };

  return (
    <div
      ref={listRef}
      className="sheet-rows"
      role="group"
      aria-label="Contact sheet: the arrow keys move between photos, Enter opens one"
      data-columns={columns}
      style={{ height: virtualizer.getTotalSize(), position: 'relative' }}
      onKeyDown={onKeyDown}
    >
      {drawn.map((row) => (
        <ul
          key={row.key}
          data-index={row.index}
          className="sheet"
          style={{
            gridTemplateColumns: `repeat(${columns}, minmax(0, 1fr))`,
            gap: GAP,
            position: 'absolute',
            top: 0,
            left: 0,
            width: '100%',
            height: rowHeight - GAP,
            transform: `translateY(${row.start - virtualizer.options.scrollMargin}px)`,
          }}
        >
          {images.slice(row.index * columns, (row.index + 1) * columns).map((image, column) => {
            const index = row.index * columns + column;
            return <Tile key={image.image_id} image={image} name={names[image.image_id]} index={index} active={index === tabbable} onOpen={onOpen} onFocus={setActive} />;
          })}
        </ul>
      ))}
    </div>
  );
}
