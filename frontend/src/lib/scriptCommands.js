// "Do this from a script": the CLI command and the curl request that send the same job as the
// upload page's chosen steps (docs/api.md "Create a job"; imageflow_cli's `submit`).

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** `text` as one word for a POSIX shell: as it is when it has nothing the shell reads, else in single quotes. */
export function shellQuote(text) {
  const value = String(text);
  if (value && SAFE.test(value)) return value;
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The folder the photos came from (a chosen folder's name), else a placeholder. */
export function folderOf(files = []) {
  const first = files.find((file) => file?.webkitRelativePath);
  const folder = first?.webkitRelativePath.split('/')[0];
  return folder ? `${folder}/` : 'photos/';
}

/**
 * The same job as commands: `{cli, curl}`, each a string to paste into a shell. `preset` (a
 * built-in name) or `operations` (the steps as the API takes them), the `email`, the logo
 * file names of the overlay steps (`overlays`), the page's `server` origin, whether it needs a
 * key (`needsKey`: the commands read $IMAGEFLOW_API_KEY, never the key itself), and the chosen
 * `files` (for the folder's name and the first photos' names).
 */
export function scriptCommands({ preset = null, operations = null, email = '', overlays = [], server, needsKey = false, files = [] }) {
  const steps = preset ? ['--preset', shellQuote(preset)] : ['--operations', shellQuote(JSON.stringify(operations || []))];
  const cli = [
    'imageflow',
    '--server',
    shellQuote(server),
    'submit',
    shellQuote(folderOf(files)),
    ...steps,
    ...overlays.flatMap((name) => ['--overlay', shellQuote(name)]),
    ...(email ? ['--email', shellQuote(email)] : []),
  ].join(' ');
  const names = files.slice(0, 2).map((file) => file.name);
  const photos = names.length ? names : ['photo1.jpg', 'photo2.jpg'];
  const lines = [
    `curl -s ${shellQuote(`${server}/api/v1/jobs`)}`,
    ...(needsKey ? ['-H "Authorization: Bearer $IMAGEFLOW_API_KEY"'] : []),
    preset ? `-F ${shellQuote(`preset=${preset}`)}` : `-F ${shellQuote(`operations=${JSON.stringify(operations || [])}`)}`,
    ...(email ? [`-F ${shellQuote(`email=${email}`)}`] : []),
    ...overlays.map((name) => `-F ${shellQuote(`overlay=@${name}`)}`),
    ...photos.map((name) => `-F ${shellQuote(`files=@${name}`)}`),
  ];
  return { cli, curl: lines.join(' \\\n  ') };
}
