// Strings: every word the apps show comes from web/strings/<lang>.json
// (docs/ui.md "Translating"). The member's browser languages pick the file;
// a key missing there falls back to English.
import all from 'virtual:strings';

const wanted = (navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en']);
let lang = 'en';
for (const l of wanted) {
  const base = l.toLowerCase().split('-')[0];
  if (all[l]) { lang = l; break; }
  if (all[base]) { lang = base; break; }
}
const S = all[lang] || {};
const EN = all.en || {};

/** The locale for Intl: the member's own (numbers and dates). */
export const locale = wanted[0] || 'en';
export const language = lang;
document.documentElement.lang = lang;

/** The string `key`, with {name} placeholders filled from vars. */
export function t(key, vars) {
  let s = S[key];
  if (s === undefined) s = EN[key];
  if (s === undefined) return key;
  return vars ? s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m)) : s;
}
