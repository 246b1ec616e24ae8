// The member's security page and the login's 2FA step in the browser
// (docs/ui.md): /security at both sizes -> set up two-factor sign-in (the
// QR code of the otpauth URI; the code computed here from the secret at the
// server's fake clock) -> a wrong code is refused at its field -> the right
// one turns it on and the 10 recovery codes are shown once -> log out -> the
// login asks for the code after the password; a recovery code logs in ->
// the sessions list ends another login -> the password change refuses a
// wrong current password, then changes it -> 2FA turned off with a fresh
// code; staff set up 2FA in the console and its login asks for the code.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import {
  BASE, VIEWPORTS, checkPage, clockNow, env, launch, mailsTo, newContext, run, setClock, unQP, waitFor,
} from './lib.mjs';

const m = env.member;
const NEW_PASSWORD = 'Lantern-Quartz-Meadow-77';

const sql = (q) => execFileSync('sqlite3', [env.db, q], { encoding: 'utf8' }).trim();

function base32(s) {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of s.replace(/=+$/, '').toUpperCase()) bits += A.indexOf(c).toString(2).padStart(5, '0');
  const out = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) out.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(out);
}

/** RFC 6238 (SHA-1, 6 digits, 30 s) at Unix time t. */
function totp(secret, t) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(Math.floor(t / 30)));
  const h = crypto.createHmac('sha1', base32(secret)).update(msg).digest();
  const o = h[h.length - 1] & 15;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1000000).padStart(6, '0');
}

const browser = await launch();
let c;
let secret;
let codes;
const steps = [];

for (const vp of VIEWPORTS) {
  steps.push([`${vp.name}: the security page`, async () => {
    const x = await newContext(browser, vp);
    const r = await x.context.request.post(BASE + '/api/auth/login', { data: { email: m.email, password: env.password }, headers: { Origin: BASE } });
    assert.equal(r.status(), 200, await r.text());
    await x.page.goto(BASE + '/settings');
    await x.page.getByRole('link', { name: 'Open security settings' }).click();
    await x.page.waitForURL(BASE + '/security');
    await x.page.getByRole('button', { name: 'Set up two-factor sign-in' }).waitFor();
    await checkPage(x.page, 'security');
    await x.context.close();
  }]);
}

steps.push(['your data: the export downloads, the deletion says what must happen first', async () => {
  const x = await newContext(browser, VIEWPORTS[1]);
  const r = await x.context.request.post(BASE + '/api/auth/login', { data: { email: m.email, password: env.password }, headers: { Origin: BASE } });
  assert.equal(r.status(), 200, await r.text());
  await x.page.goto(BASE + '/settings');
  await x.page.getByRole('heading', { name: 'Your data' }).waitFor();
  const link = x.page.getByRole('link', { name: 'Download my data' });
  const exp = await x.context.request.get(BASE + await link.getAttribute('href'));
  assert.equal(exp.status(), 200);
  assert.match(exp.headers()['content-disposition'], /^attachment/);
  assert.equal((await exp.json()).profile.email, m.email);
  // the member holds 30 USD (test_20 credits it): the page lists it, and
  // asking is refused with the same sentence, nothing written
  await x.page.getByText(/the wallet holds 30\.000000 USD/).first().waitFor();
  x.page.allowHttp(409);
  await x.page.getByRole('button', { name: 'Ask to delete my account' }).click();
  await x.page.getByRole('alert').filter({ hasText: /cannot be erased yet/ }).waitFor();
  await checkPage(x.page, 'settings-your-data');
  assert.equal(sql(`SELECT COUNT(*) FROM erasure_requests WHERE user_id = ${m.id}`), '0');
  await x.context.close();
}]);

steps.push(['the owner sees an erasure request in the console and cancels it', async () => {
  // a request received another way (as the owner may process one): made
  // here in the table, then cancelled through the page, audited
  sql(`INSERT INTO erasure_requests (user_id, status, token_hash, token_expires_at, requested_at) VALUES (${m.id}, 'unconfirmed', 'console-test', ${clockNow() + 3600}, ${clockNow()})`);
  const id = sql(`SELECT id FROM erasure_requests WHERE token_hash = 'console-test'`);
  const x = await newContext(browser, VIEWPORTS[1]);
  const p = x.page;
  await p.goto(BASE + '/admin/login');
  await p.getByLabel('E-mail').fill(env.staff.email);
  await p.getByLabel('Password').fill(env.staff.password);
  await p.getByRole('button', { name: 'Log in' }).click();
  await p.waitForURL(BASE + '/admin');
  await p.getByRole('link', { name: 'Erasure requests' }).click();
  await p.getByRole('button', { name: `Cancel request ${id}` }).click();
  await p.getByText(`Request ${id}: Cancelled.`).waitFor();
  await checkPage(p, 'staff-erasures-cancelled');
  assert.equal(sql(`SELECT status, finished_by FROM erasure_requests WHERE id = ${id}`).split('|')[0], 'cancelled');
  await x.context.close();
}]);

steps.push(['two-factor sign-in: QR code, a wrong code, the right one, the recovery codes once', async () => {
  c = await newContext(browser, VIEWPORTS[1]);
  const p = c.page;
  await p.goto(BASE + '/login');
  await p.getByLabel('E-mail').fill(m.email);
  await p.getByLabel('Password').fill(env.password);
  await p.getByRole('button', { name: 'Log in' }).click();
  await p.waitForURL(BASE + '/dashboard');
  await p.goto(BASE + '/security');
  await p.getByRole('button', { name: 'Set up two-factor sign-in' }).click();
  await p.getByRole('img', { name: 'QR code to add DeepMine to your authenticator app' }).waitFor();
  secret = (await p.locator('.secret').innerText()).trim();
  assert.match(secret, /^[A-Z2-7]{32}$/);
  await checkPage(p, 'security-setup');
  p.allowHttp(400);
  const good = totp(secret, clockNow());
  await p.getByLabel('Code', { exact: true }).fill(good === '000000' ? '111111' : '000000');
  await p.getByRole('button', { name: 'Turn on' }).click();
  await p.locator('.field.has-error').waitFor();
  await p.getByLabel('Code', { exact: true }).fill(good);
  await p.getByRole('button', { name: 'Turn on' }).click();
  await p.getByRole('heading', { name: 'Your recovery codes' }).waitFor();
  codes = await p.locator('.recovery-codes li').allInnerTexts();
  assert.equal(codes.length, 10);
  for (const k of codes) assert.match(k, /^[a-z0-9]{5}-[a-z0-9]{5}$/);
  await checkPage(p, 'security-recovery-codes');
  await p.getByRole('button', { name: 'I have saved my codes' }).click();
  await p.getByText('Recovery codes left: 10.').waitFor();
  await p.getByRole('button', { name: 'Log out' }).click();
  await p.waitForURL(/\/login/);
}]);

steps.push(['the login asks for the code after the password; a recovery code logs in', async () => {
  const p = c.page;
  await p.goto(BASE + '/login?next=/security');
  await p.getByLabel('E-mail').fill(m.email);
  await p.getByLabel('Password').fill(env.password);
  await p.getByRole('button', { name: 'Log in' }).click();
  await p.getByRole('heading', { name: 'Two-factor sign-in' }).waitFor();
  await checkPage(p, 'login-2fa');
  await p.getByLabel('Code', { exact: true }).fill(codes[0].toUpperCase());
  await p.getByRole('button', { name: 'Verify and log in' }).click();
  await p.waitForURL(BASE + '/security');
  await p.getByText('Recovery codes left: 9.').waitFor();
}]);

steps.push(['the sessions list ends another login', async () => {
  const p = c.page;
  // another login, from a "phone", completed with the next code
  setClock(clockNow() + 60);
  const other = await browser.newContext({ userAgent: 'TestPhone/1.0' });
  let r = await other.request.post(BASE + '/api/auth/login', { data: { email: m.email, password: env.password }, headers: { Origin: BASE } });
  const { challenge } = await r.json();
  r = await other.request.post(BASE + '/api/auth/login/2fa', { data: { challenge, code: totp(secret, clockNow()) }, headers: { Origin: BASE } });
  assert.equal(r.status(), 200, await r.text());
  await p.reload();
  const row = p.getByRole('row').filter({ hasText: 'TestPhone/1.0' });
  await row.waitFor();
  await checkPage(p, 'security-sessions');
  await row.getByRole('button').click();
  await p.getByText(/^The login of .* is ended\.$/).waitFor();
  await p.getByRole('row').filter({ hasText: 'TestPhone/1.0' }).waitFor({ state: 'detached' });
  // the ended login's access token is refused at once (its family is revoked)
  assert.equal((await other.request.get(BASE + '/api/me')).status(), 401);
  await other.close();
}]);

steps.push(['the password change: a wrong current password at its field, then changed', async () => {
  const p = c.page;
  await p.getByLabel('Current password').fill('not-my-password-at-all');
  await p.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
  await p.getByRole('button', { name: 'Change password' }).click();
  await p.locator('.field.has-error').waitFor();
  await p.getByLabel('Current password').fill(env.password);
  await p.getByRole('button', { name: 'Change password' }).click();
  await p.getByText('Your password is changed.').waitFor();
  await checkPage(p, 'security-password-changed');
}]);

steps.push(['with 2FA on, the withdrawal form asks for the code', async () => {
  const p = c.page;
  // the member was verified, approved and funded by the test; the address
  // goes into the book through the page and its e-mailed link
  await p.goto(BASE + '/withdrawals');
  await p.getByLabel('Address', { exact: true }).fill('T' + 'B'.repeat(33));
  await p.getByRole('button', { name: 'Add address' }).click();
  await p.getByText(/is added\. We e-mailed you a link/).waitFor();
  // the e-mailed link: its token waits in the queue sealed, so it is read
  // from the spooled message, as the member would
  const sent = await waitFor(() => {
    setClock(clockNow() + 6);
    return mailsTo(m.email).find((msg) => /\/confirm-address\?token=/.test(unQP(msg)));
  }, 'the address confirmation e-mail in the spool');
  const token = unQP(sent).match(/\/confirm-address\?token=([A-Za-z0-9_-]+)/)[1];
  await p.goto(`${BASE}/confirm-address?token=${token}`);
  await p.getByText(/is confirmed\./).waitFor();
  // past the address's delay and the pause after the 2FA and password changes
  setClock(clockNow() + env.address_delay + 1);
  await p.goto(BASE + '/withdrawals');
  await p.getByLabel('Amount (USD)').fill('20');
  p.allowHttp(400);
  await p.getByLabel('Code', { exact: true }).fill('12345');
  await p.getByRole('button', { name: 'Request withdrawal' }).click();
  await p.locator('.field.has-error').waitFor();
  await p.getByLabel('Code', { exact: true }).fill(totp(secret, clockNow()));
  await p.getByRole('button', { name: 'Request withdrawal' }).click();
  await p.getByText('Requested: $20.00.').waitFor();
  await checkPage(p, 'withdraw-with-2fa');
  await p.goto(BASE + '/security');
}]);

steps.push(['two-factor sign-in turned off with a fresh code', async () => {
  const p = c.page;
  setClock(clockNow() + 60);
  await p.getByLabel('Code', { exact: true }).fill(totp(secret, clockNow()));
  await p.getByRole('button', { name: 'Turn off two-factor sign-in' }).click();
  await p.getByText('Two-factor sign-in is off.').waitFor();
  await p.getByRole('button', { name: 'Set up two-factor sign-in' }).waitFor();
  await c.context.close();
}]);

steps.push(['staff: two-factor sign-in set up in the console, then the console login asks for the code', async () => {
  const x = await newContext(browser, VIEWPORTS[1]);
  const p = x.page;
  await p.goto(BASE + '/admin/login');
  await p.getByLabel('E-mail').fill(env.staff.email);
  await p.getByLabel('Password').fill(env.staff.password);
  await p.getByRole('button', { name: 'Log in' }).click();
  await p.waitForURL(BASE + '/admin');
  await p.getByRole('link', { name: 'Two-factor sign-in' }).click();
  await p.getByRole('button', { name: 'Set up two-factor sign-in' }).click();
  await p.getByRole('img', { name: 'QR code to add DeepMine to your authenticator app' }).waitFor();
  const staffSecret = (await p.locator('.secret').innerText()).trim();
  await checkPage(p, 'staff-2fa-setup');
  await p.getByLabel('Code', { exact: true }).fill(totp(staffSecret, clockNow()));
  await p.getByRole('button', { name: 'Turn on' }).click();
  await p.getByRole('heading', { name: 'Your recovery codes' }).waitFor(); // then read them
  assert.equal((await p.locator('.recovery-codes li').allInnerTexts()).length, 10);
  await p.getByRole('button', { name: 'Log out' }).click();
  await p.waitForURL(/\/admin\/login/);
  await p.getByLabel('E-mail').fill(env.staff.email);
  await p.getByLabel('Password').fill(env.staff.password);
  await p.getByRole('button', { name: 'Log in' }).click();
  await p.getByRole('heading', { name: 'Two-factor sign-in' }).waitFor();
  await checkPage(p, 'staff-login-2fa');
  setClock(clockNow() + 60);
  await p.getByLabel('Code', { exact: true }).fill(totp(staffSecret, clockNow()));
  await p.getByRole('button', { name: 'Verify and log in' }).click();
  await p.waitForURL(BASE + '/admin');
  await x.context.close();
}]);

const ok = await run('security', steps);
await browser.close();
process.exit(ok ? 0 : 1);
