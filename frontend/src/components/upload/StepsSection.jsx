import OperationsEditor from '../OperationsEditor.jsx';
import SectionTitle from './SectionTitle.jsx';

/** Section 2: a preset or a list of steps, once the server has said which exist. */
export default function StepsSection({ server, presets, choice, onChange, errors, onSavePreset, onDeletePreset, overlayFiles, onOverlayFile, presetLogoFiles, presetLogoErrors, onPresetLogo }) {
  return (
    <section className="card" aria-labelledby="ops-title">
      <SectionTitle id="ops-title" number={2}>
        What to do with them
      </SectionTitle>
      {server.status === 'loading' && <p className="muted" role="status">Loading the available operations…</p>}
      {server.status === 'ready' && (
        <OperationsEditor
          operations={server.operations}
          presets={presets}
          choice={choice}
          onChange={onChange}
          errors={errors}
          onSavePreset={onSavePreset}
          onDeletePreset={onDeletePreset}
          overlayFiles={overlayFiles}
          onOverlayFile={onOverlayFile}
          presetLogoFiles={presetLogoFiles}
          presetLogoErrors={presetLogoErrors}
          onPresetLogo={onPresetLogo}
        />
      )}
      {server.status === 'error' && <p className="muted">The operations appear here once the server answers.</p>}
    </section>
  );
}
