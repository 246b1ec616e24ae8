// Components both apps share: page frame, alerts, form fields, tables,
// paging, loading. Everything text comes from t().
import { html } from 'htm/preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { t } from './i18n.js';
import { money } from './format.js';

export { html };

/** A page: sets the document title and moves focus to the heading when
 * the page changes (screen readers hear where they are). */
export function Page({ title, actions, children, wide }) {
  const h = useRef(null);
  useEffect(() => {
    document.title = `${title} · ${t('app.name')}`;
    if (h.current && document.body.dataset.navigated) h.current.focus({ preventScroll: false });
    document.body.dataset.navigated = '1';
  }, [title]);
  return html`<div class=${'page' + (wide ? ' wide' : '')}>
    <div class="page-head"><h1 tabindex="-1" ref=${h}>${title}</h1>${actions ? html`<div class="actions">${actions}</div>` : null}</div>
    ${children}
  </div>`;
}

export function Alert({ kind = 'info', children }) {
  return html`<div class=${'alert alert-' + kind} role=${kind === 'error' ? 'alert' : 'status'}>${children}</div>`;
}

export function ErrorBox({ error }) {
  if (!error) return null;
  return html`<${Alert} kind="error">${error.message || String(error)}</${Alert}>`;
}

export function Loading() {
  return html`<p class="loading" role="status">${t('common.loading')}</p>`;
}

let fieldSeq = 0;
export function Field({ label, hint, error, type = 'text', value, onInput, children, ...rest }) {
  const [id] = useState(() => `f${++fieldSeq}`);
  const describedBy = [hint ? id + '-hint' : null, error ? id + '-err' : null].filter(Boolean).join(' ') || undefined;
  const input = children
    ? children({ id, describedBy })
    : html`<input id=${id} type=${type} value=${value} onInput=${(e) => onInput && onInput(e.target.value)}
        aria-describedby=${describedBy} aria-invalid=${error ? 'true' : undefined} ...${rest} />`;
  return html`<div class=${'field' + (error ? ' has-error' : '')}>
    <label for=${id}>${label}</label>
    ${input}
    ${hint ? html`<p class="hint" id=${id + '-hint'}>${hint}</p>` : null}
    ${error ? html`<p class="field-error" id=${id + '-err'}>${error}</p>` : null}
  </div>`;
}

export function Money({ micros, currency }) {
  return html`<span class="money">${money(micros, currency)}</span>`;
}

export function Status({ value }) {
  return html`<span class=${'badge badge-' + value}>${t('status.' + value)}</span>`;
}

/** Loads something once (and again on reload()): {data, error, loading, reload}. */
export function useLoad(fn, deps = []) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const seq = useRef(0);
  const reload = useCallback(() => {
    const n = ++seq.current;
    setState((s) => ({ ...s, loading: true }));
    return Promise.resolve().then(fn).then(
      (data) => { if (n === seq.current) setState({ data, error: null, loading: false }); },
      (error) => { if (n === seq.current) setState({ data: null, error, loading: false }); },
    );
  }, deps);
  useEffect(() => { reload(); }, [reload]);
  return { ...state, reload };
}

/** A form's submit: busy while running, the error kept for display. */
export function useSubmit(fn) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const submit = async (e) => {
    if (e && e.preventDefault) e.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      await fn();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, submit, setError };
}

/** The error of one field (the API's `field`), else null. */
export const fieldError = (error, name) => (error && error.field === name ? error.message : null);

/** Cursor paging over an API list: {items, next, more(), ...}. `key` is
 * the list's name in the answer ("transfers"). */
export function usePaged(load, key, deps = []) {
  const [pages, setPages] = useState([null]); // the cursors of the pages seen
  const cursor = pages[pages.length - 1];
  const res = useLoad(() => load(cursor), [cursor, ...deps]);
  return {
    ...res,
    items: res.data ? res.data[key] : [],
    page: pages.length,
    older: res.data && res.data.next_cursor ? () => setPages([...pages, res.data.next_cursor]) : null,
    newer: pages.length > 1 ? () => setPages(pages.slice(0, -1)) : null,
    reset: () => setPages([null]),
  };
}

export function Pager({ paged }) {
  if (!paged.older && !paged.newer) return null;
  return html`<nav class="pager" aria-label=${t('common.pages')}>
    <button type="button" class="btn btn-secondary" disabled=${!paged.newer} onClick=${paged.newer}>${t('common.newer')}</button>
    <span>${t('common.page', { n: paged.page })}</span>
    <button type="button" class="btn btn-secondary" disabled=${!paged.older} onClick=${paged.older}>${t('common.older')}</button>
  </nav>`;
}

/** A table that scrolls sideways on a phone instead of overflowing. */
export function Table({ caption, head, rows, empty }) {
  if (!rows.length) return html`<p class="empty">${empty || t('common.nothing')}</p>`;
  return html`<div class="table-wrap" tabindex="0" role="region" aria-label=${caption}>
    <table>
      <caption class="sr-only">${caption}</caption>
      <thead><tr>${head.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead>
      <tbody>${rows}</tbody>
    </table>
  </div>`;
}

export function Stat({ label, children, note }) {
  return html`<div class="stat"><div class="stat-label">${label}</div><div class="stat-value">${children}</div>${note ? html`<div class="stat-note">${note}</div>` : null}</div>`;
}
