// The member's session as the app knows it: the user of GET /api/me, or
// null. The access token is an HttpOnly cookie the app never sees; the
// readable dm_csrf cookie says whether a login may exist at all, so a
// visitor who never logged in causes no 401 (docs/ui.md).
import { useEffect, useState } from 'preact/hooks';
import { ApiError, configure, cookie, get, post } from './lib/api.js';

let user;          // undefined: not known yet; null: logged out
const subs = new Set();

function set(u) {
  user = u;
  for (const f of subs) f(user);
}

configure({ unauthorized: () => set(null) });

export async function loadUser() {
  if (!cookie('dm_csrf')) {
    set(null);
    return null;
  }
  try {
    const { user: u } = await get('/api/me');
    set(u);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) throw e;
    set(null);
  }
  return user;
}

export const setUser = (u) => set(u);

/** A fresher copy of the logged-in member (GET /api/me in the background):
 * ignored when the member logged out meanwhile. */
export const refreshUser = (u) => {
  if (user) set(u);
};

/** Reads /api/me again for the balances; nothing happens when logged out. */
export function reloadUser() {
  if (!user) return Promise.resolve();
  return get('/api/me').then(({ user: u }) => refreshUser(u), () => {});
}
export const currentUser = () => user;

export async function logout() {
  try {
    await post('/api/auth/logout');
  } finally {
    set(null);
  }
}

export function useUser() {
  const [u, setU] = useState(user);
  useEffect(() => {
    subs.add(setU);
    setU(user);
    return () => subs.delete(setU);
  }, []);
  return u;
}
