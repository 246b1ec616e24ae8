// Renders web/public/icons/icon.svg to the PNG icons of the web app manifest
// (run by hand after changing the SVG: node scripts/make-icons.mjs; the PNGs
// are committed).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
const svg = fs.readFileSync(new URL('../web/public/icons/icon.svg', import.meta.url), 'utf8');
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'] });
const p = await b.newPage();
for (const [name, size, pad, bg] of [['icon-192', 192, 0, 'transparent'], ['icon-512', 512, 0, 'transparent'], ['icon-maskable-512', 512, 64, '#0e6b66']]) {
  await p.setViewportSize({ width: size, height: size });
  await p.setContent(`<html><body style="margin:0;background:${bg}"><div style="padding:${pad}px;width:${size}px;height:${size}px;box-sizing:border-box">${svg.replace('<svg ', `<svg width="${size - 2 * pad}" height="${size - 2 * pad}" `)}</div></body></html>`);
  await p.screenshot({ path: new URL(`../web/public/icons/${name}.png`, import.meta.url).pathname, omitBackground: bg === 'transparent' });
}
await b.close();
