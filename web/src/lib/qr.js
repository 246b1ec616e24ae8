// A QR code (uqr from npm does the encoding) drawn as one SVG path: no
// inline style, so it renders under the pages' CSP.
import { html } from 'htm/preact';
import { encode } from 'uqr';

export function QrCode({ text, label, size = 200 }) {
  const { data } = encode(text, { ecc: 'M', border: 2 });
  const n = data.length;
  let d = '';
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) if (data[y][x]) d += `M${x} ${y}h1v1h-1z`;
  }
  return html`<svg class="qr" role="img" aria-label=${label} width=${size} height=${size} viewBox=${`0 0 ${n} ${n}`} shape-rendering="crispEdges">
    <rect width=${n} height=${n} fill="#fff" /><path d=${d} fill="#000" />
  </svg>`;
}
