// The bookstore in a real browser: headless Chromium (Debian's package)
// loads pages served by the real release binaries, and the checks read the
// rendered DOM. Screenshots land in ../artifacts/screenshots/.
//
// Run from the repository root, after `cargo build --release -p
// recommendations -p marketplace`:  (cd browser && npm ci && npm test)
// CHROMIUM overrides the browser path (default /usr/bin/chromium).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const release = path.join(root, 'target', 'release');
const screenshots = path.join(root, 'artifacts', 'screenshots');
const WIDTHS = [360, 1440];

/** Starts a binary on free loopback ports; resolves with its "serving" log event. */
function start(name, args) {
  const child = spawn(path.join(release, name), ['--log-format=json', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const serving = new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const event = JSON.parse(line);
      if (event.message === 'serving') resolve(event);
    });
    child.on('exit', (code) => reject(new Error(`${name} exited (${code}) before serving`)));
  });
  return { child, serving };
}

function stop(process) {
  return new Promise((resolve) => {
    if (process.exitCode !== null || process.signalCode !== null) return resolve(process.exitCode);
    process.on('exit', (code) => resolve(code));
    process.kill('SIGTERM');
  });
}

/** WCAG contrast ratio of two CSS rgb() colours. */
function contrast(foreground, background) {
  const luminance = (css) => {
    const [r, g, b] = css.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number).map((v) => {
      const c = v / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [light, dark] = [luminance(foreground), luminance(background)].sort((a, b) => b - a);
  return (light + 0.05) / (dark + 0.05);
}

let recommendations;
let marketplace;
let degraded;
let browser;
let site;
let degradedSite;

before(async () => {
  recommendations = start('recommendations', ['--listen=127.0.0.1:0', '--admin-listen=127.0.0.1:0']);
  const [host, port] = (await recommendations.serving).grpc.split(':');
  marketplace = start('marketplace', [
    '--listen=127.0.0.1:0', '--admin-listen=127.0.0.1:0',
    `--recommendations-host=${host}`, `--recommendations-port=${port}`,
  ]);
  site = `http://${(await marketplace.serving).http}`;
  // A second marketplace whose recommendations never existed: the degraded page.
  degraded = start('marketplace', [
    '--listen=127.0.0.1:0', '--admin-listen=127.0.0.1:0',
    '--recommendations-host=127.0.0.1', '--recommendations-port=9', '--rpc-timeout=500ms',
  ]);
  degradedSite = `http://${(await degraded.serving).http}`;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
      '--disable-component-update', '--disable-sync', '--disable-quic'],
  });
  mkdirSync(screenshots, { recursive: true });
});

after(async () => {
  await browser?.close();
  const codes = await Promise.all([marketplace, degraded, recommendations].filter(Boolean).map((p) => stop(p.child)));
  assert.deepEqual(codes, codes.map(() => 0), 'every server exits 0 on SIGTERM');
});

/** Opens `url` at `width`; returns the page and the console errors it logged. */
async function open(url, width) {
  const context = await browser.newContext({ viewport: { width, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()); });
  page.on('pageerror', (error) => errors.push(error.message));
  const response = await page.goto(url, { waitUntil: 'load' });
  return { page, errors, response, close: () => context.close() };
}

describe('the homepage', () => {
  for (const width of WIDTHS) {
    test(`shows three mystery books, readable at ${width} px, with no console error`, async () => {
      const { page, errors, response, close } = await open(`${site}/`, width);
      try {
        assert.equal(response.status(), 200);
        assert.equal(await page.title(), 'Online Books For You');
        const titles = page.locator('.books > li .book-title');
        assert.equal(await titles.count(), 3);
        for (const title of await titles.all()) {
          assert.ok(await title.isVisible(), 'a book title is hidden');
          const box = await title.boundingBox();
          assert.ok(box.x >= 0 && box.x + box.width <= width, `a title overflows the ${width} px viewport`);
        }
        const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
        assert.ok(scrollWidth <= width, `the page scrolls sideways at ${width} px (${scrollWidth} px wide)`);
        await page.screenshot({ path: path.join(screenshots, `homepage-${width}.png`), fullPage: true });
        assert.deepEqual(errors, [], 'console errors (CSP violations included)');
      } finally {
        await close();
      }
    });
  }

  test('is accessible: language, landmarks, one h1, visible focus, AA contrast', async () => {
    const { page, errors, close } = await open(`${site}/`, 1440);
    try {
      assert.equal(await page.getAttribute('html', 'lang'), 'en');
      for (const landmark of ['header', 'nav', 'main', 'footer']) {
        assert.equal(await page.locator(landmark).count(), 1, `one <${landmark}>`);
      }
      assert.equal(await page.locator('h1').count(), 1);

      await page.keyboard.press('Tab');
      const focused = await page.evaluate(() => {
        const style = getComputedStyle(document.activeElement);
        return { text: document.activeElement.textContent, outline: style.outlineStyle, left: document.activeElement.getBoundingClientRect().left };
      });
      assert.equal(focused.text, 'Skip to content');
      assert.notEqual(focused.outline, 'none', 'the focused element shows an outline');
      assert.ok(focused.left >= 0, 'the focused skip link is on screen');

      const pairs = await page.evaluate(() => {
        const background = (element) => {
          for (let e = element; e; e = e.parentElement) {
            const colour = getComputedStyle(e).backgroundColor;
            if (colour !== 'rgba(0, 0, 0, 0)' && colour !== 'transparent') return colour;
          }
          return 'rgb(255, 255, 255)';
        };
        const selectors = ['h1', '.book-title', '.book-author', '.site-header nav a', '.brand', '.more a', '.site-footer p'];
        return selectors.flatMap((selector) => [...document.querySelectorAll(selector)].map((element) => ({
          selector, foreground: getComputedStyle(element).color, background: background(element),
        })));
      });
      assert.ok(pairs.length >= 7);
      for (const { selector, foreground, background } of pairs) {
        const ratio = contrast(foreground, background);
        assert.ok(ratio >= 4.5, `${selector}: contrast ${ratio.toFixed(2)} < 4.5 (${foreground} on ${background})`);
      }
      assert.deepEqual(errors, []);
    } finally {
      await close();
    }
  });
});

describe('the other pages', () => {
  test('a category page, the browse page and the 404 page render in the site look', async () => {
    for (const [url, status, heading] of [
      [`${site}/category/science-fiction`, 200, 'Science fiction books you may like'],
      [`${site}/category/self-help/books`, 200, 'All self-help books'],
      [`${site}/no/such/page`, 404, 'Page not found'],
    ]) {
      const { page, errors, response, close } = await open(url, 1440);
      try {
        assert.equal(response.status(), status, url);
        assert.equal(await page.locator('h1').textContent(), heading);
        assert.ok(await page.locator('.site-header').isVisible(), `${url} has the site header`);
        assert.deepEqual(errors.filter((e) => !e.includes('404')), [], `${url}: console errors`);
      } finally {
        await close();
      }
    }
  });

  test('without recommendations the page shows an announced notice', async () => {
    const { page, errors, response, close } = await open(`${degradedSite}/`, 360);
    try {
      assert.equal(response.status(), 200);
      const notice = page.getByRole('status');
      assert.ok(await notice.isVisible());
      assert.match(await notice.textContent(), /Recommendations are unavailable right now/);
      await page.screenshot({ path: path.join(screenshots, 'degraded-360.png'), fullPage: true });
      assert.deepEqual(errors, []);
    } finally {
      await close();
    }
  });

  test('the favicon is served', async () => {
    const response = await fetch(`${site}/static/favicon.svg`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'image/svg+xml');
  });
});
