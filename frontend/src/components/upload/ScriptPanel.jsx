import { useState } from 'react';
import { scriptCommands } from '../../lib/scriptCommands.js';

/** Put `text` on the clipboard; false when the browser will not (no clipboard, no permission). */
async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

function Command({ id, title, text }) {
  const [said, setSaid] = useState('');
  const onCopy = async () => setSaid((await copy(text)) ? 'Copied.' : 'Select the text and copy it: this browser does not allow the button to.');
  return (
    <div className="script-command">
      <div className="script-command-head">
        <h3 id={`${id}-title`}>{title}</h3>
        <button type="button" className="button button-small" onClick={onCopy} aria-describedby={`${id}-title`}>
          Copy
        </button>
        <span className="muted" role="status">
          {said}
        </span>
      </div>
      <pre className="script-text" data-testid={id} aria-labelledby={`${id}-title`}>
        <code>{text}</code>
      </pre>
    </div>
  );
}

/**
 * "Do this from a script": the `imageflow submit` command and the `curl` request that send the
 * job now chosen on the page (see lib/scriptCommands.js); they change as the steps do.
 */
export default function ScriptPanel({ preset, operations, email, overlays, needsKey, files }) {
  const server = window.location.origin;
  const { cli, curl } = scriptCommands({ preset, operations, email, overlays, server, needsKey, files });
  return (
    <details className="card script-panel">
      <summary>Do this from a script</summary>
      <p className="muted">
        The same job from a terminal. The <code>imageflow</code> command sends a whole folder of any size (large files resumably) and
        can wait for the results; <code>curl</code> sends one request, within the server's per-request limit.
        {needsKey && (
          <>
            {' '}
            Both read your API key from <code>$IMAGEFLOW_API_KEY</code>.
          </>
        )}
      </p>
      <Command id="script-cli" title="Command line (imageflow)" text={cli} />
      <Command id="script-curl" title="HTTP request (curl)" text={curl} />
    </details>
  );
}
