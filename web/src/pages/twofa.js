// Two-factor sign-in enrolment, shared by the member's /security page and
// the staff console's /admin/2fa: the QR code of the otpauth URI, the
// recovery codes shown once, disable (docs/api.md).
import { useState } from 'preact/hooks';
import { get, post } from '../lib/api.js';
import { dateTime } from '../lib/format.js';
import { t } from '../lib/i18n.js';
import { QrCode } from '../lib/qr.js';
import { Alert, ErrorBox, Field, html, Loading, fieldError, useLoad, useSubmit } from '../lib/ui.js';

export function CodeField({ value, onInput, error, hint }) {
  return html`<${Field} label=${t('twofa.code')} autocomplete="one-time-code" spellcheck=${false} required value=${value} onInput=${onInput}
    hint=${hint} error=${error} />`;
}

/** Two-factor sign-in of the account behind `base` (/api/me/2fa for a
 * member, /api/admin/me/2fa for staff); onChange() after enable/disable. */
export function TwoFactor({ base = '/api/me/2fa', onChange = () => {} }) {
  const st = useLoad(() => get(base));
  const [setup, setSetup] = useState(null);   // {secret, otpauth_uri}
  const [codes, setCodes] = useState(null);   // the recovery codes, shown once
  const [code, setCode] = useState('');
  const [off, setOff] = useState(false);
  const begin = useSubmit(async () => {
    setOff(false);
    setSetup(await post(base + '/setup'));
    setCode('');
  });
  const enable = useSubmit(async () => {
    const r = await post(base + '/enable', { code: code.trim() });
    onChange(true);
    setCodes(r.recovery_codes);
    setSetup(null);
    setCode('');
    st.reload();
  });
  const disable = useSubmit(async () => {
    await post(base + '/disable', { code: code.trim() });
    onChange(false);
    setCode('');
    setCodes(null);
    setOff(true);
    st.reload();
  });
  if (st.loading && !st.data) return html`<${Loading} />`;
  if (st.error) return html`<${ErrorBox} error=${st.error} />`;
  const tf = st.data.two_factor;
  if (codes) {
    return html`<div>
      <${Alert} kind="success">${t('twofa.enabled_now')}</${Alert}>
      <h3 id="codes-h">${t('twofa.codes_title')}</h3>
      <p>${t('twofa.codes_text')}</p>
      <ol class="recovery-codes" aria-labelledby="codes-h">${codes.map((c) => html`<li>${c}</li>`)}</ol>
      <button class="btn btn-secondary" type="button" onClick=${() => setCodes(null)}>${t('twofa.codes_done')}</button>
    </div>`;
  }
  if (tf.enabled) {
    return html`<div>
      <p><span class="badge badge-approved">${t('twofa.on')}</span> ${t('twofa.on_since', { at: dateTime(tf.enabled_at) })}</p>
      <p>${t('twofa.codes_left', { n: tf.recovery_codes_left })}</p>
      <form class="form narrow" onSubmit=${disable.submit} novalidate>
        <h3>${t('twofa.disable')}</h3>
        ${disable.error && disable.error.field !== 'code' ? html`<${ErrorBox} error=${disable.error} />` : null}
        <${CodeField} value=${code} onInput=${setCode} hint=${t('twofa.disable_hint')} error=${fieldError(disable.error, 'code')} />
        <button class="btn btn-danger" type="submit" disabled=${disable.busy}>${t('twofa.disable')}</button>
      </form>
    </div>`;
  }
  return html`<div>
    ${off ? html`<${Alert} kind="info">${t('twofa.disabled_now')}</${Alert}>` : null}
    <p><span class="badge badge-none">${t('twofa.off')}</span> ${t('twofa.off_text')}</p>
    ${setup ? html`<div class="split twofa-setup">
      <div>
        <p>${t('twofa.scan')}</p>
        <${QrCode} text=${setup.otpauth_uri} label=${t('twofa.qr_label')} size=${200} />
        <p class="hint">${t('twofa.manual')}</p>
        <p class="mono secret">${setup.secret}</p>
      </div>
      <form class="form" onSubmit=${enable.submit} novalidate>
        ${enable.error && enable.error.field !== 'code' ? html`<${ErrorBox} error=${enable.error} />` : null}
        <${CodeField} value=${code} onInput=${setCode} hint=${t('twofa.enter_code')} error=${fieldError(enable.error, 'code')} />
        <button class="btn" type="submit" disabled=${enable.busy}>${t('twofa.enable')}</button>
      </form>
    </div>` : html`<button class="btn" type="button" onClick=${begin.submit} disabled=${begin.busy}>${t('twofa.setup')}</button>`}
    <${ErrorBox} error=${begin.error} />
  </div>`;
}

