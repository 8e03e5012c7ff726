// The upload page's import by address, API key, estimate and overlay logo (issues 16, 17) in
// headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core), run by
// tests/e2e/test_browser_upload_page.py against the running stack (API_KEYS set):
//
//   node e2e/upload_page.mjs --base-url URL --artifacts DIR --scenario NAME --key KEY [...]
//     key       a photo, Process without a key, then a wrong key, then the right one
//     urls      pasted addresses (--urls, JSON list; one not an address), then a CSV (--csv)
//     estimate  photos (--photos, JSON list of paths), Estimate, then Process
//     overlay   a photo and a logo file (--logo) in an overlay step, then Process
//   Each follows the job to its page and prints RESULT {...} with what the page showed.
//
// Fails (exit 1) on a console error, a failed answer (but a 401 before the right key is in,
// and an imported image's input asked for before the server fetched it), an uncaught
// exception or a serious accessibility problem.
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
    scenario: { type: 'string' },
    key: { type: 'string' },
    photos: { type: 'string', default: '[]' },
    urls: { type: 'string', default: '[]' },
    csv: { type: 'string' },
    logo: { type: 'string' },
    chromium: { type: 'string', default: process.env.CHROMIUM_PATH || '/usr/bin/chromium' },
  },
});
const shots = path.join(opts.artifacts, 'screenshots');
mkdirSync(shots, { recursive: true });
const photos = JSON.parse(opts.photos);
const base = opts['base-url'].replace(/\/$/, '');

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

// 401s are expected (the browser logs each) only until the right key is in.
let rightKeyGiven = false;

async function useKey(page, key) {
  await page.getByLabel('Your API key').fill(key);
  await page.getByRole('button', { name: 'Use this key' }).click();
  await page.getByTestId('api-key-status').waitFor();
  rightKeyGiven = key === opts.key;
}

async function jobIdOnceSent(page) {
  await page.waitForURL(/\/jobs\/[0-9a-f]{32}$/, { timeout: 60_000 });
  return new URL(page.url()).pathname.split('/').pop();
}

async function untilDone(page) {
  await page.getByRole('heading', { level: 1, name: /Your photos are ready/ }).waitFor({ timeout: 120_000 });
}

const scenarios = {
  async key(page) {
    await page.getByRole('heading', { name: 'API key' }).waitFor();
    const hint = await page.locator('#api-key-hint').textContent();
    await page.getByTestId('file-input').setInputFiles(photos);
    await page.getByRole('button', { name: /^Process 1 photo$/ }).click();
    const missing = await page.getByRole('link', { name: /Enter your API key/ }).textContent();
    await useKey(page, 'not-the-key-0123456789');
    await page.getByRole('button', { name: /^Process 1 photo$/ }).click();
    const refused = await page.locator('#api-key-error').textContent({ timeout: 30_000 });
    await page.screenshot({ path: path.join(shots, 'upload-api-key-refused.png'), fullPage: true });
    await assertAccessible(page, 'the key refused');
    await page.getByLabel('Your API key').fill(opts.key);
    await page.getByRole('button', { name: 'Use this key' }).click();
    rightKeyGiven = true;
    await page.getByRole('button', { name: /^Process 1 photo$/ }).click();
    const jobId = await jobIdOnceSent(page);
    await untilDone(page); // the job page polls with the key
    const stored = await page.evaluate(() => ({ session: sessionStorage.getItem('imageflow.apiKey'), local: localStorage.getItem('imageflow.apiKey') }));
    return { job_id: jobId, hint, missing, refused, stored };
  },

  async urls(page) {
    await useKey(page, opts.key);
    await page.getByRole('radio', { name: /From image addresses/ }).check();
    const limits = await page.getByTestId('url-limits').textContent();
    await page.getByLabel('Image addresses', { exact: true }).fill(JSON.parse(opts.urls).join('\n'));
    const refusedBefore = await page.getByTestId('refused-rows').textContent();
    await assertAccessible(page, 'the URL import');
    await page.screenshot({ path: path.join(shots, 'upload-urls.png'), fullPage: true });
    await page.getByRole('button', { name: /^Import \d+ images?$/ }).click();
    const jobId = await jobIdOnceSent(page);
    const refusedAfter = await page.locator('.notice', { hasText: 'The server refused' }).textContent({ timeout: 30_000 });
    await page.getByRole('heading', { level: 1, name: /Your photos are ready/ }).waitFor({ timeout: 120_000 });
    // then a CSV of addresses
    await page.goto(base);
    await page.getByRole('radio', { name: /From image addresses/ }).check();
    await page.getByTestId('csv-input').setInputFiles(opts.csv);
    await page.getByRole('button', { name: 'Import the images of the CSV' }).click();
    const csvJobId = await jobIdOnceSent(page);
    await untilDone(page);
    return { job_id: jobId, csv_job_id: csvJobId, limits, refused_before: refusedBefore, refused_after: refusedAfter };
  },

  async estimate(page) {
    await useKey(page, opts.key);
    await page.getByTestId('file-input').setInputFiles(photos);
    await page.getByRole('button', { name: 'Estimate size and time' }).click();
    const size = await page.getByTestId('estimate-size').textContent({ timeout: 60_000 });
    const time = await page.getByTestId('estimate-time').textContent();
    const count = await page.getByTestId('estimate-count').textContent();
    await assertAccessible(page, 'the estimate');
    await page.screenshot({ path: path.join(shots, 'upload-estimate.png'), fullPage: true });
    await page.getByRole('radio', { name: /thumbnail/i }).check();
    const stale = await page.getByTestId('estimate-stale').textContent();
    await page.getByRole('button', { name: /^Process \d+ photos?$/ }).click();
    const jobId = await jobIdOnceSent(page);
    await untilDone(page);
    return { job_id: jobId, size, time, count, stale };
  },

  async overlay(page) {
    await useKey(page, opts.key);
    await page.getByTestId('file-input').setInputFiles(photos);
    await page.getByRole('radio', { name: 'Build my own steps' }).check();
    await page.getByLabel('Add a step').selectOption('overlay');
    await page.getByRole('button', { name: 'Add step' }).click();
    await page.getByLabel('Where the logo goes').selectOption('northwest');
    await page.getByRole('button', { name: /^Process 1 photo$/ }).click();
    const missing = await page.locator('.field-error', { hasText: 'Logo needs a file' }).textContent();
    await page.getByTestId('overlay-file').setInputFiles(opts.logo);
    const chosen = await page.getByText(/^Chosen: /).textContent();
    await assertAccessible(page, 'the overlay step');
    await page.screenshot({ path: path.join(shots, 'upload-overlay.png'), fullPage: true });
    await page.getByRole('button', { name: /^Process 1 photo$/ }).click();
    const jobId = await jobIdOnceSent(page);
    await untilDone(page);
    return { job_id: jobId, missing, chosen };
  },
};

const profile = mkdtempSync(path.join(tmpdir(), 'imageflow-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: opts.chromium,
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
});
const page = await context.newPage();
const problems = [];
page.on('console', (msg) => msg.type() === 'error' && !/^Failed to load resource/.test(msg.text()) && problems.push(msg.text()));
// Failed answers are checked by their address: a 401 before the right key is expected, and
// so is an imported image's 404 while the server has not fetched it yet (its tile waits).
const notYetFetched = (url) => opts.scenario === 'urls' && /\/images\/[0-9a-f]{32}\/input(\/preview)?$/.test(new URL(url).pathname);
page.on('response', (response) => {
  const status = response.status();
  if (status < 400 || (status === 401 && !rightKeyGiven) || (status === 404 && notYetFetched(response.url()))) return;
  problems.push(`${status} from ${response.request().method()} ${new URL(response.url()).pathname}`);
});
page.on('pageerror', (error) => problems.push(`uncaught: ${error.message}`));
try {
  await page.goto(base);
  await page.getByRole('radio', { name: 'Build my own steps' }).waitFor();
  const result = await scenarios[opts.scenario](page);
  check(problems.length === 0, `console errors: ${problems.join('; ')}`);
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
} catch (error) {
  await page.screenshot({ path: path.join(shots, `failed-upload-${opts.scenario}.png`), fullPage: true }).catch(() => {});
  console.error(error);
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
