#!/usr/bin/env node
// `make web`: builds the member app and the staff console from web/ into
// build/web/ (what Apache serves at /; docs/ui.md, docs/decisions.md "Web
// pages: one esbuild step").
//
//   web/index.html, web/admin/index.html  page shells; %ASSETS% is replaced
//                                         by the stylesheet, script and
//                                         modulepreload tags of the build
//   web/src/app.js, web/src/admin.js      the two entry points (ES modules)
//   web/css/app.css                       the one stylesheet (uPlot's included)
//   web/strings/*.json                    the strings, one file per language
//   web/public/                           copied as is (manifest, icons, robots)
//
// Every script and stylesheet gets a content hash in its name
// (assets/app-3KX7Q2AB.js) and is served with a year-long immutable cache;
// the HTML, manifest and icons keep their names and are revalidated (ETag).
// The new tree is written beside the old one and swapped in, so a running
// server never sees half a build.
import * as esbuild from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const web = path.join(root, 'web');
const out = path.resolve(process.argv[2] || path.join(root, 'build', 'web'));
const tmp = `${out}.tmp${process.pid}`;

// The strings of every language in web/strings/, as one virtual module:
// adding a language is adding a JSON file (docs/ui.md "Translating").
const stringsPlugin = {
  name: 'strings',
  setup(build) {
    build.onResolve({ filter: /^virtual:strings$/ }, () => ({ path: 'strings', namespace: 'strings' }));
    build.onLoad({ filter: /.*/, namespace: 'strings' }, () => {
      const dir = path.join(web, 'strings');
      const langs = {};
      for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
        langs[f.slice(0, -5)] = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
      }
      return { contents: `export default ${JSON.stringify(langs)};`, loader: 'js', watchFiles: [dir] };
    });
  },
};

function copyDir(from, to) {
  fs.mkdirSync(to, { recursive: true });
  for (const e of fs.readdirSync(from, { withFileTypes: true })) {
    const s = path.join(from, e.name);
    const d = path.join(to, e.name);
    if (e.isDirectory()) copyDir(s, d);
    else fs.copyFileSync(s, d);
  }
}

fs.rmSync(tmp, { recursive: true, force: true });
fs.mkdirSync(tmp, { recursive: true });

const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: {
    app: 'web/src/app.js',
    admin: 'web/src/admin.js',
    style: 'web/css/app.css',
  },
  outdir: tmp,
  entryNames: 'assets/[name]-[hash]',
  chunkNames: 'assets/[name]-[hash]',
  assetNames: 'assets/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  minify: true,
  sourcemap: false,
  target: ['chrome109', 'firefox115', 'safari16'],
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
  plugins: [stringsPlugin],
});

// entry name -> its output file, and the chunks it imports statically
const outputs = result.metafile.outputs;
const entry = {};
for (const [file, o] of Object.entries(outputs)) {
  if (!o.entryPoint) continue;
  const name = path.basename(o.entryPoint).replace(/\.(js|css)$/, '');
  entry[name === 'app' && o.entryPoint.endsWith('.css') ? 'style' : name] = file;
}
const rel = (f) => '/' + path.relative(tmp, path.resolve(root, f)).split(path.sep).join('/');
function preloads(file, seen = new Set()) {
  for (const imp of outputs[file].imports || []) {
    if (imp.kind !== 'import-statement' || seen.has(imp.path)) continue;
    seen.add(imp.path);
    preloads(imp.path, seen);
  }
  return [...seen];
}
function tags(js) {
  const lines = [`<link rel="stylesheet" href="${rel(entry.style)}">`];
  for (const c of preloads(entry[js])) lines.push(`<link rel="modulepreload" href="${rel(c)}">`);
  lines.push(`<script type="module" src="${rel(entry[js])}"></script>`);
  return lines.join('\n');
}

copyDir(path.join(web, 'public'), tmp);
for (const [page, js] of [['index.html', 'app'], ['admin/index.html', 'admin']]) {
  const html = fs.readFileSync(path.join(web, page), 'utf8');
  if (!html.includes('%ASSETS%')) throw new Error(`web/${page} has no %ASSETS% marker`);
  fs.mkdirSync(path.dirname(path.join(tmp, page)), { recursive: true });
  fs.writeFileSync(path.join(tmp, page), html.replace('%ASSETS%', tags(js)));
}

// What the first load of each app costs, for docs/ui.md's budget (the
// browser test measures the compressed bytes it really transfers).
const sizes = {};
for (const js of ['app', 'admin']) {
  const files = [entry.style, entry[js], ...preloads(entry[js])];
  sizes[js] = files.reduce((n, f) => n + outputs[f].bytes, 0);
}
fs.writeFileSync(`${out}.json`,
  JSON.stringify({ entries: Object.fromEntries(Object.entries(entry).map(([k, v]) => [k, rel(v)])),
    first_load_bytes_uncompressed: sizes }, null, 1) + '\n');

// Swap the new tree in.
const old = `${out}.old${process.pid}`;
if (fs.existsSync(out)) fs.renameSync(out, old);
fs.renameSync(tmp, out);
fs.rmSync(old, { recursive: true, force: true });
console.log(`web: built ${path.relative(root, out)}/ (first load, uncompressed: app ${sizes.app} B, admin ${sizes.admin} B)`);
