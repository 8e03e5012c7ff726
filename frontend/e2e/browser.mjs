// End-to-end checks of the web page in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; no browser is ever downloaded). Run by
// tests/e2e/test_browser.py against the running local stack, one phase per call:
//
//   node e2e/browser.mjs upload --base-url URL --artifacts DIR --photos a.jpg,b.jpg \
//        --broken broken.jpg --refused fake.png --not-image notes.txt
//       Uploads through the page with a custom operation list, waits for the results,
//       downloads one result and the zip. Prints {"job_id", "downloads"} as JSON.
//   node e2e/browser.mjs open --base-url URL --artifacts DIR --url LINK --job-id ID
//       Opens the email link cold (a fresh browser profile), and an unknown job id.
//   node e2e/browser.mjs watch --base-url URL --artifacts DIR --url LINK --total N
//       Opens a job none of whose photos is done yet, prints "WAITING" once it shows
//       that, then follows it live to the end.
//
// Each phase fails (exit 1) on a console error, an uncaught exception, an accessibility
// violation (axe-core, serious or critical) or a page wider than a phone's screen.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { assertAccessible, check, chooseFiles, jobIdOnceSent, launch, log, parseOptions, recordNetwork, runPhase, smallTouchTargets, sum, untilDone, visiblePicturesDrawn, watchConsole } from './harness.mjs';

const JOB_DONE_TIMEOUT = 120_000;

const { positionals, values: opts, baseUrl } = parseOptions(
  {
    artifacts: { type: 'string' },
    photos: { type: 'string', default: '' },
    broken: { type: 'string' },
    refused: { type: 'string' },
    'not-image': { type: 'string' },
    url: { type: 'string' },
    'job-id': { type: 'string' },
    total: { type: 'string' },
  },
  { allowPositionals: true },
);
const phase = positionals[0];
const shots = path.join(opts.artifacts, 'screenshots');
const downloads = path.join(opts.artifacts, 'downloads');
mkdirSync(shots, { recursive: true });
mkdirSync(downloads, { recursive: true });

const open = () => launch(opts.chromium, { viewport: { width: 1280, height: 900 } });

async function assertFitsWidth(page, label) {
  const { scroll, client, wide } = await page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const describe = (el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${el.className && typeof el.className === 'string' ? `.${el.className.trim().split(/\s+/).join('.')}` : ''}`;
    return {
      scroll: document.documentElement.scrollWidth,
      client: width,
      wide: [...document.querySelectorAll('body *')]
        .filter((el) => el.getBoundingClientRect().right > width + 0.5)
        .slice(0, 5)
        .map((el) => `${describe(el)} (right ${Math.round(el.getBoundingClientRect().right)})`),
    };
  });
  check(scroll <= client, `${label} is wider than the screen (${scroll}px > ${client}px): ${wide.join(', ')}`);
}

async function screenshot(page, name) {
  const file = path.join(shots, name);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

async function imagesLoaded(page, selector) {
  await page.waitForFunction(
    (sel) => [...document.querySelectorAll(sel)].every((img) => img.complete),
    selector,
    { timeout: 30_000 },
  );
  return page.evaluate((sel) => [...document.querySelectorAll(sel)].map((img) => img.naturalWidth), selector);
}

async function countOf(page, testId) {
  return Number(await page.getByTestId(testId).textContent());
}

async function phaseUpload() {
  const photos = opts.photos.split(',').filter(Boolean);
  const names = photos.map((p) => path.basename(p));
  const browser = await open();
  const page = await browser.context.newPage();
  const consoleWatch = watchConsole(page);

  await page.goto(`${baseUrl}/`);
  const web = page.getByRole('radio', { name: /web/i });
  await web.waitFor();
  check(await web.isChecked(), 'the web preset is chosen by default');

  // Keyboard: the file picker is reachable with Tab.
  let reached = false;
  for (let i = 0; i < 8 && !reached; i += 1) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.textContent === 'Choose photos');
  }
  check(reached, '"Choose photos" can be reached with the Tab key');

  // Every limit is said before a file is picked.
  const hint = await page.locator('.dropzone-hint').textContent();
  check(/up to [\d.]+ MB each · up to [\d,]+ photos per job, of any total size · up to \d+ megapixels each/.test(hint), `the limits are stated: ${hint}`);

  const picked = [...photos, opts.broken, opts.refused, opts['not-image']];
  // The photos and the broken one (a real JPEG header); the page reads the first bytes of
  // the text file named .png and refuses it with the server's reason, as it does the .txt.
  const expected = photos.length + 1;
  await chooseFiles(page, picked, { count: expected });
  const warning = page.locator('.notice', { hasText: '2 files were not added' });
  const warningText = await warning.textContent();
  check(warningText.includes(path.basename(opts['not-image'])), 'the text file is named as not added');
  check(warningText.includes(`${path.basename(opts.refused)} is not an image: the content is text.`), 'the fake image is refused before upload, with the reason');
  await screenshot(page, 'upload-refused-before-upload.png');
  const widths = await imagesLoaded(page, 'img.thumb');
  check(widths.filter((w) => w > 0).length >= photos.length, 'every photo shows a thumbnail');

  // A custom operation list, built from the published schema.
  await page.getByRole('radio', { name: 'Build my own steps' }).check();
  const picker = page.getByLabel('Add a step');
  const addStep = async (op) => {
    await picker.selectOption(op);
    await page.getByRole('button', { name: 'Add step' }).click();
  };
  await addStep('resize');
  await page.getByLabel('Width (optional)').fill('400');
  await addStep('grayscale');
  await addStep('format');
  // A new format step holds the format it shows.
  check((await page.getByLabel('Format', { exact: true }).inputValue()) === 'jpeg', 'a new format step is set to the JPEG it shows');
  await page.getByLabel('Format', { exact: true }).selectOption('jpeg');
  await page.getByLabel('Quality (optional)').fill('80');
  await page.getByLabel('Email address').fill('e2e@example.com');

  // A setting only the server can judge is refused before any photo is sent: once,
  // beside its field, with a summary link that goes to the step.
  const background = page.getByLabel('Background colour (optional)');
  await background.fill('blurple');
  const uploads = [];
  page.on('request', (request) => {
    if (request.method() === 'POST' && /\/api\/v1\/jobs/.test(request.url())) uploads.push(request.url());
  });
  await page.getByRole('button', { name: `Process ${expected} photos` }).click();
  const fieldError = page.locator('.field-error', { hasText: "'blurple' is not a colour" });
  await fieldError.waitFor();
  check((await page.getByText(/'blurple' is not a colour/).count()) === 1, 'the refused setting is said once');
  check(uploads.length === 0, `nothing was uploaded: ${uploads.join(', ')}`);
  check((await page.getByText(/operations\[/).count()) === 0, 'no step is counted from 0');
  await page.screenshot({ path: path.join(shots, 'upload-error-before-upload.png') });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.getByRole('link', { name: 'Check the settings of step 3.' }).click();
  await page.waitForFunction(() => document.activeElement?.value === 'blurple');
  await page.locator('li.step').nth(2).screenshot({ path: path.join(shots, 'upload-error-on-step.png') });
  await background.fill('#ffffff');

  // The steps saved as a preset of one's own (POST /api/v1/presets).
  await page.getByLabel('Save these steps as a preset').fill('E2E grey 400');
  await page.getByRole('button', { name: 'Save preset' }).click();
  await page.getByText('Saved as “E2E grey 400”. It is now among the presets.').waitFor();

  // A reload keeps the photos (IndexedDB) and the steps (localStorage).
  await page.reload();
  await page.getByRole('heading', { name: `${expected} photos chosen` }).waitFor();
  check(await page.getByRole('radio', { name: 'Build my own steps' }).isChecked(), 'the custom steps are kept after a reload');
  check((await page.locator('li.step').count()) === 3, 'the three steps are kept after a reload');
  check((await page.getByLabel('Width (optional)').inputValue()) === '400', "a step's settings are kept after a reload");
  check((await page.getByLabel('Email address').inputValue()) === 'e2e@example.com', 'the email is kept after a reload');
  await page.getByRole('radio', { name: 'Use a preset' }).check();
  check((await page.getByRole('radio', { name: /E2E grey 400/ }).count()) === 1, 'the saved preset is offered beside the built-in ones');
  await page.getByRole('radio', { name: 'Build my own steps' }).check();
  await imagesLoaded(page, 'img.thumb');
  await assertFitsWidth(page, 'the upload page');
  await assertAccessible(page, 'the upload page');
  await screenshot(page, 'upload.png');

  // Slow the upload down so its progress bar can be seen moving.
  const cdp = await browser.context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: 128 * 1024, // about 5 s for these photos: time to see the bar and to try to leave
  });
  await page.getByRole('button', { name: `Process ${expected} photos` }).click();
  const bar = page.locator('#upload-progress');
  await bar.waitFor();
  await page.waitForFunction(() => {
    const el = document.querySelector('#upload-progress');
    return el && el.value > 0 && el.value < el.max;
  });
  await screenshot(page, 'upload-progress.png');
  // Leaving mid-upload asks first; staying keeps the upload going.
  const asked = new Promise((resolve) => {
    page.once('dialog', async (dialog) => {
      resolve(dialog.type());
      await dialog.dismiss();
    });
  });
  await page.close({ runBeforeUnload: true });
  const noDialog = new Promise((resolve) => setTimeout(() => resolve('no dialog within 10 s'), 10000));
  check((await Promise.race([asked, noDialog])) === 'beforeunload', 'leaving mid-upload asks first');
  check(!page.isClosed(), 'staying keeps the page');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });

  const jobId = await jobIdOnceSent(page);
  log(`job ${jobId}`);
  await page.getByText(`Upload complete: ${expected} photos sent.`).waitFor();
  check((await page.getByText(/We'll email a link to e2e@example.com when every photo is done|A link to these results was emailed/).count()) === 1, 'the email sentence is there');

  await untilDone(page, { name: 'Your photos are ready, with some errors', timeout: JOB_DONE_TIMEOUT });
  check((await countOf(page, 'count-succeeded')) === photos.length, `${photos.length} photos succeeded`);
  check((await countOf(page, 'count-failed')) === 1, 'one photo failed');
  // The contact sheet first, then the detailed cards (the choice is kept for the rest of the run).
  check((await page.locator('li.sheet-tile').count()) === expected, `the contact sheet shows the ${expected} photos`);
  await page.getByRole('button', { name: 'Details', exact: true }).click();
  const brokenCard = page.locator('li.image-card', { hasText: path.basename(opts.broken) });
  const brokenError = await brokenCard.locator('.image-error').textContent();
  // In words for its error_code, or the server's own message where it gives no code.
  check(/damaged or incomplete|truncated|ends early/.test(brokenError), `the broken photo explains its error: ${brokenError}`);
  check((await page.getByText('A link to these results was emailed to e2e@example.com.').count()) === 1, 'a finished job says the email went out');
  const afterWidths = await imagesLoaded(page, 'img.picture');
  check(afterWidths.length >= photos.length * 2 && afterWidths.every((w) => w > 0), 'before and after pictures load');
  await assertFitsWidth(page, 'the results page');
  await assertAccessible(page, 'the results page');
  await screenshot(page, 'results.png');

  // Filter by state.
  await page.getByRole('button', { name: 'Failed (1)', exact: true }).click();
  check((await page.locator('li.image-card').count()) === 1, 'the failed filter shows the one failed photo');
  await page.getByRole('button', { name: `All (${expected})` }).click();
  check((await page.locator('li.image-card').count()) === expected, 'all the photos are back');

  // The lightbox: before and after side by side, with sizes and the saving.
  await page.getByRole('button', { name: `Compare ${names[0]} before and after` }).click();
  const dialog = page.getByRole('dialog', { name: names[0] });
  await dialog.waitFor();
  await imagesLoaded(page, '.lightbox img');
  const dialogText = await dialog.textContent();
  check(/Before · .*KB · JPEG/.test(dialogText) && /After · 400×300 · .* · JPEG/.test(dialogText), `the lightbox gives both sizes: ${dialogText}`);
  check(/\d+% smaller than the original/.test(dialogText), 'the lightbox gives the saving');
  await assertAccessible(page, 'the lightbox');
  await page.screenshot({ path: path.join(shots, 'lightbox.png') });
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });

  const saved = {};
  const download = async (name, link) => {
    const [file] = await Promise.all([page.waitForEvent('download'), link.click()]);
    const target = path.join(downloads, file.suggestedFilename());
    await file.saveAs(target);
    saved[name] = target;
    log(`downloaded ${target}`);
  };
  await download('one', page.getByRole('link', { name: `Download ${names[0]}` }));
  await download('zip', page.getByRole('link', { name: 'Download all (zip)' }));

  // A phone's width: nothing runs off the side.
  await page.setViewportSize({ width: 375, height: 800 });
  // The grid lays itself out again for the narrower screen: one card per row.
  await page.waitForFunction(() => [...document.querySelectorAll('ul.gallery')].every((row) => row.style.gridTemplateColumns.startsWith('repeat(1,')));
  await assertFitsWidth(page, 'the results page at 375px');
  await screenshot(page, 'results-phone.png');
  await page.goto(`${baseUrl}/`);
  await page.getByRole('heading', { name: `${expected} photos chosen` }).waitFor(); // kept for "Process more photos"
  await assertFitsWidth(page, 'the upload page at 375px');
  const small = await smallTouchTargets(page);
  check(small.length === 0, `touch targets of at least 44 px: ${small.join(', ')}`);
  // A phone cannot drag files: the page does not ask it to.
  await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: true, maxTouchPoints: 1 }); // pointer: coarse
  await page.reload();
  await page.getByRole('heading', { name: `${expected} photos chosen` }).waitFor();
  check((await page.getByText(/Drag photos/).count()) === 0, 'the phone is not told to drag');
  await imagesLoaded(page, 'img.thumb');
  await screenshot(page, 'upload-phone.png');

  // The page first asks for an open job (ARCHITECTURE.md, "Large jobs"); a server without
  // them answers 415 and the page sends the batch in one request, as it did.
  // The 422 is the check of the "blurple" step above.
  consoleWatch.assertClean((p) => /status of (415|422)/.test(p.text));
  await browser.close();
  return { job_id: jobId, downloads: saved };
}

async function phaseOpen() {
  const browser = await open();
  const page = await browser.context.newPage();
  const consoleWatch = watchConsole(page);

  await page.goto(opts.url);
  await untilDone(page);
  check(page.url().endsWith(`/jobs/${opts['job-id']}`), 'the email link opens the job page');
  check((await page.locator('.notice-success').count()) === 0, 'no upload notice when opened from a link');
  const cards = await page.locator('li.sheet-tile').count();
  check(cards > 0, 'the contact sheet lists the photos');
  await imagesLoaded(page, 'img.picture');
  await screenshot(page, 'results-from-email.png');

  const unknown = '0'.repeat(32);
  await page.goto(`${baseUrl}/jobs/${unknown}`);
  await page.getByRole('heading', { level: 1, name: "We couldn't find this job" }).waitFor();
  check((await page.getByText(unknown).count()) === 1, 'the unknown id is shown');
  await screenshot(page, 'job-not-found.png');

  // The 404 the page asked for is expected; Chromium logs it as a failed resource.
  consoleWatch.assertClean((p) => p.url.endsWith(`/jobs/${unknown}`) && /404/.test(p.text));
  await browser.close();
  return { cards };
}

async function phaseWatch() {
  const total = Number(opts.total);
  const browser = await open();
  const page = await browser.context.newPage();
  const consoleWatch = watchConsole(page);

  await page.goto(opts.url);
  // Queued, or processing once the interaction manager has sent out the tasks.
  await page.getByRole('heading', { level: 1, name: /Your photos are waiting to start|Processing your photos/ }).waitFor();
  check((await page.getByText(`0 of ${total} photos done`).count()) === 1, 'no progress yet');
  check((await countOf(page, 'count-pending')) === total, 'every photo is waiting');
  check((await page.locator('li.sheet-tile .sheet-badge', { hasText: 'Waiting' }).count()) === total, 'each photo is marked waiting on the contact sheet');
  await screenshot(page, 'results-running.png');
  process.stdout.write('WAITING\n'); // the test starts the processor now

  await untilDone(page, { timeout: JOB_DONE_TIMEOUT });
  check((await countOf(page, 'count-succeeded')) === total, 'every photo succeeded');
  await imagesLoaded(page, 'img.picture');
  await screenshot(page, 'results-after-wait.png');
  consoleWatch.assertClean();
  await browser.close();
  return { total };
}

async function phaseBigJob() {
  const total = Number(opts.total);
  const browser = await open();
  const page = await browser.context.newPage();
  const consoleWatch = watchConsole(page);
  // What the page downloads, as Chromium counts it on the wire.
  const net = await recordNetwork(browser.context, page);
  const bytesOf = (test) => sum(net.since().filter(test));

  // the detailed cards, chosen earlier in this browser (the contact sheet has its own test)
  await page.addInitScript(() => window.localStorage.setItem('imageflow.contactSheet', JSON.stringify({ view: 'cards' })));
  await page.goto(opts.url);
  await untilDone(page, { timeout: JOB_DONE_TIMEOUT });
  await page.getByRole('heading', { name: `Photos (${total})` }).waitFor();
  await visiblePicturesDrawn(page);
  const drawn = await page.locator('li.image-card').count();
  check(drawn > 0 && drawn <= total / 5, `only the cards near the screen are drawn (${drawn} of ${total})`);
  await page.waitForTimeout(500); // let the last picture bytes be counted
  const firstView = { images: bytesOf((r) => r.type === 'Image'), job: bytesOf((r) => r.url.includes('/api/v1/jobs/')) };
  await page.screenshot({ path: path.join(shots, `results-${total}.png`) });

  // Scrolling to the end draws the last photos, and not all the others.
  await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
  await page.getByRole('heading', { name: `photo-${total}.jpg`, exact: true }).waitFor();
  await visiblePicturesDrawn(page);
  const drawnAtEnd = await page.locator('li.image-card').count();
  check(drawnAtEnd <= total / 5, `after scrolling, still only the cards near the screen (${drawnAtEnd})`);
  check((await page.getByRole('heading', { name: 'photo-1.jpg', exact: true }).count()) === 0, 'the first card is no longer drawn');
  await page.screenshot({ path: path.join(shots, `results-${total}-end.png`) });
  await page.waitForTimeout(500);
  const scrolled = bytesOf((r) => r.type === 'Image');

  // An unchanged job costs a 304 and no body.
  const poll = await page.evaluate(async (url) => {
    const first = await fetch(url, { cache: 'no-store' });
    const etag = first.headers.get('ETag');
    const again = await fetch(url, { cache: 'no-store', headers: { 'If-None-Match': etag } });
    return { etag, status: again.status, encoding: first.headers.get('Content-Encoding') };
  }, `${baseUrl}/api/v1/jobs/${opts['job-id']}`);
  check(poll.etag && poll.status === 304, `an unchanged job answers 304 to its ETag (${JSON.stringify(poll)})`);
  check(poll.encoding === 'gzip', 'the job view comes gzipped');
  const jobView = net.since().find((r) => r.url.endsWith(`/api/v1/jobs/${opts['job-id']}`) && r.status === 200);

  consoleWatch.assertClean();
  await browser.close();
  return { drawn, drawn_at_end: drawnAtEnd, first_view_image_bytes: firstView.images, after_scroll_image_bytes: scrolled, job_view_bytes_on_wire: jobView?.bytes ?? null };
}

const phases = { upload: phaseUpload, open: phaseOpen, watch: phaseWatch, bigjob: phaseBigJob };
await runPhase(phases, phase, { failureShot: path.join(shots, `failed-${phase}.png`) });
