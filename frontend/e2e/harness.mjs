// What the browser scripts share: Debian's Chromium through playwright-core (no browser is
// ever downloaded), their options, checks that fail the run, console watching, accessibility
// checks (axe-core), a count of the bytes the page downloads as Chromium sees them on the
// wire, the steps every script takes (choose files, wait for the job page and its end) and
// the way a script hands back its RESULT line.
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** The command line: `--base-url` and `--chromium` for every script, then its own `options`. */
export function parseOptions(options, { allowPositionals = false } = {}) {
  const parsed = parseArgs({
    allowPositionals,
    options: {
      'base-url': { type: 'string' },
      chromium: { type: 'string', default: process.env.CHROMIUM_PATH || '/usr/bin/chromium' },
      ...options,
    },
  });
  return { ...parsed, baseUrl: (parsed.values['base-url'] || '').replace(/\/$/, '') };
}

export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

export function log(message) {
  process.stderr.write(`[browser] ${message}\n`);
}

let lastPage = null; // the page to screenshot when a script fails

/** A fresh Chromium profile (nothing cached or remembered from an earlier run). */
export async function launch(executablePath, { viewport = { width: 1280, height: 800 } } = {}) {
  const profile = mkdtempSync(path.join(tmpdir(), 'imageflow-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    acceptDownloads: true,
    viewport,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context.on('page', (page) => {
    lastPage = page;
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Console errors and uncaught exceptions of a page; `allow` lets expected ones through. */
export function watchConsole(page) {
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push({ text: msg.text(), url: page.url() });
  });
  page.on('pageerror', (error) => problems.push({ text: `uncaught: ${error.message}`, url: page.url() }));
  return {
    assertClean(allow = () => false) {
      const bad = problems.filter((p) => !allow(p));
      check(bad.length === 0, `console errors:\n${bad.map((p) => `  ${p.url}: ${p.text}`).join('\n')}`);
    },
  };
}

/** Fails on a serious or critical axe-core violation on the page as it is. */
export async function assertAccessible(page, label) {
  // Evaluated rather than added as a <script>: the page's Content-Security-Policy
  // (nginx container) rightly refuses inline scripts.
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const { violations } = await axe.run(document, { resultTypes: ['violations'] });
    return violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.help} -> ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
  });
  check(result.length === 0, `accessibility problems on ${label}:\n  ${result.join('\n  ')}`);
}

/**
 * Every response the page gets, with the bytes it took on the wire (headers and body, as
 * compressed), from the DevTools protocol. `mark()` starts a new span; `since(mark)` lists
 * the requests finished after it.
 */
export async function recordNetwork(context, page) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const requests = new Map();
  let order = 0;
  cdp.on('Network.requestWillBeSent', ({ requestId, request, type }) => {
    requests.set(requestId, { url: request.url, method: request.method, type, status: null, bytes: 0, done: false, at: null });
  });
  cdp.on('Network.responseReceived', ({ requestId, response }) => {
    const entry = requests.get(requestId);
    if (entry) entry.status = response.status;
  });
  cdp.on('Network.loadingFinished', ({ requestId, encodedDataLength }) => {
    const entry = requests.get(requestId);
    if (entry) Object.assign(entry, { bytes: encodedDataLength, done: true, at: (order += 1) });
  });
  return {
    cdp,
    mark: () => order,
    since: (mark = 0) => [...requests.values()].filter((r) => r.done && r.at > mark),
    all: () => [...requests.values()],
  };
}

export const sum = (entries) => entries.reduce((total, r) => total + r.bytes, 0);

/** Wait until every picture on screen has been drawn (lazy ones start only once in view). */
export async function visiblePicturesDrawn(page, timeout = 60_000) {
  await page.waitForFunction(
    () =>
      [...document.querySelectorAll('img.picture')]
        .filter((img) => {
          const r = img.getBoundingClientRect();
          return r.bottom > 0 && r.top < window.innerHeight;
        })
        .every((img) => img.complete && img.naturalWidth > 0),
    null,
    { timeout },
  );
}

/** Touch targets (buttons, links styled as buttons, fields) on screen smaller than 44 px. */
export async function smallTouchTargets(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('button, a.button, select, input[type="number"], input[type="text"], input[type="email"]')]
      .filter((el) => el.offsetParent !== null)
      .map((el) => ({ el: el.getAttribute('aria-label') || el.textContent.trim() || el.id, rect: el.getBoundingClientRect() }))
      .filter(({ rect }) => rect.height < 44 || (rect.width < 44 && rect.width > 0))
      .map(({ el, rect }) => `${el} ${Math.round(rect.width)}x${Math.round(rect.height)}`),
  );
}

/** Chooses `files` through the page's file input; waits until it lists `count` of them. */
export async function chooseFiles(page, files, { count = files.length, timeout = 30_000 } = {}) {
  await page.getByTestId('file-input').setInputFiles(files);
  await page.getByRole('heading', { name: `${count} photo${count === 1 ? '' : 's'} chosen` }).waitFor({ timeout });
}

/** Once the page has sent a job and moved to its page: the job's id. */
export async function jobIdOnceSent(page, timeout = 60_000) {
  await page.waitForURL(/\/jobs\/[0-9a-f]{32}$/, { timeout });
  return new URL(page.url()).pathname.split('/').pop();
}

/** Waits until the job page says the job is done (`name`: its heading, or a part of it). */
export async function untilDone(page, { name = 'Your photos are ready', timeout = 120_000 } = {}) {
  await page.getByRole('heading', { level: 1, name }).waitFor({ timeout });
}

/**
 * Runs a script's `main` and prints its result as `RESULT {...}` on stdout, which the
 * Python drivers read; on a failure prints the error, saves a screenshot of the last page
 * as `failureShot` (a path) when given, and exits 1.
 */
export async function runMain(main, { failureShot = null } = {}) {
  try {
    const result = await main();
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  } catch (error) {
    console.error(error.stack || String(error));
    if (failureShot && lastPage && !lastPage.isClosed()) {
      await lastPage.screenshot({ path: failureShot, fullPage: true }).catch(() => {});
      console.error(`page at failure: ${lastPage.url()} (screenshot ${failureShot})`);
    }
    process.exit(1);
  }
}

/** Runs the phase named on the command line, one of `phases` (name: async function). */
export async function runPhase(phases, phase, options = {}) {
  if (!phases[phase]) {
    console.error(`unknown phase ${phase}; use one of ${Object.keys(phases).join(', ')}`);
    process.exit(2);
  }
  await runMain(phases[phase], options);
}
