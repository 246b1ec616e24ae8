// The staff session: the login answer's {id, email, role} kept in
// sessionStorage for this tab (to show the pages of the role); the
// HttpOnly dm_admin cookie is what the server trusts. There is no
// GET /api/admin/me yet: a reload checks the session with /api/admin/health.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, get, post } from '../lib/api.js';
import { t } from '../lib/i18n.js';
import { navigate } from '../lib/router.js';
import { ErrorBox, Field, html, Page, fieldError, useSubmit } from '../lib/ui.js';

let staff;
const subs = new Set();
const KEY = 'dm_staff';

export function setStaff(s) {
  staff = s;
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
  else sessionStorage.removeItem(KEY);
  for (const f of subs) f(staff);
}

export async function staffUser() {
  const saved = sessionStorage.getItem(KEY);
  if (!saved) {
    setStaff(null);
    return;
  }
  try {
    await get('/api/admin/health');
    setStaff(JSON.parse(saved));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) setStaff(null);
    else setStaff(JSON.parse(saved));
  }
}

export function useStaff() {
  const [s, setS] = useState(staff);
  useEffect(() => {
    subs.add(setS);
    setS(staff);
    return () => subs.delete(setS);
  }, []);
  return s;
}

export function Login({ query }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [challenge, setChallenge] = useState(null); // the 2FA step's challenge
  const [code, setCode] = useState('');
  const done = (r) => {
    // an owner or finance account without 2FA under DeepMineStaff2FA
    // required gets a session that may only enrol (/admin/2fa)
    setStaff(r.enrol_2fa_required ? { ...r.staff, enrol: true } : r.staff);
    const next = query.get('next');
    navigate(r.enrol_2fa_required ? '/admin/2fa' : next && next.startsWith('/admin') ? next : '/admin');
  };
  const f = useSubmit(async () => {
    if (challenge) {
      try {
        done(await post('/api/admin/auth/login/2fa', { challenge, code: code.trim() }));
      } catch (e) {
        if (e.status === 401) { setChallenge(null); setCode(''); }
        throw e;
      }
      return;
    }
    const r = await post('/api/admin/auth/login', { email, password });
    if (r.two_factor_required) {
      setChallenge(r.challenge);
      return;
    }
    done(r);
  });
  if (challenge) {
    return html`<${Page} title=${t('login.twofa_title')}>
      <form class="form narrow" onSubmit=${f.submit} novalidate>
        <p>${t('login.twofa_text')}</p>
        ${f.error && f.error.field !== 'code' ? html`<${ErrorBox} error=${f.error} />` : null}
        <${Field} label=${t('twofa.code')} autocomplete="one-time-code" spellcheck=${false} required value=${code} onInput=${setCode}
          hint=${t('login.twofa_hint')} error=${fieldError(f.error, 'code')} />
        <button class="btn" type="submit" disabled=${f.busy}>${t('login.twofa_submit')}</button>
      </form>
    </${Page}>`;
  }
  return html`<${Page} title=${t('admin.login')}>
    <form class="form narrow" onSubmit=${f.submit} novalidate>
      <${ErrorBox} error=${f.error} />
      <${Field} label=${t('field.email')} type="email" autocomplete="username" required value=${email} onInput=${setEmail} />
      <${Field} label=${t('field.password')} type="password" autocomplete="current-password" required value=${password} onInput=${setPassword} />
      <button class="btn" type="submit" disabled=${f.busy}>${t('login.submit')}</button>
    </form>
  </${Page}>`;
}
