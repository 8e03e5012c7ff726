import { useWindowVirtualizer } from '@tanstack/react-virtual';
import { useLayoutEffect, useRef, useState } from 'react';
import { columnsFor } from '../../lib/contactSheet.js';
import ImageCard from '../ImageCard.jsx';

const CARD_MIN_WIDTH = 300; // as .gallery's grid in styles.css
const GAP = 16;
const ROW_ESTIMATE = 430;

/** The element's inner width, followed as it changes (0 until it has been measured). */
export function useWidth(ref) {
  const [width, setWidth] = useState(0);
  useLayoutEffect(() => {
    const element = ref.current;
    if (!element) return undefined;
    const measure = () => setWidth(element.clientWidth);
    measure();
    if (typeof ResizeObserver === 'undefined') {
      window.addEventListener('resize', measure);
      return () => window.removeEventListener('resize', measure);
    }
    const observer = new ResizeObserver(measure);
    observer.observe(element);
    return () => observer.disconnect();
  }, [ref]);
  return width;
}

/** Where the element starts on the page: it moves with everything above it (notices, resizes). */
export function usePageTop(ref) {
  const [offset, setOffset] = useState(0);
  useLayoutEffect(() => {
    const element = ref.current;
    const top = element ? Math.round(element.getBoundingClientRect().top + window.scrollY) : 0;
    if (top !== offset) setOffset(top);
  });
  return offset;
}

/**
 * The job's cards in a grid that draws only the rows on screen (and a few around them), so
 * a job of thousands of photos stays light: the pictures of cards off screen are never
 * loaded.
 */
export default function Gallery({ images, names, onCompare }) {
  const listRef = useRef(null);
  const columns = columnsFor(useWidth(listRef), CARD_MIN_WIDTH, GAP);
  const rows = Math.ceil(images.length / columns);
  const offset = usePageTop(listRef);
  const virtualizer = useWindowVirtualizer({
    count: rows,
    estimateSize: () => ROW_ESTIMATE,
    overscan: 2,
    scrollMargin: offset,
    useFlushSync: false, // React 19 warns about flushSync inside a render
  });

  return (
    <div ref={listRef} className="gallery-rows" style={{ height: virtualizer.getTotalSize(), position: 'relative' }}>
      {virtualizer.getVirtualItems().map((row) => (
        <ul
          key={row.key}
          data-index={row.index}
          ref={virtualizer.measureElement}
          className="gallery"
          style={{
            gridTemplateColumns: `repeat(${columns}, minmax(0, 1fr))`,
            position: 'absolute',
            top: 0,
            left: 0,
            width: '100%',
            transform: `translateY(${row.start - virtualizer.options.scrollMargin}px)`,
          }}
        >
          {images.slice(row.index * columns, (row.index + 1) * columns).map((image) => (
            <ImageCard key={image.image_id} image={image} name={names[image.image_id]} onCompare={onCompare} />
          ))}
        </ul>
      ))}
    </div>
  );
}
