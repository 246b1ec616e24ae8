// The journeys of issue 14 in the browser, against the fake clock:
//
// member: open a referral link -> register -> open the verification link of
// the spooled .eml -> log in (by keyboard) -> buy with the sandbox checkout
// -> the order page follows it to "paid" -> the contract -> advance the
// clock past a day -> the earnings chart shows the credited days -> the
// referrer's page shows the new member and the held commission -> the
// withdrawal waits for the identity check, which staff approve in the
// console -> the member requests a withdrawal.
//
// staff: log in -> find the member -> approve the withdrawal with its
// transaction id -> refund an order -> edit an e-mail template with the live
// preview -> the audit log shows it all -> export the members as CSV
// (parsed back) -> the statistics page draws its charts.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import {
  BASE, assertAccessible, assertClean, checkPage, clockNow, ctl, env, launch, mailsTo, newContext, run, screenshot,
  setClock, settled, unQP, waitFor,
} from './lib.mjs';

const HOUR = 3600;
const ref = env.referrer;
const newEmail = `journey-${Date.now().toString(36)}@example.com`;
const browser = await launch();
let member; // {context, page}
let staff;
let orderId;
let memberId;

/** A link to `path` in a spooled message (quoted-printable or base64 bodies). */
function linkIn(raw, path) {
  const re = new RegExp(`https?://[^\\s"<>]*${path.replace('?', '\\?')}[A-Za-z0-9_%=-]+`);
  let m = unQP(raw).match(re);
  if (m) return m[0];
  for (const block of raw.split(/\r?\n\r?\n/)) {
    const b64 = block.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/=]{16,}$/.test(b64)) continue;
    m = Buffer.from(b64, 'base64').toString('utf8').match(re);
    if (m) return m[0];
  }
  return null;
}

function sql(query) {
  return execFileSync('sqlite3', [env.db, query], { encoding: 'utf8' }).trim();
}

/** Moves the clock to 30 s past the hour after `t` until `until`, letting
 * the cron daemon credit each hour, and waits for the last one. */
async function accrueUntil(until) {
  let now = clockNow();
  let last = null;
  while (now < until) {
    const ended = now - (now % HOUR);
    now = ended + HOUR + 30;
    setClock(now);
    last = ended;
  }
  await waitFor(() => sql(`SELECT status FROM job_runs WHERE job = 'accrual' AND period_start = ${last}`) === 'ok',
    'the accrual to catch up', { timeout: 120000 });
}

async function tabTo(page, selector, max = 40) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((s) => document.activeElement && document.activeElement.matches(s), selector)) return;
  }
  throw new Error(`Tab never reached ${selector}`);
}

const steps = [
  ['the referral link opens registration with the code filled in', async () => {
    member = await newContext(browser);
    const { page } = member;
    await page.goto(`${BASE}/register?ref=${ref.code}`);
    await settled(page);
    assert.equal(await page.getByLabel('Referral code (optional)').inputValue(), ref.code);
    await page.getByText('Taken from the invitation link you followed.').waitFor();
    await page.getByText(`(version ${env.terms})`).waitFor();
    await checkPage(page, 'journey-register');
  }],
  ['register: terms must be accepted, then the account is made', async () => {
    const { page } = member;
    await page.getByLabel('E-mail').fill(newEmail);
    await page.getByLabel('Password', { exact: true }).fill(env.password);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByText('Please accept the terms to create an account.').waitFor();
    await page.getByLabel(/I accept the/).check();
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.waitForURL(`${BASE}/dashboard?welcome=1`);
    await page.getByText(`we sent a link to ${newEmail}`).waitFor();
    await checkPage(page, 'journey-welcome');
    memberId = Number(sql(`SELECT id FROM users WHERE email = '${newEmail}'`));
    assert.ok(memberId > 0);
    assert.equal(sql(`SELECT r.referral_code FROM users u JOIN users r ON r.id = u.referrer_id WHERE u.id = ${memberId}`), ref.code);
  }],
  ['the verification link of the spooled e-mail confirms the address', async () => {
    const { page } = member;
    // the mail job runs every 5 s of platform time: move the clock along
    const raw = await waitFor(() => {
      setClock(clockNow() + 6);
      return mailsTo(newEmail).find((m) => linkIn(m, '/verify-email?token='));
    }, 'the verification e-mail in the spool');
    const link = new URL(linkIn(raw, '/verify-email?token='));
    assert.equal(link.origin, BASE);
    await page.goto(link.href);
    await page.getByText('your e-mail address is confirmed').waitFor();
    await checkPage(page, 'journey-verified');
    assert.notEqual(sql(`SELECT email_verified_at FROM users WHERE id = ${memberId}`), '');
  }],
  ['log out, and log in again with the keyboard only', async () => {
    const { page } = member;
    await page.goto(`${BASE}/dashboard`);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(`${BASE}/login`);
    await settled(page);
    await page.locator('body').focus();
    await tabTo(page, 'input[type=email]');
    await page.keyboard.type(newEmail);
    await page.keyboard.press('Tab');
    await page.keyboard.type(env.password);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${BASE}/dashboard`);
    await settled(page);
    assert.equal(await page.getByText('Please confirm your e-mail address').count(), 0);
    await assertClean(page, 'login');
  }],
  ['buy the trial package through the sandbox checkout', async () => {
    const { page } = member;
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Buy', exact: true }).click();
    await page.getByRole('link', { name: 'Buy Trial 0.5 TH/s' }).click();
    await page.waitForURL(`${BASE}/buy/1`);
    await settled(page);
    // the methods come from /api/payment-methods: the first is chosen once
    // they are in, which may be a moment after the page has settled
    await waitFor(() => page.getByLabel(/Sandbox/).isChecked(), 'the sandbox chosen', { timeout: 10000 });
    assert.equal(await page.getByLabel(/From my balance/).isDisabled(), true);
    await checkPage(page, 'journey-buy');
    await page.getByRole('button', { name: 'Continue to payment' }).click();
    await page.waitForURL(/\/api\/plugins\/sandbox\/checkout\//);
    await page.getByRole('heading', { name: /Pay 5(\.00)? USD/ }).waitFor();
    await page.getByRole('button', { name: 'Pay' }).click();
    await page.getByText('Payment accepted').waitFor();
    await page.getByRole('link', { name: 'Back to the shop' }).click();
    // the app's root takes the member back to the order it was following
    await page.waitForURL(/\/orders\/\d+$/);
    orderId = Number(page.url().split('/').pop());
    await page.getByText('Paid. Your contract is running.').waitFor();
    await checkPage(page, 'journey-order-paid');
  }],
  ['the contract is there', async () => {
    const { page } = member;
    await page.getByRole('link', { name: 'See the contract' }).click();
    await page.waitForURL(/\/contracts\/\d+$/);
    await settled(page);
    await page.getByRole('heading', { name: 'Trial 0.5 TH/s' }).waitFor();
    await page.getByText('Pays a daily yield fixed by the operator.').waitFor();
    await checkPage(page, 'journey-contract');
  }],
  ['a day and more later the earnings chart shows the credited days', async () => {
    const { page } = member;
    const start = clockNow();
    // past the next UTC midnight and a few hours into the day after
    const midnight = start - (start % 86400) + 86400;
    await accrueUntil(midnight + 3 * HOUR);
    page.allowHttp(401); // the access token expired with the clock: one silent refresh
    await page.goto(`${BASE}/dashboard`);
    await settled(page);
    await page.waitForFunction(() => performance.getEntriesByName('dm-dashboard-ready').length > 0);
    const api = await (await member.context.request.get(`${BASE}/api/earnings`)).json();
    const credited = api.days.filter((d) => d.credit_micros > 0);
    assert.equal(credited.length, 2, JSON.stringify(api.days.slice(-3)));
    await page.getByText('Show the numbers').click();
    const rows = await page.locator('.earnings .chart-table tbody tr').allInnerTexts();
    const fmt = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 6 });
    const dayFmt = new Intl.DateTimeFormat('en-US', { dateStyle: 'medium', timeZone: 'UTC' });
    assert.deepEqual(rows.map((r) => r.replace(/\s+/g, ' ').trim()),
      credited.map((d) => `${dayFmt.format(new Date(d.day))} ${fmt.format((d.credit_micros / 1e6).toFixed(6))}`));
    assert.ok(await page.locator('.earnings canvas').count() > 0, 'the chart is drawn');
    await checkPage(page, 'journey-earnings');
    page.allowedHttp.clear();
  }],
  ["the referrer's page shows the new member and the held commission", async () => {
    const r = await newContext(browser);
    const login = await r.context.request.post(`${BASE}/api/auth/login`, { data: { email: ref.email, password: env.password }, headers: { Origin: BASE } });
    assert.equal(login.status(), 200);
    await r.page.goto(`${BASE}/referrals`);
    await settled(r.page);
    const downline = await (await r.context.request.get(`${BASE}/api/referrals?level=1`)).json();
    const masked = downline.referrals[0].email;
    assert.match(masked, /^j\*+@example\.com$/);
    await r.page.getByRole('cell', { name: masked, exact: true }).first().waitFor();
    const comm = await (await r.context.request.get(`${BASE}/api/referrals/commissions`)).json();
    const mine = comm.commissions.find((c) => c.order_id === orderId);
    assert.equal(mine.status, 'held');
    const fmt = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 6 });
    const row = r.page.locator('tr', { hasText: mine.source_email }).filter({ hasText: 'Held' });
    await row.first().waitFor();
    assert.match(await row.first().innerText(), new RegExp(fmt.format((mine.amount_micros / 1e6).toFixed(6)).replace(/[$.]/g, '\\$&')));
    await checkPage(r.page, 'journey-referrer');
    await r.context.close();
  }],
  ['withdrawing waits for the identity check', async () => {
    const { page } = member;
    // money to withdraw (more than the trial earned): a staff adjustment
    ctl('ledger', 'adjust', '--user', String(memberId), '--amount', '50000000', '--reason', 'journey deposit');
    await page.goto(`${BASE}/withdrawals`);
    await settled(page);
    await page.getByText('Withdrawals need an approved identity check (yours: not started).').waitFor();
    await checkPage(page, 'journey-withdraw-blocked');
  }],
  ['staff log in and approve the identity check from the member page', async () => {
    staff = await newContext(browser);
    const { page } = staff;
    await page.goto(`${BASE}/admin/users`);
    await page.waitForURL(/\/admin\/login/);
    await page.getByLabel('E-mail').fill(env.staff.email);
    await page.getByLabel('Password').fill(env.staff.password);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.waitForURL(`${BASE}/admin/users`);
    await page.getByLabel(/Search/).fill(newEmail.slice(0, 12));
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('link', { name: newEmail }).click();
    await page.waitForURL(`${BASE}/admin/users/${memberId}`);
    await settled(page);
    await page.getByText(ref.email).waitFor(); // the upline
    await page.getByRole('button', { name: 'Identity check: approved' }).click();
    await page.getByText('Identity check set to approved.').waitFor();
    await checkPage(page, 'journey-staff-kyc');
  }],
  ['the member adds the withdrawal address in the book, the e-mailed link confirms it, the delay passes', async () => {
    const { page } = member;
    await page.goto(`${BASE}/withdrawals`);
    await settled(page);
    await page.getByText('You have no address ready for withdrawals yet').waitFor();
    await page.getByLabel('Address', { exact: true }).fill('T' + 'A'.repeat(33));
    await page.getByLabel('Label (optional)').fill('My Tron wallet');
    await page.getByRole('button', { name: 'Add address' }).click();
    await page.getByText(/is added\. We e-mailed you a link/).waitFor();
    await page.getByRole('row', { name: /My Tron wallet TA{33} USDT on Tron \(TRC-20\) Confirm by e-mail/ }).waitFor();
    await checkPage(page, 'journey-address-added');
    // the e-mailed link (its token waits in the queue sealed: read the
    // spooled message, as the member would) opens the page that confirms it
    const sent = await waitFor(() => {
      setClock(clockNow() + 6);
      return mailsTo(newEmail).find((m) => linkIn(m, '/confirm-address?token='));
    }, 'the address confirmation e-mail in the spool');
    await page.goto(new URL(linkIn(sent, '/confirm-address?token=')).href.replace(/^https?:\/\/[^/]+/, BASE));
    await page.getByText(/^The address TA{33} is confirmed\./).waitFor();
    await checkPage(page, 'journey-address-confirmed');
    setClock(clockNow() + env.address_delay + 1);
  }],
  ['the member requests a withdrawal', async () => {
    const { page } = member;
    await page.goto(`${BASE}/withdrawals`);
    await settled(page);
    await page.getByLabel('Amount (USD)').fill('20');
    assert.match(await page.getByLabel('To address').locator('option:checked').innerText(), /^My Tron wallet — TA{33}/);
    await page.getByRole('button', { name: 'Request withdrawal' }).click();
    await page.getByText('Requested: $20.00.').waitFor();
    await page.getByRole('cell', { name: 'Pending' }).waitFor();
    await checkPage(page, 'journey-withdraw-requested');
  }],
  ['staff approve the withdrawal with its transaction id', async () => {
    const { page } = staff;
    await page.goto(`${BASE}/admin/withdrawals`);
    await settled(page);
    const w = sql(`SELECT id FROM withdrawals WHERE user_id = ${memberId}`);
    await page.getByLabel(`Pick withdrawal ${w}`).check();
    await page.getByLabel(`Transaction id of withdrawal ${w}`).fill('0xjourney');
    await page.getByRole('button', { name: 'Approve the picked (paid)' }).click();
    await page.getByText(`#${w}: Paid`).waitFor();
    await checkPage(page, 'journey-staff-withdrawal');
    await member.page.goto(`${BASE}/withdrawals`);
    await settled(member.page);
    await member.page.getByRole('cell', { name: '0xjourney' }).waitFor();
  }],
  ['staff refund the order', async () => {
    const { page } = staff;
    await page.goto(`${BASE}/admin/orders?status=paid`);
    await settled(page);
    page.once('dialog', (d) => d.accept('customer asked: journey'));
    await page.getByRole('button', { name: `Refund order ${orderId}` }).click();
    await page.getByText(`Order ${orderId} is refunded.`).waitFor();
    await checkPage(page, 'journey-staff-refund');
    assert.equal(sql(`SELECT status FROM orders WHERE id = ${orderId}`), 'refunded');
  }],
  ['staff edit a template with the live preview', async () => {
    const { page } = staff;
    await page.goto(`${BASE}/admin/templates`);
    await page.getByRole('link', { name: 'order_paid' }).click();
    await page.waitForURL(`${BASE}/admin/templates/order_paid`);
    await settled(page);
    const before = Number(sql("SELECT MAX(version) FROM email_template_versions WHERE key = 'order_paid'") || '0');
    const subject = page.getByLabel('Subject', { exact: true });
    await subject.fill('Paid: order {{order_id}} is running');
    await page.locator('#preview-subject', { hasText: /^Paid: order \d+ is running$/ }).waitFor();
    // a mistake is shown where it is (the preview answers 400), and saving
    // waits for the fix
    page.allowHttp(400);
    await subject.fill('Paid: order {{order_idd}}');
    await page.getByText(/unknown variable/).first().waitFor();
    assert.equal(await page.getByRole('button', { name: 'Save as a new version' }).isDisabled(), true);
    await subject.fill('Paid: order {{order_id}} is running');
    await page.locator('#preview-subject', { hasText: /^Paid: order \d+ is running$/ }).waitFor();
    await page.getByRole('button', { name: 'Save as a new version' }).click();
    await page.getByText('Saved as a new version.').waitFor();
    await checkPage(page, 'journey-staff-template');
    page.allowedHttp.clear();
    const after = Number(sql("SELECT MAX(version) FROM email_template_versions WHERE key = 'order_paid'"));
    assert.equal(after, before + 1);
  }],
  ['the audit log shows what staff did', async () => {
    const { page } = staff;
    await page.goto(`${BASE}/admin/audit`);
    await settled(page);
    for (const action of ['user.kyc', 'withdrawal.approve', 'order.refund', 'email_template.update']) {
      await page.getByRole('cell', { name: action, exact: true }).first().waitFor();
    }
    await checkPage(page, 'journey-staff-audit');
    await assertAccessible(page, 'audit');
  }],
  ['staff export the members found as CSV, parsed back', async () => {
    const { page } = staff;
    await page.goto(`${BASE}/admin/users?q=${encodeURIComponent(newEmail)}`);
    await settled(page);
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Export CSV' }).click(),
    ]);
    assert.match(download.suggestedFilename(), /^users-\d{4}-\d{2}-\d{2}\.csv$/);
    const text = fs.readFileSync(await download.path(), 'utf8');
    const rows = parseCsv(text);
    assert.deepEqual(rows[0], ['id', 'email', 'name', 'referral_code', 'referrer_id', 'status', 'vip_level', 'kyc_status', 'created_at']);
    assert.equal(rows.length, 2, text);
    assert.equal(rows[1][0], String(memberId));
    assert.equal(rows[1][1], newEmail);
    assert.equal(rows[1][4], sql(`SELECT referrer_id FROM users WHERE id = ${memberId}`));
    assert.equal(rows[1][7], 'approved');
    await page.goto(`${BASE}/admin/audit?action=export.users`);
    await page.getByRole('cell', { name: 'export.users', exact: true }).first().waitFor();
  }],
  ['staff see the statistics drawn: the sign-up and the sale of the journey', async () => {
    const { page } = staff;
    await page.goto(`${BASE}/admin/stats?days=7`);
    await settled(page);
    // every chart drew its canvas (uPlot), and the table under the sign-ups
    // chart says what it draws
    await page.waitForFunction(() => document.querySelectorAll('.chart-grid figure canvas').length >= 7);
    const figures = await page.locator('.chart-grid figure').count();
    assert.equal(await page.locator('.chart-grid figure canvas').count(), figures);
    await checkPage(page, 'journey-staff-stats');
    await screenshot(page, 'journey-end');
  }],
];

/** RFC 4180, as a spreadsheet reads it (quotes doubled, CRLF rows). */
function parseCsv(text) {
  const rows = [];
  let row = [], cell = '', quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = false; else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(cell); cell = ''; }
    else if (c === '\r' && text[i + 1] === '\n') { row.push(cell); rows.push(row); row = []; cell = ''; i++; }
    else cell += c;
  }
  if (cell || row.length) { row.push(cell); rows.push(row); }
  return rows;
}

const ok = await run('journey', steps);
await browser.close();
process.exit(ok ? 0 : 1);
