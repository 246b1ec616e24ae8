// Money, numbers and dates through Intl, in the member's locale. Money
// always starts from the API's integer micro-units: the decimal string is
// built exactly with BigInt and handed to Intl as a string, so no amount is
// ever a float (sums, where needed, are BigInt sums).
import { locale } from './i18n.js';

const moneyFmt = new Map();

/** Exact decimal text of an integer number of micro-units. */
export function microsToDecimal(micros) {
  const b = BigInt(micros);
  const neg = b < 0n;
  const a = neg ? -b : b;
  return `${neg ? '-' : ''}${a / 1000000n}.${(a % 1000000n).toString().padStart(6, '0')}`;
}

/** 12345678, "USD" -> "$12.345678"; 5000000 -> "$5.00". */
export function money(micros, currency = 'USD') {
  if (micros === null || micros === undefined) return '—';
  let f = moneyFmt.get(currency);
  if (!f) {
    f = new Intl.NumberFormat(locale, { style: 'currency', currency, minimumFractionDigits: 2, maximumFractionDigits: 6 });
    moneyFmt.set(currency, f);
  }
  return f.format(microsToDecimal(micros));
}

/** The exact sum of micro-unit amounts (BigInt), as a string for money(). */
export function sumMicros(list) {
  return list.reduce((s, v) => s + BigInt(v), 0n).toString();
}

/** Micro-units from what a person typed ("12.5" -> 12500000), or null. */
export function parseMoney(text) {
  const m = String(text).trim().replace(',', '.').match(/^(\d{1,12})(?:\.(\d{0,6}))?$/);
  if (!m) return null;
  return Number(BigInt(m[1]) * 1000000n + BigInt((m[2] || '').padEnd(6, '0')));
}

const numFmt = new Intl.NumberFormat(locale, { maximumFractionDigits: 3 });
export const num = (n) => numFmt.format(n);
export const ths = (n) => `${numFmt.format(n)} TH/s`;
/** Basis points as a percentage: 250 -> "2.5%". */
export const bp = (n) => new Intl.NumberFormat(locale, { style: 'percent', maximumFractionDigits: 2 }).format(n / 10000);

const dateFmt = new Intl.DateTimeFormat(locale, { dateStyle: 'medium' });
const dateTimeFmt = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short' });
const dayFmt = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeZone: 'UTC' });
const shortDayFmt = new Intl.DateTimeFormat(locale, { month: 'short', day: 'numeric', timeZone: 'UTC' });

export const date = (s) => (s ? dateFmt.format(new Date(s)) : '—');
export const dateTime = (s) => (s ? dateTimeFmt.format(new Date(s)) : '—');
/** A UTC day of the API ("2026-11-25T00:00:00Z") as that calendar day. */
export const day = (s) => dayFmt.format(new Date(s));
export const shortDay = (s) => shortDayFmt.format(new Date(s));
