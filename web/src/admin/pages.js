// The staff console's pages, one per area of /api/admin/ (docs/api.md).
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, api, get, patch, post, put, qs } from '../lib/api.js';
import { BarChart } from '../lib/chart.js';
import { bp, dateTime, microsToDecimal, money, num, parseMoney, ths } from '../lib/format.js';

const plainMoney = (m) => microsToDecimal(m).replace(/\.?0+$/, '');
import { t } from '../lib/i18n.js';
import { navigate } from '../lib/router.js';
import { Alert, ErrorBox, Field, html, Loading, Money, Page, Pager, Stat, Status, Table, fieldError, useLoad, usePaged, useSubmit } from '../lib/ui.js';

const can = (staff, ...roles) => staff.role === 'owner' || roles.includes(staff.role);

/** A filter bar whose values live in the page's query string. */
function useQueryState(query, names) {
  const values = Object.fromEntries(names.map((n) => [n, query.get(n) || '']));
  const set = (changes) => navigate(location.pathname + qs({ ...values, ...changes }), { replace: true });
  return [values, set];
}

function StatusFilter({ label, value, options, onChange }) {
  return html`<div class="field"><label for="status-filter">${label}</label>
    <select id="status-filter" value=${value} onChange=${(e) => onChange(e.target.value)}>
      <option value="">${t('admin.all')}</option>
      ${options.map((o) => html`<option value=${o}>${t('status.' + o)}</option>`)}
    </select></div>`;
}

function Done({ message }) {
  return message ? html`<${Alert} kind="success">${message}</${Alert}>` : null;
}

export function NotFound() {
  return html`<${Page} title=${t('notfound.title')}><p>${t('notfound.text')}</p></${Page}>`;
}

export function NotAllowed() {
  return html`<${Page} title=${t('admin.not_allowed')}><p>${t('admin.not_allowed_text')}</p></${Page}>`;
}

// ---- overview ----

export function Overview({ staff }) {
  const health = useLoad(() => get('/api/admin/health'));
  const capacity = useLoad(() => (can(staff, 'finance') ? get('/api/admin/capacity') : null));
  const h = health.data;
  return html`<${Page} title=${t('admin.nav.overview')}>
    ${health.loading ? html`<${Loading} />` : health.error ? html`<${ErrorBox} error=${health.error} />` : html`
      <section class="stats" aria-label=${t('admin.health')}>
        <${Stat} label=${t('admin.platform')}><${Status} value=${h.status === 'ok' ? 'ok' : 'failed'} /></${Stat}>
        <${Stat} label=${t('admin.database')}>${h.database}</${Stat}>
        <${Stat} label=${t('admin.version')}>${h.version} (${t('admin.schema', { n: h.schema })})</${Stat}>
        ${h.cron ? html`<${Stat} label=${t('admin.cron')}>${h.cron.status}</${Stat}>` : null}
      </section>
      ${h.mail ? html`<section aria-labelledby="mail-h"><h2 id="mail-h">${t('admin.mail_24h')}</h2>
        <${BarChart} title=${t('admin.mail_24h')} height=${160}
          labels=${['sent', 'failed', 'suppressed', 'delivered', 'bounced', 'complained', 'queued'].map((k) => t('admin.mail.' + k))}
          series=${[{ label: t('admin.messages'), values: ['sent', 'failed', 'suppressed', 'delivered', 'bounced', 'complained', 'queued'].map((k) => h.mail[k] || 0) }]}
          yFormat=${(v) => (Number.isInteger(v) ? num(v) : '')}
          table=${['sent', 'failed', 'suppressed', 'delivered', 'bounced', 'complained', 'queued'].map((k) => [t('admin.mail.' + k), num(h.mail[k] || 0)])} />
      </section>` : null}`}
    ${capacity.data ? html`<section aria-labelledby="cap-h"><h2 id="cap-h">${t('admin.capacity')}</h2>
      <${BarChart} title=${t('admin.capacity_chart')} height=${140}
        labels=${[t('admin.sold'), t('admin.available')]}
        series=${[{ label: 'TH/s', values: [capacity.data.sold_ths, capacity.data.available_ths] }]} yFormat=${(v) => num(v)}
        table=${[[t('admin.owned'), ths(capacity.data.capacity ? capacity.data.capacity.hashrate_ths : 0)], [t('admin.sold'), ths(capacity.data.sold_ths)], [t('admin.available'), ths(capacity.data.available_ths)]]} />
    </section>` : null}
    ${can(staff, 'finance') ? html`<p><a href="/admin/stats">${t('admin.stats_link')}</a></p>` : null}
  </${Page}>`;
}

// ---- statistics (GET /api/admin/stats) ----

/** A CSV export of a list, with the list's current filters: a plain link
 * (the dm_admin cookie goes with it; the server answers an attachment). */
function ExportLink({ name, filters = {} }) {
  return html`<a class="btn btn-secondary" href=${'/api/admin/export/' + name + '.csv' + qs(filters)} download=${name + '.csv'}>${t('admin.export_csv')}</a>`;
}

// micros -> a plain number for drawing only (axis and bar heights); every
// figure shown as text comes from money() on the integer micros.
const drawMicros = (m) => Number(microsToDecimal(m));

export function Stats({ query }) {
  const [f, setF] = useQueryState(query, ['days', 'bucket']);
  const days = f.days || '90';
  const bucket = f.bucket || 'day';
  const { data, error, loading } = useLoad(() => get('/api/admin/stats' + qs({ days, bucket })), [days, bucket]);
  const charts = [];
  if (data) {
    const labels = data.buckets.map((d) => d.slice(5));
    const count = (key, title) => charts.push(html`<${BarChart} title=${title} labels=${labels} height=${160}
      series=${[{ label: title, values: data[key] }]} yFormat=${(v) => (Number.isInteger(v) ? num(v) : '')}
      table=${data.buckets.map((d, i) => [d, num(data[key][i])])} />`);
    count('signups', t('admin.stats.signups'));
    count('orders_paid', t('admin.stats.orders'));
    for (const [cur, m] of Object.entries(data.currencies)) {
      const cash = (key, title) => charts.push(html`<${BarChart} title=${title + ' (' + cur + ')'} labels=${labels} height=${160}
        series=${[{ label: title, values: m[key].map(drawMicros) }]} yFormat=${(v) => num(v)}
        table=${data.buckets.map((d, i) => [d, money(m[key][i], cur)])} />`);
      cash('revenue_micros', t('admin.stats.revenue'));
      cash('commissions_micros', t('admin.stats.commissions'));
      charts.push(html`<${BarChart} title=${t('admin.stats.withdrawals') + ' (' + cur + ')'} labels=${labels} height=${160}
        series=${[{ label: t('admin.stats.wd_requested'), values: m.withdrawals_requested_micros.map(drawMicros) }, { label: t('admin.stats.wd_paid'), values: m.withdrawals_paid_micros.map(drawMicros) }]}
        yFormat=${(v) => num(v)}
        table=${data.buckets.map((d, i) => [d, t('admin.stats.wd_pair', { requested: money(m.withdrawals_requested_micros[i], cur), paid: money(m.withdrawals_paid_micros[i], cur) })])} />`);
    }
    count('contracts_active', t('admin.stats.active'));
    charts.push(html`<${BarChart} title=${t('admin.stats.hashpower')} labels=${labels} height=${160}
      series=${[{ label: t('admin.sold'), values: data.hashrate_sold_ghs.map((g) => g / 1000) }, { label: t('admin.owned'), values: data.capacity_ghs.map((g) => g / 1000) }]}
      yFormat=${(v) => num(v)}
      table=${data.buckets.map((d, i) => [d, t('admin.stats.sold_of', { sold: ths(data.hashrate_sold_ghs[i] / 1000), owned: ths(data.capacity_ghs[i] / 1000) })])} />`);
  }
  return html`<${Page} title=${t('admin.nav.stats')} wide>
    <div class="toolbar">
      <div class="field"><label for="stats-days">${t('admin.stats.range')}</label>
        <select id="stats-days" value=${days} onChange=${(e) => setF({ days: e.target.value })}>
          ${['7', '30', '90', '365'].map((d) => html`<option value=${d}>${t('admin.stats.days', { n: d })}</option>`)}</select></div>
      <div class="field"><label for="stats-bucket">${t('admin.stats.bucket')}</label>
        <select id="stats-bucket" value=${bucket} onChange=${(e) => setF({ bucket: e.target.value })}>
          ${['day', 'week', 'month'].map((b) => html`<option value=${b}>${t('admin.stats.by_' + b)}</option>`)}</select></div>
    </div>
    ${loading && !data ? html`<${Loading} />` : error ? html`<${ErrorBox} error=${error} />` : html`<div class="chart-grid" data-ready="stats">${charts}</div>`}
  </${Page}>`;
}

// ---- members ----

export function Users({ query }) {
  const [f, setF] = useQueryState(query, ['q', 'status']);
  const [q, setQ] = useState(f.q);
  const paged = usePaged((c) => get('/api/admin/users' + qs({ q: f.q, status: f.status, cursor: c, limit: 25 })), 'users', [f.q, f.status]);
  return html`<${Page} title=${t('admin.nav.users')}>
    <form class="toolbar" role="search" onSubmit=${(e) => { e.preventDefault(); setF({ q }); }}>
      <div class="field"><label for="user-q">${t('admin.search')}</label><input id="user-q" type="search" value=${q} onInput=${(e) => setQ(e.target.value)} /></div>
      <${StatusFilter} label=${t('col.status')} value=${f.status} options=${['active', 'suspended']} onChange=${(v) => setF({ status: v })} />
      <button class="btn" type="submit">${t('admin.search_go')}</button>
      <${ExportLink} name="users" filters=${{ q: f.q, status: f.status }} />
    </form>
    ${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
      <${Table} caption=${t('admin.nav.users')} head=${['#', t('field.email'), t('admin.code'), t('col.status'), t('col.vip'), t('settings.kyc'), t('col.joined')]}
        rows=${paged.items.map((u) => html`<tr><td>${u.id}</td><td><a href=${'/admin/users/' + u.id}>${u.email}</a></td><td class="mono">${u.referral_code}</td>
          <td><${Status} value=${u.status} /></td><td>${u.vip_level}</td><td>${t('kyc.' + u.kyc_status)}</td><td>${dateTime(u.created_at)}</td></tr>`)} />
      <${Pager} paged=${paged} />`}
  </${Page}>`;
}

export function UserDetail({ params, staff }) {
  const { data, error, loading, reload } = useLoad(() => get('/api/admin/users/' + params.id), [params.id]);
  const [done, setDone] = useState('');
  const [vip, setVip] = useState('');
  const act = useSubmit(async () => {});
  const run = (fn, msg) => async () => {
    setDone('');
    act.setError(null);
    try {
      await fn();
      await reload();
      setDone(msg);
    } catch (e) {
      act.setError(e);
    }
  };
  if (loading && !data) return html`<${Page} title=${t('admin.member', { id: params.id })}><${Loading} /></${Page}>`;
  if (error) return html`<${Page} title=${t('admin.member', { id: params.id })}><${ErrorBox} error=${error} /></${Page}>`;
  const u = data.user;
  return html`<${Page} title=${u.email}>
    <${Done} message=${done} /><${ErrorBox} error=${act.error} />
    <div class="split">
      <dl class="facts wide">
        <div><dt>#</dt><dd>${u.id}</dd></div>
        <div><dt>${t('col.status')}</dt><dd><${Status} value=${u.status} /></dd></div>
        <div><dt>${t('field.email')}</dt><dd>${u.email} <${Status} value=${u.email_verified ? 'verified' : 'unverified'} /></dd></div>
        <div><dt>${t('admin.code')}</dt><dd class="mono">${u.referral_code}</dd></div>
        <div><dt>${t('col.vip')}</dt><dd>${u.vip_level}</dd></div>
        <div><dt>${t('settings.kyc')}</dt><dd>${t('kyc.' + u.kyc_status)}</dd></div>
        <div><dt>${t('dash.available')}</dt><dd><${Money} micros=${u.balance_micros} currency=${u.currency} /></dd></div>
        <div><dt>${t('dash.held')}</dt><dd><${Money} micros=${u.held_micros ?? 0} currency=${u.currency} /></dd></div>
        <div><dt>${t('col.joined')}</dt><dd>${dateTime(u.created_at)}</dd></div>
        <div><dt>${t('settings.terms')}</dt><dd>${u.terms_version || '—'}</dd></div>
      </dl>
      <div>
        <h2>${t('admin.upline')}</h2>
        ${data.upline.length ? html`<ol class="upline">${data.upline.map((x) => html`<li><a href=${'/admin/users/' + x.id}>${x.email}</a> (${t('ref.level', { n: x.level })})</li>`)}</ol>` : html`<p class="muted">${t('admin.no_upline')}</p>`}
        <h2>${t('admin.downline')}</h2>
        <p>${t('admin.downline_summary', { direct: data.network.direct, total: data.network.total })}</p>
        <${BarChart} title=${t('ref.per_level')} height=${140} labels=${data.network.levels.map((_, i) => String(i + 1))}
          series=${[{ label: t('ref.members'), values: data.network.levels }]} yFormat=${(v) => (Number.isInteger(v) ? num(v) : '')}
          table=${data.network.levels.map((n, i) => [t('ref.level', { n: i + 1 }), num(n)])} />
      </div>
    </div>
    <h2 id="contracts-h">${t('admin.nav.contracts')}</h2>
    <${Table} caption=${t('admin.member_contracts')} head=${['#', t('col.contract'), t('pkg.hashrate'), t('col.status'), t('col.expires'), t('col.earned')]}
      empty=${t('admin.none_yet')}
      rows=${data.contracts.map((c) => html`<tr><td>${c.id}</td><td>${c.name}</td><td>${ths(c.hashrate_ths)}</td>
        <td><${Status} value=${c.status} /></td><td>${dateTime(c.expires_at)}</td><td><${Money} micros=${c.earned_micros} currency=${c.currency} /></td></tr>`)} />
    ${data.contracts_next_cursor ? html`<p><a href=${'/admin/contracts?user_id=' + u.id}>${t('admin.all_contracts')}</a></p>` : null}
    <h2 id="orders-h">${t('admin.nav.orders')}</h2>
    <${Table} caption=${t('admin.member_orders')} head=${['#', t('col.amount'), t('admin.gateway'), t('col.status'), t('col.created')]}
      empty=${t('admin.none_yet')}
      rows=${data.orders.map((o) => html`<tr><td>${o.id}</td><td><${Money} micros=${o.amount_micros} currency=${o.currency} /></td>
        <td>${o.gateway}</td><td><${Status} value=${o.status} /></td><td>${dateTime(o.created_at)}</td></tr>`)} />
    <h2>${t('admin.actions')}</h2>
    <div class="actions">
      ${can(staff, 'support') ? (u.status === 'active'
        ? html`<button class="btn btn-danger" type="button" onClick=${run(() => patch('/api/admin/users/' + u.id, { status: 'suspended' }), t('admin.suspended'))}>${t('admin.suspend')}</button>`
        : html`<button class="btn" type="button" onClick=${run(() => patch('/api/admin/users/' + u.id, { status: 'active' }), t('admin.unsuspended'))}>${t('admin.unsuspend')}</button>`) : null}
      ${can(staff, 'kyc') ? ['approved', 'rejected', 'pending', 'none'].filter((s) => s !== u.kyc_status).map((s) => html`
        <button class="btn btn-secondary" type="button" onClick=${run(() => patch(`/api/admin/users/${u.id}/kyc`, { status: s }), t('admin.kyc_set', { status: t('kyc.' + s) }))}>${t('admin.kyc_to', { status: t('kyc.' + s) })}</button>`) : null}
    </div>
    ${can(staff) ? html`<form class="toolbar" onSubmit=${(e) => { e.preventDefault(); run(() => patch(`/api/admin/users/${u.id}/vip`, { vip_level: Number(vip) }), t('admin.vip_set'))(); }}>
      <div class="field"><label for="vip">${t('admin.set_vip')}</label>
        <select id="vip" value=${vip || u.vip_level} onChange=${(e) => setVip(e.target.value)}>${Array.from({ length: 10 }, (_, i) => html`<option value=${i + 1}>${i + 1}</option>`)}</select></div>
      <button class="btn btn-secondary" type="submit">${t('admin.save')}</button>
    </form>` : null}
  </${Page}>`;
}

// ---- orders, contracts, transfers ----

export function Orders({ query, staff }) {
  const [f, setF] = useQueryState(query, ['status']);
  const paged = usePaged((c) => get('/api/admin/orders' + qs({ status: f.status, cursor: c, limit: 25 })), 'orders', [f.status]);
  const [done, setDone] = useState('');
  const [err, setErr] = useState(null);
  const refund = async (o) => {
    // What is left to refund (the API refunds all of it without an amount);
    // the reason is required and goes into the audit log.
    const left = o.amount_micros - (o.refunded_micros || 0);
    const reason = prompt(t('admin.refund_confirm', { id: o.id, amount: money(left, o.currency) }));
    if (reason === null) return;
    setDone('');
    setErr(null);
    if (!reason.trim()) {
      setErr(new Error(t('admin.refund_reason_needed')));
      return;
    }
    try {
      const r = await post(`/api/admin/orders/${o.id}/refund`, { reason: reason.trim() });
      setDone(r.refunded ? t('admin.refunded', { id: o.id }) : t('admin.refund_pending', { id: o.id }));
      paged.reload();
    } catch (e) {
      setErr(e);
    }
  };
  return html`<${Page} title=${t('admin.nav.orders')}>
    <div class="toolbar"><${StatusFilter} label=${t('col.status')} value=${f.status} options=${['pending', 'paid', 'failed', 'expired', 'needs_review', 'refunded']} onChange=${(v) => setF({ status: v })} />
      <${ExportLink} name="orders" filters=${{ status: f.status }} /></div>
    <${Done} message=${done} /><${ErrorBox} error=${err} />
    ${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
      <${Table} caption=${t('admin.nav.orders')} head=${['#', t('admin.member_col'), t('col.amount'), t('admin.gateway'), t('col.status'), t('col.created'), '']}
        rows=${paged.items.map((o) => html`<tr><td>${o.id}</td><td><a href=${'/admin/users/' + o.user_id}>#${o.user_id}</a></td><td><${Money} micros=${o.amount_micros} currency=${o.currency} /></td>
          <td>${o.gateway}</td><td><${Status} value=${o.status} /></td><td>${dateTime(o.created_at)}</td>
          <td>${o.status === 'paid' && can(staff, 'finance') ? html`<button class="btn btn-small btn-secondary" type="button" onClick=${() => refund(o)} aria-label=${t('admin.refund_named', { id: o.id })}>${t('admin.refund')}</button>` : null}</td></tr>`)} />
      <${Pager} paged=${paged} />`}
  </${Page}>`;
}

export function Contracts({ query }) {
  const [f, setF] = useQueryState(query, ['status', 'user_id']);
  const [user, setUser] = useState(f.user_id);
  const paged = usePaged((c) => get('/api/admin/contracts' + qs({ status: f.status, user_id: f.user_id, cursor: c, limit: 25 })), 'contracts', [f.status, f.user_id]);
  return html`<${Page} title=${t('admin.nav.contracts')}>
    <form class="toolbar" onSubmit=${(e) => { e.preventDefault(); setF({ user_id: user.trim() }); }}>
      <${StatusFilter} label=${t('col.status')} value=${f.status} options=${['active', 'ended', 'expired', 'refunded']} onChange=${(v) => setF({ status: v })} />
      <div class="field"><label for="contract-user">${t('admin.member_id')}</label><input id="contract-user" inputmode="numeric" value=${user} onInput=${(e) => setUser(e.target.value)} /></div>
      <button class="btn" type="submit">${t('admin.filter')}</button>
      <${ExportLink} name="contracts" filters=${{ status: f.status, user_id: f.user_id }} />
    </form>
    ${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
      <${Table} caption=${t('admin.nav.contracts')} head=${['#', t('admin.member_col'), t('col.contract'), t('pkg.hashrate'), t('col.status'), t('col.expires'), t('col.earned')]}
        rows=${paged.items.map((c) => html`<tr><td>${c.id}</td><td><a href=${'/admin/users/' + c.user_id}>#${c.user_id}</a></td><td>${c.name}</td><td>${ths(c.hashrate_ths)}</td>
          <td><${Status} value=${c.status} /></td><td>${dateTime(c.expires_at)}</td><td><${Money} micros=${c.earned_micros} currency=${c.currency} /></td></tr>`)} />
      <${Pager} paged=${paged} />`}
  </${Page}>`;
}

const accountName = (a) => (a.kind === 'system' ? a.code : `${t('account.' + a.kind)} #${a.user_id}`);

export function Transfers({ query }) {
  const [f, setF] = useQueryState(query, ['kind']);
  const paged = usePaged((c) => get('/api/admin/transfers' + qs({ kind: f.kind, cursor: c, limit: 25 })), 'transfers', [f.kind]);
  const kinds = ['adjustment', 'purchase', 'commission', 'commission_release', 'commission_clawback', 'yield', 'withdrawal', 'withdrawal_paid', 'withdrawal_rejected', 'refund', 'reversal'];
  return html`<${Page} title=${t('admin.nav.transfers')}>
    <div class="toolbar"><div class="field"><label for="kind">${t('col.what')}</label>
      <select id="kind" value=${f.kind} onChange=${(e) => setF({ kind: e.target.value })}><option value="">${t('admin.all')}</option>
      ${kinds.map((k) => html`<option value=${k}>${t('kind.' + k)}</option>`)}</select></div>
      <${ExportLink} name="transfers" filters=${{ kind: f.kind }} /></div>
    ${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
      <${Table} caption=${t('admin.nav.transfers')} head=${['#', t('col.what'), t('admin.debit'), t('admin.credit'), t('col.amount'), t('col.reference'), t('col.date')]}
        rows=${paged.items.map((x) => html`<tr><td>${x.id}</td><td>${t('kind.' + x.kind)}</td><td>${accountName(x.debit)}</td><td>${accountName(x.credit)}</td>
          <td class="num"><${Money} micros=${x.amount_micros} currency=${x.currency} /></td><td>${x.reference || '—'}</td><td>${dateTime(x.created_at)}</td></tr>`)} />
      <${Pager} paged=${paged} />`}
  </${Page}>`;
}

// ---- withdrawals ----

export function Withdrawals({ query }) {
  const [f, setF] = useQueryState(query, ['status']);
  const status = f.status || 'pending';
  const paged = usePaged((c) => get('/api/admin/withdrawals' + qs({ status, cursor: c, limit: 50 })), 'withdrawals', [status]);
  const [picked, setPicked] = useState({});
  const [txids, setTxids] = useState({});
  const [reason, setReason] = useState('');
  const [results, setResults] = useState(null);
  const decide = useSubmit(async (decision) => {});
  const ids = Object.keys(picked).filter((k) => picked[k]).map(Number);
  const bulk = async (decision) => {
    decide.setError(null);
    setResults(null);
    try {
      const body = decision === 'approve'
        ? { ids, decision, txids: ids.map((id) => (txids[id] || '').trim()) }
        : { ids, decision, reason: reason.trim() };
      if (decision === 'approve' && body.txids.some((x) => !x)) throw new ApiError(400, { code: 'invalid', message: t('admin.txid_needed') });
      if (decision === 'reject' && !body.reason) throw new ApiError(400, { code: 'invalid', message: t('admin.reason_needed') });
      const r = await post('/api/admin/withdrawals/decisions', body);
      setResults(r.results);
      setPicked({});
      paged.reload();
    } catch (e) {
      decide.setError(e);
    }
  };
  return html`<${Page} title=${t('admin.nav.withdrawals')}>
    <div class="toolbar"><${StatusFilter} label=${t('col.status')} value=${status} options=${['pending', 'paid', 'rejected']} onChange=${(v) => setF({ status: v })} />
      <${ExportLink} name="withdrawals" filters=${{ status }} /></div>
    <${ErrorBox} error=${decide.error} />
    ${results ? html`<${Alert} kind=${results.every((r) => r.ok) ? 'success' : 'warn'}>${results.map((r) => html`<div>#${r.id}: ${r.ok ? t('status.' + r.withdrawal.status) : r.error.message}</div>`)}</${Alert}>` : null}
    ${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
      <${Table} caption=${t('admin.nav.withdrawals')} head=${[status === 'pending' ? t('admin.pick') : '#', t('admin.member_col'), t('col.amount'), t('wd.network'), t('wd.destination'), t('col.date'), status === 'pending' ? t('admin.txid') : t('wd.detail')]}
        rows=${paged.items.map((w) => html`<tr>
          <td>${status === 'pending' ? html`<input type="checkbox" id=${'pick-' + w.id} checked=${!!picked[w.id]} onChange=${(e) => setPicked({ ...picked, [w.id]: e.target.checked })} aria-label=${t('admin.pick_named', { id: w.id })} />` : w.id}</td>
          <td><a href=${'/admin/users/' + w.user_id}>${w.email}</a></td><td><${Money} micros=${w.amount_micros} currency=${w.currency} /></td><td>${t('net.' + w.network)}</td>
          <td class="mono">${w.destination}</td><td>${dateTime(w.requested_at)}</td>
          <td>${status === 'pending' ? html`<input class="mono" value=${txids[w.id] || ''} onInput=${(e) => setTxids({ ...txids, [w.id]: e.target.value })} aria-label=${t('admin.txid_named', { id: w.id })} />` : html`<span class="mono">${w.txid || w.reason || '—'}</span>`}</td></tr>`)} />
      <${Pager} paged=${paged} />`}
    ${status === 'pending' && paged.items.length ? html`<div class="form">
      <p>${t('admin.picked', { n: ids.length })}</p>
      <div class="actions"><button class="btn" type="button" disabled=${!ids.length} onClick=${() => bulk('approve')}>${t('admin.approve')}</button></div>
      <div class="toolbar">
        <div class="field"><label for="reject-reason">${t('admin.reject_reason')}</label><input id="reject-reason" value=${reason} onInput=${(e) => setReason(e.target.value)} /></div>
        <button class="btn btn-danger" type="button" disabled=${!ids.length} onClick=${() => bulk('reject')}>${t('admin.reject')}</button>
      </div>
    </div>` : null}
  </${Page}>`;
}

// ---- catalogue and capacity ----

export function Catalogue({ staff }) {
  const pk = useLoad(() => get('/api/admin/packages'));
  const cap = useLoad(() => (can(staff, 'finance') ? get('/api/admin/capacity') : null));
  const [capText, setCapText] = useState('');
  const [done, setDone] = useState('');
  const [form, setForm] = useState({ name: '', hashrate_ths: '', price: '', daily: '', duration_days: '30', yield_mode: 'pool', fee_bp: '0' });
  const owner = staff.role === 'owner';
  const setCap = useSubmit(async () => {
    await put('/api/admin/capacity', { hashrate_ths: Number(capText), note: 'staff console' });
    setDone(t('admin.capacity_saved'));
    setCapText('');
    cap.reload();
  });
  const create = useSubmit(async () => {
    await post('/api/admin/packages', {
      name: form.name, hashrate_ths: Number(form.hashrate_ths), price_micros: parseMoney(form.price),
      daily_yield_micros: parseMoney(form.daily), duration_days: Number(form.duration_days), yield_mode: form.yield_mode, fee_bp: Number(form.fee_bp),
    });
    setDone(t('admin.package_created'));
    pk.reload();
  });
  const toggle = async (p) => {
    try {
      await patch('/api/admin/packages/' + p.id, { active: !p.active });
      setDone(p.active ? t('admin.package_off', { name: p.name }) : t('admin.package_on', { name: p.name }));
      pk.reload();
    } catch (e) {
      create.setError(e);
    }
  };
  const upd = (k) => (v) => setForm({ ...form, [k]: v });
  return html`<${Page} title=${t('admin.nav.catalogue')}>
    <${Done} message=${done} />
    ${cap.data ? html`<section aria-labelledby="cap-h"><h2 id="cap-h">${t('admin.capacity')}</h2>
      <div class="stats">
        <${Stat} label=${t('admin.owned')}>${ths(cap.data.capacity ? cap.data.capacity.hashrate_ths : 0)}</${Stat}>
        <${Stat} label=${t('admin.sold')}>${ths(cap.data.sold_ths)}</${Stat}>
        <${Stat} label=${t('admin.available')}>${ths(cap.data.available_ths)}</${Stat}>
      </div>
      ${owner ? html`<form class="toolbar" onSubmit=${setCap.submit}>
        <${Field} label=${t('admin.capacity_new')} inputmode="decimal" value=${capText} onInput=${setCapText} error=${fieldError(setCap.error, 'hashrate_ths')} />
        <button class="btn" type="submit" disabled=${setCap.busy || !capText}>${t('admin.save')}</button></form>` : null}
    </section>` : null}
    <h2>${t('admin.packages')}</h2>
    <${ErrorBox} error=${create.error && !create.error.field ? create.error : null} />
    ${pk.loading && !pk.data ? html`<${Loading} />` : pk.error ? html`<${ErrorBox} error=${pk.error} />` : html`
      <${Table} caption=${t('admin.packages')} head=${['#', t('admin.name'), t('pkg.hashrate'), t('admin.price'), t('pkg.duration'), t('contract.yield'), t('col.status'), '']}
        rows=${pk.data.packages.map((p) => html`<tr><td>${p.id}</td><td>${p.name}</td><td>${ths(p.hashrate_ths)}</td><td><${Money} micros=${p.price_micros} currency=${p.currency} /></td>
          <td>${t('pkg.days', { n: p.duration_days })}</td><td>${p.yield_mode === 'pool' ? t('admin.pool_fee', { fee: bp(p.fee_bp) }) : t('admin.fixed_daily', { amount: money(p.daily_yield_micros, p.currency) })}</td>
          <td><${Status} value=${p.active ? 'active' : 'disabled'} /></td>
          <td>${owner ? html`<button class="btn btn-small btn-secondary" type="button" onClick=${() => toggle(p)} aria-label=${(p.active ? t('admin.take_off') : t('admin.put_on')) + ': ' + p.name}>${p.active ? t('admin.take_off') : t('admin.put_on')}</button>` : null}</td></tr>`)} />`}
    ${owner ? html`<h2>${t('admin.new_package')}</h2>
      <form class="form" onSubmit=${create.submit}>
        <div class="grid">
          <${Field} label=${t('admin.name')} value=${form.name} onInput=${upd('name')} error=${fieldError(create.error, 'name')} />
          <${Field} label=${t('admin.hashrate_ths')} inputmode="decimal" value=${form.hashrate_ths} onInput=${upd('hashrate_ths')} error=${fieldError(create.error, 'hashrate_ths')} />
          <${Field} label=${t('admin.price_usd')} inputmode="decimal" value=${form.price} onInput=${upd('price')} error=${fieldError(create.error, 'price_micros')} />
          <${Field} label=${t('admin.daily_usd')} inputmode="decimal" value=${form.daily} onInput=${upd('daily')} error=${fieldError(create.error, 'daily_yield_micros')} />
          <${Field} label=${t('admin.duration_days')} inputmode="numeric" value=${form.duration_days} onInput=${upd('duration_days')} error=${fieldError(create.error, 'duration_days')} />
          <${Field} label=${t('admin.yield_mode')} error=${fieldError(create.error, 'yield_mode')}>${({ id }) => html`<select id=${id} value=${form.yield_mode} onChange=${(e) => upd('yield_mode')(e.target.value)}>
            <option value="pool">${t('admin.mode_pool')}</option><option value="fixed">${t('admin.mode_fixed')}</option></select>`}</${Field}>
          <${Field} label=${t('admin.fee_bp')} inputmode="numeric" value=${form.fee_bp} onInput=${upd('fee_bp')} error=${fieldError(create.error, 'fee_bp')} />
        </div>
        <button class="btn" type="submit" disabled=${create.busy}>${t('admin.create')}</button>
      </form>` : null}
  </${Page}>`;
}

// ---- VIP plan ----

export function VipPlan() {
  const { data, error, loading, reload } = useLoad(() => get('/api/admin/vip-levels'));
  const [levels, setLevels] = useState(null);
  const [done, setDone] = useState('');
  useEffect(() => { if (data) setLevels(data.levels.map((l) => ({ ...l, rates_bp: [...l.rates_bp] }))); }, [data]);
  const save = useSubmit(async () => {
    await put('/api/admin/vip-levels', { levels: levels.map(({ total_bp, ...l }) => l) });
    setDone(t('admin.vip_saved'));
    reload();
  });
  if (loading || !levels) return html`<${Page} title=${t('admin.nav.vip')}>${error ? html`<${ErrorBox} error=${error} />` : html`<${Loading} />`}</${Page}>`;
  const cap = data.cap_bp;
  const setRate = (li, d, v) => {
    const next = levels.map((l) => ({ ...l, rates_bp: [...l.rates_bp] }));
    next[li].rates_bp[d] = v === '' ? 0 : Number(v);
    setLevels(next);
    setDone('');
  };
  const setField = (li, k, v) => {
    const next = levels.map((l) => ({ ...l }));
    next[li][k] = Number(v) || 0;
    setLevels(next);
  };
  const totals = levels.map((l) => l.rates_bp.reduce((s, r) => s + (Number(r) || 0), 0));
  const over = totals.some((x) => x > cap);
  return html`<${Page} title=${t('admin.nav.vip')} wide>
    <p>${t('admin.vip_explain', { cap: bp(cap) })}</p>
    <${Done} message=${done} /><${ErrorBox} error=${save.error} />
    <form onSubmit=${save.submit}>
      <div class="table-wrap rates" tabindex="0" role="region" aria-label=${t('admin.vip_rates')}>
        <table><caption class="sr-only">${t('admin.vip_rates')}</caption>
          <thead><tr><th scope="col">${t('col.vip')}</th>${Array.from({ length: 10 }, (_, d) => html`<th scope="col">${t('admin.depth', { n: d + 1 })}</th>`)}<th scope="col">${t('admin.total')}</th><th scope="col">${t('admin.min_personal')}</th><th scope="col">${t('admin.min_direct')}</th><th scope="col">${t('admin.min_team')}</th></tr></thead>
          <tbody>${levels.map((l, li) => html`<tr>
            <th scope="row">${l.level}</th>
            ${l.rates_bp.map((r, d) => html`<td><input inputmode="numeric" value=${r} onInput=${(e) => setRate(li, d, e.target.value)} aria-label=${t('admin.rate_named', { level: l.level, depth: d + 1 })} /></td>`)}
            <td class=${totals[li] > cap ? 'over' : ''} aria-live="polite">${bp(totals[li])}${totals[li] > cap ? ' ' + t('admin.over_cap') : ''}</td>
            <td><input inputmode="numeric" value=${plainMoney(l.min_personal_volume_micros)} onInput=${(e) => setField(li, 'min_personal_volume_micros', parseMoney(e.target.value) ?? 0)} aria-label=${t('admin.min_personal_named', { level: l.level })} /></td>
            <td><input inputmode="numeric" value=${l.min_direct_paid_referrals} onInput=${(e) => setField(li, 'min_direct_paid_referrals', e.target.value)} aria-label=${t('admin.min_direct_named', { level: l.level })} /></td>
            <td><input inputmode="numeric" value=${plainMoney(l.min_team_volume_micros)} onInput=${(e) => setField(li, 'min_team_volume_micros', parseMoney(e.target.value) ?? 0)} aria-label=${t('admin.min_team_named', { level: l.level })} /></td>
          </tr>`)}</tbody>
        </table>
      </div>
      <p class="hint">${t('admin.rates_in_bp')}</p>
      ${over ? html`<${Alert} kind="error">${t('admin.cap_exceeded', { cap: bp(cap) })}</${Alert}>` : null}
      <button class="btn" type="submit" disabled=${save.busy || over}>${t('admin.save_plan')}</button>
    </form>
  </${Page}>`;
}

// ---- pool payouts ----

export function PoolPayouts() {
  const paged = usePaged((c) => get('/api/admin/pool-payouts' + qs({ cursor: c, limit: 25 })), 'pool_payouts');
  return html`<${Page} title=${t('admin.nav.pool')}>
    ${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
      <${Table} caption=${t('admin.nav.pool')} head=${['#', t('admin.period'), t('col.amount'), t('col.status'), t('admin.credits'), t('contract.fee_taken'), t('admin.remainder'), t('admin.balanced')]}
        rows=${paged.items.map((p) => html`<tr><td>${p.id}</td><td>${p.period_kind}: ${dateTime(p.period_start)}</td><td><${Money} micros=${p.amount_micros} currency=${p.currency} /></td>
          <td><${Status} value=${p.status} /></td><td>${p.reconciliation ? money(p.reconciliation.credits_micros) : '—'}</td><td>${p.reconciliation ? money(p.reconciliation.fee_micros) : '—'}</td>
          <td>${p.reconciliation ? money(p.reconciliation.remainder_micros) : '—'}</td><td>${p.reconciliation ? (p.reconciliation.balanced ? '✓' : '✗') : '—'}</td></tr>`)} />
      <${Pager} paged=${paged} />`}
  </${Page}>`;
}

// ---- jobs ----

export function Jobs() {
  const { data, error, loading, reload } = useLoad(() => get('/api/admin/jobs?limit=50'));
  const [done, setDone] = useState('');
  const [err, setErr] = useState(null);
  const run = async (name) => {
    setDone('');
    setErr(null);
    try {
      const r = await post(`/api/admin/jobs/${encodeURIComponent(name)}/run`, {});
      setDone(t('admin.job_ran', { job: r.job, status: r.status }));
      reload();
    } catch (e) {
      setErr(e);
    }
  };
  return html`<${Page} title=${t('admin.nav.jobs')}>
    <${Done} message=${done} /><${ErrorBox} error=${err || error} />
    ${loading && !data ? html`<${Loading} />` : data ? html`
      ${data.cron_enabled ? null : html`<${Alert} kind="warn">${t('admin.cron_off')}</${Alert}>`}
      <${Table} caption=${t('admin.nav.jobs')} head=${[t('admin.job'), t('admin.schedule'), t('admin.next_run'), t('admin.last_run'), t('admin.dead'), '']}
        rows=${data.jobs.map((j) => html`<tr><td><strong>${j.name}</strong><div class="hint">${j.about}</div></td><td>${j.schedule}${j.interval_s ? ` (${num(j.interval_s)} s)` : ''}</td>
          <td>${dateTime(j.next_run_at)}</td><td>${j.last_run ? html`<${Status} value=${j.last_run.status} /> ${dateTime(j.last_run.finished_at || j.last_run.started_at)}` : '—'}</td>
          <td>${j.dead_periods ? html`<span class="over">${j.dead_periods}</span>` : 0}</td>
          <td><button class="btn btn-small btn-secondary" type="button" onClick=${() => run(j.name)} aria-label=${t('admin.run_named', { job: j.name })}>${t('admin.run_now')}</button></td></tr>`)} />
      <h2>${t('admin.history')}</h2>
      <${Table} caption=${t('admin.history')} head=${['#', t('admin.job'), t('admin.period'), t('col.status'), t('admin.attempts'), t('admin.items'), t('admin.error')]}
        rows=${data.runs.map((r) => html`<tr><td>${r.id}</td><td>${r.job}</td><td>${dateTime(r.period)}</td><td><${Status} value=${r.status} /></td><td>${r.attempts}</td><td>${r.items ?? '—'}</td><td>${r.error || '—'}</td></tr>`)} />` : null}
  </${Page}>`;
}

// ---- e-mail ----

export function EmailQueue({ query }) {
  const [f, setF] = useQueryState(query, ['status']);
  const paged = usePaged((c) => get('/api/admin/email' + qs({ status: f.status, cursor: c, limit: 25 })), 'messages', [f.status]);
  const [done, setDone] = useState('');
  const [err, setErr] = useState(null);
  const resend = async (m) => {
    setErr(null);
    try {
      await post(`/api/admin/email/${m.id}/resend`, {});
      setDone(t('admin.resent', { id: m.id }));
      paged.reload();
    } catch (e) {
      setErr(e);
    }
  };
  return html`<${Page} title=${t('admin.nav.email')}>
    <p><a href="/admin/templates">${t('admin.nav.templates')}</a></p>
    <div class="toolbar"><${StatusFilter} label=${t('col.status')} value=${f.status} options=${['queued', 'sending', 'sent', 'failed', 'suppressed']} onChange=${(v) => setF({ status: v })} /></div>
    <${Done} message=${done} /><${ErrorBox} error=${err} />
    ${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
      <${Table} caption=${t('admin.nav.email')} head=${['#', t('admin.recipient'), t('admin.template'), t('col.status'), t('admin.delivery'), t('col.created'), '']}
        rows=${paged.items.map((m) => html`<tr><td>${m.id}</td><td>${m.recipient}</td><td>${m.template}</td><td><${Status} value=${m.status} />${m.last_error ? html`<div class="hint">${m.last_error}</div>` : null}</td>
          <td>${m.delivery || '—'}</td><td>${dateTime(m.created_at)}</td>
          <td>${m.status === 'failed' ? html`<button class="btn btn-small btn-secondary" type="button" onClick=${() => resend(m)}>${t('admin.resend')}</button>` : null}</td></tr>`)} />
      <${Pager} paged=${paged} />`}
  </${Page}>`;
}

export function Templates() {
  const { data, error, loading } = useLoad(() => get('/api/admin/email-templates'));
  return html`<${Page} title=${t('admin.nav.templates')}>
    ${loading ? html`<${Loading} />` : error ? html`<${ErrorBox} error=${error} />` : html`
      <${Table} caption=${t('admin.nav.templates')} head=${[t('admin.template'), t('admin.class'), t('admin.subject'), t('admin.version_col'), t('admin.updated')]}
        rows=${data.templates.map((x) => html`<tr><td><a href=${'/admin/templates/' + x.key}>${x.key}</a><div class="hint">${x.description}</div></td><td>${x.class}</td>
          <td>${x.subject}</td><td>${x.version}</td><td>${dateTime(x.updated_at)}</td></tr>`)} />`}
  </${Page}>`;
}

export function TemplateEditor({ params, staff }) {
  const { data, error, loading, reload } = useLoad(() => get('/api/admin/email-templates/' + encodeURIComponent(params.key)), [params.key]);
  const [draft, setDraft] = useState(null);
  const [preview, setPreview] = useState(null);
  const [previewErr, setPreviewErr] = useState(null);
  const [done, setDone] = useState('');
  const timer = useRef(null);
  useEffect(() => {
    if (data) setDraft({ subject: data.template.subject, text: data.template.text, html: data.template.html });
  }, [data]);
  useEffect(() => {
    if (!draft) return undefined;
    clearTimeout(timer.current);
    timer.current = setTimeout(async () => {
      try {
        const p = await post(`/api/admin/email-templates/${encodeURIComponent(params.key)}/preview`, draft);
        setPreview(p);
        setPreviewErr(null);
      } catch (e) {
        setPreviewErr(e);
      }
    }, 300);
    return () => clearTimeout(timer.current);
  }, [draft && draft.subject, draft && draft.text, draft && draft.html]);
  const save = useSubmit(async () => {
    await put(`/api/admin/email-templates/${encodeURIComponent(params.key)}`, { ...draft, version: data.template.version });
    setDone(t('admin.template_saved'));
    reload();
  });
  if (loading && !data) return html`<${Page} title=${params.key}><${Loading} /></${Page}>`;
  if (error) return html`<${Page} title=${params.key}><${ErrorBox} error=${error} /></${Page}>`;
  if (!draft) return html`<${Page} title=${params.key}><${Loading} /></${Page}>`;
  const tpl = data.template;
  const owner = staff.role === 'owner';
  const set = (k) => (v) => { setDraft({ ...draft, [k]: v }); setDone(''); };
  return html`<${Page} title=${t('admin.template_title', { key: tpl.key })} wide>
    <p class="muted">${tpl.description} · ${t('admin.version_n', { n: tpl.version })} · ${t('admin.variables')}: <span class="mono">${tpl.variables.join(', ')}</span></p>
    <${Done} message=${done} /><${ErrorBox} error=${save.error && !save.error.field ? save.error : null} />
    <div class="editor">
      <form class="form" onSubmit=${save.submit}>
        <${Field} label=${t('admin.subject')} value=${draft.subject} onInput=${set('subject')} readonly=${!owner} error=${fieldError(save.error, 'subject') || fieldError(previewErr, 'subject')} />
        <${Field} label=${t('admin.text_body')} error=${fieldError(save.error, 'text') || fieldError(previewErr, 'text')}>${({ id, describedBy }) => html`<textarea id=${id} rows="10" value=${draft.text} readonly=${!owner} aria-describedby=${describedBy} onInput=${(e) => set('text')(e.target.value)}></textarea>`}</${Field}>
        <${Field} label=${t('admin.html_body')} error=${fieldError(save.error, 'html') || fieldError(previewErr, 'html')}>${({ id, describedBy }) => html`<textarea id=${id} rows="10" value=${draft.html} readonly=${!owner} aria-describedby=${describedBy} onInput=${(e) => set('html')(e.target.value)}></textarea>`}</${Field}>
        ${owner ? html`<button class="btn" type="submit" disabled=${save.busy || !!previewErr}>${t('admin.save_template')}</button>` : html`<p class="hint">${t('admin.owner_only')}</p>`}
      </form>
      <section aria-labelledby="prev-h" aria-live="polite">
        <h2 id="prev-h">${t('admin.preview')}</h2>
        ${previewErr ? html`<${Alert} kind="error">${previewErr.message}</${Alert}>` : preview ? html`
          <p><strong>${t('admin.subject')}:</strong> <span id="preview-subject">${preview.subject}</span></p>
          <div class="preview" id="preview-text">${preview.text}</div>` : html`<${Loading} />`}
      </section>
    </div>
    <h2>${t('admin.versions')}</h2>
    <${Table} caption=${t('admin.versions')} head=${[t('admin.version_col'), t('admin.subject'), t('admin.updated')]}
      rows=${data.versions.map((v) => html`<tr><td>${v.version}</td><td>${v.subject}</td><td>${dateTime(v.created_at)}</td></tr>`)} />
  </${Page}>`;
}

// ---- flags and audit ----

export function Flags({ query }) {
  const [f, setF] = useQueryState(query, ['status']);
  const status = f.status || 'open';
  const paged = usePaged((c) => get('/api/admin/flags' + qs({ status, cursor: c, limit: 25 })), 'flags', [status]);
  const [err, setErr] = useState(null);
  const [done, setDone] = useState('');
  const act = async (fl, what) => {
    setErr(null);
    try {
      await post(`/api/admin/flags/${fl.id}/${what}`, {});
      setDone(t('admin.flag_' + what, { id: fl.id }));
      paged.reload();
    } catch (e) {
      setErr(e);
    }
  };
  return html`<${Page} title=${t('admin.nav.flags')}>
    <div class="toolbar"><${StatusFilter} label=${t('col.status')} value=${status} options=${['open', 'cleared', 'confirmed']} onChange=${(v) => setF({ status: v })} /></div>
    <${Done} message=${done} /><${ErrorBox} error=${err} />
    ${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
      <${Table} caption=${t('admin.nav.flags')} head=${['#', t('admin.member_col'), t('admin.related'), t('admin.reason'), t('col.status'), t('col.created'), '']}
        rows=${paged.items.map((fl) => html`<tr><td>${fl.id}</td><td><a href=${'/admin/users/' + fl.user_id}>#${fl.user_id}</a></td>
          <td>${fl.related_user_id ? html`<a href=${'/admin/users/' + fl.related_user_id}>#${fl.related_user_id}</a>` : '—'}</td><td>${fl.reason}</td><td><${Status} value=${fl.status} /></td><td>${dateTime(fl.created_at)}</td>
          <td>${fl.status === 'open' ? html`<div class="actions"><button class="btn btn-small btn-secondary" type="button" onClick=${() => act(fl, 'clear')}>${t('admin.clear')}</button>
            <button class="btn btn-small btn-danger" type="button" onClick=${() => act(fl, 'confirm')}>${t('admin.confirm_flag')}</button></div>` : null}</td></tr>`)} />
      <${Pager} paged=${paged} />`}
  </${Page}>`;
}

export function Audit({ query }) {
  const [f, setF] = useQueryState(query, ['action']);
  const [a, setA] = useState(f.action);
  const paged = usePaged((c) => get('/api/admin/audit' + qs({ action: f.action, cursor: c, limit: 25 })), 'entries', [f.action]);
  return html`<${Page} title=${t('admin.nav.audit')}>
    <form class="toolbar" onSubmit=${(e) => { e.preventDefault(); setF({ action: a }); }}>
      <div class="field"><label for="action">${t('admin.action')}</label><input id="action" value=${a} onInput=${(e) => setA(e.target.value)} placeholder="user.suspend" /></div>
      <button class="btn" type="submit">${t('admin.filter')}</button>
    </form>
    ${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
      <${Table} caption=${t('admin.nav.audit')} head=${['#', t('col.date'), t('admin.who'), t('admin.action'), t('admin.target'), t('admin.change')]}
        rows=${paged.items.map((x) => html`<tr><td>${x.id}</td><td>${dateTime(x.created_at)}</td><td>${x.staff ? x.staff.email : t('admin.console')}</td><td class="mono">${x.action}</td>
          <td>${x.target_type ? `${x.target_type} ${x.target_id ?? ''}` : '—'}</td>
          <td><pre class="json">${x.before ? JSON.stringify(x.before) + ' → ' : ''}${x.after ? JSON.stringify(x.after) : ''}</pre></td></tr>`)} />
      <${Pager} paged=${paged} />`}
  </${Page}>`;
}

export { api };

// ---- identity checks (KYC queue) ----

const KYC_KINDS = ['id_front', 'id_back', 'selfie', 'proof_of_address'];

/** An age in seconds for people: "3 d 4 h", "5 h 12 min", "8 min". */
export function age(sec) {
  const d = Math.floor(sec / 86400), h = Math.floor((sec % 86400) / 3600), m = Math.floor((sec % 3600) / 60);
  if (d) return t('admin.age_dh', { d: num(d), h });
  if (h) return t('admin.age_hm', { h, m });
  return t('admin.age_m', { m });
}

export function KycQueue({ query }) {
  const [f, setF] = useQueryState(query, ['status']);
  const status = f.status;
  const paged = usePaged((c) => get('/api/admin/kyc' + qs({ status, cursor: c, limit: 50 })), 'cases', [status]);
  const [picked, setPicked] = useState({});
  const [reason, setReason] = useState('');
  const [results, setResults] = useState(null);
  const decide = useSubmit(async () => {});
  const ids = Object.keys(picked).filter((k) => picked[k]).map(Number);
  const decidable = (c) => c.status === 'pending' || c.status === 'review';
  const emails = Object.fromEntries(paged.items.map((c) => [c.user_id, c.email]));
  const bulk = async (decision) => {
    decide.setError(null);
    setResults(null);
    try {
      const body = { ids, decision };
      if (decision !== 'approve') {
        if (!reason.trim()) throw new ApiError(400, { code: 'invalid', message: t('admin.kyc_reason_needed') });
        body.reason = reason.trim();
      }
      const r = await post('/api/admin/kyc/decisions', body);
      setResults(r.results.map((x) => ({ ...x, email: emails[x.id] })));
      setPicked({});
      setReason('');
      paged.reload();
    } catch (e) {
      decide.setError(e);
    }
  };
  return html`<${Page} title=${t('admin.nav.kyc')} wide>
    <div class="toolbar"><div class="field"><label for="status-filter">${t('col.status')}</label>
      <select id="status-filter" value=${status} onChange=${(e) => { setPicked({}); setF({ status: e.target.value }); }}>
        <option value="">${t('admin.kyc_waiting')}</option>
        ${['pending', 'review', 'resubmission', 'approved', 'rejected', 'none'].map((o) => html`<option value=${o}>${t('status.' + o)}</option>`)}
      </select></div></div>
    <p class="hint">${t('admin.kyc_oldest')}</p>
    <${ErrorBox} error=${decide.error} />
    ${results ? html`<${Alert} kind=${results.every((r) => r.ok) ? 'success' : 'warn'}>${results.map((r) => html`<div>${r.email || '#' + r.id}: ${r.ok ? t('status.' + r.kyc_status) : r.error.message}</div>`)}</${Alert}>` : null}
    ${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
      <${Table} caption=${t('admin.nav.kyc')} empty=${t('admin.kyc_empty')}
        head=${[t('admin.pick'), t('admin.member_col'), t('admin.kyc_name'), t('admin.kyc_country'), t('col.status'), t('admin.kyc_submitted'), t('admin.kyc_age'), t('admin.kyc_documents')]}
        rows=${paged.items.map((c) => html`<tr>
          <td>${decidable(c) ? html`<input type="checkbox" id=${'pick-' + c.user_id} checked=${!!picked[c.user_id]} onChange=${(e) => setPicked({ ...picked, [c.user_id]: e.target.checked })} aria-label=${t('admin.pick_member', { email: c.email })} />` : '—'}</td>
          <td><a href=${'/admin/users/' + c.user_id}>${c.email}</a><div class="muted">${t('admin.kyc_provider', { provider: c.provider })}</div></td>
          <td>${c.legal_name || '—'}</td><td>${c.country || '—'}</td><td><${Status} value=${c.status} /></td>
          <td>${dateTime(c.submitted_at)}</td><td>${c.submitted_at ? age(c.age_seconds) : '—'}</td>
          <td>${c.documents ? html`<details class="doc-links"><summary>${t('admin.kyc_doc_count', { n: c.documents })}</summary>
            <ul>${KYC_KINDS.map((k) => html`<li><a href=${'/api/admin/kyc/' + c.user_id + '/documents/' + k} download
              aria-label=${t('admin.kyc_view_named', { doc: t('kyc.doc.' + k), email: c.email })}>${t('kyc.doc.' + k)}</a></li>`)}</ul></details>` : t('admin.kyc_doc_count', { n: 0 })}</td></tr>`)} />
      <p class="hint">${t('admin.kyc_view_note')}</p>
      <${Pager} paged=${paged} />`}
    ${paged.items.some(decidable) ? html`<div class="form">
      <p>${t('admin.picked', { n: ids.length })}</p>
      <div class="field"><label for="kyc-reason">${t('admin.kyc_reason')}</label><input id="kyc-reason" value=${reason} onInput=${(e) => setReason(e.target.value)} aria-describedby="kyc-reason-hint" />
        <p class="hint" id="kyc-reason-hint">${t('admin.kyc_reason_hint')}</p></div>
      <div class="actions">
        <button class="btn" type="button" disabled=${!ids.length} onClick=${() => bulk('approve')}>${t('admin.kyc_approve')}</button>
        <button class="btn btn-secondary" type="button" disabled=${!ids.length} onClick=${() => bulk('request_resubmission')}>${t('admin.kyc_resubmit')}</button>
        <button class="btn btn-danger" type="button" disabled=${!ids.length} onClick=${() => bulk('reject')}>${t('admin.kyc_reject')}</button>
      </div>
    </div>` : null}
  </${Page}>`;
}

/** Members' erasure requests (owner; docs/api.md /api/admin/erasures):
 * process one now (a request received another way) or cancel it. */
export function Erasures({ query }) {
  const [f, setF] = useQueryState(query, ['status']);
  const status = f.status;
  const paged = usePaged((c) => get('/api/admin/erasures' + qs({ status, cursor: c, limit: 50 })), 'erasures', [status]);
  const [done, setDone] = useState(null);
  const act = useSubmit(async () => {});
  const run = async (x, what) => {
    act.setError(null);
    setDone(null);
    try {
      const r = await post('/api/admin/erasures/' + x.id + '/' + what, {});
      setDone(t('admin.erasure_' + what + '_done', { id: x.id, status: t('status.' + r.erasure.status) }));
      paged.reload();
    } catch (e) {
      act.setError(e);
    }
  };
  const open = (x) => x.status === 'unconfirmed' || x.status === 'scheduled';
  return html`<${Page} title=${t('admin.nav.erasures')} wide>
    <div class="toolbar"><div class="field"><label for="erasure-status">${t('col.status')}</label>
      <select id="erasure-status" value=${status} onChange=${(e) => setF({ status: e.target.value })}>
        <option value="">${t('admin.all')}</option>
        ${['unconfirmed', 'scheduled', 'done', 'cancelled'].map((o) => html`<option value=${o}>${t('status.' + o)}</option>`)}
      </select></div></div>
    <p class="hint">${t('admin.erasure_hint')}</p>
    <${ErrorBox} error=${act.error} />
    ${done ? html`<${Alert} kind="success">${done}</${Alert}>` : null}
    ${paged.loading && !paged.data ? html`<${Loading} />` : html`<${ErrorBox} error=${paged.error} />
      <${Table} caption=${t('admin.nav.erasures')} empty=${t('admin.erasure_empty')}
        head=${['#', t('admin.member_col'), t('col.status'), t('admin.erasure_requested'), t('admin.erasure_due'), t('admin.erasure_finished'), '']}
        rows=${paged.items.map((x) => html`<tr>
          <td>${x.id}</td>
          <td><a href=${'/admin/users/' + x.user_id}>${x.email || '#' + x.user_id}</a></td>
          <td><${Status} value=${x.status} /></td>
          <td>${dateTime(x.requested_at)}</td><td>${x.due_at ? dateTime(x.due_at) : '—'}</td>
          <td>${x.finished_at ? dateTime(x.finished_at) + (x.finished_by ? ' · ' + x.finished_by : '') : '—'}</td>
          <td>${open(x) ? html`<div class="actions">
            <button class="btn btn-danger" type="button" disabled=${act.busy} onClick=${() => run(x, 'process')} aria-label=${t('admin.erasure_process_named', { id: x.id })}>${t('admin.erasure_process')}</button>
            <button class="btn btn-secondary" type="button" disabled=${act.busy} onClick=${() => run(x, 'cancel')} aria-label=${t('admin.erasure_cancel_named', { id: x.id })}>${t('admin.erasure_cancel')}</button></div>` : null}</td></tr>`)} />
      <${Pager} paged=${paged} />`}
  </${Page}>`;
}
