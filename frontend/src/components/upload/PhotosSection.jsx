import { acceptAttribute, describeTypes } from '../../lib/files.js';
import { formatBytes, formatMegapixels, plural } from '../../lib/format.js';
import DropZone from '../DropZone.jsx';
import FileList from '../FileList.jsx';
import NotAddedNotice from './NotAddedNotice.jsx';
import SectionTitle from './SectionTitle.jsx';
import UrlImport from './UrlImport.jsx';

/** The limits that apply, said before any file is picked. */
export function limitsText(limits) {
  const parts = [
    describeTypes(limits.accepted_types || []),
    `up to ${formatBytes(limits.max_upload_bytes)} each`,
    `up to ${limits.max_files_per_job.toLocaleString('en')} photos per job, of any total size`,
  ];
  if (limits.max_image_pixels) parts.push(`up to ${formatMegapixels(limits.max_image_pixels)} each`);
  return parts.join(' · ');
}

/**
 * Section 1: where photos are dropped or picked, and the list of those chosen; or, with
 * `source` "urls", the addresses of images the server imports (`urlImport` holds them).
 */
export default function PhotosSection({ photos, limits, disabled, source = 'files', onSource, urlImport, fileStates = null }) {
  return (
    <section className="card" aria-labelledby="photos-title">
      <SectionTitle id="photos-title" number={1}>
        Your photos
      </SectionTitle>
      {onSource && (
        <fieldset className="mode-switch source-switch">
          <legend className="visually-hidden">Where the photos come from</legend>
          <label className={`mode-option${source === 'files' ? ' is-selected' : ''}`}>
            <input type="radio" name="source" value="files" checked={source === 'files'} onChange={() => onSource('files')} disabled={disabled} />
            From this computer
          </label>
          <label className={`mode-option${source === 'urls' ? ' is-selected' : ''}`}>
            <input type="radio" name="source" value="urls" checked={source === 'urls'} onChange={() => onSource('urls')} disabled={disabled} />
            From image addresses (URLs or a CSV file)
          </label>
        </fieldset>
      )}
      {source === 'urls' && urlImport ? (
        <UrlImport {...urlImport} limits={limits} disabled={disabled} />
      ) : (
        <>
          <DropZone onFiles={photos.add} accept={acceptAttribute(limits.accepted_types)} disabled={disabled} hint={limitsText(limits)} />
          <NotAddedNotice notAdded={photos.notAdded} onDismiss={photos.dismissRefused} />
          {photos.restored > 0 && photos.items.length > 0 && (
            <p className="muted kept-photos" data-testid="kept-photos">
              {plural(photos.restored, 'photo')} kept from your last visit. “Remove all” clears the list.
            </p>
          )}
          <FileList items={photos.items} onRemove={photos.remove} onClear={photos.clear} onMeasured={photos.measured} disabled={disabled} states={fileStates} />
        </>
      )}
    </section>
  );
}
