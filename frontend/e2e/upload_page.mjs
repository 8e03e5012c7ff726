// The upload page's import by address, API key, estimate and overlay logo (issues 16, 17) in
// headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core), run by
// tests/e2e/test_browser_upload_page.py against the running stack (API_KEYS set):
//
//   node e2e/upload_page.mjs --base-url URL --artifacts DIR --scenario NAME --key KEY [...]
//     key       a photo, Process without a key, then a wrong key, then the right one; then the
//               job page opened in a new tab (as from the email: no key there), the key entered
//               in place
//     urls      pasted addresses (--urls, JSON list; one not an address), then a CSV (--csv)
//     estimate  photos (--photos, JSON list of paths), Estimate, then Process
//     overlay   a photo and a logo file (--logo) in an overlay step, then Process; then the
//               steps saved as a preset, the preset chosen, the logo asked for and given again
//     shoot     photos (--photos) of which one is 16 MiB or more: the script panel read, Process;
//               the large one goes to its upload target in resumable chunks, the rest in batches
//   Each follows the job to its page and prints RESULT {...} with what the page showed.
//
// Fails (exit 1) on a console error, a failed answer (but a 401 before the right key is in,
// and an imported image's input asked for before the server fetched it), an uncaught
// exception or a serious accessibility problem.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { assertAccessible, check, chooseFiles, jobIdOnceSent, launch, parseOptions, runMain, untilDone, watchConsole } from './harness.mjs';

const { values: opts, baseUrl: base } = parseOptions({
  artifacts: { type: 'string' },
  scenario: { type: 'string' },
  key: { type: 'string' },
  photos: { type: 'string', default: '[]' },
  urls: { type: 'string', default: '[]' },
  csv: { type: 'string' },
  logo: { type: 'string' },
});
const shots = path.join(opts.artifacts, 'screenshots');
mkdirSync(shots, { recursive: true });
const photos = JSON.parse(opts.photos);

// 401s are expected (the browser logs each) only until the right key is in.
let rightKeyGiven = false;

async function useKey(page, key) {
  await page.getByLabel('Your API key').fill(key);
  await page.getByRole('button', { name: 'Use this key' }).click();
  await page.getByTestId('api-key-status').waitFor();
  rightKeyGiven = key === opts.key;
}

const scenarios = {
  async shoot(page) {
    await useKey(page, opts.key);
    // every request to an upload target: its Content-Range, and whether the key went with it
    const chunks = [];
    page.on('request', (request) => {
      if (request.method() === 'PUT' && /\/uploads\//.test(new URL(request.url()).pathname)) {
        chunks.push({ range: request.headers()['content-range'], key: Boolean(request.headers().authorization) });
      }
    });
    await chooseFiles(page, photos, { timeout: 60_000 });
    await page.getByText('Do this from a script').click();
    const cli = await page.getByTestId('script-cli').textContent();
    const curl = await page.getByTestId('script-curl').textContent();
    await page.getByRole('button', { name: /^Process \d+ photos?$/ }).click();
    // each photo says its state while the job fills
    const states = new Set();
    const seen = async () => {
      for (const text of await page.getByTestId('file-state').allTextContents()) states.add(text.replace(/\d+ %/, 'N %'));
    };
    await page.getByTestId('file-state').first().waitFor({ timeout: 60_000 }).catch(() => {});
    const deadline = Date.now() + 300_000;
    while (!/\/jobs\//.test(page.url())) {
      check(Date.now() < deadline, 'the upload ended within 5 minutes');
      await seen().catch(() => {});
      await page.waitForTimeout(100);
    }
    const jobId = await jobIdOnceSent(page);
    await untilDone(page, { timeout: 300_000 });
    return { job_id: jobId, cli, curl, chunks, states: [...states].sort() };
  },

  async key(page) {
    await page.getByRole('heading', { name: 'API key' }).waitFor();
    const hint = await page.locator('#api-key-hint').textContent();
    await chooseFiles(page, photos);
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
    // The job page in a new tab, as opened from the email: that tab has no key yet.
    const tab = await page.context().newPage();
    const tabConsole = watchConsole(tab);
    await tab.goto(`${base}/jobs/${jobId}`);
    const field = tab.getByLabel('Your API key');
    await field.waitFor();
    const jobPageHeading = await tab.getByRole('heading', { level: 1 }).textContent();
    check(await field.evaluate((input) => input === document.activeElement), 'the key field has the focus');
    await assertAccessible(tab, 'the job page asking for the key');
    await tab.screenshot({ path: path.join(shots, 'job-page-api-key.png'), fullPage: true });
    await field.fill(opts.key);
    await field.press('Enter');
    await untilDone(tab);
    check(tab.url() === `${base}/jobs/${jobId}`, 'the job shows in place, with no navigation');
    tabConsole.assertClean((p) => /^Failed to load resource/.test(p.text)); // the 401 before the key
    await tab.close();
    return { job_id: jobId, hint, missing, refused, stored, job_page_heading: jobPageHeading };
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
    await untilDone(page);
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
    await chooseFiles(page, photos);
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
    await chooseFiles(page, photos);
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
    // The steps (kept by the page, the logo by its name) saved as a preset, then used.
    await page.goto(base);
    await page.getByLabel('Save these steps as a preset').fill('E2E logo');
    await page.getByRole('button', { name: 'Save preset' }).click();
    await page.getByText('Saved as “E2E logo”. It is now among the presets.').waitFor();
    await page.getByRole('radio', { name: 'Use a preset' }).check();
    await page.getByRole('radio', { name: /E2E logo/ }).check();
    await chooseFiles(page, photos);
    await page.getByRole('button', { name: /^Process 1 photo$/ }).click();
    const presetMissing = await page.locator('.preset-logos .field-error').textContent();
    await page.getByLabel('Logo file “logo.png”').setInputFiles(opts.logo);
    await assertAccessible(page, 'the preset asking for its logo');
    await page.screenshot({ path: path.join(shots, 'upload-preset-logo.png'), fullPage: true });
    await page.getByRole('button', { name: /^Process 1 photo$/ }).click();
    const presetJobId = await jobIdOnceSent(page);
    await untilDone(page);
    return { job_id: jobId, missing, chosen, preset_job_id: presetJobId, preset_missing: presetMissing };
  },
};

await runMain(async () => {
  const browser = await launch(opts.chromium, { viewport: { width: 1280, height: 900 } });
  const page = await browser.context.newPage();
  const consoleWatch = watchConsole(page);
  // Failed answers are checked by their address: a 401 before the right key is expected, and
  // so is an imported image's 404 while the server has not fetched it yet (its tile waits).
  const failedAnswers = [];
  const notYetFetched = (url) => opts.scenario === 'urls' && /\/images\/[0-9a-f]{32}\/input(\/preview)?$/.test(new URL(url).pathname);
  page.on('response', (response) => {
    const status = response.status();
    if (status < 400 || (status === 401 && !rightKeyGiven) || (status === 404 && notYetFetched(response.url()))) return;
    failedAnswers.push(`${status} from ${response.request().method()} ${new URL(response.url()).pathname}`);
  });
  await page.goto(base);
  await page.getByRole('radio', { name: 'Build my own steps' }).waitFor();
  const result = await scenarios[opts.scenario](page);
  check(failedAnswers.length === 0, `failed answers: ${failedAnswers.join('; ')}`);
  // Chromium logs each failed answer as well; those are judged above.
  consoleWatch.assertClean((p) => /^Failed to load resource/.test(p.text));
  await browser.close();
  return result;
}, { failureShot: path.join(shots, `failed-upload-${opts.scenario}.png`) });
