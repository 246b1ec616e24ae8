// The member app's first-load budget (issue 14, docs/ui.md "Budget"): a
// logged-in member opens /dashboard in a fresh browser (empty cache). The
// compressed bytes of every script and stylesheet it loads, dynamic imports
// included, come from the Resource Timing API (encodedBodySize) and must
// stay within 150 KB; the time until the dashboard is shown (the app's
// `dm-dashboard-ready` mark: balances, contracts and the drawn chart) and
// the Navigation Timing figures are measured and reported, not asserted
// (the project's tests assert no timings). Written to
// build/screenshots/budget.json.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { BASE, SHOTS, env, launch, newContext, run, settled } from './lib.mjs';

const BUDGET = 150 * 1000;
const browser = await launch();
const figures = {};

const steps = [['first load of the dashboard', async () => {
  for (const vp of [{ name: 'desktop', width: 1280, height: 800 }, { name: 'phone', width: 375, height: 667 }]) {
    const { context, page } = await newContext(browser, vp);
    const r = await context.request.post(BASE + '/api/auth/login', { data: { email: env.member.email, password: env.password }, headers: { Origin: BASE } });
    assert.equal(r.status(), 200);
    await page.goto(BASE + '/dashboard');
    await page.waitForFunction(() => performance.getEntriesByName('dm-dashboard-ready').length > 0, null, { timeout: 15000 });
    await settled(page);
    const f = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const res = performance.getEntriesByType('resource');
      const code = res.filter((e) => /\.(js|css)(\?|$)/.test(new URL(e.name).pathname));
      return {
        scripts_and_styles: code.map((e) => ({ file: new URL(e.name).pathname, compressed_bytes: e.encodedBodySize, bytes: e.decodedBodySize })),
        compressed_js_css_bytes: code.reduce((n, e) => n + e.encodedBodySize, 0),
        uncompressed_js_css_bytes: code.reduce((n, e) => n + e.decodedBodySize, 0),
        html_compressed_bytes: nav.encodedBodySize,
        api_requests: res.filter((e) => new URL(e.name).pathname.startsWith('/api/')).length,
        dashboard_shown_ms: Math.round(performance.getEntriesByName('dm-dashboard-ready')[0].startTime),
        dom_content_loaded_ms: Math.round(nav.domContentLoadedEventEnd),
        load_event_ms: Math.round(nav.loadEventEnd),
      };
    });
    figures[vp.name] = f;
    console.log(`${vp.name}: ${f.compressed_js_css_bytes} B of compressed JS+CSS (${f.uncompressed_js_css_bytes} B uncompressed) in ${f.scripts_and_styles.length} files; dashboard shown at ${f.dashboard_shown_ms} ms (DOMContentLoaded ${f.dom_content_loaded_ms} ms, load ${f.load_event_ms} ms)`);
    assert.ok(f.scripts_and_styles.every((e) => e.compressed_bytes > 0 && e.compressed_bytes < e.bytes), 'every script and stylesheet arrives compressed');
    assert.ok(f.compressed_js_css_bytes <= BUDGET, `first load ${f.compressed_js_css_bytes} B > ${BUDGET} B`);
    await context.close();
  }
  fs.mkdirSync(SHOTS, { recursive: true });
  fs.writeFileSync(path.join(SHOTS, 'budget.json'), JSON.stringify({ budget_bytes: BUDGET, ...figures }, null, 1) + '\n');
}]];

const ok = await run('budget', steps);
await browser.close();
process.exit(ok ? 0 : 1);
