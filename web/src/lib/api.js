// The JSON API client of both apps: cookies (same origin), the CSRF
// double-submit header on every write, one silent token refresh on a 401
// (member side), and errors as ApiError with the API's code, message and
// field (docs/api.md "Conventions").

export class ApiError extends Error {
  constructor(status, error) {
    super((error && error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (error && error.code) || 'http';
    this.field = (error && error.field) || null;
  }
}

export function cookie(name) {
  const m = document.cookie.match(new RegExp('(?:^|; )' + name + '=([^;]*)'));
  return m ? decodeURIComponent(m[1]) : null;
}

let refreshing = null;
let onUnauthorized = () => {};
let refreshPath = '/api/auth/refresh';

/** Sets what happens when a session is gone for good (the app shows the
 * login page), and the refresh endpoint (null: none, the staff side). */
export function configure({ unauthorized, refresh }) {
  if (unauthorized) onUnauthorized = unauthorized;
  if (refresh !== undefined) refreshPath = refresh;
}

async function send(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') {
    const c = cookie('dm_csrf');
    if (c) headers['X-CSRF-Token'] = c;
  }
  return fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function refresh() {
  if (!refreshPath) return false;
  if (!refreshing) {
    refreshing = send('POST', refreshPath).then((r) => r.ok).catch(() => false)
      .finally(() => setTimeout(() => { refreshing = null; }, 0));
  }
  return refreshing;
}

/** One API call: the parsed JSON answer, or throws ApiError. */
export async function api(method, path, body, { retry = true } = {}) {
  let r;
  try {
    r = await send(method, path, body);
  } catch (e) {
    throw new ApiError(0, { code: 'network', message: e.message });
  }
  if (r.status === 401 && retry && !path.startsWith('/api/auth/') && !path.startsWith('/api/admin/auth/')) {
    if (await refresh()) return api(method, path, body, { retry: false });
    onUnauthorized();
  }
  const type = r.headers.get('Content-Type') || '';
  const data = type.startsWith('application/json') ? await r.json() : null;
  if (!r.ok) throw new ApiError(r.status, data && data.error);
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body = {}) => api('POST', path, body);
export const put = (path, body) => api('PUT', path, body);
export const patch = (path, body) => api('PATCH', path, body);
export const del = (path) => api('DELETE', path);

/** A query string from an object, leaving out empty values. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v);
  const s = u.toString();
  return s ? '?' + s : '';
}

/** PUT of a file's raw bytes with its own Content-Type (identity check
 * documents), through XMLHttpRequest for the upload's progress:
 * onProgress(fraction 0…1). The parsed answer, or throws ApiError. */
export function putFile(path, file, onProgress, { retry = true } = {}) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open('PUT', path);
    x.setRequestHeader('Accept', 'application/json');
    x.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    const c = cookie('dm_csrf');
    if (c) x.setRequestHeader('X-CSRF-Token', c);
    x.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
    x.onerror = () => reject(new ApiError(0, { code: 'network', message: 'network error' }));
    x.onload = async () => {
      let data = null;
      try { data = JSON.parse(x.responseText); } catch (e) { data = null; }
      if (x.status === 401 && retry) {
        if (await refresh()) { putFile(path, file, onProgress, { retry: false }).then(resolve, reject); return; }
        onUnauthorized();
      }
      if (x.status >= 200 && x.status < 300) resolve(data);
      else reject(new ApiError(x.status, data && data.error));
    };
    x.send(file);
  });
}
