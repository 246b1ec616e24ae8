// The member's identity check (/kyc): status and the reason, the
// documents on file, an upload for each kind (with progress), the personal
// details, hand-in, and the provider's flow (docs/api.md "Identity checks").
import { useState } from 'preact/hooks';
import { ApiError, get, post, put, putFile } from '../lib/api.js';
import { dateTime, num } from '../lib/format.js';
import { t } from '../lib/i18n.js';
import { Alert, ErrorBox, Field, html, Loading, Page, Table, fieldError, useLoad, useSubmit } from '../lib/ui.js';
import { reloadUser } from '../session.js';

export const KYC_KINDS = ['id_front', 'id_back', 'selfie', 'proof_of_address'];
const TYPES = 'image/jpeg,image/png,application/pdf';

/** A byte count for people: 1.2 MB, 340 KB, 12 B. */
export function bytes(n) {
  if (n >= 1048576) return t('unit.mb', { n: num(Math.round((n / 1048576) * 10) / 10) });
  if (n >= 1024) return t('unit.kb', { n: num(Math.round(n / 1024)) });
  return t('unit.b', { n: num(n) });
}

export const typeName = (ct) => ({ 'image/jpeg': 'JPEG', 'image/png': 'PNG', 'application/pdf': 'PDF' }[ct] || ct);

function Upload({ kind, kyc, onDone }) {
  const [progress, setProgress] = useState(null);
  const [error, setError] = useState(null);
  const [done, setDone] = useState(false);
  const id = 'up-' + kind;
  const onFile = async (e) => {
    const file = e.target.files && e.target.files[0];
    if (!file) return;
    setError(null);
    setDone(false);
    setProgress(0);
    try {
      await putFile('/api/kyc/documents/' + kind, file, setProgress);
      setDone(true);
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setProgress(null);
      e.target.value = '';
    }
  };
  const onFileDoc = kyc.documents.find((d) => d.name === kind);
  const missing = kyc.missing.includes(kind);
  return html`<div class="field upload">
    <label for=${id}>${t('kyc.doc.' + kind)}${missing ? html` <span class="badge badge-pending">${t('kyc.required')}</span>` : null}</label>
    <input type="file" id=${id} accept=${TYPES} onChange=${onFile} disabled=${progress !== null} aria-describedby=${id + '-hint'} />
    <p class="hint" id=${id + '-hint'}>${onFileDoc ? t('kyc.replace', { size: bytes(onFileDoc.size), type: typeName(onFileDoc.content_type) }) : t('kyc.types')}</p>
    ${progress !== null ? html`<progress max="100" value=${Math.round(progress * 100)} aria-label=${t('kyc.uploading', { name: t('kyc.doc.' + kind) })}></progress>` : null}
    ${done ? html`<p class="hint" role="status">${t('kyc.uploaded', { name: t('kyc.doc.' + kind) })}</p>` : null}
    ${error ? html`<p class="field-error" role="alert">${error.status === 413 ? t('kyc.too_large') : error.message}</p>` : null}
  </div>`;
}

const DETAIL_FIELDS = [
  ['legal_name', 'text', 'name'], ['date_of_birth', 'date', 'bday'], ['country', 'text', 'country'],
  ['address_line1', 'text', 'address-line1'], ['address_line2', 'text', 'address-line2'], ['city', 'text', 'address-level2'],
  ['postal_code', 'text', 'postal-code'],
];

function Details({ kyc, onSaved }) {
  const [v, setV] = useState(() => Object.fromEntries(DETAIL_FIELDS.map(([k]) => [k, (kyc.details && kyc.details[k]) || ''])));
  const [saved, setSaved] = useState(false);
  const f = useSubmit(async () => {
    setSaved(false);
    const body = {};
    for (const [k] of DETAIL_FIELDS) if (v[k].trim() || ['legal_name', 'date_of_birth', 'country', 'address_line1', 'city'].includes(k)) body[k] = v[k].trim();
    if (body.country) body.country = body.country.toUpperCase();
    const r = await put('/api/kyc/details', body);
    setSaved(true);
    onSaved(r);
  });
  return html`<form class="form narrow" onSubmit=${f.submit} novalidate>
    ${f.error && !DETAIL_FIELDS.some(([k]) => k === f.error.field) ? html`<${ErrorBox} error=${f.error} />` : null}
    ${DETAIL_FIELDS.map(([k, type, ac]) => html`<${Field} key=${k} label=${t('kyc.field.' + k)} type=${type} autocomplete=${ac} value=${v[k]}
      onInput=${(x) => setV({ ...v, [k]: x })} hint=${k === 'country' ? t('kyc.country_hint') : null} maxlength=${k === 'country' ? 2 : undefined}
      error=${fieldError(f.error, k)} />`)}
    <button class="btn btn-secondary" type="submit" disabled=${f.busy}>${t('kyc.save_details')}</button>
    <p class="hint" role="status">${saved ? t('kyc.details_saved') : ''}</p>
  </form>`;
}

function Provider() {
  const [note, setNote] = useState(null);
  const f = useSubmit(async () => {
    setNote(null);
    try {
      const r = await post('/api/kyc/start');
      if (r.url) { location.assign(r.url); return; }
      setNote({ kind: 'info', text: t('kyc.provider_sdk', { provider: r.provider }) });
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) { setNote({ kind: 'info', text: t('kyc.provider_manual') }); return; }
      throw e;
    }
  });
  return html`<div>
    <p>${t('kyc.provider_text')}</p>
    <button class="btn btn-secondary" type="button" onClick=${f.submit} disabled=${f.busy}>${t('kyc.provider_start')}</button>
    ${note ? html`<${Alert} kind=${note.kind}>${note.text}</${Alert}>` : null}
    <${ErrorBox} error=${f.error} />
  </div>`;
}

export function Kyc() {
  const res = useLoad(() => get('/api/kyc'));
  const [over, setOver] = useState(null);
  const kyc = over || res.data;
  const refresh = () => { setOver(null); res.reload(); };
  const submit = useSubmit(async () => {
    const r = await post('/api/kyc/submit');
    setOver(r);
    reloadUser();
  });
  if (res.loading && !kyc) return html`<${Page} title=${t('kyc.title')}><${Loading} /></${Page}>`;
  if (res.error && !kyc) return html`<${Page} title=${t('kyc.title')}><${ErrorBox} error=${res.error} /></${Page}>`;
  const st = kyc.status;
  const submitError = submit.error && submit.error.field && KYC_KINDS.includes(submit.error.field)
    ? t('kyc.missing_doc', { name: t('kyc.doc.' + submit.error.field) })
    : submit.error && submit.error.field === 'details' ? t('kyc.missing_details') : submit.error && submit.error.message;
  return html`<${Page} title=${t('kyc.title')}>
    <section aria-labelledby="kyc-status-h">
      <h2 id="kyc-status-h">${t('kyc.status')}</h2>
      <p><span class=${'badge badge-' + st}>${t('kyc.badge.' + st)}</span> ${t('kyc.explain.' + st)}</p>
      ${kyc.reason ? html`<${Alert} kind=${st === 'approved' ? 'info' : 'warn'}>${t('kyc.reason', { reason: kyc.reason })}</${Alert}>` : null}
      <dl class="facts">
        ${kyc.submitted_at ? html`<div><dt>${t('kyc.submitted_at')}</dt><dd>${dateTime(kyc.submitted_at)}</dd></div>` : null}
        ${kyc.decided_at ? html`<div><dt>${t('kyc.decided_at')}</dt><dd>${dateTime(kyc.decided_at)}</dd></div>` : null}
      </dl>
    </section>
    <section aria-labelledby="kyc-docs-h">
      <h2 id="kyc-docs-h">${t('kyc.documents')}</h2>
      <${Table} caption=${t('kyc.documents')} empty=${t('kyc.no_documents')}
        head=${[t('kyc.col.document'), t('kyc.col.type'), t('kyc.col.size'), t('kyc.col.uploaded')]}
        rows=${kyc.documents.map((d) => html`<tr><td>${t('kyc.doc.' + d.name)}</td><td>${typeName(d.content_type)}</td><td>${bytes(d.size)}</td><td>${dateTime(d.uploaded_at)}</td></tr>`)} />
      ${kyc.can_upload ? html`
        <h3>${t('kyc.upload')}</h3>
        <p class="hint">${kyc.missing.length ? t('kyc.still_missing', { list: kyc.missing.map((k) => t('kyc.doc.' + k)).join(', ') }) : t('kyc.all_on_file')}</p>
        <div class="uploads">${KYC_KINDS.map((k) => html`<${Upload} key=${k} kind=${k} kyc=${kyc} onDone=${refresh} />`)}</div>` : null}
    </section>
    ${kyc.can_upload ? html`<section aria-labelledby="kyc-details-h">
      <h2 id="kyc-details-h">${t('kyc.details')}</h2>
      <${Details} kyc=${kyc} onSaved=${setOver} />
    </section>` : null}
    ${kyc.can_submit || kyc.can_upload ? html`<section aria-labelledby="kyc-submit-h">
      <h2 id="kyc-submit-h">${t('kyc.hand_in')}</h2>
      <p>${t('kyc.hand_in_text')}</p>
      ${submitError ? html`<${Alert} kind="error">${submitError}</${Alert}>` : null}
      <button class="btn" type="button" onClick=${submit.submit} disabled=${submit.busy || !kyc.can_submit}>${t('kyc.submit')}</button>
    </section>` : null}
    ${st !== 'approved' && st !== 'rejected' ? html`<section aria-labelledby="kyc-prov-h">
      <h2 id="kyc-prov-h">${t('kyc.provider')}</h2>
      <${Provider} />
    </section>` : null}
  </${Page}>`;
}
