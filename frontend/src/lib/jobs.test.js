import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IMAGE_ERROR_CODES, explainImageError } from './jobs.js';

/** The `error_code`s of docs/api.md's table (the server's list, with their meaning). */
function documentedCodes() {
  const doc = readFileSync(join(__dirname, '..', '..', '..', 'docs', 'api.md'), 'utf8');
  const table = doc.slice(doc.indexOf('| `error_code` | meaning |'));
  const rows = table.split('\n').slice(2);
  const codes = [];
  for (const row of rows) {
    const match = /^\| `([a-z_]+)` \|/.exec(row);
    if (!match) break;
    codes.push(match[1]);
  }
  return codes;
}

describe('words for every outcome code', () => {
  it('reads the table of docs/api.md', () => {
    expect(documentedCodes()).toEqual(expect.arrayContaining(['empty', 'timeout', 'worker_crashed', 'quota_exceeded']));
  });

  it.each(documentedCodes())('says %s in words of its own, not the server message', (code) => {
    const { summary, detail } = explainImageError({ error_code: code, error: 'the server message' });
    expect(summary).not.toMatch(/server message|Something went wrong/);
    expect(detail).toBe('the server message');
  });

  it('has words only for codes the server sends (no stale name like dead_lettered)', () => {
    expect([...IMAGE_ERROR_CODES].sort()).toEqual([...documentedCodes()].sort());
  });
});
