import { describe, expect, it } from 'vitest';
import { folderOf, scriptCommands, shellQuote } from './scriptCommands.js';

describe('"Do this from a script" commands', () => {
  it('quotes for a shell only what needs it, single quotes included', () => {
    expect(shellQuote('web')).toBe('web');
    expect(shellQuote('my photos/')).toBe("'my photos/'");
    expect(shellQuote(`[{"op":"text","text":"Don't"}]`)).toBe(`'[{"op":"text","text":"Don'\\''t"}]'`);
  });

  it('names the chosen folder, or a placeholder', () => {
    const file = new File(['x'], 'a.jpg');
    Object.defineProperty(file, 'webkitRelativePath', { value: 'Shoot 2024/a.jpg' });
    expect(folderOf([file])).toBe('Shoot 2024/');
    expect(folderOf([new File(['x'], 'a.jpg')])).toBe('photos/');
  });

  it('gives the steps as JSON to both commands, with the email and the key from the environment', () => {
    const operations = [{ op: 'resize', width: 1200 }, { op: 'format', format: 'webp' }];
    const { cli, curl } = scriptCommands({ operations, email: 'me@example.com', server: 'http://localhost:8080', needsKey: true, files: [new File(['x'], 'IMG 1.jpg')] });
    expect(cli).toBe(`imageflow --server http://localhost:8080 submit photos/ --operations '${JSON.stringify(operations)}' --email me@example.com`);
    expect(curl).toBe(
      [
        'curl -s http://localhost:8080/api/v1/jobs',
        '-H "Authorization: Bearer $IMAGEFLOW_API_KEY"',
        `-F 'operations=${JSON.stringify(operations)}'`,
        '-F email=me@example.com',
        "-F 'files=@IMG 1.jpg'",
      ].join(' \\\n  '),
    );
  });

  it('sends a built-in preset by name, and the logo files of overlay steps', () => {
    const { cli, curl } = scriptCommands({ preset: 'web', overlays: ['logo.png'], server: 'https://if.example' });
    expect(cli).toBe('imageflow --server https://if.example submit photos/ --preset web --overlay logo.png');
    expect(curl).toContain('-F preset=web');
    expect(curl).toContain('-F overlay=@logo.png');
    expect(curl).toContain('-F files=@photo1.jpg');
    expect(curl).not.toContain('Authorization');
  });
});
