// The contact sheet and the lightbox of a finished job in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core), run by tests/e2e/test_browser_contact_sheet.py
// and `python -m devtools.screenshots`:
//
//   node e2e/contact_sheet.mjs --base-url URL --job-id ID --name NAME [--shots DIR] [--artifacts DIR]
//       On a 1440x900 desktop: the sheet (8-10 a row, by name, previews only), the arrow keys
//       move the focus, Enter opens the lightbox on the previews, Z zooms to 100 % and only
//       then is the full-size result loaded, the arrows pan it, Escape closes. On a 390x844
//       phone: the swipe slider, then End and Home through large thumbnails, one a row.
//       Prints RESULT {...} with what it saw and the requests made.
//
// Fails (exit 1) on a failed check, a console error or a serious accessibility problem.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { assertAccessible, check, launch, log, parseOptions, recordNetwork, runMain, sum, visiblePicturesDrawn, watchConsole } from './harness.mjs';

const { values: opts, baseUrl } = parseOptions({
  'job-id': { type: 'string' },
  name: { type: 'string', default: '' },
  shots: { type: 'string' },
  artifacts: { type: 'string' },
});
if (opts.shots) mkdirSync(opts.shots, { recursive: true });
const failureDir = opts.artifacts ? path.join(opts.artifacts, 'screenshots') : null;
if (failureDir) mkdirSync(failureDir, { recursive: true });

// An original or a full result (not a preview) of this job: /images/<id>/input or /output.
const FULL = /\/api\/v1\/jobs\/[^/]+\/images\/([^/]+)\/(input|output)(\?|$)/;

async function shoot(page, name) {
  if (!opts.shots) return;
  const file = path.join(opts.shots, name);
  await page.screenshot({ path: file, type: 'jpeg', quality: 80 });
  log(`screenshot ${file}`);
}

const fullRequests = (net) =>
  net.all().filter((r) => FULL.test(r.url)).map((r) => {
    const [, imageId, kind] = r.url.match(FULL);
    return { image_id: imageId, kind };
  });

const focusedTile = (page) => page.evaluate(() => document.activeElement?.closest('li.sheet-tile')?.querySelector('.sheet-name')?.textContent ?? null);

async function lightboxPicturesDrawn(page) {
  await page.waitForFunction(() => [...document.querySelectorAll('.lightbox img')].every((img) => img.complete && img.naturalWidth > 0), null, { timeout: 60_000 });
}

await runMain(async () => {
  const jobUrl = `${baseUrl}/jobs/${opts['job-id']}`;
  const browser = await launch(opts.chromium, { viewport: { width: 1440, height: 900 } });
  const page = await browser.context.newPage();
  const consoleWatch = watchConsole(page);
  const net = await recordNetwork(browser.context, page);

  // The sheet: the job's name, a dense grid in name order, previews only.
  await page.goto(jobUrl);
  await page.getByRole('heading', { level: 1, name: 'Your photos are ready' }).waitFor({ timeout: 60_000 });
  if (opts.name) {
    await page.getByTestId('job-name').getByText(opts.name, { exact: true }).waitFor();
    check((await page.title()).startsWith(`${opts.name} · `), `the tab says the job's name: ${await page.title()}`);
  }
  await page.locator('li.sheet-tile').first().waitFor();
  await visiblePicturesDrawn(page);
  const columns = Number(await page.locator('.sheet-rows').getAttribute('data-columns'));
  check(columns >= 8 && columns <= 10, `8-10 thumbnails a row on a 1440 px desktop (${columns})`);
  const names = await page.locator('li.sheet-tile .sheet-name').allTextContents();
  const sorted = [...names].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  check(JSON.stringify(names) === JSON.stringify(sorted), `the sheet is in name order: ${names}`);
  await assertAccessible(page, 'the contact sheet');
  await page.getByRole('heading', { name: /^Photos/ }).evaluate((el) => el.scrollIntoView());
  await shoot(page, 'contact-sheet.jpg');
  await page.waitForTimeout(300); // the last bytes counted
  const sheetBytes = sum(net.since(0));
  const tilesInDom = await page.locator('li.sheet-tile').count();
  const sheetFull = fullRequests(net);
  check(sheetFull.length === 0, `the sheet loads no original or full result: ${JSON.stringify(sheetFull)}`);

  // The keyboard: into the sheet, right, down, and Enter opens the photo focused.
  await page.locator('.sheet-button[tabindex="0"]').focus();
  check((await focusedTile(page)) === names[0], 'the first tile takes the focus');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowDown');
  const target = names[1 + columns];
  check((await focusedTile(page)) === target, `right then down lands on the tile below the second (${await focusedTile(page)}, wanted ${target})`);
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog', { name: target });
  await dialog.waitFor();
  await lightboxPicturesDrawn(page);
  const opened = fullRequests(net);
  check(opened.length === 0, `the lightbox opens on the previews, nothing full-size: ${JSON.stringify(opened)}`);
  const openedSources = await page.locator('.lightbox img').evaluateAll((imgs) => imgs.map((img) => img.getAttribute('src')));
  await assertAccessible(page, 'the lightbox');
  await shoot(page, 'lightbox-previews.jpg');

  // Zoom to 100 %: now, and only now, the full-size result of that one photo.
  await page.keyboard.press('z');
  const zoomed = page.getByAltText(`${target}, after, at 100%`);
  await zoomed.waitFor();
  await page.waitForFunction(() => {
    const img = document.querySelector('.lightbox-zoom img');
    return img && img.complete && img.naturalWidth > 0;
  }, null, { timeout: 60_000 });
  const natural = await zoomed.evaluate((img) => ({ width: img.naturalWidth, height: img.naturalHeight, shown: img.getBoundingClientRect().width }));
  check(Math.abs(natural.shown - natural.width) < 1, `the zoomed result is drawn at 100% (${natural.shown} px for ${natural.width})`);
  const afterZoom = fullRequests(net);
  const start = await zoomed.evaluate((img) => img.style.transform);
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowDown');
  const panned = await zoomed.evaluate((img) => img.style.transform);
  check(panned !== start, `the arrow keys pan the zoomed result (${start} -> ${panned})`);
  // dragging pans too
  const box = await page.getByTestId('lightbox-zoom').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2 + 150, box.y + box.height / 2 + 60, { steps: 5 });
  await page.mouse.up();
  const dragged = await zoomed.evaluate((img) => img.style.transform);
  check(dragged !== panned, `dragging pans the zoomed result (${panned} -> ${dragged})`);
  check(dialog && (await dialog.isVisible()), 'still the same photo while panning');
  await shoot(page, 'lightbox-zoomed.jpg');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });
  check((await focusedTile(page)) === target, 'closing gives the focus back to the tile');
  consoleWatch.assertClean();
  await browser.close();

  // A phone: before and after compared with a swipe slider.
  const phone = await launch(opts.chromium, { viewport: { width: 390, height: 844 } });
  const phonePage = await phone.context.newPage();
  const phoneConsole = watchConsole(phonePage);
  const phoneNet = await recordNetwork(phone.context, phonePage);
  const cdp = await phone.context.newCDPSession(phonePage);
  await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: true, maxTouchPoints: 1 });
  await phonePage.goto(jobUrl);
  await phonePage.locator('li.sheet-tile').first().waitFor({ timeout: 60_000 });
  await phonePage.locator('.sheet-button').first().click();
  const slider = phonePage.getByRole('slider', { name: 'Before and after: slide to compare' });
  await slider.waitFor();
  await lightboxPicturesDrawn(phonePage);
  await slider.fill('35');
  const clip = await phonePage.getByAltText(`${names[0]}, after`).evaluate((img) => img.style.clipPath);
  check(clip === 'inset(0px 0px 0px 35%)' || clip === 'inset(0 0 0 35%)', `the slider uncovers the result (${clip})`);
  await assertAccessible(phonePage, 'the phone slider');
  await shoot(phonePage, 'lightbox-phone-slider.jpg');
  // Large thumbnails, one a row: End scrolls to the last photo and focuses it, far below the
  // rows drawn at first (the grid draws only those near the screen).
  await phonePage.keyboard.press('Escape');
  await phonePage.getByRole('button', { name: 'Large thumbnails' }).click();
  await phonePage.locator('.sheet-button[tabindex="0"]').focus();
  await phonePage.keyboard.press('End');
  const lastName = names[names.length - 1];
  await phonePage.waitForFunction((name) => document.activeElement?.closest('li.sheet-tile')?.querySelector('.sheet-name')?.textContent === name, lastName, { timeout: 10_000 });
  const drawnAfterEnd = await phonePage.locator('li.sheet-tile .sheet-name').allTextContents();
  check(!drawnAfterEnd.includes(names[0]), `after End, the first photo is no longer drawn (${drawnAfterEnd})`);
  await phonePage.keyboard.press('Home');
  await phonePage.waitForFunction((name) => document.activeElement?.closest('li.sheet-tile')?.querySelector('.sheet-name')?.textContent === name, names[0], { timeout: 10_000 });
  const phoneFull = fullRequests(phoneNet);
  check(phoneFull.length === 0, `the phone loads no full-size picture: ${JSON.stringify(phoneFull)}`);
  phoneConsole.assertClean();
  await phone.close();

  return {
    columns,
    names,
    sheet_bytes: sheetBytes,
    tiles_in_dom: tilesInDom,
    opened: target,
    opened_sources: openedSources,
    full_before_zoom: opened,
    full_after_zoom: afterZoom,
    zoomed_natural: natural,
    slider_clip: clip,
    phone_drawn_after_end: drawnAfterEnd,
  };
}, { failureShot: failureDir ? path.join(failureDir, 'failed-contact-sheet.png') : null });
