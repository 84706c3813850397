// heatmap.js: LeMo's kept share per decoder layer and training step, as an SVG heatmap
// (rows = layers 0..L-1 from the top, columns = steps, colour = the share of tokens the
// layer's attention kept; 100% = a dense layer).
//
// Each step's metrics event carries kept_fraction, one share per layer. KeptSeries gathers
// them by step: the page hears an event from both the history list and the stream, and a
// resumed job may redo a step, so a step is a key, not an append. With more steps than the
// width has room for (a cell under MIN_CELL px, or more than MAX_CELLS cells), runs of consecutive steps share a column
// holding their mean, with min and max in its tooltip. The bin size is a round number
// (1, 2, 5, 10, ...) and bins start at multiples of it, so a live job's older columns keep
// their values while new steps arrive. Within a row, neighbouring columns of one identical
// value are drawn as one rect: LeMo's schedule is usually constant across steps, so a long
// job costs a few elements per layer instead of one per cell.

import { el, fmtTick, hostWidth, niceTicks } from './chart.js';

const MIN_CELL = 3;  // px; narrower columns cannot be told apart or hovered
// At most this many cells (layers x columns): a deep model gets fewer, wider columns, which
// keeps one drawing near a tenth of a second even on a slow machine when every cell differs.
const MAX_CELLS = 8000;

// Viridis at nine stops: its lightness rises steadily (it reads in greyscale and to the
// colour-blind) and both ends stand out on the light and the dark card alike.
const RAMP = ['#440154', '#472d7b', '#3b528b', '#2c728e', '#21918c', '#28ae80', '#5ec962', '#addc30', '#fde725'];
const RAMP_RGB = RAMP.map((c) => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)));

// The colour of a kept share in [0, 1] (a fixed scale, so jobs compare at a glance).
export function keptColour(v) {
  const t = Math.max(0, Math.min(1, v)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(t)), f = t - i;
  const [a, b] = [RAMP_RGB[i], RAMP_RGB[i + 1]];
  return `rgb(${a.map((x, k) => Math.round(x + (b[k] - x) * f)).join(',')})`;
}

const pct = (v) => `${+(v * 100).toFixed(1)}%`;

// The kept shares seen so far, by step. version changes whenever the picture would.
export class KeptSeries {
  constructor() {
    this.byStep = new Map();
    this.layers = 0;
    this.version = 0;
    this.sorted = null;
  }

  // Records one step's shares; returns true when that changed anything.
  add(step, fractions) {
    if (!Number.isFinite(step) || !Array.isArray(fractions) || !fractions.length) return false;
    const f = fractions.map((x) => (typeof x === 'number' && isFinite(x) ? Math.max(0, Math.min(1, x)) : NaN));
    const old = this.byStep.get(step);
    if (old && old.length === f.length && old.every((x, i) => x === f[i] || (isNaN(x) && isNaN(f[i])))) return false;
    if (!old) this.sorted = null;
    this.byStep.set(step, f);
    this.layers = Math.max(this.layers, f.length);
    this.version++;
    return true;
  }

  get size() { return this.byStep.size; }

  steps() {
    if (!this.sorted) this.sorted = [...this.byStep.keys()].sort((a, b) => a - b);
    return this.sorted;
  }

  latest() {
    const s = this.steps();
    return s.length ? { step: s[s.length - 1], fractions: this.byStep.get(s[s.length - 1]) } : null;
  }
}

// The smallest of 1, 2, 5, 10, 20, 50, ... that is at least n.
function roundUp(n) {
  for (let p = 1; ; p *= 10) for (const m of [1, 2, 5]) if (m * p >= n) return m * p;
}

// Bins the sorted steps into columns of `bin` steps: {first, last, n, mean, min, max} with
// one entry per layer in mean/min/max (NaN where no step of the bin had that layer).
function columns(series, bin) {
  const steps = series.steps(), L = series.layers, out = [];
  for (let s = 0; s < steps.length; s += bin) {
    const part = steps.slice(s, s + bin);
    const mean = new Array(L).fill(0), min = new Array(L).fill(Infinity), max = new Array(L).fill(-Infinity);
    const cnt = new Array(L).fill(0);
    for (const st of part) {
      const f = series.byStep.get(st);
      for (let l = 0; l < L; l++) {
        const v = f[l];
        if (v === undefined || isNaN(v)) continue;
        mean[l] += v; cnt[l]++;
        if (v < min[l]) min[l] = v;
        if (v > max[l]) max[l] = v;
      }
    }
    for (let l = 0; l < L; l++) if (cnt[l]) mean[l] /= cnt[l]; else mean[l] = min[l] = max[l] = NaN;
    out.push({ first: part[0], last: part[part.length - 1], n: part.length, mean, min, max });
  }
  return out;
}

const stepText = (a, b) => (a === b ? `step ${a}` : `steps ${a}–${b}`);

// Draws the series into host (replacing its content). Returns {columns, bin} as drawn.
export function drawKeptHeatmap(host, series) {
  const steps = series.steps(), N = steps.length, nL = Math.max(1, series.layers);
  const W = hostWidth(host), Lm = 52, R = 16, T = 38, B = 34;
  const rowH = Math.max(6, Math.min(22, Math.floor(240 / nL)));
  const plotH = rowH * nL, H = T + plotH + B, plotW = W - Lm - R;
  const maxCols = Math.max(1, Math.min(Math.floor(plotW / MIN_CELL), Math.floor(MAX_CELLS / nL)));
  const bin = roundUp(Math.ceil(N / maxCols));
  const cols = columns(series, bin), C = cols.length;
  const cw = plotW / Math.max(1, C);
  const xAt = (c) => Math.round(Lm + c * cw);
  const latest = series.latest();

  const svg = el('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart heatmap', role: 'img',
    'data-layers': series.layers, 'data-columns': C, 'data-steps': N, 'data-bin': bin,
    'data-first-step': N ? steps[0] : '', 'data-last-step': N ? steps[N - 1] : '',
  });
  svg.append(el('title', {}, `Kept share per layer and step: ${series.layers} layers, ${N} steps`
    + `${bin > 1 ? ` in ${C} columns of ${bin} steps` : ''}`
    + `${latest ? `; step ${latest.step}: ${latest.fractions.map((f, i) => `layer ${i} ${pct(f)}`).join(', ')}` : ''}`));
  svg.append(el('rect', { x: Lm, y: T, width: plotW, height: plotH, class: 'hm-frame' }));

  // The cells, one <g> per layer; equal uniform neighbours merge into one rect.
  const cells = el('g', { class: 'hm-cells', 'shape-rendering': 'crispEdges' });
  const gap = rowH >= 10 ? 1 : 0;
  for (let l = 0; l < series.layers; l++) {
    const row = el('g', { class: 'hm-row', 'data-layer': l });
    const y = T + l * rowH;
    for (let c = 0; c < C; c++) {
      const col = cols[c];
      const v = col.mean[l];
      if (isNaN(v)) continue;
      let text;
      let end = c;
      if (col.min[l] === col.max[l]) {
        while (end + 1 < C && cols[end + 1].min[l] === v && cols[end + 1].max[l] === v) end++;
        text = `layer ${l} · ${stepText(col.first, cols[end].last)} · ${pct(v)} kept${v >= 1 ? ' (dense)' : ''}`;
      } else {
        text = `layer ${l} · ${stepText(col.first, col.last)} (${col.n} steps) · mean ${pct(v)} kept`
          + ` (min ${pct(col.min[l])}, max ${pct(col.max[l])})`;
      }
      const r = el('rect', { x: xAt(c), y, width: Math.max(1, xAt(end + 1) - xAt(c)), height: rowH - gap, fill: keptColour(v), class: 'hm-cell' });
      r.append(el('title', {}, text));
      row.append(r);
      c = end;
    }
    cells.append(row);
  }
  svg.append(cells);

  // Axes: layer numbers down the left (every k-th when rows are thin), steps along the bottom.
  const axes = el('g', { class: 'chart-grid' });
  const every = Math.ceil(13 / rowH);
  for (let l = 0; l < series.layers; l += every)
    axes.append(el('text', { x: Lm - 6, y: T + l * rowH + rowH / 2 + 4, 'text-anchor': 'end' }, String(l)));
  axes.append(el('text', { x: 12, y: T + plotH / 2, 'text-anchor': 'middle', class: 'axis-label',
    transform: `rotate(-90 12 ${T + plotH / 2})` }, 'layer'));
  if (N) {
    // a tick labels the column holding its step (columns follow recorded steps, not a scale)
    const ticks = N === 1 ? [steps[0]] : niceTicks(steps[0], steps[N - 1], Math.max(2, Math.round(W / 110)))
      .filter((t) => t >= steps[0] && t <= steps[N - 1] && Number.isInteger(t));
    let prevX = -Infinity;
    for (const t of ticks) {
      let lo = 0, hi = C - 1;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (cols[mid].last < t) lo = mid + 1; else hi = mid; }
      const x = Lm + (lo + 0.5) * cw;
      if (x - prevX < 40) continue;  // two ticks in one narrow stretch would overprint
      prevX = x;
      axes.append(el('line', { x1: x, x2: x, y1: T + plotH, y2: T + plotH + 4 }));
      axes.append(el('text', { x, y: T + plotH + 16, 'text-anchor': 'middle' }, fmtTick(t)));
    }
  }
  axes.append(el('text', { x: Lm + plotW / 2, y: H - 4, 'text-anchor': 'middle', class: 'axis-label' },
    bin > 1 ? `step (${bin} steps per column)` : 'step'));
  svg.append(axes);

  // The legend: the colour scale from 0% to 100% kept, in the top margin at the right.
  const gid = `hm-grad-${Math.random().toString(36).slice(2, 8)}`;
  const grad = el('linearGradient', { id: gid, x1: 0, x2: 1, y1: 0, y2: 0 });
  RAMP.forEach((c, i) => grad.append(el('stop', { offset: i / (RAMP.length - 1), 'stop-color': c })));
  const defs = el('defs');
  defs.append(grad);
  svg.append(defs);
  const lw = 150, lx = W - R - lw;
  const legend = el('g', { class: 'hm-legend' });
  legend.append(el('text', { x: lx - 8, y: 13, 'text-anchor': 'end' }, 'kept share'));
  legend.append(el('rect', { x: lx, y: 4, width: lw, height: 11, fill: `url(#${gid})`, class: 'hm-scale' }));
  for (const [v, anchor] of [[0, 'start'], [0.5, 'middle'], [1, 'end']])
    legend.append(el('text', { x: lx + v * lw, y: 28, 'text-anchor': anchor, class: 'tick' }, pct(v)));
  svg.append(legend);

  host.replaceChildren(svg);
  return { columns: C, bin };
}
