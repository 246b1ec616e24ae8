// The member's security page (/security): two-factor sign-in (enrolment
// with the QR code of the otpauth URI, the recovery codes shown once,
// disable), the password change and the live sessions (docs/api.md).
import { useState } from 'preact/hooks';
import { del, get, post } from '../lib/api.js';
import { dateTime } from '../lib/format.js';
import { t } from '../lib/i18n.js';
import { navigate } from '../lib/router.js';
import { QrCode } from '../lib/qr.js';
import { Alert, ErrorBox, Field, html, Loading, Page, Table, fieldError, useLoad, useSubmit } from '../lib/ui.js';
import { setUser } from '../session.js';

function CodeField({ value, onInput, error, hint }) {
  return html`<${Field} label=${t('twofa.code')} autocomplete="one-time-code" spellcheck=${false} required value=${value} onInput=${onInput}
    hint=${hint} error=${error} />`;
}

function TwoFactor() {
  const st = useLoad(() => get('/api/me/2fa'));
  const [setup, setSetup] = useState(null);   // {secret, otpauth_uri}
  const [codes, setCodes] = useState(null);   // the recovery codes, shown once
  const [code, setCode] = useState('');
  const [off, setOff] = useState(false);
  const begin = useSubmit(async () => {
    setOff(false);
    setSetup(await post('/api/me/2fa/setup'));
    setCode('');
  });
  const enable = useSubmit(async () => {
    const r = await post('/api/me/2fa/enable', { code: code.trim() });
    setCodes(r.recovery_codes);
    setSetup(null);
    setCode('');
    st.reload();
  });
  const disable = useSubmit(async () => {
    await post('/api/me/2fa/disable', { code: code.trim() });
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

function PasswordChange() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [done, setDone] = useState(false);
  const f = useSubmit(async () => {
    setDone(false);
    const { user } = await post('/api/me/password', { current_password: current, new_password: next });
    setUser(user);
    setCurrent('');
    setNext('');
    setDone(true);
  });
  return html`<form class="form narrow" onSubmit=${f.submit} novalidate>
    ${done ? html`<${Alert} kind="success">${t('pw.changed')}</${Alert}>` : null}
    ${f.error && !['current_password', 'new_password'].includes(f.error.field) ? html`<${ErrorBox} error=${f.error} />` : null}
    <${Field} label=${t('pw.current')} type="password" autocomplete="current-password" required value=${current} onInput=${setCurrent} error=${fieldError(f.error, 'current_password')} />
    <${Field} label=${t('pw.new')} type="password" autocomplete="new-password" required value=${next} onInput=${setNext} hint=${t('pw.new_hint')} error=${fieldError(f.error, 'new_password')} />
    <button class="btn" type="submit" disabled=${f.busy}>${t('pw.submit')}</button>
  </form>`;
}

function Sessions() {
  const list = useLoad(() => get('/api/me/sessions'));
  const [ended, setEnded] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const end = async (s) => {
    setBusy(true);
    setError(null);
    try {
      await del('/api/me/sessions/' + s.id);
      if (s.current) { setUser(null); navigate('/login'); return; }
      setEnded(s);
      await list.reload();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  if (list.loading && !list.data) return html`<${Loading} />`;
  if (list.error) return html`<${ErrorBox} error=${list.error} />`;
  return html`<div>
    ${ended ? html`<${Alert} kind="success">${t('sessions.ended', { at: dateTime(ended.created_at) })}</${Alert}>` : null}
    <${ErrorBox} error=${error} />
    <${Table} caption=${t('sessions.title')} empty=${t('sessions.none')}
      head=${[t('sessions.device'), t('sessions.last_used'), t('sessions.ip'), t('sessions.started'), '']}
      rows=${list.data.sessions.map((s) => html`<tr>
        <td class="ua">${s.user_agent || t('sessions.unknown')}${s.current ? html` <span class="badge badge-approved">${t('sessions.this')}</span>` : null}</td>
        <td>${dateTime(s.last_used_at)}</td><td class="mono">${s.ip || '—'}</td><td>${dateTime(s.created_at)}</td>
        <td><button class="btn btn-secondary" type="button" disabled=${busy} onClick=${() => end(s)}
          aria-label=${t('sessions.end_named', { at: dateTime(s.created_at) })}>${t('sessions.end')}</button></td></tr>`)} />
  </div>`;
}

export function Security() {
  return html`<${Page} title=${t('security.title')}>
    <section aria-labelledby="tf-h"><h2 id="tf-h">${t('twofa.title')}</h2><${TwoFactor} /></section>
    <section aria-labelledby="pw-h"><h2 id="pw-h">${t('pw.title')}</h2><p>${t('pw.explain')}</p><${PasswordChange} /></section>
    <section aria-labelledby="ses-h"><h2 id="ses-h">${t('sessions.title')}</h2><p>${t('sessions.explain')}</p><${Sessions} /></section>
  </${Page}>`;
}
