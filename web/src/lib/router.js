// A small history-API router shared by both apps: same-origin links are
// followed without a page load, deep links work because Apache answers
// every unknown path with the app's index.html (FallbackResource).
import { useEffect, useState } from 'preact/hooks';

let base = '';

export function navigate(to, { replace = false } = {}) {
  history[replace ? 'replaceState' : 'pushState'](null, '', to);
  dispatchEvent(new Event('dm:navigate'));
}

/** Follows in-app links; base: the app's path prefix ('' or '/admin'). */
export function startRouter(appBase) {
  base = appBase;
  document.addEventListener('click', (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = e.target.closest && e.target.closest('a[href]');
    if (!a || a.target || a.hasAttribute('download') || a.origin !== location.origin) return;
    const p = a.pathname;
    if (a.hash && p === location.pathname && a.search === location.search) return; // in-page anchor
    if (p.startsWith('/api/')) return;
    const inAdmin = p === '/admin' || p.startsWith('/admin/');
    if ((base === '/admin') !== inAdmin) return; // the other app: a page load
    e.preventDefault();
    navigate(p + a.search + a.hash);
  });
}

export function useLocation() {
  const read = () => ({ path: location.pathname, query: new URLSearchParams(location.search) });
  const [loc, setLoc] = useState(read);
  useEffect(() => {
    const f = () => setLoc(read());
    addEventListener('popstate', f);
    addEventListener('dm:navigate', f);
    return () => {
      removeEventListener('popstate', f);
      removeEventListener('dm:navigate', f);
    };
  }, []);
  return loc;
}

/** The first route whose pattern ("/orders/:id") matches path. */
export function match(routes, path) {
  for (const r of routes) {
    const keys = [];
    const re = new RegExp('^' + r.path.replace(/:(\w+)/g, (_, k) => { keys.push(k); return '([^/]+)'; }) + '/?$');
    const m = path.match(re);
    if (m) return { route: r, params: Object.fromEntries(keys.map((k, i) => [k, decodeURIComponent(m[i + 1])])) };
  }
  return null;
}
