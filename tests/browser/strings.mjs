// Every string key the code names literally (t('dash.title')) exists in
// web/strings/en.json, and every other language file has only keys English
// has (docs/ui.md "Translating"). Keys built at run time (t('status.' + s))
// are checked by the page sweep, which would show a raw key.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const dir = path.join(ROOT, 'web', 'strings');
const en = JSON.parse(fs.readFileSync(path.join(dir, 'en.json'), 'utf8'));
const used = new Set();
function walk(d) {
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p);
    else if (p.endsWith('.js')) {
      const src = fs.readFileSync(p, 'utf8');
      for (const m of src.matchAll(/\bt\('([a-z0-9_.]+)'[,)]/g)) used.add(m[1]);
      for (const m of src.matchAll(/\[\s*'[^']*',\s*'([a-z]+\.[a-z0-9_.]+)'\s*\]/g)) used.add(m[1]);
      for (const m of src.matchAll(/\bnav: '([a-z]+\.[a-z0-9_.]+)'/g)) used.add(m[1]);
    }
  }
}
walk(path.join(ROOT, 'web', 'src'));
const missing = [...used].filter((k) => !(k in en)).sort();
assert.deepEqual(missing, [], 'keys used in web/src but missing from web/strings/en.json');
for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.json') && n !== 'en.json')) {
  const other = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
  const extra = Object.keys(other).filter((k) => !(k in en));
  assert.deepEqual(extra, [], `${f} has keys English does not`);
}
console.log(`strings: ${used.size} keys used literally, all in en.json (${Object.keys(en).length} keys)`);
console.log('1 passed, 0 failed');
