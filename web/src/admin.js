// The staff console at /admin/ (docs/ui.md): one shell, a page per area,
// each shown only to the roles the server lets use it (the server still
// decides every request: docs/api.md "Roles").
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { configure, get, post } from './lib/api.js';
import { t } from './lib/i18n.js';
import { match, navigate, startRouter, useLocation } from './lib/router.js';
import { html, Loading } from './lib/ui.js';
import * as P from './admin/pages.js';
import { Login, staffUser, setStaff, useStaff } from './admin/session.js';
import { TwoFactor } from './pages/twofa.js';
import { Page } from './lib/ui.js';

// roles: who sees the page ('owner' sees everything)
const routes = [
  { path: '/admin', page: P.Overview, nav: 'admin.nav.overview', roles: ['finance', 'support', 'kyc'] },
  { path: '/admin/stats', page: P.Stats, nav: 'admin.nav.stats', roles: ['finance'] },
  { path: '/admin/users', page: P.Users, nav: 'admin.nav.users', roles: ['finance', 'support', 'kyc'] },
  { path: '/admin/users/:id', page: P.UserDetail, roles: ['finance', 'support', 'kyc'] },
  { path: '/admin/orders', page: P.Orders, nav: 'admin.nav.orders', roles: ['finance', 'support'] },
  { path: '/admin/contracts', page: P.Contracts, nav: 'admin.nav.contracts', roles: ['finance', 'support'] },
  { path: '/admin/transfers', page: P.Transfers, nav: 'admin.nav.transfers', roles: ['finance'] },
  { path: '/admin/withdrawals', page: P.Withdrawals, nav: 'admin.nav.withdrawals', roles: ['finance'] },
  { path: '/admin/kyc', page: P.KycQueue, nav: 'admin.nav.kyc', roles: ['kyc'] },
  { path: '/admin/packages', page: P.Catalogue, nav: 'admin.nav.catalogue', roles: ['finance', 'support'] },
  { path: '/admin/vip', page: P.VipPlan, nav: 'admin.nav.vip', roles: [] },
  { path: '/admin/pool-payouts', page: P.PoolPayouts, nav: 'admin.nav.pool', roles: ['finance'] },
  { path: '/admin/jobs', page: P.Jobs, nav: 'admin.nav.jobs', roles: [] },
  { path: '/admin/email', page: P.EmailQueue, nav: 'admin.nav.email', roles: ['support'] },
  { path: '/admin/templates', page: P.Templates, nav: 'admin.nav.templates', roles: ['support'] },
  { path: '/admin/templates/:key', page: P.TemplateEditor, roles: ['support'] },
  { path: '/admin/flags', page: P.Flags, nav: 'admin.nav.flags', roles: ['support'] },
  { path: '/admin/audit', page: P.Audit, nav: 'admin.nav.audit', roles: [] },
  { path: '/admin/erasures', page: P.Erasures, nav: 'admin.nav.erasures', roles: [] },
  { path: '/admin/2fa', page: StaffTwoFactor, nav: 'admin.nav.twofa', roles: ['finance', 'support', 'kyc'] },
];

/** The staff member's own two-factor sign-in; the only page of a session
 * that must enrol first (DeepMineStaff2FA required). */
function StaffTwoFactor({ staff }) {
  return html`<${Page} title=${t('admin.twofa_title')}>
    ${staff.enrol ? html`<p class="alert alert-info" role="status">${t('admin.twofa_enrol')}</p>` : null}
    <${TwoFactor} base="/api/admin/me/2fa" onChange=${(on) => { if (on && staff.enrol) setStaff({ ...staff, enrol: false }); }} />
  </${Page}>`;
}

const allowed = (route, staff) => staff && (staff.role === 'owner' || route.roles.includes(staff.role));

function Shell({ staff, path, children }) {
  const [open, setOpen] = useState(false);
  useEffect(() => setOpen(false), [path]);
  const items = routes.filter((r) => r.nav && allowed(r, staff));
  const current = (r) => (path === r.path || (r.path !== '/admin' && path.startsWith(r.path + '/')) ? 'page' : undefined);
  const logout = async () => {
    try { await post('/api/admin/auth/logout'); } finally { setStaff(null); navigate('/admin/login'); }
  };
  return html`
    <a class="skip" href="#main">${t('nav.skip')}</a>
    <header class="site-header">
      <div class="bar">
        <a class="brand" href="/admin"><img src="/icons/icon.svg" alt="" width="28" height="28" /><span>${t('admin.title')}</span></a>
        <button type="button" class="menu-button" aria-expanded=${open ? 'true' : 'false'} aria-controls="staff-nav" onClick=${() => setOpen(!open)}>${t('nav.menu')}</button>
      </div>
      <nav class=${'site-nav' + (open ? ' open' : '')} id="top-nav" aria-label=${t('admin.account')}>
        <ul><li><span class="linklike" aria-hidden="true">${staff.email} (${t('admin.role.' + staff.role)})</span></li>
        <li><button type="button" class="linklike" onClick=${logout}>${t('nav.logout')}</button></li></ul>
      </nav>
    </header>
    <div class="staff-layout">
      <nav id="staff-nav" class=${'side-nav site-nav-staff' + (open ? ' open' : '')} aria-label=${t('admin.sections')}>
        <ul>${items.map((r) => html`<li><a href=${r.path} aria-current=${current(r)}>${t(r.nav)}</a></li>`)}</ul>
      </nav>
      <main id="main" tabindex="-1">${children}</main>
    </div>`;
}

function App() {
  const { path, query } = useLocation();
  const staff = useStaff();
  useEffect(() => {
    if (location.pathname !== path) return;
    if (staff === null && path !== '/admin/login') navigate('/admin/login?next=' + encodeURIComponent(path + location.search), { replace: true });
    if (staff && path === '/admin/login') navigate('/admin', { replace: true });
    else if (staff && staff.enrol && path !== '/admin/2fa') navigate('/admin/2fa', { replace: true });
  }, [staff, path]);
  if (staff === undefined) return html`<main id="main"><${Loading} /></main>`;
  if (!staff) return path === '/admin/login' ? html`<main id="main" class="login-main"><${Login} query=${query} /></main>` : html`<main id="main"><${Loading} /></main>`;
  // a session that may only enrol in 2FA sees only that page
  if (staff.enrol && path !== '/admin/2fa') return html`<main id="main"><${Loading} /></main>`;
  const m = match(routes, path === '/admin/' ? '/admin' : path);
  let body;
  if (!m) body = html`<${P.NotFound} />`;
  else if (!allowed(m.route, staff)) body = html`<${P.NotAllowed} />`;
  else body = html`<${m.route.page} params=${m.params} query=${query} staff=${staff} />`;
  return html`<${Shell} staff=${staff} path=${path}>${body}</${Shell}>`;
}

configure({ unauthorized: () => setStaff(null), refresh: null });
startRouter('/admin');
staffUser().catch(() => setStaff(null));
render(html`<${App} />`, document.getElementById('app'));
