export const FILTERS = [
  { key: 'all', label: 'All', test: () => true },
  { key: 'succeeded', label: 'Done', test: (image) => image.status === 'succeeded' },
  { key: 'failed', label: 'Failed', test: (image) => image.status === 'failed' },
  // only a cancelled job has skipped photos: the button shows when there are some
  { key: 'skipped', label: 'Skipped', test: (image) => image.status === 'skipped', optional: true },
  { key: 'waiting', label: 'Waiting', test: (image) => image.status === 'queued' },
];

export function filterImages(images, key) {
  const filter = FILTERS.find((f) => f.key === key) || FILTERS[0];
  return images.filter(filter.test);
}

/** Buttons that show only the photos in one state, each with its count. */
export default function StatusFilter({ images, value, onChange }) {
  return (
    <div className="status-filter" role="group" aria-label="Show photos">
      {FILTERS.filter((f) => !f.optional || value === f.key || filterImages(images, f.key).length > 0).map((filter) => (
        <button
          key={filter.key}
          type="button"
          className={`button button-small${value === filter.key ? ' is-selected' : ' button-quiet'}`}
          aria-pressed={value === filter.key}
          onClick={() => onChange(filter.key)}
        >
          {filter.label} ({filterImages(images, filter.key).length})
        </button>
      ))}
    </div>
  );
}
