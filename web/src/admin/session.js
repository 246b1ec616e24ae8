// The staff session: the login answer's {id, email, role} kept in
// sessionStorage for this tab (to show the pages of the role); the
// HttpOnly dm_admin cookie is what the server trusts. There is no
// GET /api/admin/me yet: a reload checks the session with /api/admin/health.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, get, post } from '../lib/api.js';
import { t } from '../lib/i18n.js';
import { navigate } from '../lib/router.js';
import { ErrorBox, Field, html, Page, useSubmit } from '../lib/ui.js';

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
  const f = useSubmit(async () => {
    const { staff: s } = await post('/api/admin/auth/login', { email, password });
    // The 2FA step joins here once staff accounts have it.
    setStaff(s);
    const next = query.get('next');
    navigate(next && next.startsWith('/admin') ? next : '/admin');
  });
  return html`<${Page} title=${t('admin.login')}>
    <form class="form narrow" onSubmit=${f.submit} novalidate>
      <${ErrorBox} error=${f.error} />
      <${Field} label=${t('field.email')} type="email" autocomplete="username" required value=${email} onInput=${setEmail} />
      <${Field} label=${t('field.password')} type="password" autocomplete="current-password" required value=${password} onInput=${setPassword} />
      <button class="btn" type="submit" disabled=${f.busy}>${t('login.submit')}</button>
    </form>
  </${Page}>`;
}
