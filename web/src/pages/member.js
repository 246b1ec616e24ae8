// The member's pages behind the login: dashboard, buy, orders, contracts,
// wallet, referrals, withdrawals, settings.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, del, get, post, put, qs } from '../lib/api.js';
import { BarChart } from '../lib/chart.js';
import { bp, date, dateTime, day, money, num, parseMoney, shortDay, sumMicros, ths } from '../lib/format.js';
import { t } from '../lib/i18n.js';
import { navigate } from '../lib/router.js';
import { QrCode } from '../lib/qr.js';
import { Alert, ErrorBox, Field, html, Loading, Money, Page, Pager, Stat, Status, Table, fieldError, useLoad, usePaged, useSubmit } from '../lib/ui.js';
import { reloadUser, setUser, useUser } from '../session.js';
import { PackageCard, yieldText } from './public.js';

const axisMoney = (v) => money(Math.round(v * 1e6), 'USD').replace(/(\.\d\d)\d+/, '$1');

// ---- dashboard ----

export function EarningsChart({ from, to, onReady }) {
  const { data, error, loading } = useLoad(() => get('/api/earnings' + qs({ from, to })), [from, to]);
  if (loading) return html`<${Loading} />`;
  if (error) return html`<${ErrorBox} error=${error} />`;
  const days = data.days;
  return html`<div class="earnings">
    <p class="muted">${t('dash.earnings_total', { total: money(data.total_micros, data.currency), from: day(data.from), to: day(data.to) })}</p>
    <${BarChart} title=${t('dash.earnings_chart')}
      labels=${days.map((d) => shortDay(d.day))}
      series=${[{ label: t('dash.credited'), values: days.map((d) => d.credit_micros / 1e6) }]}
      yFormat=${axisMoney} onReady=${onReady}
      table=${days.filter((d) => d.credit_micros).map((d) => [day(d.day), money(d.credit_micros, data.currency)])} />
  </div>`;
}

function TermsBanner({ user }) {
  const f = useSubmit(async () => {
    const terms = await get('/api/legal/terms');
    const { user: u } = await post('/api/me/accept-terms', { terms_version: terms.version });
    setUser(u);
  });
  if (!user || !user.terms_outdated) return null;
  return html`<div class="banner" role="region" aria-label=${t('terms.banner_label')}>
    <p>${t('terms.banner')} <a href="/terms">${t('terms.read')}</a></p>
    <${ErrorBox} error=${f.error} />
    <button class="btn" type="button" onClick=${f.submit} disabled=${f.busy}>${t('terms.accept')}</button>
  </div>`;
}
export { TermsBanner };

function VerifyBanner({ user }) {
  if (!user || user.email_verified) return null;
  return html`<div class="banner banner-info" role="region" aria-label=${t('verify.banner_label')}>
    <p>${t('verify.banner', { email: user.email })}</p>
  </div>`;
}
export { VerifyBanner };

export function Dashboard({ query }) {
  const user = useUser();
  const contracts = useLoad(() => get('/api/contracts?limit=200'));
  const network = useLoad(() => get('/api/referrals/network'));
  useEffect(() => { reloadUser(); }, []);
  const active = contracts.data ? contracts.data.contracts.filter((c) => c.status === 'active') : [];
  // "The dashboard is shown": balances, contracts and the chart drawn; the
  // browser test reads this mark for the budget (docs/ui.md).
  const [chartReady, setChartReady] = useState(false);
  useEffect(() => {
    if (chartReady && contracts.data && network.data && !performance.getEntriesByName('dm-dashboard-ready').length) performance.mark('dm-dashboard-ready');
  }, [chartReady, contracts.data, network.data]);
  return html`<${Page} title=${t('dash.title')}>
    ${query.get('welcome') ? html`<${Alert} kind="success">${t('dash.welcome')}</${Alert}>` : null}
    ${user.kyc_status !== 'approved' ? html`<p class="hint">${t('dash.kyc', { status: t('kyc.' + user.kyc_status) })} <a href="/kyc">${t('dash.kyc_link')}</a></p>` : null}
    <section class="stats" aria-label=${t('dash.balances')}>
      <${Stat} label=${t('dash.available')} note=${t('dash.available_note')}><${Money} micros=${user.balance_micros} currency=${user.currency} /></${Stat}>
      <${Stat} label=${t('dash.held')} note=${t('dash.held_note')}><${Money} micros=${user.held_micros ?? 0} currency=${user.currency} /></${Stat}>
      <${Stat} label=${t('dash.active_contracts')}>${contracts.data ? active.length : '…'}</${Stat}>
      <${Stat} label=${t('dash.team')}>${network.data ? network.data.total : '…'}</${Stat}>
    </section>
    <section aria-labelledby="earn-h">
      <h2 id="earn-h">${t('dash.earnings')}</h2>
      <${EarningsChart} onReady=${() => setChartReady(true)} />
    </section>
    <section aria-labelledby="con-h">
      <h2 id="con-h">${t('dash.contracts')}</h2>
      ${contracts.loading ? html`<${Loading} />` : contracts.error ? html`<${ErrorBox} error=${contracts.error} />` : html`
        <${Table} caption=${t('dash.contracts')} empty=${html`${t('dash.no_contracts')} <a href="/buy">${t('nav.buy')}</a>`}
          head=${[t('col.contract'), t('pkg.hashrate'), t('col.expires'), t('col.earned')]}
          rows=${active.map((c) => html`<tr><td><a href=${'/contracts/' + c.id}>${c.name}</a></td><td>${ths(c.hashrate_ths)}</td><td>${date(c.expires_at)}</td><td><${Money} micros=${c.earned_micros} currency=${c.currency} /></td></tr>`)} />`}
    </section>
    <section aria-labelledby="ref-h">
      <h2 id="ref-h">${t('dash.referrals')}</h2>
      ${network.data ? html`<p>${t('dash.referrals_summary', { direct: network.data.direct, total: network.data.total })} <a href="/referrals">${t('dash.referrals_link')}</a></p>` : html`<${Loading} />`}
    </section>
  </${Page}>`;
}

// ---- buy ----

/** The ways to pay: the gateways of GET /api/payment-methods (name,
 * display_name, kind, currencies), in the server's order. */
export async function paymentMethods() {
  const r = await get('/api/payment-methods');
  return r.methods.map((m) => ({ ...m, label: m.display_name || m.name }));
}

/** Whether a method takes the package's currency. */
const takes = (m, currency) => m.any_currency || !m.currencies || !m.currencies.length || m.currencies.includes(currency);

function methodNote(m) {
  const kind = t('pay.kind.' + (['card', 'crypto', 'wallet'].includes(m.kind) ? m.kind : 'card'));
  const cur = m.any_currency || !m.currencies || !m.currencies.length ? t('pay.any_currency') : m.currencies.join(', ');
  return t('pay.note', { kind, currencies: cur }) + (m.sandbox ? ' · ' + t('pay.sandbox') : '');
}

export function BuyList() {
  const { data, error, loading } = useLoad(() => get('/api/packages'));
  return html`<${Page} title=${t('buy.title')}>
    ${loading ? html`<${Loading} />` : error ? html`<${ErrorBox} error=${error} />` : html`
      <div class="grid packages">${data.packages.map((p) => html`<${PackageCard} key=${p.id} p=${p}
        action=${html`<a class="btn" href=${'/buy/' + p.id} aria-label=${t('pkg.buy_named', { name: p.name })}>${t('pkg.buy')}</a>`} />`)}</div>`}
  </${Page}>`;
}

export function Buy({ params }) {
  const user = useUser();
  const pkg = useLoad(() => get('/api/packages/' + params.id), [params.id]);
  const [methods, setMethods] = useState([]);
  const [how, setHow] = useState(null);
  const [methodsError, setMethodsError] = useState(null);
  useEffect(() => {
    paymentMethods().then((m) => { setMethods(m); }, setMethodsError);
  }, []);
  const usable = pkg.data ? methods.filter((m) => takes(m, pkg.data.package.currency)) : [];
  useEffect(() => { if (!how && usable.length) setHow(usable[0].name); }, [usable.length]);
  const f = useSubmit(async () => {
    const p = pkg.data.package;
    const body = how === 'balance' ? { package_id: p.id, pay_from_balance: true } : { package_id: p.id, gateway: how };
    const r = await post('/api/orders', body);
    if (r.checkout_url) {
      sessionStorage.setItem('dm_return_order', String(r.order.id));
      location.assign(r.checkout_url);
      return;
    }
    navigate('/orders/' + r.order.id);
  });
  if (pkg.loading) return html`<${Page} title=${t('buy.title')}><${Loading} /></${Page}>`;
  if (pkg.error) return html`<${Page} title=${t('buy.title')}><${ErrorBox} error=${pkg.error} /></${Page}>`;
  const p = pkg.data.package;
  const enough = BigInt(user.balance_micros) >= BigInt(p.price_micros);
  return html`<${Page} title=${t('buy.title_named', { name: p.name })}>
    <div class="split">
      <${PackageCard} p=${p} />
      <form class="form" onSubmit=${f.submit}>
        <fieldset>
          <legend>${t('buy.how')}</legend>
          ${methods.map((m) => { const ok = takes(m, p.currency); return html`<div class="radio"><input type="radio" name="how" id=${'how-' + m.name} value=${m.name} checked=${how === m.name} disabled=${!ok} onChange=${() => setHow(m.name)} aria-describedby=${'how-' + m.name + '-note'} />
            <label for=${'how-' + m.name}>${m.label}</label>
            <p class="hint" id=${'how-' + m.name + '-note'}>${ok ? methodNote(m) : t('pay.not_currency', { currency: p.currency })}</p></div>`; })}
          ${methodsError ? html`<${ErrorBox} error=${methodsError} />` : !methods.length ? html`<p class="hint">${t('pay.none')}</p>` : null}
          <div class="radio"><input type="radio" name="how" id="how-balance" value="balance" checked=${how === 'balance'} disabled=${!enough} onChange=${() => setHow('balance')} />
            <label for="how-balance">${t('buy.from_balance', { balance: money(user.balance_micros, user.currency) })}</label></div>
          ${enough ? null : html`<p class="hint">${t('buy.balance_short', { balance: money(user.balance_micros, user.currency), price: money(p.price_micros, p.currency) })}</p>`}
        </fieldset>
        <p>${t('buy.you_pay', { price: money(p.price_micros, p.currency) })}</p>
        <p class="muted">${yieldText(p)}</p>
        <${ErrorBox} error=${f.error} />
        <button class="btn" type="submit" disabled=${f.busy || p.sold_out || !how}>${how === 'balance' ? t('buy.pay_balance') : t('buy.go_checkout')}</button>
      </form>
    </div>
  </${Page}>`;
}

const FINAL = new Set(['paid', 'failed', 'expired', 'needs_review', 'refunded']);

export function Order({ params }) {
  const [order, setOrder] = useState(null);
  const [error, setError] = useState(null);
  const [contract, setContract] = useState(null);
  useEffect(() => {
    let timer = null;
    let stop = false;
    let delay = 1000;
    const poll = async () => {
      try {
        const { order: o } = await get('/api/orders/' + params.id);
        if (stop) return;
        setOrder(o);
        if (o.status === 'paid') {
          const { contracts } = await get('/api/contracts?limit=200');
          setContract(contracts.find((c) => c.order_id === o.id) || null);
          reloadUser();
        }
        if (!FINAL.has(o.status)) timer = setTimeout(poll, delay = Math.min(delay * 1.5, 10000));
      } catch (e) {
        if (!stop) setError(e);
      }
    };
    poll();
    return () => { stop = true; clearTimeout(timer); };
  }, [params.id]);
  return html`<${Page} title=${t('order.title', { id: params.id })}>
    <${ErrorBox} error=${error} />
    ${!order && !error ? html`<${Loading} />` : null}
    ${order ? html`
      <div aria-live="polite">
        <${Alert} kind=${order.status === 'paid' ? 'success' : order.status === 'pending' ? 'info' : 'error'}>${t('order.says_' + order.status)}</${Alert}>
      </div>
      <dl class="facts wide">
        <div><dt>${t('col.status')}</dt><dd><${Status} value=${order.status} /></dd></div>
        <div><dt>${t('col.amount')}</dt><dd><${Money} micros=${order.amount_micros} currency=${order.currency} /></dd></div>
        <div><dt>${t('order.paid_with')}</dt><dd>${order.gateway === 'balance' ? t('order.balance') : order.gateway}</dd></div>
        <div><dt>${t('col.created')}</dt><dd>${dateTime(order.created_at)}</dd></div>
        ${order.paid_at ? html`<div><dt>${t('order.paid_at')}</dt><dd>${dateTime(order.paid_at)}</dd></div>` : null}
      </dl>
      ${order.status === 'pending' && order.checkout_url ? html`<p><a class="btn" href=${order.checkout_url}>${t('order.continue')}</a></p>` : null}
      ${contract ? html`<p><a class="btn" href=${'/contracts/' + contract.id}>${t('order.see_contract')}</a></p>` : null}
      <p><a href="/orders">${t('order.all')}</a></p>` : null}
  </${Page}>`;
}

export function Orders() {
  const paged = usePaged((c) => get('/api/orders' + qs({ cursor: c, limit: 20 })), 'orders');
  return html`<${Page} title=${t('orders.title')}>
    ${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
      <${Table} caption=${t('orders.title')} head=${[t('col.order'), t('col.created'), t('col.amount'), t('col.status')]}
        rows=${paged.items.map((o) => html`<tr><td><a href=${'/orders/' + o.id}>#${o.id}</a></td><td>${dateTime(o.created_at)}</td><td><${Money} micros=${o.amount_micros} currency=${o.currency} /></td><td><${Status} value=${o.status} /></td></tr>`)} />
      <${Pager} paged=${paged} />`}
  </${Page}>`;
}

// ---- contracts ----

export function Contracts() {
  const paged = usePaged((c) => get('/api/contracts' + qs({ cursor: c, limit: 20 })), 'contracts');
  return html`<${Page} title=${t('contracts.title')}>
    ${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
      <${Table} caption=${t('contracts.title')} empty=${t('dash.no_contracts')}
        head=${[t('col.contract'), t('pkg.hashrate'), t('col.started'), t('col.expires'), t('col.status'), t('col.earned')]}
        rows=${paged.items.map((c) => html`<tr><td><a href=${'/contracts/' + c.id}>${c.name}</a></td><td>${ths(c.hashrate_ths)}</td><td>${date(c.started_at)}</td><td>${date(c.expires_at)}</td><td><${Status} value=${c.status} /></td><td><${Money} micros=${c.earned_micros} currency=${c.currency} /></td></tr>`)} />
      <${Pager} paged=${paged} />`}
  </${Page}>`;
}

export function Contract({ params }) {
  const { data, error, loading } = useLoad(() => get(`/api/contracts/${params.id}/statement`), [params.id]);
  if (loading) return html`<${Page} title=${t('contract.title', { id: params.id })}><${Loading} /></${Page}>`;
  if (error) return html`<${Page} title=${t('contract.title', { id: params.id })}><${ErrorBox} error=${error} /></${Page}>`;
  const c = data.contract;
  const pool = c.yield_mode === 'pool';
  return html`<${Page} title=${c.name}>
    <dl class="facts wide">
      <div><dt>${t('col.status')}</dt><dd><${Status} value=${c.status} /></dd></div>
      <div><dt>${t('pkg.hashrate')}</dt><dd>${ths(c.hashrate_ths)}</dd></div>
      <div><dt>${t('col.started')}</dt><dd>${dateTime(c.started_at)}</dd></div>
      <div><dt>${t('col.expires')}</dt><dd>${dateTime(c.expires_at)}</dd></div>
      <div><dt>${t('contract.yield')}</dt><dd>${yieldText(c)}</dd></div>
      ${pool ? html`<div><dt>${t('contract.fee')}</dt><dd>${bp(c.fee_bp)}</dd></div>` : null}
      <div><dt>${t('col.earned')}</dt><dd><${Money} micros=${c.earned_micros} currency=${c.currency} /></dd></div>
    </dl>
    ${data.days.length ? html`<${BarChart} title=${t('contract.chart')} labels=${data.days.map((d) => shortDay(d.day))}
      series=${[{ label: t('dash.credited'), values: data.days.map((d) => d.credit_micros / 1e6) }]} yFormat=${axisMoney} />` : null}
    <h2>${t('contract.statement')}</h2>
    <${Table} caption=${t('contract.statement')} empty=${t('contract.no_days')}
      head=${[t('col.day'), t('pkg.hashrate'), t('contract.hash_seconds'), ...(pool ? [t('contract.pool_share'), t('contract.fee_taken')] : []), t('contract.credit')]}
      rows=${data.days.map((d) => html`<tr><td>${day(d.day)}</td><td>${ths(d.hashrate_ths)}</td><td>${num(d.hash_seconds)}</td>
        ${pool ? html`<td><${Money} micros=${d.pool_share_micros} currency=${c.currency} /></td><td><${Money} micros=${d.fee_micros} currency=${c.currency} /></td>` : null}
        <td><${Money} micros=${d.credit_micros} currency=${c.currency} /></td></tr>`)} />
  </${Page}>`;
}

// ---- wallet ----

export function Wallet() {
  const user = useUser();
  const paged = usePaged((c) => get('/api/ledger' + qs({ cursor: c, limit: 25 })), 'transfers');
  return html`<${Page} title=${t('wallet.title')}>
    <section class="stats">
      <${Stat} label=${t('dash.available')}><${Money} micros=${user.balance_micros} currency=${user.currency} /></${Stat}>
      <${Stat} label=${t('dash.held')}><${Money} micros=${user.held_micros ?? 0} currency=${user.currency} /></${Stat}>
    </section>
    <h2>${t('wallet.statement')}</h2>
    ${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
      <${Table} caption=${t('wallet.statement')} empty=${t('wallet.empty')}
        head=${[t('col.date'), t('col.what'), t('col.account'), t('col.reference'), t('col.amount')]}
        rows=${paged.items.map((x) => html`<tr><td>${dateTime(x.created_at)}</td><td>${t('kind.' + x.kind)}</td><td>${t('account.' + x.account)}</td><td>${x.reference || '—'}</td>
          <td class=${'num ' + (x.amount_micros < 0 ? 'neg' : 'pos')}><${Money} micros=${x.amount_micros} currency=${x.currency} /></td></tr>`)} />
      <${Pager} paged=${paged} />`}
  </${Page}>`;
}

// ---- referrals ----

function CopyLink({ link }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(link);
    } catch {
      const el = document.getElementById('ref-link');
      el.select();
      document.execCommand('copy');
    }
    setCopied(true);
    setTimeout(() => setCopied(false), 3000);
  };
  return html`<div class="copy">
    <label for="ref-link">${t('ref.your_link')}</label>
    <div class="copy-row"><input id="ref-link" readonly value=${link} onFocus=${(e) => e.target.select()} />
      <button class="btn" type="button" onClick=${copy}>${t('ref.copy')}</button></div>
    <p class="hint" role="status">${copied ? t('ref.copied') : ''}</p>
  </div>`;
}

function LevelMembers({ level }) {
  const paged = usePaged((c) => get('/api/referrals' + qs({ level, cursor: c, limit: 20 })), 'referrals', [level]);
  return html`${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
    <${Table} caption=${t('ref.members_level', { n: level })} empty=${t('ref.no_members')}
      head=${[t('field.email'), t('col.joined'), t('col.vip')]}
      rows=${paged.items.map((m) => html`<tr><td>${m.email}</td><td>${date(m.joined_at)}</td><td>${m.vip_level}</td></tr>`)} />
    <${Pager} paged=${paged} />`}`;
}

export function Referrals() {
  const user = useUser();
  const network = useLoad(() => get('/api/referrals/network'));
  const comm = usePaged((c) => get('/api/referrals/commissions' + qs({ cursor: c, limit: 50 })), 'commissions');
  const [level, setLevel] = useState(1);
  const link = `${location.origin}/register?ref=${encodeURIComponent(user.referral_code)}`;
  const sums = (status) => sumMicros(comm.items.filter((c) => c.status === status).map((c) => c.amount_micros));
  return html`<${Page} title=${t('ref.title')}>
    <section class="split">
      <div>
        <${CopyLink} link=${link} />
        <p>${t('ref.code', { code: user.referral_code })}</p>
      </div>
      <div class="qr-box"><${QrCode} text=${link} label=${t('ref.qr_label')} /></div>
    </section>
    <section aria-labelledby="net-h">
      <h2 id="net-h">${t('ref.network')}</h2>
      ${network.data ? html`
        <p>${t('dash.referrals_summary', { direct: network.data.direct, total: network.data.total })}</p>
        <${BarChart} title=${t('ref.per_level')} height=${180}
          labels=${network.data.levels.map((_, i) => String(i + 1))}
          series=${[{ label: t('ref.members'), values: network.data.levels }]} yFormat=${(v) => (Number.isInteger(v) ? num(v) : '')}
          table=${network.data.levels.map((n, i) => [t('ref.level', { n: i + 1 }), num(n)])} />` : html`<${Loading} />`}
    </section>
    <section aria-labelledby="lvl-h">
      <h2 id="lvl-h">${t('ref.members_title')}</h2>
      <div class="field inline"><label for="level">${t('ref.level_pick')}</label>
        <select id="level" value=${level} onChange=${(e) => setLevel(Number(e.target.value))}>
          ${Array.from({ length: 10 }, (_, i) => html`<option value=${i + 1}>${t('ref.level', { n: i + 1 })}${network.data ? ` (${network.data.levels[i]})` : ''}</option>`)}
        </select></div>
      <${LevelMembers} level=${level} />
    </section>
    <section aria-labelledby="com-h">
      <h2 id="com-h">${t('ref.commissions')}</h2>
      <div class="stats">
        <${Stat} label=${t('ref.held_now')} note=${t('dash.held_note')}><${Money} micros=${user.held_micros ?? 0} currency=${user.currency} /></${Stat}>
        <${Stat} label=${t('ref.released_page')}>${money(sums('available'))}</${Stat}>
      </div>
      ${comm.loading && !comm.data ? html`<${Loading} />` : html`<${ErrorBox} error=${comm.error} />
        <${Table} caption=${t('ref.commissions')} empty=${t('ref.no_commissions')}
          head=${[t('col.date'), t('ref.from'), t('ref.depth'), t('ref.rate'), t('col.status'), t('ref.release'), t('col.amount')]}
          rows=${comm.items.map((c) => html`<tr><td>${date(c.created_at)}</td><td>${c.source_email}</td><td>${c.depth}</td><td>${bp(c.rate_bp)}</td>
            <td><${Status} value=${c.status} /></td><td>${c.status === 'held' ? date(c.release_at) : '—'}</td><td><${Money} micros=${c.amount_micros} currency=${c.currency} /></td></tr>`)} />
        <${Pager} paged=${comm} />`}
    </section>
  </${Page}>`;
}

// ---- withdrawals ----

const NETWORKS = ['trc20', 'erc20', 'btc'];

/** "in 5 hours" until an address is usable, by the browser's clock; null
 * once the time has passed. */
function until(at) {
  const sec = Math.round((Date.parse(at) - Date.now()) / 1000);
  if (!(sec > 0)) return null;
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  return sec >= 3600 ? rtf.format(Math.round(sec / 3600), 'hour') : rtf.format(Math.max(1, Math.round(sec / 60)), 'minute');
}

function addressState(a) {
  if (a.usable) return html`<span class="badge badge-approved">${t('addr.ready')}</span>`;
  if (a.status === 'pending') return html`<span class="badge badge-pending">${t('addr.unconfirmed')}</span>`;
  const rel = until(a.usable_at);
  return html`<span class="badge badge-waiting">${t('addr.waiting')}</span> <span class="hint">${t('addr.usable_from', { at: dateTime(a.usable_at) })}${rel ? ' (' + rel + ')' : ''}</span>`;
}

function AddressBook({ book }) {
  const [address, setAddress] = useState('');
  const [network, setNetwork] = useState('');
  const [label, setLabel] = useState('');
  const [added, setAdded] = useState(null);
  const [removed, setRemoved] = useState(null);
  const add = useSubmit(async () => {
    setRemoved(null);
    const body = { address: address.trim() };
    if (network) body.network = network;
    if (label.trim()) body.label = label.trim();
    const r = await post('/api/me/addresses', body);
    setAdded(r.address);
    setAddress('');
    setLabel('');
    setNetwork('');
    book.reload();
  });
  const [rmError, setRmError] = useState(null);
  const remove = async (a) => {
    setRmError(null);
    setAdded(null);
    try {
      await del('/api/me/addresses/' + a.id);
      setRemoved(a);
      book.reload();
    } catch (e) {
      setRmError(e);
    }
  };
  const items = book.data ? book.data.addresses : [];
  return html`<div>
    <p>${t('addr.explain')}</p>
    ${removed ? html`<${Alert} kind="success">${t('addr.removed', { address: removed.address })}</${Alert}>` : null}
    <${ErrorBox} error=${rmError} />
    ${book.loading && !book.data ? html`<${Loading} />` : book.error ? html`<${ErrorBox} error=${book.error} />` : html`
      <${Table} caption=${t('addr.title')} empty=${t('addr.none')}
        head=${[t('addr.label'), t('wd.destination'), t('wd.network'), t('col.status'), '']}
        rows=${items.map((a) => html`<tr><td>${a.label || '—'}</td><td class="mono">${a.address}</td><td>${t('net.' + a.network)}</td>
          <td>${addressState(a)}</td>
          <td><button class="btn btn-secondary" type="button" onClick=${() => remove(a)} aria-label=${t('addr.remove_named', { address: a.address })}>${t('addr.remove')}</button></td></tr>`)} />`}
    <form class="form narrow" onSubmit=${add.submit} novalidate>
      <h3>${t('addr.add')}</h3>
      ${added ? html`<${Alert} kind="success">${t('addr.added', { address: added.address })}</${Alert}>` : null}
      ${add.error && !['address', 'network', 'label'].includes(add.error.field) ? html`<${ErrorBox} error=${add.error} />` : null}
      <${Field} label=${t('wd.destination')} autocomplete="off" spellcheck=${false} value=${address} onInput=${setAddress} required
        hint=${t('wd.destination_hint')} error=${fieldError(add.error, 'address')} />
      <${Field} label=${t('wd.network')} error=${fieldError(add.error, 'network')}>${({ id }) => html`<select id=${id} value=${network} onChange=${(e) => setNetwork(e.target.value)}>
        <option value="">${t('addr.network_auto')}</option>
        ${NETWORKS.map((n) => html`<option value=${n}>${t('net.' + n)}</option>`)}</select>`}</${Field}>
      <${Field} label=${t('addr.label_optional')} value=${label} onInput=${setLabel} maxlength="64" error=${fieldError(add.error, 'label')} />
      <button class="btn btn-secondary" type="submit" disabled=${add.busy}>${t('addr.add_submit')}</button>
    </form>
  </div>`;
}

export function Withdrawals() {
  const user = useUser();
  const paged = usePaged((c) => get('/api/withdrawals' + qs({ cursor: c, limit: 20 })), 'withdrawals');
  const book = useLoad(() => get('/api/me/addresses'));
  const twofa = useLoad(() => get('/api/me/2fa'));
  const [amount, setAmount] = useState('');
  const [to, setTo] = useState('');
  const [code, setCode] = useState('');
  const [done, setDone] = useState(null);
  const usable = book.data ? book.data.addresses.filter((a) => a.usable) : [];
  const needCode = !!(twofa.data && twofa.data.two_factor.enabled);
  const chosen = to || (usable[0] ? String(usable[0].id) : '');
  const f = useSubmit(async () => {
    const micros = parseMoney(amount);
    if (micros === null || micros <= 0) throw new ApiError(400, { code: 'invalid', field: 'amount_micros', message: t('wd.bad_amount') });
    const body = { amount_micros: micros, address_id: Number(chosen) };
    if (needCode) body.code = code.trim();
    const { withdrawal } = await post('/api/withdrawals', body);
    setDone(withdrawal);
    setAmount('');
    setCode('');
    paged.reset();
    paged.reload();
    reloadUser();
  });
  const blocked = !user.email_verified ? t('wd.need_verified') : user.kyc_status !== 'approved' ? t('wd.need_kyc', { status: t('kyc.' + user.kyc_status) }) : null;
  const formFields = new Set(['amount_micros', 'address_id', 'destination', 'code']);
  return html`<${Page} title=${t('wd.title')}>
    <section class="stats"><${Stat} label=${t('dash.available')}><${Money} micros=${user.balance_micros} currency=${user.currency} /></${Stat}></section>
    <h2>${t('wd.request')}</h2>
    ${blocked ? html`<${Alert} kind="info">${blocked}${user.email_verified ? html` <a href="/kyc">${t('wd.kyc_link')}</a>` : null}</${Alert}>`
      : book.loading && !book.data ? html`<${Loading} />`
      : !usable.length ? html`<${Alert} kind="info">${t('wd.no_usable')}</${Alert}>` : html`
      <form class="form narrow" onSubmit=${f.submit} novalidate>
        ${done ? html`<${Alert} kind="success">${t('wd.requested', { amount: money(done.amount_micros, done.currency) })}</${Alert}>` : null}
        ${f.error && !formFields.has(f.error.field) ? html`<${ErrorBox} error=${f.error} />` : null}
        <${Field} label=${t('wd.amount', { currency: user.currency })} inputmode="decimal" value=${amount} onInput=${setAmount} required error=${fieldError(f.error, 'amount_micros')} />
        <${Field} label=${t('wd.to')} error=${fieldError(f.error, 'address_id') || fieldError(f.error, 'destination')}>${({ id }) => html`<select id=${id} value=${chosen} onChange=${(e) => setTo(e.target.value)}>
          ${usable.map((a) => html`<option value=${String(a.id)}>${(a.label ? a.label + ' — ' : '') + a.address + ' (' + t('net.' + a.network) + ')'}</option>`)}</select>`}</${Field}>
        ${needCode ? html`<${Field} label=${t('twofa.code')} autocomplete="one-time-code" spellcheck=${false} value=${code} onInput=${setCode} required
          hint=${t('wd.code_hint')} error=${fieldError(f.error, 'code')} />` : null}
        <button class="btn" type="submit" disabled=${f.busy}>${t('wd.submit')}</button>
      </form>`}
    <h2 id="addr-h">${t('addr.title')}</h2>
    <${AddressBook} book=${book} />
    <h2>${t('wd.history')}</h2>
    ${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
      <${Table} caption=${t('wd.history')} empty=${t('wd.none')}
        head=${[t('col.date'), t('col.amount'), t('wd.network'), t('wd.destination'), t('col.status'), t('wd.detail')]}
        rows=${paged.items.map((w) => html`<tr><td>${dateTime(w.requested_at)}</td><td><${Money} micros=${w.amount_micros} currency=${w.currency} /></td>
          <td>${t('net.' + w.network)}</td><td class="mono">${w.destination}</td><td><${Status} value=${w.status} /></td><td class="mono">${w.txid || w.reason || '—'}</td></tr>`)} />
      <${Pager} paged=${paged} />`}
  </${Page}>`;
}

// ---- settings ----

export function Settings() {
  const user = useUser();
  const prefs = useLoad(() => get('/api/me/email-preferences'));
  const [saved, setSaved] = useState(false);
  const [resetSent, setResetSent] = useState(false);
  const save = useSubmit(async () => {
    const next = !prefs.data.email_preferences.commission_digest;
    await put('/api/me/email-preferences', { commission_digest: next });
    await prefs.reload();
    setSaved(true);
  });
  const reset = useSubmit(async () => {
    await post('/api/auth/password-reset', { email: user.email });
    setResetSent(true);
  });
  return html`<${Page} title=${t('settings.title')}>
    <section aria-labelledby="acc-h">
      <h2 id="acc-h">${t('settings.account')}</h2>
      <dl class="facts wide">
        <div><dt>${t('field.email')}</dt><dd>${user.email} ${user.email_verified ? html`<${Status} value="verified" />` : html`<${Status} value="unverified" />`}</dd></div>
        <div><dt>${t('settings.kyc')}</dt><dd>${t('kyc.' + user.kyc_status)} <a href="/kyc">${t('settings.kyc_link')}</a></dd></div>
        <div><dt>${t('col.vip')}</dt><dd>${user.vip_level}</dd></div>
        <div><dt>${t('settings.member_since')}</dt><dd>${date(user.created_at)}</dd></div>
        <div><dt>${t('settings.terms')}</dt><dd>${user.terms_version || '—'}</dd></div>
      </dl>
    </section>
    <section aria-labelledby="mail-h">
      <h2 id="mail-h">${t('settings.email')}</h2>
      ${prefs.loading && !prefs.data ? html`<${Loading} />` : prefs.error ? html`<${ErrorBox} error=${prefs.error} />` : html`
        <div class="check">
          <input type="checkbox" id="digest" checked=${prefs.data.email_preferences.commission_digest} onChange=${save.submit} disabled=${save.busy} />
          <label for="digest">${t('settings.digest')}</label>
        </div>
        <p class="hint">${t('settings.transactional')}</p>
        <${ErrorBox} error=${save.error} />
        <p role="status" class="hint">${saved ? t('settings.saved') : ''}</p>`}
    </section>
    <section aria-labelledby="pw-h">
      <h2 id="pw-h">${t('settings.password')}</h2>
      <p>${t('settings.password_explain')}</p>
      ${resetSent ? html`<${Alert} kind="success">${t('settings.reset_sent', { email: user.email })}</${Alert}>`
        : html`<button class="btn btn-secondary" type="button" onClick=${reset.submit} disabled=${reset.busy}>${t('settings.send_reset')}</button>`}
      <${ErrorBox} error=${reset.error} />
    </section>
    <section aria-labelledby="sec-h">
      <h2 id="sec-h">${t('settings.security')}</h2>
      <p>${t('settings.security_text')} <a href="/security">${t('settings.security_link')}</a></p>
    </section>
    <${YourData} />
  </${Page}>`;
}

// Members' data (docs/api.md /api/me/export, /api/me/delete): the export
// is a download the session cookie authorises; the erasure is asked for
// here and confirmed by the e-mailed link (/confirm-erasure).
function YourData() {
  const state = useLoad(() => get('/api/me/delete'));
  const [asked, setAsked] = useState(false);
  const ask = useSubmit(async () => {
    await post('/api/me/delete', {});
    setAsked(true);
    await state.reload();
  });
  const cancel = useSubmit(async () => {
    await del('/api/me/delete');
    setAsked(false);
    await state.reload();
  });
  const x = state.data && state.data.erasure;
  const open = x && (x.status === 'unconfirmed' || x.status === 'scheduled');
  return html`<section aria-labelledby="data-h">
    <h2 id="data-h">${t('settings.data')}</h2>
    <p>${t('settings.export_text')}</p>
    <p><a class="btn btn-secondary" href="/api/me/export" download>${t('settings.export')}</a></p>
    <h3>${t('settings.erase')}</h3>
    ${state.loading && !state.data ? html`<${Loading} />` : state.error ? html`<${ErrorBox} error=${state.error} />` : html`
      ${open && x.status === 'scheduled' ? html`<${Alert} kind="info">${t('settings.erase_scheduled', { due: dateTime(x.due_at) })}</${Alert}>` : null}
      ${open && x.status === 'unconfirmed' ? html`<${Alert} kind="info">${t(asked ? 'settings.erase_asked' : 'settings.erase_unconfirmed')}</${Alert}>` : null}
      ${!open && state.data.blockers && state.data.blockers.length ? html`<ul class="hint">${state.data.blockers.map((b) => html`<li>${b}</li>`)}</ul>` : null}
      <p>${t('settings.erase_text')}</p>
      ${open ? html`<button class="btn btn-secondary" type="button" onClick=${cancel.submit} disabled=${cancel.busy}>${t('settings.erase_cancel')}</button>`
        : html`<button class="btn btn-danger" type="button" onClick=${ask.submit} disabled=${ask.busy}>${t('settings.erase_ask')}</button>`}
      <${ErrorBox} error=${ask.error || cancel.error} />`}
  </section>`;
}
