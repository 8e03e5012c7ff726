import { describeTypes } from '../../lib/files.js';
import { formatBytes, formatMegapixels, plural } from '../../lib/format.js';
import DropZone from '../DropZone.jsx';
import FileList from '../FileList.jsx';
import NotAddedNotice from './NotAddedNotice.jsx';
import SectionTitle from './SectionTitle.jsx';

/** The limits that apply, said before any file is picked. */
export function limitsText(limits) {
  const parts = [
    describeTypes(limits.accepted_types || []),
    `up to ${formatBytes(limits.max_upload_bytes)} each${limits.max_request_bytes ? ` and ${formatBytes(limits.max_request_bytes)} in all` : ''}`,
    `up to ${limits.max_files_per_job} photos per batch`,
  ];
  if (limits.max_image_pixels) parts.push(`up to ${formatMegapixels(limits.max_image_pixels)} each`);
  return parts.join(' · ');
}

/** Section 1: where photos are dropped or picked, and the list of those chosen. */
export default function PhotosSection({ photos, limits, disabled }) {
  return (
    <section className="card" aria-labelledby="photos-title">
      <SectionTitle id="photos-title" number={1}>
        Your photos
      </SectionTitle>
      <DropZone onFiles={photos.add} accept={(limits.accepted_types || []).join(',')} disabled={disabled} hint={limitsText(limits)} />
      <NotAddedNotice notAdded={photos.notAdded} onDismiss={photos.dismissRefused} />
      {photos.restored > 0 && photos.items.length > 0 && (
        <p className="muted kept-photos" data-testid="kept-photos">
          {plural(photos.restored, 'photo')} kept from your last visit. “Remove all” clears the list.
        </p>
      )}
      <FileList items={photos.items} onRemove={photos.remove} onClear={photos.clear} onMeasured={photos.measured} disabled={disabled} />
    </section>
  );
}
