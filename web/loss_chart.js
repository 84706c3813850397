// loss_chart.js: loss against step, for one job (its page) or several (the compare view).
//
// Each job is a group: its raw train loss drawn faint, the same loss smoothed (smoothing.js's
// EMA) drawn solid over it, and its eval loss as a dashed line with a marker per eval. The
// raw points stay visible so the smoothing never hides a spike; eval gets markers because
// it is sparse (one point every eval_every steps) and a line alone would hide where it was
// measured. One job keeps the page's palette (accent train, orange eval); several get one
// colour each (--c0.. in style.css), train and eval alike, with the line style telling
// train from eval. The legend is HTML above the SVG, so long job ids wrap instead of
// running off the drawing.
//
// The SVG carries data-train-points, data-eval-points and data-smoothing, and each smoothed
// line its data-last (the newest smoothed value, unrounded): the browser test reads them.

import { el, fmtTick, hostWidth, niceTicks } from './chart.js';
import { ema } from './smoothing.js';
import { h } from './util.js';

const PALETTE = 8;

// A small picture of a line style for the legend: 'raw', 'train', 'eval' or 'job' (a
// job's colour: solid line and marker). Drawn with CSS borders, not SVG, so the chart's
// host holds one <svg>: the chart.
function swatch(kind, style) {
  return h('span', { class: `swatch ${kind}`, style, 'aria-hidden': 'true' },
    h('span', { class: 'sw-line' }), kind === 'eval' || kind === 'job' ? h('span', { class: 'sw-dot' }) : null);
}

const legendItem = (kind, text, style) => h('span', { class: 'lg-item' }, swatch(kind, style), text);

// groups: [{key, label, href, train: [{step, loss}], evals: [{step, loss}]}], each sorted by
// step. opts: {totalSteps (widens the x axis to the end of a running job), finished (every
// job has ended: the axis ends at the last step drawn), weight (EMA), empty (text when there
// is nothing to draw)}. Replaces host's content.
export function drawLossCurves(host, groups, opts = {}) {
  const weight = opts.weight ?? 0;
  const solo = groups.length === 1;
  const W = hostWidth(host), H = 280, L = 52, R = 16, T = 12, B = 34;
  const trains = groups.flatMap((g) => g.train), all = trains.concat(groups.flatMap((g) => g.evals));
  const nTrain = trains.length, nEval = all.length - nTrain;
  const svg = el('svg', {
    viewBox: `0 0 ${W} ${H}`, class: `chart loss${solo ? '' : ' multi'}`, role: 'img',
    'data-train-points': nTrain, 'data-eval-points': nEval, 'data-smoothing': weight, 'data-groups': groups.length,
  });
  const smoothed = groups.map((g) => ema(g.train.map((p) => p.loss), weight));

  const legend = h('div', { class: 'loss-legend small' });
  if (solo) {
    legend.append(legendItem('raw', 'train (raw)'), legendItem('train', `train (smoothed ${weight.toFixed(2)})`), legendItem('eval', 'eval'));
  } else {
    groups.forEach((g, i) => {
      const style = `--s: var(--c${i % PALETTE})`;
      legend.append(h(g.href ? 'a' : 'span', { class: 'lg-item lg-job', href: g.href, 'data-key': g.key, title: g.title || g.label },
        swatch('job', style), h('span', { class: 'lg-label' }, g.label)));
    });
    legend.append(h('span', { class: 'lg-key muted' },
      legendItem('train', `train, smoothed ${weight.toFixed(2)}`), legendItem('raw', 'raw'), legendItem('eval', 'eval')));
  }

  const describe = (g, i) => {
    const t = g.train.length ? `latest train ${g.train[g.train.length - 1].loss.toFixed(4)} (smoothed ${smoothed[i][g.train.length - 1].toFixed(4)}) at step ${g.train[g.train.length - 1].step}` : 'no train points';
    const e = g.evals.length ? `, latest eval ${g.evals[g.evals.length - 1].loss.toFixed(4)}` : '';
    return `${solo ? '' : `${g.label}: `}${g.train.length} train points, ${t}; ${g.evals.length} eval points${e}`;
  };
  svg.append(el('title', {}, all.length ? `Loss by step. ${groups.map(describe).join('. ')}` : 'Loss chart: no points yet'));
  host.replaceChildren(legend, svg);
  if (!all.length) {
    svg.append(el('text', { x: W / 2, y: H / 2, class: 'chart-empty', 'text-anchor': 'middle' }, opts.empty || 'Waiting for the first step…'));
    return;
  }
  // A running job's x axis runs to its last step once a third of it is done; before that,
  // to half again the latest step, so a long job's first points are not squeezed to the
  // left. An ended one (a cancelled job stops short of its total) ends where its points do.
  const totalSteps = opts.totalSteps || 0;
  const lastStep = Math.max(...all.map((p) => p.step), 1);
  const maxStep = opts.finished ? lastStep
    : totalSteps && lastStep * 3 >= totalSteps ? Math.max(totalSteps, lastStep)
      : Math.max(Math.ceil(lastStep * 1.5), Math.min(totalSteps || 10, 10));
  const minStep = Math.min(0, ...all.map((p) => p.step));
  // the range covers the raw points (drawn too), so the smoothed line always fits inside
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

  const pts = (arr, val = (p) => p.loss) => arr.map((p, i) => `${x(p.step).toFixed(1)},${y(val(p, i)).toFixed(1)}`).join(' ');
  // every group's raw line first, so no job's faint points lie over another's smoothed line
  const layers = { raw: el('g', { class: 'raw-layer' }), lines: el('g', { class: 'line-layer' }) };
  groups.forEach((g, i) => {
    const style = solo ? null : `--s: var(--c${i % PALETTE}); --se: var(--c${i % PALETTE})`;
    const raw = el('g', style ? { class: 'raw-group', style } : { class: 'raw-group' });
    const lines = el('g', { class: 'loss-group', 'data-key': g.key || '', 'data-train-points': g.train.length, 'data-eval-points': g.evals.length });
    if (style) lines.setAttribute('style', style);
    if (g.train.length > 1) raw.append(el('polyline', { points: pts(g.train), class: 'series raw', 'data-points': g.train.length }));
    if (g.train.length) {
      const sm = smoothed[i];
      lines.append(el('polyline', {
        points: pts(g.train, (p, k) => sm[k]), class: 'series train smooth', 'data-points': g.train.length, 'data-last': sm[sm.length - 1],
      }));
      if (g.train.length === 1) lines.append(el('circle', { cx: x(g.train[0].step), cy: y(g.train[0].loss), r: 3, class: 'dot train' }));
    }
    if (g.evals.length) {
      const ge = el('g', { class: 'series-eval', 'data-points': g.evals.length });
      if (g.evals.length > 1) ge.append(el('polyline', { points: pts(g.evals), class: 'series eval' }));
      for (const p of g.evals) {
        const c = el('circle', { cx: x(p.step), cy: y(p.loss), r: 3.5, class: 'dot eval' });
        c.append(el('title', {}, `${solo ? '' : `${g.label}: `}eval loss ${p.loss.toFixed(4)} at step ${p.step}`));
        ge.append(c);
      }
      lines.append(ge);
    }
    layers.raw.append(raw);
    layers.lines.append(lines);
  });
  svg.append(layers.raw, layers.lines);
}

// The job page's chart: one job's train and eval loss (opts as drawLossCurves's).
export function drawLossChart(host, train, evals, opts) {
  drawLossCurves(host, [{ key: 'job', label: 'job', train, evals }], opts);
}
