// The identity check and the payment methods in the browser (docs/ui.md):
//
// member: the buy page lists GET /api/payment-methods with kind and
// currencies -> /kyc (linked from /withdrawals) at both sizes -> a file of
// the wrong type is refused with the API's message -> the required
// documents uploaded (the table shows name, type, size) -> the details
// saved -> "verify with provider" says staff review here (409) -> submit:
// pending.
// staff: the KYC queue shows the case with its age and document links ->
// a document downloads as the member's bytes -> "ask for new documents"
// without a reason is refused, with one it is done (each member's result)
// -> the member sees the reason and may upload again -> hands in again ->
// staff approve -> withdrawals no longer wait for the identity check.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { BASE, VIEWPORTS, checkPage, env, launch, newContext, run } from './lib.mjs';

const m = env.member;
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46, 0]), Buffer.alloc(3000, 7)]);
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(1500, 9)]);
const browser = await launch();

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

let member;
let staff;
const steps = [];

for (const vp of VIEWPORTS) {
  steps.push([`${vp.name}: the buy page offers each payment method with its kind and currencies`, async () => {
    const c = await newContext(browser, vp);
    await loginMember(c.context);
    const methods = (await (await c.context.request.get(BASE + '/api/payment-methods')).json()).methods;
    assert.ok(methods.length >= 1);
    await c.page.goto(BASE + '/buy/2');
    for (const pm of methods) await c.page.getByRole('radio', { name: pm.display_name }).waitFor();
    await c.page.getByRole('radio', { name: /From my balance/ }).waitFor();
    await checkPage(c.page, 'buy-methods');
    // /withdrawals links the identity check while it is not approved
    await c.page.goto(BASE + '/withdrawals');
    await c.page.getByRole('link', { name: 'Go to the identity check' }).click();
    await c.page.waitForURL(BASE + '/kyc');
    await c.page.getByText('You have not handed in your identity check yet').waitFor();
    await checkPage(c.page, 'kyc-new');
    await c.context.close();
  }]);
}

steps.push(['member: uploads, a refused type, details, provider, hand-in', async () => {
  member = await newContext(browser, VIEWPORTS[1]);
  const p = member.page;
  await loginMember(member.context);
  await p.goto(BASE + '/kyc');
  await p.getByText('Still needed: ID document, front, Selfie holding the ID.').waitFor();
  p.allowHttp(400);
  await p.getByLabel('ID document, front').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') });
  const refused = p.locator('.upload .field-error');
  await refused.waitFor();
  assert.match(await refused.innerText(), /type|JPEG|PNG|PDF/i);
  await p.getByLabel('ID document, front').setInputFiles({ name: 'front.jpg', mimeType: 'image/jpeg', buffer: JPEG });
  await p.getByText('ID document, front uploaded.').waitFor();
  await p.getByLabel('Selfie holding the ID').setInputFiles({ name: 'selfie.png', mimeType: 'image/png', buffer: PNG });
  await p.getByText('Selfie holding the ID uploaded.').waitFor();
  const table = p.getByRole('region', { name: 'Documents on file' });
  await table.getByRole('row', { name: /ID document, front JPEG 3 KB/ }).waitFor();
  await table.getByRole('row', { name: /Selfie holding the ID PNG 1 KB/ }).waitFor();
  await p.getByText('Every required document is on file').waitFor();
  // details: a bad date of birth is shown at its field, then fixed
  await p.getByLabel('Full legal name').fill('Ada Lovelace');
  await p.getByLabel('Date of birth').fill('2020-01-01');
  await p.getByLabel('Country (two letters)').fill('gb');
  await p.getByLabel('Address', { exact: true }).fill("12 St James's Square");
  await p.getByLabel('City').fill('London');
  await p.getByRole('button', { name: 'Save details' }).click();
  await p.locator('.field.has-error').first().waitFor();
  await p.getByLabel('Date of birth').fill('1990-12-10');
  await p.getByRole('button', { name: 'Save details' }).click();
  await p.getByText('Details saved.').waitFor();
  // no provider configured: the API answers 409 and the page says staff review
  p.allowHttp(409);
  await p.getByRole('button', { name: 'Verify with the provider' }).click();
  await p.getByText('Identity checks are reviewed by our staff here').waitFor();
  await checkPage(p, 'kyc-ready');
  await p.getByRole('button', { name: 'Submit identity check' }).click();
  await p.getByText('We have your documents; our staff will check them.').waitFor();
  await checkPage(p, 'kyc-pending');
}]);

for (const vp of VIEWPORTS) {
  steps.push([`${vp.name}: the staff queue shows the case`, async () => {
    const s = await newContext(browser, vp);
    await loginStaff(s.page);
    await s.page.goto(BASE + '/admin/kyc');
    await s.page.getByRole('link', { name: m.email, exact: true }).waitFor();
    await checkPage(s.page, 'staff-kyc');
    await s.context.close();
  }]);
}

steps.push(['staff: a document downloads, resubmission needs a reason', async () => {
  staff = await newContext(browser, VIEWPORTS[1]);
  const p = staff.page;
  await loginStaff(p);
  await p.goto(BASE + '/admin/kyc');
  const row = p.getByRole('row').filter({ has: p.getByRole('link', { name: m.email, exact: true }) });
  await row.getByText('2 on file').click(); // opens the case's documents
  assert.match(await row.innerText(), /Ada Lovelace[\s\S]*GB[\s\S]*\d+ min/);
  const [download] = await Promise.all([
    p.waitForEvent('download'),
    row.getByRole('link', { name: `Download ID document, front of ${m.email}` }).click(),
  ]);
  assert.equal(download.suggestedFilename(), `member-${m.id}-id_front.jpg`);
  assert.ok(fs.readFileSync(await download.path()).equals(JPEG), 'the downloaded document is the uploaded bytes');
  await row.getByRole('checkbox', { name: `Pick ${m.email}` }).check();
  await p.getByRole('button', { name: 'Ask for new documents' }).click();
  await p.getByText('Write a reason: the member reads it.').waitFor();
  await p.getByLabel(/^Reason/).fill('The photo of your ID is blurred.');
  await p.getByRole('button', { name: 'Ask for new documents' }).click();
  await p.getByText(`${m.email}: New documents asked`).waitFor();
  await checkPage(p, 'staff-kyc-decided');
}]);

steps.push(['member: sees the reason, uploads again and hands in; staff approve; withdrawals open', async () => {
  const p = member.page;
  await p.goto(BASE + '/kyc');
  await p.getByText('Reason: The photo of your ID is blurred.').waitFor();
  await p.getByText('We need new documents').waitFor();
  await checkPage(p, 'kyc-resubmission');
  await p.getByLabel('ID document, front').setInputFiles({ name: 'front2.jpg', mimeType: 'image/jpeg', buffer: JPEG });
  await p.getByText('ID document, front uploaded.').waitFor();
  await p.getByRole('button', { name: 'Submit identity check' }).click();
  await p.getByText('We have your documents; our staff will check them.').waitFor();

  const s = staff.page;
  await s.goto(BASE + '/admin/kyc');
  const row = s.getByRole('row').filter({ has: s.getByRole('link', { name: m.email, exact: true }) });
  await row.getByRole('checkbox', { name: `Pick ${m.email}` }).check();
  await s.getByRole('button', { name: 'Approve picked' }).click();
  await s.getByText(`${m.email}: Approved`).waitFor();

  await p.goto(BASE + '/kyc');
  await p.getByText('Your identity is confirmed: you can withdraw.').waitFor();
  await checkPage(p, 'kyc-approved');
  await p.goto(BASE + '/withdrawals');
  // the identity check no longer blocks: the address book is the next step
  await p.getByText('You have no address ready for withdrawals yet').waitFor();
  assert.equal(await p.getByText('Withdrawals need an approved identity check').count(), 0);
  await staff.context.close();
  await member.context.close();
}]);

const ok = await run('kyc', steps);
await browser.close();
process.exit(ok ? 0 : 1);
