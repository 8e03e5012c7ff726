// What the browser scripts share: Debian's Chromium through playwright-core (no browser is
// ever downloaded), checks that fail the run, console watching, and a count of the bytes
// the page downloads as Chromium sees them on the wire.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

export function log(message) {
  process.stderr.write(`[browser] ${message}\n`);
}

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
