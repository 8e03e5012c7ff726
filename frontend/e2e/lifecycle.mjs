// The job page's lifecycle actions in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), run by tests/e2e/test_browser_lifecycle.py against the running stack:
//
//   node e2e/lifecycle.mjs --base-url URL --artifacts DIR --job-id ID
//       Opens a running job, cancels it, waits until the page says it was cancelled, then runs
//       it again with other steps from the page and follows the new job to the end.
//       Then "Your jobs" lists both. Prints RESULT {"new_job_id", "skipped_text"}.
//
// Fails (exit 1) on a console error, an uncaught exception or a serious accessibility problem.
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const { values: opts } = parseArgs({
  options: {
    'base-url': { type: 'string' },
    artifacts: { type: 'string' },
    'job-id': { type: 'string' },
    steps: { type: 'string', default: '[{"op": "resize", "width": 120}, {"op": "format", "format": "webp"}]' },
    chromium: { type: 'string', default: process.env.CHROMIUM_PATH || '/usr/bin/chromium' },
  },
});
const shots = path.join(opts.artifacts, 'screenshots');
mkdirSync(shots, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

async function assertAccessible(page, label) {
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) await page.evaluate(AXE_SOURCE);
  const problems = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const { violations } = await axe.run(document, { resultTypes: ['violations'] });
    return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id}: ${v.help}`);
  });
  check(problems.length === 0, `accessibility problems on ${label}: ${problems.join('; ')}`);
}

const profile = mkdtempSync(path.join(tmpdir(), 'imageflow-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: opts.chromium,
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
});
const page = await context.newPage();
const problems = [];
page.on('console', (msg) => msg.type() === 'error' && problems.push(msg.text()));
page.on('pageerror', (error) => problems.push(`uncaught: ${error.message}`));
try {
  const base = opts['base-url'].replace(/\/$/, '');
  await page.goto(`${base}/jobs/${opts['job-id']}`);
  await page.getByRole('button', { name: 'Cancel' }).click();
  await page.getByRole('heading', { level: 1, name: 'This job was cancelled' }).waitFor({ timeout: 60_000 });
  const skippedText = await page.getByText(/skipped before they started/).textContent();
  await assertAccessible(page, 'a cancelled job');
  await page.screenshot({ path: path.join(shots, 'job-cancelled.png'), fullPage: true });

  await page.getByRole('button', { name: 'Run again with other steps' }).click();
  await page.getByLabel('Steps (JSON, as in the API)').fill(opts.steps);
  await page.getByLabel('Which photos').selectOption('all');
  await assertAccessible(page, 'the re-run form');
  await page.getByRole('button', { name: 'Run again (no upload)' }).click();
  await page.waitForURL((url) => !url.pathname.endsWith(opts['job-id']), { timeout: 30_000 });
  const newJobId = new URL(page.url()).pathname.split('/').pop();
  await page.getByRole('heading', { level: 1, name: 'Your photos are ready' }).waitFor({ timeout: 120_000 });
  await page.getByRole('link', { name: 'an earlier job' }).waitFor();
  await page.screenshot({ path: path.join(shots, 'job-rerun.png'), fullPage: true });

  // "Your jobs" lists both, the re-run first, and opens a job.
  await page.getByRole('link', { name: 'Your jobs' }).click();
  await page.getByRole('heading', { level: 1, name: 'Your jobs' }).waitFor();
  const listed = await page.locator('.jobs-row a').evaluateAll((links) => links.map((a) => a.getAttribute('href')));
  check(listed[0] === `/jobs/${newJobId}` && listed.includes(`/jobs/${opts['job-id']}`), `jobs listed: ${listed}`);
  await assertAccessible(page, 'your jobs');
  await page.screenshot({ path: path.join(shots, 'your-jobs.png'), fullPage: true });
  check(problems.length === 0, `console errors: ${problems.join('; ')}`);
  process.stdout.write(`RESULT ${JSON.stringify({ new_job_id: newJobId, skipped_text: skippedText })}\n`);
} catch (error) {
  await page.screenshot({ path: path.join(shots, 'failed-lifecycle.png'), fullPage: true }).catch(() => {});
  console.error(error);
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
