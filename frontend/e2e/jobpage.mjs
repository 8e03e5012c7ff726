// The job page of a big job, and the screenshots of the page, in headless Chromium against
// the running local stack. Run by tests/e2e/test_browser_big_job.py and
// `python -m devtools.screenshots`, one phase per call:
//
//   node e2e/jobpage.mjs bigjob --base-url URL --files DIR --total N [--shots DIR]
//       Chooses every file under DIR through the page's file input, processes them with the
//       default preset, follows the job to the end, then scrolls the job page from top to
//       bottom. Prints what it saw and downloaded as JSON (RESULT {...}).
//   node e2e/jobpage.mjs tour --base-url URL --photos a.jpg,b.jpg --shots DIR
//       The upload page on a desktop and a phone, a setting refused before upload, the
//       job page and the lightbox, as screenshots.
//
// A phase fails (exit 1) on a failed check or a console error.
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { check, chooseFiles, jobIdOnceSent, launch, log, parseOptions, recordNetwork, runPhase, smallTouchTargets, sum, untilDone, visiblePicturesDrawn, watchConsole } from './harness.mjs';

const { positionals, values: opts, baseUrl } = parseOptions(
  {
    files: { type: 'string' },
    photos: { type: 'string', default: '' },
    total: { type: 'string' },
    shots: { type: 'string' },
  },
  { allowPositionals: true },
);
const phase = positionals[0];
// A 1280x800 screen shows two rows of three or four cards; the grid adds two above and below.
const MAX_CARDS = 30;
if (opts.shots) mkdirSync(opts.shots, { recursive: true });

/** A viewport screenshot as JPEG (quality 80), small enough to commit. */
async function shoot(page, name) {
  if (!opts.shots) return;
  const file = path.join(opts.shots, name);
  await page.screenshot({ path: file, type: 'jpeg', quality: 80 });
  log(`screenshot ${file}`);
}

function filesUnder(dir) {
  return readdirSync(dir)
    .flatMap((name) => {
      const full = path.join(dir, name);
      return statSync(full).isDirectory() ? filesUnder(full) : [full];
    })
    .sort();
}

// A request for an original or a full result (rather than a preview): /images/<id>/input or /output.
const FULL_PICTURE = /\/api\/v1\/jobs\/[^/]+\/images\/[^/]+\/(input|output)(\?|$)/;
const PREVIEW = /\/api\/v1\/jobs\/[^/]+\/images\/[^/]+\/(input|output)\/preview/;

/** What is on screen: the cards in the DOM, their ids, names and the download names. */
async function cardsInDom(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('li.image-card')].map((card) => ({
      id: card.dataset.imageId,
      name: card.querySelector('h3')?.textContent,
      status: card.querySelector('.badge')?.textContent,
      download: card.querySelector('a[download]')?.getAttribute('download') || null,
      pictures: [...card.querySelectorAll('img.picture')].map((img) => img.getAttribute('src')),
    })),
  );
}

async function phaseBigJob() {
  const files = filesUnder(opts.files);
  const total = Number(opts.total || files.length);
  check(files.length === total, `${total} files to upload (found ${files.length})`);
  const browser = await launch(opts.chromium);
  const page = await browser.context.newPage();
  const consoleWatch = watchConsole(page);
  const net = await recordNetwork(browser.context, page);
  // the detailed cards, chosen earlier in this browser (contact_sheet.mjs looks at the sheet)
  await page.addInitScript(() => window.localStorage.setItem('imageflow.contactSheet', JSON.stringify({ view: 'cards' })));

  await page.goto(`${baseUrl}/`);
  const web = page.getByRole('radio', { name: /web/i });
  await web.waitFor();
  check(await web.isChecked(), 'the web preset is chosen by default');
  const picking = Date.now();
  await chooseFiles(page, files, { timeout: 120_000 });
  const pickedMs = Date.now() - picking;

  const uploadMark = net.mark();
  const started = Date.now();
  await page.getByRole('button', { name: `Process ${total} photos` }).click();
  const jobId = await jobIdOnceSent(page, 300_000);
  const uploadedMs = Date.now() - started;
  const jobMark = net.mark(); // from here on, what the job page downloads
  const uploads = net.since(uploadMark).filter((r) => r.method === 'POST' && r.url.includes(`/api/v1/jobs`));
  log(`job ${jobId}: ${uploads.length} upload requests in ${uploadedMs} ms`);
  await page.getByText(`Upload complete: ${total} photos sent.`).waitFor();

  await untilDone(page, { timeout: 600_000 });
  const doneMs = Date.now() - started;
  check(Number(await page.getByTestId('count-succeeded').textContent()) === total, `all ${total} succeeded`);
  check(Number(await page.getByTestId('count-failed').textContent()) === 0, 'none failed');
  check((await page.getByText(`${total} of ${total} photos done`).count()) === 1, 'the progress says all are done');
  await page.getByRole('heading', { name: `Photos (${total})` }).waitFor();
  const whileRunning = net.since(jobMark);
  const polls = whileRunning.filter((r) => r.url.includes(`/api/v1/jobs/${jobId}`) && !PREVIEW.test(r.url));

  // The first screen: only the cards near it are in the DOM, with preview pictures.
  await page.evaluate(() => window.scrollTo(0, 0));
  await visiblePicturesDrawn(page);
  await page.waitForTimeout(300); // the last bytes counted
  const first = await cardsInDom(page);
  check(first.length > 0 && first.length <= MAX_CARDS, `only the cards near the screen are drawn (${first.length} of ${total})`);
  const pictures = first.flatMap((card) => card.pictures);
  check(pictures.length > 0 && pictures.every((src) => PREVIEW.test(src)), `every picture is a preview: ${pictures.filter((src) => !PREVIEW.test(src)).slice(0, 3)}`);
  const firstViewBytes = sum(net.since(jobMark));
  const firstViewPictureBytes = sum(net.since(jobMark).filter((r) => PREVIEW.test(r.url) || FULL_PICTURE.test(r.url)));
  await shoot(page, `job-${total}.jpg`);
  await page.getByRole('heading', { name: `Photos (${total})` }).evaluate((el) => el.scrollIntoView());
  await visiblePicturesDrawn(page);
  await shoot(page, `job-${total}-grid.jpg`);

  // Far down, on a slow network: the BlurHash stands in for each result until its preview comes.
  await net.cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 1500, downloadThroughput: -1, uploadThroughput: -1 });
  // Cards the grid drew ahead of the screen (its overscan) may have their previews already, so
  // look further down until a screen shows results still loading (a small job is short).
  let placeholders = [];
  for (const depth of [0.5, 0.7, 0.85, 1]) {
    await page.evaluate((d) => window.scrollTo(0, document.documentElement.scrollHeight * d), depth);
    await page.waitForTimeout(300); // the newly drawn cards asked for their previews (1.5 s away)
    placeholders = await page.evaluate(() =>
      [...document.querySelectorAll('img.picture[data-placeholder="blurhash"]')]
        .filter((img) => {
          const r = img.getBoundingClientRect();
          return r.bottom > 0 && r.top < window.innerHeight && !img.complete;
        })
        .map((img) => getComputedStyle(img).backgroundImage),
    );
    if (placeholders.length > 0) break;
  }
  check(placeholders.length > 0 && placeholders.every((bg) => bg.startsWith('url("data:image/png;base64,')), `results still loading show their BlurHash (${placeholders.length})`);
  await shoot(page, `job-${total}-placeholders.jpg`);
  await net.cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await visiblePicturesDrawn(page);
  // Each picture drawn drops its placeholder (React re-renders the card just after the load).
  await page.waitForFunction(
    () => ![...document.querySelectorAll('img.picture')].some((img) => img.complete && img.naturalWidth > 0 && img.dataset.placeholder),
    null,
    { timeout: 10_000 },
  );

  // Scroll from the top to the end, a screen at a time, as a user looking through the job.
  await page.evaluate(() => window.scrollTo(0, 0));
  const seen = new Map();
  let most = 0;
  let steps = 0;
  for (;;) {
    await visiblePicturesDrawn(page);
    const cards = await cardsInDom(page);
    most = Math.max(most, cards.length);
    cards.forEach((card) => seen.set(card.id, card));
    const atEnd = await page.evaluate(() => {
      const before = window.scrollY;
      window.scrollBy(0, window.innerHeight);
      return window.scrollY === before;
    });
    steps += 1;
    if (atEnd) break;
    await page.waitForTimeout(50);
  }
  await page.waitForTimeout(300);
  const last = await cardsInDom(page);
  check(most <= MAX_CARDS, `while scrolling, at most ${most} cards were in the DOM at once`);
  check(!last.some((card) => first.some((f) => f.id === card.id)), 'at the end, none of the first cards is drawn');
  check(seen.size === total, `every photo was shown on the way down (${seen.size} of ${total})`);
  check([...seen.values()].every((card) => card.status === 'Done'), 'every card says Done');
  const twins = [...seen.values()].filter((card) => /^IMG_0001( \(2\))?\.jpg$/.test(card.name)).map((card) => `${card.name}->${card.download}`).sort();
  await shoot(page, `job-${total}-end.jpg`);

  const jobPage = net.since(jobMark);
  const full = jobPage.filter((r) => FULL_PICTURE.test(r.url));
  check(full.length === 0, `no original or full result is loaded as a thumbnail: ${full.slice(0, 3).map((r) => r.url)}`);
  const previews = jobPage.filter((r) => PREVIEW.test(r.url));

  // A phone: one card per row, and every control on screen is at least 44 px.
  await page.setViewportSize({ width: 375, height: 800 });
  await page.waitForFunction(() => [...document.querySelectorAll('ul.gallery')].every((row) => row.style.gridTemplateColumns.startsWith('repeat(1,')));
  await page.evaluate(() => window.scrollTo(0, 0));
  const small = await smallTouchTargets(page);
  check(small.length === 0, `touch targets of at least 44 px on the job page: ${small.join(', ')}`);

  // The page first asks for an open job; nothing else may log an error.
  consoleWatch.assertClean();
  await browser.close();
  return {
    job_id: jobId,
    total,
    pick_ms: pickedMs,
    upload_ms: uploadedMs,
    upload_requests: uploads.length,
    done_ms: doneMs,
    polls: polls.length,
    polls_not_modified: polls.filter((r) => r.status === 304).length,
    poll_bytes: sum(polls),
    bytes_while_running: sum(whileRunning),
    first_view_cards: first.length,
    first_view_bytes: firstViewBytes,
    first_view_picture_bytes: firstViewPictureBytes,
    most_cards_in_dom: most,
    scroll_steps: steps,
    cards_seen: seen.size,
    job_page_bytes: sum(jobPage),
    job_page_requests: jobPage.length,
    preview_requests: previews.length,
    preview_bytes: sum(previews),
    full_picture_requests: full.length,
    twins,
  };
}

async function phaseTour() {
  const photos = opts.photos.split(',').filter(Boolean);
  const names = photos.map((p) => path.basename(p));
  const browser = await launch(opts.chromium);
  const page = await browser.context.newPage();
  const consoleWatch = watchConsole(page);

  // The upload page on a desktop, photos chosen.
  await page.goto(`${baseUrl}/`);
  await page.getByRole('radio', { name: /web/i }).waitFor();
  await chooseFiles(page, photos);
  await page.waitForFunction(() => [...document.querySelectorAll('img.thumb')].every((img) => img.complete && img.naturalWidth > 0));
  await shoot(page, 'upload.jpg');

  // A setting only the server can judge, refused before a byte goes up, beside its field.
  await page.getByRole('radio', { name: 'Build my own steps' }).check();
  await page.getByLabel('Add a step').selectOption('resize');
  await page.getByRole('button', { name: 'Add step' }).click();
  await page.getByLabel('Width (optional)').fill('1200');
  await page.getByLabel('Add a step').selectOption('format');
  await page.getByRole('button', { name: 'Add step' }).click();
  await page.getByLabel('Format', { exact: true }).selectOption('webp');
  const background = page.getByLabel('Background colour (optional)');
  await background.fill('blurple');
  const posts = [];
  page.on('request', (request) => {
    if (request.method() === 'POST' && /\/api\/v1\/jobs/.test(request.url())) posts.push(request.url());
  });
  await page.getByRole('button', { name: `Process ${photos.length} photos` }).click();
  const fieldError = page.locator('.field-error', { hasText: "'blurple' is not a colour" });
  await fieldError.waitFor();
  check(posts.length === 0, `nothing was uploaded before the error: ${posts}`);
  await fieldError.evaluate((el) => el.scrollIntoView({ block: 'center' }));
  await shoot(page, 'upload-error-before-upload.jpg');
  await background.fill('#ffffff');

  // Processed, then the lightbox: before and after, their sizes and the saving.
  await page.getByRole('button', { name: `Process ${photos.length} photos` }).click();
  await jobIdOnceSent(page, 120_000);
  await untilDone(page, { timeout: 180_000 });
  await visiblePicturesDrawn(page);
  await shoot(page, 'job.jpg');
  await page.getByRole('button', { name: 'Details', exact: true }).click();
  await page.getByRole('button', { name: `Compare ${names[0]} before and after` }).click();
  const dialog = page.getByRole('dialog', { name: names[0] });
  await dialog.waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll('.lightbox img')].every((img) => img.complete && img.naturalWidth > 0));
  const text = await dialog.textContent();
  check(/Before · .* · JPEG/.test(text) && /After · 1200×\d+ · .* · WebP/.test(text) && /% smaller than the original/.test(text), `the lightbox gives both sizes and the saving: ${text}`);
  await shoot(page, 'lightbox.jpg');
  await page.keyboard.press('Escape');

  // A phone (touch, 375 px): the chosen photos are kept for "Process more photos".
  await page.setViewportSize({ width: 375, height: 800 });
  const cdp = await browser.context.newCDPSession(page);
  await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: true, maxTouchPoints: 1 });
  await page.goto(`${baseUrl}/`);
  await page.getByRole('heading', { name: `${photos.length} photos chosen` }).waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll('img.thumb')].every((img) => img.complete && img.naturalWidth > 0));
  check((await page.getByText(/Drag photos/).count()) === 0, 'the phone is not told to drag');
  await shoot(page, 'upload-phone.jpg');

  // The 422 is the "blurple" check above; 415 a server without open jobs.
  consoleWatch.assertClean((p) => /status of (415|422)/.test(p.text));
  await browser.close();
  return { shots: opts.shots };
}

const phases = { bigjob: phaseBigJob, tour: phaseTour };
await runPhase(phases, phase);
