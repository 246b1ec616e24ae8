// Charts: uPlot (npm), loaded on first use. Bars by default; the canvas is
// hidden from screen readers, which get the same numbers as a table.
import { html } from 'htm/preact';
import { useEffect, useRef } from 'preact/hooks';
import { t } from './i18n.js';

let uplot = null;
const loadUPlot = () => (uplot ||= import('uplot').then((m) => m.default));

/**
 * labels: x labels (strings); series: [{label, values:[numbers], color?}];
 * yFormat: number -> axis text; table: [[label, value text], ...] for the
 * accessible table; title: the figure's caption.
 */
export function BarChart({ title, labels, series, yFormat = String, table, height = 220, onReady }) {
  const box = useRef(null);
  useEffect(() => {
    let plot = null;
    let ro = null;
    let gone = false;
    loadUPlot().then((uPlot) => {
      if (gone || !box.current) return;
      const el = box.current;
      const css = getComputedStyle(document.documentElement);
      const palette = [css.getPropertyValue('--chart-1').trim() || '#0e7c74', css.getPropertyValue('--chart-2').trim() || '#c9822b'];
      const axisColor = css.getPropertyValue('--muted').trim() || '#555';
      const xs = labels.map((_, i) => i);
      // one series: a bar per label; two: side by side (left, right)
      const many = series.length > 1;
      const barsOf = (i) => uPlot.paths.bars(many ? { size: [0.4, 24], gap: 1, align: i === 0 ? -1 : 1 } : { size: [0.7, 48], gap: 1 });
      // the y axis as wide as its longest label
      const ySize = (u, values) => (values && values.length ? Math.max(40, 12 + 7 * Math.max(...values.map((v) => String(v).length))) : 40);
      const opts = {
        width: Math.max(el.clientWidth, 200),
        height,
        legend: { show: false },
        cursor: { drag: { x: false, y: false }, points: { show: false } },
        scales: { x: { time: false, range: [-0.6, Math.max(xs.length - 0.4, 0.4)] }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        axes: [
          { stroke: axisColor, grid: { show: false }, incrs: [1, 2, 5, 7, 10, 14, 30], space: 44,
            values: (u, vals) => vals.map((v) => (Number.isInteger(v) && labels[v] !== undefined ? labels[v] : '')) },
          { stroke: axisColor, size: ySize, values: (u, vals) => vals.map(yFormat), grid: { stroke: 'rgba(0,0,0,0.07)' } },
        ],
        series: [{}, ...series.map((s, i) => ({ label: s.label, fill: s.color || palette[i % 2], stroke: s.color || palette[i % 2], paths: barsOf(i), points: { show: false } }))],
      };
      plot = new uPlot(opts, [xs, ...series.map((s) => s.values)], el);
      if (onReady) onReady();
      ro = new ResizeObserver(() => plot.setSize({ width: Math.max(el.clientWidth, 200), height }));
      ro.observe(el);
    });
    return () => {
      gone = true;
      if (ro) ro.disconnect();
      if (plot) plot.destroy();
    };
  }, [JSON.stringify(labels), JSON.stringify(series)]);
  return html`<figure class="chart">
    <figcaption>${title}</figcaption>
    <div class="chart-box" ref=${box} aria-hidden="true"></div>
    ${series.length > 1 ? html`<ul class="chart-legend" aria-hidden="true">${series.map((s, i) => html`<li><span class=${'swatch swatch-' + ((i % 2) + 1)}></span>${s.label}</li>`)}</ul>` : null}
    ${table ? html`<details class="chart-table"><summary>${t('chart.as_table')}</summary>
      <table><caption class="sr-only">${title}</caption><tbody>
      ${table.map(([k, v]) => html`<tr><th scope="row">${k}</th><td>${v}</td></tr>`)}
      </tbody></table></details>` : null}
  </figure>`;
}
