// The browser tests' harness (docs/ui.md "Tests"): Debian's Chromium driven
// by playwright-core, headless, talking only to the throwaway server on
// 127.0.0.1 that tests/integration/test_20_web.py started. Every page a
// test visits can be checked: no console error, no CSP violation, axe-core
// finds no serious or critical accessibility violation, and a screenshot
// lands in build/screenshots/.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '..', '..');
export const SHOTS = path.join(ROOT, 'build', 'screenshots');
export const env = JSON.parse(process.env.DM_WEB_TEST || '{}');
export const BASE = env.url;
assert.ok(BASE && /^http:\/\/127\.0\.0\.1:\d+$/.test(BASE), 'DM_WEB_TEST.url must be a loopback URL');

export const VIEWPORTS = [
  { name: 'phone', width: 375, height: 667 },
  { name: 'desktop', width: 1280, height: 800 },
];

const AXE = fs.readFileSync(path.join(ROOT, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');

// Flags from the machine's notes: headless, and no background networking
// (the machine has no outside network; Chromium must not try to reach it).
const ARGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-default-apps', '--disable-extensions', '--no-default-browser-check',
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1'];

export async function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ARGS, headless: true });
}

/**
 * A browser context with the page checks wired in. Console errors and CSP
 * violations are collected per page; an HTTP error status the test expects
 * (a 401 for a wrong password, say) is allowed with allowHttp(status).
 */
export async function newContext(browser, viewport = VIEWPORTS[1]) {
  const context = await browser.newContext({
    viewport: { width: viewport.width, height: viewport.height },
    locale: 'en-US',
    timezoneId: 'UTC',
    serviceWorkers: 'block',
  });
  // Before any page script: record CSP violations as the page sees them.
  await context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  const page = await context.newPage();
  page.problems = [];
  page.allowedHttp = new Set();
  page.allowHttp = (...statuses) => statuses.forEach((s) => page.allowedHttp.add(s));
  page.on('console', (msg) => {
    if (msg.type() !== 'error' && msg.type() !== 'warning') return;
    const text = msg.text();
    const http = text.match(/status of (\d{3})/);
    if (http && page.allowedHttp.has(Number(http[1]))) return;
    if (msg.type() === 'warning' && !/Content.Security.Policy|CSP/i.test(text)) return;
    page.problems.push(`console ${msg.type()}: ${text} (${msg.location().url})`);
  });
  page.on('pageerror', (err) => page.problems.push(`page error: ${err.message}`));
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (!['127.0.0.1'].includes(u.hostname) && !['data:', 'blob:'].includes(u.protocol)) {
      page.problems.push(`request to another host: ${req.url()}`);
    }
  });
  return { context, page };
}

/** Fails with everything the page reported since the last check. */
export async function assertClean(page, what) {
  const csp = await page.evaluate(() => window.__csp || []).catch(() => []);
  const problems = [...page.problems, ...csp.map((c) => 'CSP violation: ' + c)];
  page.problems.length = 0;
  await page.evaluate(() => { window.__csp = []; }).catch(() => {});
  assert.deepEqual(problems, [], `${what}: the page reported problems`);
}

/** axe-core on the current page: no serious or critical violation. */
export async function assertAccessible(page, what) {
  // evaluate() runs through the DevTools protocol, outside the page's CSP
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const text = bad.map((v) => `${v.impact} ${v.id}: ${v.help}\n    ${v.nodes.slice(0, 3).map((n) => n.target.join(' ') + ' — ' + (n.failureSummary || '').replace(/\s+/g, ' ')).join('\n    ')}`);
  assert.deepEqual(text, [], `${what}: axe-core found serious or critical violations`);
}

export async function screenshot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  const vp = page.viewportSize();
  await page.screenshot({ path: path.join(SHOTS, `${name}-${vp.width}x${vp.height}.png`), fullPage: true });
}

/** Waits until the app has nothing loading (no "Loading…" left). */
export async function settled(page) {
  await page.waitForLoadState('load');
  await page.waitForFunction(() => document.querySelector('#app main') && !document.querySelector('.loading'), null, { timeout: 15000 });
  await page.evaluate(() => document.fonts && document.fonts.ready);
}

/** Nothing wider than the viewport: a phone never scrolls sideways (a
 * wide table scrolls in its own box). */
export async function assertFits(page, what) {
  const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
  assert.ok(scroll <= width, `${what}: the page is ${scroll} px wide in a ${width} px viewport`);
}

/** Every check of one page: clean, fits, accessible, screenshot. */
export async function checkPage(page, name) {
  await settled(page);
  await assertClean(page, name);
  await assertFits(page, name);
  await assertAccessible(page, name);
  await screenshot(page, name);
  await assertClean(page, name + ' (after the checks)');
}

// ---- the server side: deepminectl, the fake clock, the mail spool ----

export function ctl(...args) {
  const clock = env.clock_file ? ['--clock-file', env.clock_file, '--test-mode'] : [];
  const out = execFileSync(env.ctl, ['--db', env.db, ...clock, ...args], { encoding: 'utf8' });
  if (process.getuid && process.getuid() === 0) execFileSync('sh', ['-c', `chown www-data: ${env.db}*`]);
  return out;
}

export function clockNow() {
  return Math.floor(Date.parse(fs.readFileSync(env.clock_file, 'utf8').trim()) / 1000);
}

/** Moves the fake clock to Unix time t (atomically, as conftest.py does). */
export function setClock(t) {
  const tmp = env.clock_file + '.tmp';
  fs.writeFileSync(tmp, new Date(t * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z') + '\n');
  fs.chmodSync(tmp, 0o644);
  fs.renameSync(tmp, env.clock_file);
}

/** The spooled messages (.eml) sent to `to`, oldest first. */
export function mailsTo(to) {
  const dir = path.join(env.var, 'mail');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => f.endsWith('.eml')).sort()
    .map((f) => fs.readFileSync(path.join(dir, f), 'utf8'))
    .filter((m) => new RegExp(`^To:.*${to.replace(/[.+]/g, '\\$&')}`, 'mi').test(m));
}

/** Decodes a quoted-printable body enough to find links in it. */
export function unQP(text) {
  return text.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}

export async function waitFor(fn, what, { timeout = 30000, every = 200 } = {}) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Runs the named steps in order, printing each; the exit code says. */
export async function run(name, steps) {
  let failed = 0;
  let passed = 0;
  for (const [title, fn] of steps) {
    const t0 = Date.now();
    try {
      await fn();
      passed++;
      console.log(`ok ${name}: ${title} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}: ${title}\n${e.stack || e}`);
      break; // later steps build on this one
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0;
}
