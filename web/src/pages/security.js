// The member's security page (/security): two-factor sign-in (pages/
// twofa.js), the password change and the live sessions (docs/api.md).
import { useState } from 'preact/hooks';
import { del, get, post } from '../lib/api.js';
import { dateTime } from '../lib/format.js';
import { t } from '../lib/i18n.js';
import { navigate } from '../lib/router.js';
import { Alert, ErrorBox, Field, html, Loading, Page, Table, fieldError, useLoad, useSubmit } from '../lib/ui.js';
import { setUser } from '../session.js';
import { TwoFactor } from './twofa.js';

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
      await list.reload();
      setEnded(s);
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
