// The job page's lifecycle actions in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), run by tests/e2e/test_browser_lifecycle.py against the running stack:
//
//   node e2e/lifecycle.mjs --base-url URL --artifacts DIR --job-id ID
//       Opens a running job, cancels it, waits until the page says it was cancelled, then runs
//       it again with other steps from the page and follows the new job to the end.
//       Then "Your jobs" lists both. Prints RESULT {"new_job_id", "skipped_text"}.
//
// Fails (exit 1) on a console error, an uncaught exception or a serious accessibility problem.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { assertAccessible, check, launch, parseOptions, runMain, untilDone, watchConsole } from './harness.mjs';

const { values: opts, baseUrl: base } = parseOptions({
  artifacts: { type: 'string' },
  'job-id': { type: 'string' },
  steps: { type: 'string', default: '[{"op": "resize", "width": 120}, {"op": "format", "format": "webp"}]' },
});
const shots = path.join(opts.artifacts, 'screenshots');
mkdirSync(shots, { recursive: true });

await runMain(async () => {
  const browser = await launch(opts.chromium, { viewport: { width: 1280, height: 900 } });
  const page = await browser.context.newPage();
  const consoleWatch = watchConsole(page);
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
  await untilDone(page);
  await page.getByRole('link', { name: 'an earlier job' }).waitFor();
  await page.screenshot({ path: path.join(shots, 'job-rerun.png'), fullPage: true });

  // "Your jobs" lists both, the re-run first, and opens a job.
  await page.getByRole('link', { name: 'Your jobs' }).click();
  await page.getByRole('heading', { level: 1, name: 'Your jobs' }).waitFor();
  const listed = await page.locator('.jobs-row a').evaluateAll((links) => links.map((a) => a.getAttribute('href')));
  check(listed[0] === `/jobs/${newJobId}` && listed.includes(`/jobs/${opts['job-id']}`), `jobs listed: ${listed}`);
  await assertAccessible(page, 'your jobs');
  await page.screenshot({ path: path.join(shots, 'your-jobs.png'), fullPage: true });
  consoleWatch.assertClean();
  await browser.close();
  return { new_job_id: newJobId, skipped_text: skippedText };
}, { failureShot: path.join(shots, 'failed-lifecycle.png') });
