// Public pages: the catalogue, the legal texts, register, login and the
// e-mail landing pages (/verify-email, /reset-password).
import { useEffect, useState } from 'preact/hooks';
import { ApiError, get, post } from '../lib/api.js';
import { bp, dateTime, money, ths } from '../lib/format.js';
import { t } from '../lib/i18n.js';
import { navigate } from '../lib/router.js';
import { Alert, ErrorBox, Field, html, Loading, Page, fieldError, useLoad, useSubmit } from '../lib/ui.js';
import { setUser, useUser } from '../session.js';

/** How a package's yield is earned, said honestly. */
export function yieldText(p) {
  return p.yield_mode === 'pool'
    ? t('pkg.yield_pool', { fee: bp(p.fee_bp || 0) })
    : t('pkg.yield_fixed');
}

export function PackageCard({ p, action }) {
  return html`<article class="card package" aria-labelledby=${'pkg-' + p.id}>
    <h3 id=${'pkg-' + p.id}>${p.name}</h3>
    <p class="price">${money(p.price_micros, p.currency)}</p>
    <dl class="facts">
      <div><dt>${t('pkg.hashrate')}</dt><dd>${ths(p.hashrate_ths)}</dd></div>
      <div><dt>${t('pkg.duration')}</dt><dd>${t('pkg.days', { n: p.duration_days })}</dd></div>
      <div><dt>${p.yield_mode === 'pool' ? t('pkg.daily_estimate') : t('pkg.daily_fixed')}</dt><dd>${money(p.daily_yield_micros, p.currency)}</dd></div>
    </dl>
    <p class="yield-mode">${yieldText(p)}</p>
    ${p.sold_out ? html`<p class="badge badge-sold_out">${t('pkg.sold_out')}</p>` : action}
  </article>`;
}

export function Catalogue({ buyHref }) {
  const { data, error, loading } = useLoad(() => get('/api/packages'));
  if (loading) return html`<${Loading} />`;
  if (error) return html`<${ErrorBox} error=${error} />`;
  return html`<div>
    <p class="muted">${t('home.available', { ths: ths(data.available_ths ?? 0) })}</p>
    <div class="grid packages">
      ${data.packages.map((p) => html`<${PackageCard} key=${p.id} p=${p}
        action=${html`<a class="btn" href=${buyHref(p)} aria-label=${t('pkg.buy_named', { name: p.name })}>${t('pkg.buy')}</a>`} />`)}
    </div>
  </div>`;
}

export function Home() {
  const user = useUser();
  // back from a payment gateway, whose return link is the site's root
  useEffect(() => {
    const back = sessionStorage.getItem('dm_return_order');
    if (back) {
      sessionStorage.removeItem('dm_return_order');
      navigate('/orders/' + back, { replace: true });
    }
  }, []);
  return html`<${Page} title=${t('home.title')}>
    <section class="hero">
      <p class="lead">${t('home.lead')}</p>
      <ul class="points">
        <li>${t('home.point_contracts')}</li>
        <li>${t('home.point_daily')}</li>
        <li>${t('home.point_referrals')}</li>
      </ul>
      ${user ? html`<a class="btn" href="/dashboard">${t('nav.dashboard')}</a>`
        : html`<p class="cta"><a class="btn" href="/register">${t('home.cta_register')}</a> <a class="btn btn-secondary" href="/login">${t('nav.login')}</a></p>`}
    </section>
    <section aria-labelledby="cat-h">
      <h2 id="cat-h">${t('home.catalogue')}</h2>
      <${Catalogue} buyHref=${(p) => (user ? '/buy/' + p.id : '/register?next=' + encodeURIComponent('/buy/' + p.id))} />
    </section>
  </${Page}>`;
}

/** Markdown-ish legal text as headings and paragraphs (text only: never HTML). */
function LegalText({ text }) {
  const blocks = text.replace(/^Version:.*\n/, '').split(/\n\s*\n/).map((b) => b.trim()).filter(Boolean);
  return html`<div class="legal">${blocks.map((b) => {
    const h = b.match(/^(#{1,3})\s+(.*)$/);
    if (h) return h[1].length === 1 ? null : html`<h2>${h[2]}</h2>`;
    if (/^\d+\.\s/.test(b)) return html`<ol>${b.split(/\n(?=\d+\.\s)/).map((li) => html`<li>${li.replace(/^\d+\.\s+/, '')}</li>`)}</ol>`;
    return html`<p>${b}</p>`;
  })}</div>`;
}

export function Legal({ doc }) {
  const { data, error, loading } = useLoad(() => get('/api/legal/' + doc), [doc]);
  return html`<${Page} title=${t('legal.' + doc)}>
    ${loading ? html`<${Loading} />` : error ? html`<${ErrorBox} error=${error} />` : html`
      <p class="muted">${t('legal.version', { v: data.version })}</p>
      <${LegalText} text=${data.text} />`}
  </${Page}>`;
}

function safeNext(q) {
  const n = q.get('next');
  return n && n.startsWith('/') && !n.startsWith('//') && !n.startsWith('/api/') ? n : '/dashboard';
}

export function Register({ query }) {
  const fromLink = query.get('ref');
  if (fromLink) sessionStorage.setItem('dm_ref', fromLink);
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [ref, setRef] = useState(fromLink || sessionStorage.getItem('dm_ref') || '');
  const [accept, setAccept] = useState(false);
  const terms = useLoad(() => get('/api/legal/terms'));
  const f = useSubmit(async () => {
    if (!accept) throw new ApiError(400, { code: 'invalid', field: 'accept_terms', message: t('register.must_accept') });
    const body = { email, password, accept_terms: true, terms_version: terms.data.version };
    if (ref.trim()) body.referral_code = ref.trim();
    const { user } = await post('/api/auth/register', body);
    sessionStorage.removeItem('dm_ref');
    setUser(user);
    navigate(safeNext(query) === '/dashboard' ? '/dashboard?welcome=1' : safeNext(query));
  });
  return html`<${Page} title=${t('register.title')}>
    <form class="form narrow" onSubmit=${f.submit} novalidate>
      ${f.error && !f.error.field ? html`<${ErrorBox} error=${f.error} />` : null}
      <${Field} label=${t('field.email')} type="email" autocomplete="email" required value=${email} onInput=${setEmail} error=${fieldError(f.error, 'email')} />
      <${Field} label=${t('field.password')} type="password" autocomplete="new-password" required minlength="10" value=${password} onInput=${setPassword}
        hint=${t('register.password_hint')} error=${fieldError(f.error, 'password')} />
      <${Field} label=${t('field.referral_code')} autocomplete="off" value=${ref} onInput=${setRef}
        hint=${fromLink ? t('register.ref_from_link') : t('register.ref_hint')} error=${fieldError(f.error, 'referral_code')} />
      <div class=${'check' + (fieldError(f.error, 'accept_terms') || fieldError(f.error, 'terms_version') ? ' has-error' : '')}>
        <input type="checkbox" id="accept" checked=${accept} onChange=${(e) => setAccept(e.target.checked)} />
        <label for="accept">${t('register.accept_before')} <a href="/terms" target="_blank" rel="noopener">${t('legal.terms')}</a>
          ${terms.data ? ' ' + t('register.terms_version', { v: terms.data.version }) : ''} ${t('register.accept_and')} <a href="/privacy" target="_blank" rel="noopener">${t('legal.privacy')}</a>.</label>
        ${fieldError(f.error, 'accept_terms') || fieldError(f.error, 'terms_version')
          ? html`<p class="field-error">${fieldError(f.error, 'accept_terms') || fieldError(f.error, 'terms_version')}</p>` : null}
      </div>
      <button class="btn" type="submit" disabled=${f.busy || !terms.data}>${t('register.submit')}</button>
      <p class="muted">${t('register.have_account')} <a href="/login">${t('nav.login')}</a></p>
    </form>
  </${Page}>`;
}

export function Login({ query }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [challenge, setChallenge] = useState(null); // the 2FA step's challenge
  const [code, setCode] = useState('');
  const f = useSubmit(async () => {
    if (challenge) {
      try {
        const { user } = await post('/api/auth/login/2fa', { challenge, code: code.trim() });
        setUser(user);
        navigate(safeNext(query));
      } catch (e) {
        // a dead challenge (expired, used, 5 wrong codes): back to the password
        if (e.status === 401) { setChallenge(null); setCode(''); }
        throw e;
      }
      return;
    }
    const r = await post('/api/auth/login', { email, password });
    if (r.two_factor_required) {
      setChallenge(r.challenge);
      return;
    }
    setUser(r.user);
    navigate(safeNext(query));
  });
  if (challenge) {
    return html`<${Page} title=${t('login.twofa_title')}>
      <form class="form narrow" onSubmit=${f.submit} novalidate>
        <p>${t('login.twofa_text')}</p>
        ${f.error && f.error.field !== 'code' ? html`<${ErrorBox} error=${f.error} />` : null}
        <${Field} label=${t('twofa.code')} autocomplete="one-time-code" inputmode="text" spellcheck=${false} required value=${code} onInput=${setCode}
          hint=${t('login.twofa_hint')} error=${fieldError(f.error, 'code')} />
        <button class="btn" type="submit" disabled=${f.busy}>${t('login.twofa_submit')}</button>
        <p class="muted"><button type="button" class="textbutton" onClick=${() => { setChallenge(null); setCode(''); f.setError(null); }}>${t('login.twofa_back')}</button></p>
      </form>
    </${Page}>`;
  }
  return html`<${Page} title=${t('login.title')}>
    <form class="form narrow" onSubmit=${f.submit} novalidate>
      <${ErrorBox} error=${f.error} />
      <${Field} label=${t('field.email')} type="email" autocomplete="username" required value=${email} onInput=${setEmail} />
      <${Field} label=${t('field.password')} type="password" autocomplete="current-password" required value=${password} onInput=${setPassword} />
      <button class="btn" type="submit" disabled=${f.busy}>${t('login.submit')}</button>
      <p class="muted"><a href="/reset-password">${t('login.forgot')}</a> · <a href="/register">${t('login.no_account')}</a></p>
    </form>
  </${Page}>`;
}

export function VerifyEmail({ query }) {
  const token = query.get('token');
  const [state, setState] = useState(token ? 'working' : 'missing');
  const [error, setError] = useState(null);
  const user = useUser();
  useEffect(() => {
    if (!token) return;
    post('/api/auth/verify-email', { token }).then(() => {
      setState('done');
      if (user) setUser({ ...user, email_verified: true });
    }, (e) => { setError(e); setState('failed'); });
  }, [token]);
  return html`<${Page} title=${t('verify.title')}>
    ${state === 'working' ? html`<${Loading} />` : null}
    ${state === 'done' ? html`<${Alert} kind="success">${t('verify.done')}</${Alert}>
      <p><a class="btn" href=${user ? '/dashboard' : '/login'}>${user ? t('nav.dashboard') : t('nav.login')}</a></p>` : null}
    ${state === 'failed' ? html`<${Alert} kind="error">${t('verify.failed')} ${error && error.message}</${Alert}>` : null}
    ${state === 'missing' ? html`<${Alert} kind="error">${t('verify.missing')}</${Alert}>` : null}
  </${Page}>`;
}

// The link of the withdrawal_address_added e-mail (docs/security.md): works
// with or without a session, like the e-mail confirmation.
export function ConfirmAddress({ query }) {
  const token = query.get('token');
  const [state, setState] = useState(token ? 'working' : 'missing');
  const [address, setAddress] = useState(null);
  const [error, setError] = useState(null);
  const user = useUser();
  useEffect(() => {
    if (!token) return;
    post('/api/auth/confirm-address', { token }).then((r) => {
      setAddress(r.address);
      setState('done');
    }, (e) => { setError(e); setState('failed'); });
  }, [token]);
  return html`<${Page} title=${t('address.title')}>
    ${state === 'working' ? html`<${Loading} />` : null}
    ${state === 'done' ? html`<${Alert} kind="success">${t('address.done', { address: address.address, usable_at: dateTime(address.usable_at) })}</${Alert}>
      <p><a class="btn" href=${user ? '/withdrawals' : '/login'}>${user ? t('nav.withdrawals') : t('nav.login')}</a></p>` : null}
    ${state === 'failed' ? html`<${Alert} kind="error">${t('address.failed')} ${error && error.message}</${Alert}>` : null}
    ${state === 'missing' ? html`<${Alert} kind="error">${t('verify.missing')}</${Alert}>` : null}
  </${Page}>`;
}

// The erasure link (POST /api/me/delete): confirmed by a deliberate click,
// never on load (mail scanners open links).
export function ConfirmErasure({ query }) {
  const token = query.get('token');
  const [state, setState] = useState(token ? 'ask' : 'missing');
  const [error, setError] = useState(null);
  const [due, setDue] = useState(null);
  const confirm = () => {
    setState('working');
    post('/api/me/delete/confirm', { token }).then((b) => {
      setDue(b.erasure.due_at); setState('done');
    }, (e) => { setError(e); setState('failed'); });
  };
  return html`<${Page} title=${t('erasure.title')}>
    ${state === 'ask' ? html`<p>${t('erasure.ask')}</p>
      <p><button class="btn" type="button" onClick=${confirm}>${t('erasure.confirm')}</button></p>` : null}
    ${state === 'working' ? html`<${Loading} />` : null}
    ${state === 'done' ? html`<${Alert} kind="success">${t('erasure.done', { due })}</${Alert}>` : null}
    ${state === 'failed' ? html`<${Alert} kind="error">${t('erasure.failed')} ${error && error.message}</${Alert}>` : null}
    ${state === 'missing' ? html`<${Alert} kind="error">${t('verify.missing')}</${Alert}>` : null}
  </${Page}>`;
}

export function ResetPassword({ query }) {
  const token = query.get('token');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [done, setDone] = useState(false);
  const f = useSubmit(async () => {
    if (token) await post('/api/auth/password-reset/confirm', { token, password });
    else await post('/api/auth/password-reset', { email });
    setDone(true);
  });
  if (done) {
    return html`<${Page} title=${t('reset.title')}>
      <${Alert} kind="success">${token ? t('reset.changed') : t('reset.sent')}</${Alert}>
      ${token ? html`<p><a class="btn" href="/login">${t('nav.login')}</a></p>` : null}
    </${Page}>`;
  }
  return html`<${Page} title=${t('reset.title')}>
    <form class="form narrow" onSubmit=${f.submit} novalidate>
      ${f.error && !fieldError(f.error, 'password') ? html`<${ErrorBox} error=${f.error} />` : null}
      ${token
        ? html`<${Field} label=${t('field.new_password')} type="password" autocomplete="new-password" required value=${password} onInput=${setPassword}
            hint=${t('register.password_hint')} error=${fieldError(f.error, 'password')} />`
        : html`<p>${t('reset.explain')}</p>
          <${Field} label=${t('field.email')} type="email" autocomplete="email" required value=${email} onInput=${setEmail} />`}
      <button class="btn" type="submit" disabled=${f.busy}>${token ? t('reset.submit_new') : t('reset.submit_send')}</button>
    </form>
  </${Page}>`;
}

export function NotFound() {
  return html`<${Page} title=${t('notfound.title')}>
    <p>${t('notfound.text')}</p>
    <p><a class="btn" href="/">${t('nav.home')}</a></p>
  </${Page}>`;
}
