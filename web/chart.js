// chart.js: the job page's pictures, drawn as inline SVG (no libraries); heatmap.js draws
// the kept-share heatmap with the helpers exported here.
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

// Draws train and eval loss against step into `host` (replacing its content).
// train, evals: arrays of {step, loss} sorted by step; totalSteps widens the x axis to the
// job's end so the line grows left to right as it trains.
export function drawLossChart(host, train, evals, totalSteps) {
  const W = hostWidth(host), H = 290, L = 52, R = 16, T = 34, B = 34;  // legend sits in the top margin
  const all = train.concat(evals);
  const svg = el('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img',
    'data-train-points': train.length, 'data-eval-points': evals.length,
  });
  const last = train.length ? train[train.length - 1] : null;
  const lastEval = evals.length ? evals[evals.length - 1] : null;
  svg.append(el('title', {}, all.length
    ? `Loss by step: ${train.length} training points${last ? `, latest ${last.loss.toFixed(4)} at step ${last.step}` : ''}`
      + `; ${evals.length} eval points${lastEval ? `, latest ${lastEval.loss.toFixed(4)}` : ''}`
    : 'Loss chart: no points yet'));
  host.replaceChildren(svg);
  if (!all.length) {
    svg.append(el('text', { x: W / 2, y: H / 2, class: 'chart-empty', 'text-anchor': 'middle' },
      'Waiting for the first step…'));
    return;
  }
  // The x axis runs to the job's last step once a third of it is done; before that, to
  // half again the latest step, so a long job's first points are not squeezed to the left.
  const lastStep = Math.max(...all.map((p) => p.step), 1);
  const maxStep = totalSteps && lastStep * 3 >= totalSteps ? Math.max(totalSteps, lastStep)
    : Math.max(Math.ceil(lastStep * 1.5), Math.min(totalSteps || 10, 10));
  const minStep = Math.min(0, ...all.map((p) => p.step));
  let lo = Math.min(...all.map((p) => p.loss)), hi = Math.max(...all.map((p) => p.loss));
  const pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.05 || 0.5;
  lo -= pad; hi += pad;
  if (lo < 0 && Math.min(...all.map((p) => p.loss)) >= 0) lo = 0;
  const x = (s) => L + ((s - minStep) / (maxStep - minStep || 1)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);

  const grid = el('g', { class: 'chart-grid' });
  for (const v of niceTicks(lo, hi, 6)) {
    grid.append(el('line', { x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    grid.append(el('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, fmtTick(v)));
  }
  for (const s of niceTicks(minStep, maxStep, Math.max(3, Math.round(W / 110)))) {
    grid.append(el('line', { x1: x(s), x2: x(s), y1: T, y2: H - B, class: 'v' }));
    grid.append(el('text', { x: x(s), y: H - B + 16, 'text-anchor': 'middle' }, fmtTick(s)));
  }
  grid.append(el('text', { x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle', class: 'axis-label' }, 'step'));
  grid.append(el('text', { x: 12, y: (T + H - B) / 2, 'text-anchor': 'middle', class: 'axis-label',
    transform: `rotate(-90 12 ${(T + H - B) / 2})` }, 'loss'));
  svg.append(grid);

  const pts = (arr) => arr.map((p) => `${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(' ');
  if (train.length) {
    svg.append(el('polyline', { points: pts(train), class: 'series train', 'data-points': train.length }));
    if (train.length === 1) svg.append(el('circle', { cx: x(train[0].step), cy: y(train[0].loss), r: 3, class: 'dot train' }));
  }
  if (evals.length) {
    const g = el('g', { class: 'series-eval', 'data-points': evals.length });
    if (evals.length > 1) g.append(el('polyline', { points: pts(evals), class: 'series eval' }));
    for (const p of evals) {
      const c = el('circle', { cx: x(p.step), cy: y(p.loss), r: 3.5, class: 'dot eval' });
      c.append(el('title', {}, `eval loss ${p.loss.toFixed(4)} at step ${p.step}`));
      g.append(c);
    }
    svg.append(g);
  }
  const legend = el('g', { class: 'chart-legend', transform: `translate(${W - R - 170},4)` });
  legend.append(el('rect', { x: 0, y: 0, width: 170, height: 22, rx: 4, class: 'legend-bg' }));
  legend.append(el('line', { x1: 8, x2: 26, y1: 11, y2: 11, class: 'series train' }));
  legend.append(el('text', { x: 30, y: 15 }, 'train'));
  legend.append(el('circle', { cx: 90, cy: 11, r: 3.5, class: 'dot eval' }));
  legend.append(el('text', { x: 98, y: 15 }, 'eval'));
  svg.append(legend);
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
