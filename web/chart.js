// chart.js: the job page's pictures, drawn as inline SVG (no libraries): the kept-token bars
// here, and the helpers that loss_chart.js (the loss curves) and heatmap.js (the kept-share
// heatmap) draw with.
//
// SVG rather than <canvas>: it stays sharp at any zoom, carries a <title> for screen
// readers, and each series is an element whose point count can be read back
// (data-points), which the browser test uses to check the chart really has data.

const NS = 'http://www.w3.org/2000/svg';

export function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// The drawing width in CSS pixels, so text in the SVG renders at its stated size.
export function hostWidth(host) {
  return Math.max(320, Math.round(host.clientWidth || 720));
}

// About `count` round tick values covering [lo, hi] (1, 2, 5 times a power of ten).
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

export function fmtTick(v) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 10000) return `${+(v / 1000).toFixed(1)}k`;
  if (a >= 100) return v.toFixed(0);
  if (a >= 1) return +v.toFixed(2) + '';
  return +v.toPrecision(2) + '';
}

// Draws one bar per decoder layer: the share of tokens that layer's attention kept.
export function drawKeptBars(host, fractions) {
  const W = hostWidth(host), H = 160, L = 40, R = 10, T = 10, B = 28;
  const n = fractions.length;
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart kept', role: 'img', 'data-layers': n });
  svg.append(el('title', {}, `Kept-token fraction per layer: ${fractions.map((f, i) => `layer ${i} ${(f * 100).toFixed(0)}%`).join(', ')}`));
  const slot = (W - L - R) / n, bw = Math.max(2, Math.min(36, slot * 0.7));
  const y = (f) => T + (1 - f) * (H - T - B);
  for (const f of [0, 0.5, 1]) {
    svg.append(el('line', { x1: L, x2: W - R, y1: y(f), y2: y(f), class: 'chart-gridline' }));
    svg.append(el('text', { x: L - 6, y: y(f) + 4, 'text-anchor': 'end', class: 'tick' }, `${f * 100}%`));
  }
  fractions.forEach((f, i) => {
    const v = Math.max(0, Math.min(1, Number(f) || 0));
    const cx = L + slot * (i + 0.5);
    const r = el('rect', { x: cx - bw / 2, y: y(v), width: bw, height: y(0) - y(v), class: v < 0.999 ? 'bar sparse' : 'bar dense' });
    r.append(el('title', {}, `layer ${i}: ${(v * 100).toFixed(1)}% of tokens kept`));
    svg.append(r);
    if (n <= 48 && (n <= 16 || i % Math.ceil(n / 16) === 0))
      svg.append(el('text', { x: cx, y: H - B + 14, 'text-anchor': 'middle', class: 'tick' }, String(i)));
  });
  svg.append(el('text', { x: (L + W - R) / 2, y: H - 2, 'text-anchor': 'middle', class: 'axis-label' }, 'layer'));
  host.replaceChildren(svg);
}
