// smoothing.js: the train-loss smoothing shared by the job page and the compare view: the
// EMA itself, its weight (kept in localStorage, so every chart and every reload agrees), and
// the small slider that sets it.
//
// The EMA is TensorBoard's: debiased, so the first points are not dragged towards zero, and
// a weight of 0 gives the raw curve back. Its default of 0.6 is TensorBoard's too: per-step
// loss on short windows is noisy enough that the raw line hides the trend.

import { h } from './util.js';

const STORE = 'lemo.smoothing';
export const DEFAULT_SMOOTHING = 0.6;
const MAX = 0.99;  // at 1 the curve would never move from its first point

const clamp = (w) => Math.min(MAX, Math.max(0, w));

export function smoothingWeight() {
  let v = null;
  try { v = localStorage.getItem(STORE); } catch { /* storage disabled */ }
  const w = v === null || v === '' ? NaN : Number(v);
  return isFinite(w) ? clamp(w) : DEFAULT_SMOOTHING;
}

export function setSmoothingWeight(w) {
  try { localStorage.setItem(STORE, String(clamp(w))); } catch { /* this page only */ }
}

// values -> smoothed values (same length). A non-finite value passes through unsmoothed and
// does not disturb the average, as in TensorBoard.
export function ema(values, weight) {
  const out = new Array(values.length);
  let last = 0, n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!isFinite(v)) { out[i] = v; continue; }
    last = last * weight + (1 - weight) * v;
    n++;
    out[i] = last / (1 - weight ** n);  // weight 0: the value itself
  }
  return out;
}

// The slider (0 to 0.99) with its value beside it; onChange(weight) after it is stored.
export function smoothingControl(onChange) {
  const w = smoothingWeight();
  const out = h('output', { class: 'mono small', for: 'smoothing' }, w.toFixed(2));
  const input = h('input', {
    id: 'smoothing', type: 'range', min: 0, max: MAX, step: 0.01, value: w,
    'aria-label': 'Train loss smoothing weight', title: 'EMA weight of the smoothed train loss (0 = raw)',
  });
  input.addEventListener('input', () => {
    const v = clamp(Number(input.value));
    out.textContent = v.toFixed(2);
    setSmoothingWeight(v);
    onChange(v);
  });
  return h('label', { class: 'smoothing small muted' }, 'Smoothing', input, out);
}
