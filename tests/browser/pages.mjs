// Every page of both apps, at 375x667 and 1280x800: no console error, no
// CSP violation, no serious or critical axe-core violation, a screenshot
// under build/screenshots/. Started by tests/integration/test_20_web.py,
// which made the member, their data and the staff owner.
import assert from 'node:assert/strict';
import { BASE, VIEWPORTS, checkPage, env, launch, newContext, run } from './lib.mjs';

const m = env.member;

const publicPages = [
  ['home', '/'],
  ['terms', '/terms'],
  ['privacy', '/privacy'],
  ['register', '/register'],
  ['register-ref', `/register?ref=${m.code}`],
  ['login', '/login'],
  ['reset-request', '/reset-password'],
  ['reset-new', '/reset-password?token=abc'],
  ['verify-missing', '/verify-email'],
  ['not-found', '/no/such/page'],
  ['staff-login', '/admin/login'],
];

const memberPages = [
  ['dashboard', '/dashboard'],
  ['buy', '/buy'],
  ['buy-package', '/buy/2'],
  ['orders', '/orders'],
  ['order', `/orders/${env.order}`],
  ['contracts', '/contracts'],
  ['contract', `/contracts/${env.contract}`],
  ['wallet', '/wallet'],
  ['referrals', '/referrals'],
  ['withdrawals', '/withdrawals'],
  ['settings', '/settings'],
  ['kyc', '/kyc'],
  ['security', '/security'],
];

const staffPages = [
  ['staff-overview', '/admin'],
  ['staff-stats', '/admin/stats'],
  ['staff-stats-weeks', '/admin/stats?days=90&bucket=week'],
  ['staff-users', '/admin/users'],
  ['staff-user', `/admin/users/${m.id}`],
  ['staff-orders', '/admin/orders'],
  ['staff-contracts', '/admin/contracts'],
  ['staff-contracts-filtered', `/admin/contracts?status=active&user_id=${m.id}`],
  ['staff-transfers', '/admin/transfers'],
  ['staff-withdrawals', '/admin/withdrawals'],
  ['staff-catalogue', '/admin/packages'],
  ['staff-vip', '/admin/vip'],
  ['staff-pool', '/admin/pool-payouts'],
  ['staff-jobs', '/admin/jobs'],
  ['staff-email', '/admin/email'],
  ['staff-templates', '/admin/templates'],
  ['staff-template', '/admin/templates/order_paid'],
  ['staff-flags', '/admin/flags'],
  ['staff-audit', '/admin/audit'],
  ['staff-kyc-queue', '/admin/kyc'],
  ['staff-2fa', '/admin/2fa'],
  ['staff-erasures', '/admin/erasures'],
];

async function loginMember(context) {
  const r = await context.request.post(BASE + '/api/auth/login', {
    data: { email: m.email, password: env.password }, headers: { Origin: BASE },
  });
  assert.equal(r.status(), 200, await r.text());
}

async function loginStaff(page) {
  await page.goto(BASE + '/admin/login');
  await page.getByLabel('E-mail').fill(env.staff.email);
  await page.getByLabel('Password').fill(env.staff.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(BASE + '/admin');
}

const browser = await launch();
const steps = [];
for (const vp of VIEWPORTS) {
  let ctx;
  steps.push([`${vp.name}: public pages`, async () => {
    ctx = await newContext(browser, vp);
    for (const [name, path] of publicPages) {
      await ctx.page.goto(BASE + path);
      await checkPage(ctx.page, name);
    }
    // a verification link that is no good says so
    ctx.page.allowHttp(400);
    await ctx.page.goto(BASE + '/verify-email?token=not-a-token');
    await ctx.page.getByText('This confirmation link cannot be used').waitFor();
    await checkPage(ctx.page, 'verify-bad');
    ctx.page.allowedHttp.clear();
  }]);
  steps.push([`${vp.name}: member pages`, async () => {
    await loginMember(ctx.context);
    for (const [name, path] of memberPages) {
      await ctx.page.goto(BASE + path);
      await checkPage(ctx.page, name);
    }
    // the dashboard's chart has the credited hours, the referrals page the QR code
    await ctx.page.goto(BASE + '/referrals');
    await ctx.page.getByRole('img', { name: 'QR code of your invitation link' }).waitFor();
    assert.equal(await ctx.page.locator('#ref-link').inputValue(), `${BASE}/register?ref=${m.code}`);
  }]);
  steps.push([`${vp.name}: the phone menu opens and closes by keyboard`, async () => {
    await ctx.page.goto(BASE + '/dashboard');
    const button = ctx.page.getByRole('button', { name: 'Menu' });
    if (vp.width < 800) {
      await button.focus();
      await ctx.page.keyboard.press('Enter');
      assert.equal(await button.getAttribute('aria-expanded'), 'true');
      await ctx.page.getByRole('link', { name: 'Wallet' }).waitFor();
      await checkPage(ctx.page, 'menu-open');
    } else {
      assert.equal(await button.isVisible(), false);
    }
  }]);
  steps.push([`${vp.name}: staff pages`, async () => {
    const s = await newContext(browser, vp);
    await loginStaff(s.page);
    for (const [name, path] of staffPages) {
      await s.page.goto(BASE + path);
      await checkPage(s.page, name);
    }
    await s.context.close();
    await ctx.context.close();
  }]);
}

const ok = await run('pages', steps);
await browser.close();
process.exit(ok ? 0 : 1);
