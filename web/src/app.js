// The member app: one page shell, routes, and the session (docs/ui.md).
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { t } from './lib/i18n.js';
import { match, navigate, startRouter, useLocation } from './lib/router.js';
import { html, Loading } from './lib/ui.js';
import { loadUser, logout, useUser } from './session.js';
import {
  ConfirmAddress, ConfirmErasure, Home, Legal, Login, NotFound, Register, ResetPassword, VerifyEmail,
} from './pages/public.js';
import {
  Buy, BuyList, Contract, Contracts, Dashboard, Order, Orders, Referrals, Settings, TermsBanner, VerifyBanner, Wallet, Withdrawals,
} from './pages/member.js';
import { Kyc } from './pages/kyc.js';
import { Security } from './pages/security.js';

// auth: true — only for a logged-in member (others go to /login?next=…)
const routes = [
  { path: '/', page: Home },
  { path: '/terms', page: () => html`<${Legal} doc="terms" />` },
  { path: '/privacy', page: () => html`<${Legal} doc="privacy" />` },
  { path: '/register', page: Register, guest: true },
  { path: '/login', page: Login, guest: true },
  { path: '/verify-email', page: VerifyEmail },
  { path: '/reset-password', page: ResetPassword },
  { path: '/confirm-address', page: ConfirmAddress },
  { path: '/confirm-erasure', page: ConfirmErasure },
  { path: '/dashboard', page: Dashboard, auth: true },
  { path: '/buy', page: BuyList, auth: true },
  { path: '/buy/:id', page: Buy, auth: true },
  { path: '/orders', page: Orders, auth: true },
  { path: '/orders/:id', page: Order, auth: true },
  { path: '/contracts', page: Contracts, auth: true },
  { path: '/contracts/:id', page: Contract, auth: true },
  { path: '/wallet', page: Wallet, auth: true },
  { path: '/referrals', page: Referrals, auth: true },
  { path: '/withdrawals', page: Withdrawals, auth: true },
  { path: '/settings', page: Settings, auth: true },
  { path: '/kyc', page: Kyc, auth: true },
  { path: '/security', page: Security, auth: true },
  { path: '/settings/security', page: Security, auth: true },
  // Data export and deletion get their routes here when their API lands
  // (docs/ui.md "Extension points").
];

const memberNav = [
  ['/dashboard', 'nav.dashboard'], ['/buy', 'nav.buy'], ['/contracts', 'nav.contracts'], ['/wallet', 'nav.wallet'],
  ['/referrals', 'nav.referrals'], ['/withdrawals', 'nav.withdrawals'], ['/kyc', 'nav.kyc'], ['/security', 'nav.security'], ['/settings', 'nav.settings'],
];

function Header({ user, path }) {
  const [open, setOpen] = useState(false);
  useEffect(() => setOpen(false), [path]);
  const items = user ? memberNav : [['/', 'nav.catalogue'], ['/login', 'nav.login'], ['/register', 'nav.register']];
  const current = (href) => (path === href || (href !== '/' && path.startsWith(href + '/')) ? 'page' : undefined);
  return html`<header class="site-header">
    <div class="bar">
      <a class="brand" href=${user ? '/dashboard' : '/'}><img src="/icons/icon.svg" alt="" width="28" height="28" /><span>${t('app.name')}</span></a>
      <button type="button" class="menu-button" aria-expanded=${open ? 'true' : 'false'} aria-controls="site-nav" onClick=${() => setOpen(!open)}>${t('nav.menu')}</button>
    </div>
    <nav id="site-nav" class=${'site-nav' + (open ? ' open' : '')} aria-label=${t('nav.label')}>
      <ul>
        ${items.map(([href, key]) => html`<li><a href=${href} aria-current=${current(href)}>${t(key)}</a></li>`)}
        ${user ? html`<li><button type="button" class="linklike" onClick=${() => logout().then(() => navigate('/login'))}>${t('nav.logout')}</button></li>` : null}
      </ul>
    </nav>
  </header>`;
}

function Footer() {
  return html`<footer class="site-footer">
    <nav aria-label=${t('nav.footer')}><a href="/terms">${t('legal.terms')}</a> · <a href="/privacy">${t('legal.privacy')}</a> · <a href="/">${t('nav.catalogue')}</a></nav>
    <p>${t('footer.note')}</p>
  </footer>`;
}

function App() {
  const { path, query } = useLocation();
  const user = useUser();
  const m = match(routes, path);
  const route = m ? m.route : null;
  useEffect(() => {
    // a navigation that happened since this render decides for itself
    if (user === undefined || !route || location.pathname !== path) return;
    if (route.auth && !user) navigate('/login?next=' + encodeURIComponent(path + location.search), { replace: true });
    if (route.guest && user) navigate('/dashboard', { replace: true });
  }, [user, route, path]);
  let body;
  if (user === undefined || (route && route.auth && !user)) body = html`<${Loading} />`;
  else if (!route) body = html`<${NotFound} />`;
  else body = html`<${route.page} params=${m.params} query=${query} />`;
  return html`
    <a class="skip" href="#main">${t('nav.skip')}</a>
    <${Header} user=${user} path=${path} />
    ${user ? html`<${TermsBanner} user=${user} /><${VerifyBanner} user=${user} />` : null}
    <main id="main" tabindex="-1">${body}</main>
    <${Footer} />`;
}

startRouter('');
loadUser().catch(() => {});
render(html`<${App} />`, document.getElementById('app'));
