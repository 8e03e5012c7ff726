import { useRef, useState } from 'react';
import { filesFromDrop } from '../lib/files.js';

// Phones and tablets cannot drag files onto a page: don't offer it there.
function canDrag() {
  return !(typeof window.matchMedia === 'function' && window.matchMedia('(pointer: coarse)').matches);
}

/**
 * Where photos come in: dropped files or folders, or picked with the two buttons (which
 * keyboard users reach with Tab). Calls `onFiles(File[])`.
 */
export default function DropZone({ onFiles, accept, disabled, hint }) {
  const filesInput = useRef(null);
  const folderInput = useRef(null);
  const [dragging, setDragging] = useState(false);
  const depth = useRef(0);
  const [dragSupported] = useState(canDrag);

  const takeInput = (event) => {
    const files = [...event.target.files].filter((file) => !file.name.startsWith('.'));
    event.target.value = ''; // so picking the same files again fires a change
    if (files.length) onFiles(files);
  };

  const onDragEnter = (event) => {
    event.preventDefault();
    depth.current += 1;
    if (!disabled) setDragging(true);
  };
  const onDragLeave = () => {
    depth.current = Math.max(0, depth.current - 1);
    if (depth.current === 0) setDragging(false);
  };
  const onDragOver = (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = disabled ? 'none' : 'copy';
  };
  const onDrop = async (event) => {
    event.preventDefault();
    depth.current = 0;
    setDragging(false);
    if (disabled) return;
    const files = await filesFromDrop(event.dataTransfer);
    if (files.length) onFiles(files);
  };

  return (
    <div
      className={`dropzone${dragging ? ' dropzone-active' : ''}${disabled ? ' dropzone-disabled' : ''}`}
      onDragEnter={onDragEnter}
      onDragLeave={onDragLeave}
      onDragOver={onDragOver}
      onDrop={onDrop}
      data-testid="dropzone"
    >
      <svg className="dropzone-icon" viewBox="0 0 48 48" aria-hidden="true" focusable="false">
        <rect x="4" y="8" width="40" height="32" rx="4" fill="none" stroke="currentColor" strokeWidth="2.5" />
        <path d="M9 35l10-12 8 9 5-6 7 9z" fill="currentColor" opacity=".35" />
        <circle cx="33" cy="17" r="4" fill="currentColor" opacity=".5" />
      </svg>
      {dragSupported ? (
        <>
          <p className="dropzone-title">{dragging ? 'Drop to add them' : 'Drag photos or a folder here'}</p>
          <p className="dropzone-or">or</p>
        </>
      ) : (
        <p className="dropzone-title">Add photos from this device</p>
      )}
      <div className="dropzone-buttons">
        <button type="button" className="button button-primary" onClick={() => filesInput.current.click()} disabled={disabled}>
          Choose photos
        </button>
        <button type="button" className="button" onClick={() => folderInput.current.click()} disabled={disabled}>
          Choose a folder
        </button>
      </div>
      {hint && <p className="dropzone-hint">{hint}</p>}
      <input
        ref={filesInput}
        id="file-input"
        type="file"
        multiple
        accept={accept}
        onChange={takeInput}
        hidden
        aria-label="Choose photos"
        data-testid="file-input"
      />
      <input
        ref={folderInput}
        type="file"
        multiple
        webkitdirectory=""
        onChange={takeInput}
        hidden
        aria-label="Choose a folder"
        data-testid="folder-input"
      />
    </div>
  );
}
