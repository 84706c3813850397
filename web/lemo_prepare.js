// lemo_prepare.js: a base model's LeMo predictors on the Models page: the status cell and
// the small form that prepares them.
//
// GET /v1/models gives each base model lemo: {status: none | preparing | ready, ...}. Ready
// predictors show their held-out recall beside random choice's (the honest yardstick: a
// predictor is only useful where it beats random blocks); block, trained context and the
// calibrated schedule go in the tooltip. Preparing links to the job doing it. None offers
// Prepare: POST /v1/models/ID/lemo {training_file, context_length?} queues a preparation
// job, whose page the form then opens.

import { get, post } from './api.js';
import { h, errorText, fileLabel, fmtNum, fmtTime, reportError } from './util.js';

const pct = (x) => (typeof x === 'number' && isFinite(x) ? `${Math.round(100 * x)}%` : '–');
let formSeq = 0;

// What the tooltip of ready predictors says.
function readyTitle(l) {
  const bits = [];
  if (l.block) bits.push(`blocks of ${l.block} tokens`);
  if (l.trained_context) bits.push(`trained at context ${fmtNum(l.trained_context)}`);
  if (typeof l.recall_keep === 'number') bits.push(`recall measured keeping ${pct(l.recall_keep)} of blocks`);
  if (typeof l.mean_keep === 'number') bits.push(`calibrated mean kept share ${pct(l.mean_keep)}`);
  if (Array.isArray(l.schedule) && l.schedule.length) bits.push(`schedule ${l.schedule.map(pct).join(' ')}`);
  if (l.prepared_at) bits.push(`prepared ${fmtTime(l.prepared_at)}`);
  const others = (l.blocks || []).filter((b) => b !== l.block);
  if (others.length) bits.push(`also prepared: blocks of ${others.join(', ')}`);
  return bits.join(' · ');
}

// The LeMo cell's content for base model m; onPrepare opens the form.
export function lemoCell(m, onPrepare) {
  const l = m.lemo;
  if (!l || typeof l !== 'object' || !l.status) return [h('span', { class: 'muted' }, '–')];
  if (l.status === 'ready') {
    const title = readyTitle(l);
    return [h('span', { class: 'badge st-succeeded lemo-status', title }, 'ready'),
      h('span', { class: 'small lemo-recall', title },
        typeof l.recall === 'number' ? `recall ${pct(l.recall)}${typeof l.random_recall === 'number' ? ` (random ${pct(l.random_recall)})` : ''}`
          : 'recall not measured')];  // too few blocks per held-out window to rank any
  }
  if (l.status === 'preparing') {
    return [h('span', { class: 'badge st-running lemo-status', title: l.block ? `blocks of ${l.block} tokens` : undefined }, 'preparing'),
      l.job_id ? h('a', { class: 'mono small lemo-job', href: `#/jobs/${encodeURIComponent(l.job_id)}`, title: 'the job preparing them' }, l.job_id) : null];
  }
  if (l.status === 'none') {
    return [h('span', { class: 'badge lemo-status', title: 'the first LeMo job with learned predictors prepares them, or prepare them now' }, 'none'),
      h('button', { class: 'btn small lemo-prepare', type: 'button', onclick: onPrepare, 'aria-label': `Prepare LeMo predictors for ${m.id}` }, 'Prepare')];
  }
  return [h('span', { class: 'badge lemo-status' }, l.status)];
}

// A table row holding the Prepare form for model m, spanning `colspan` columns.
export function prepareRow(m, colspan, onClose) {
  const n = ++formSeq;
  const fileSel = h('select', { id: `prep-file-${n}`, class: 'prepare-file', required: true }, h('option', { value: '' }, 'loading datasets…'));
  const ctx = h('input', { id: `prep-ctx-${n}`, class: 'prepare-ctx', type: 'number', min: 1, step: 1, placeholder: 'default', inputmode: 'numeric' });
  const submit = h('button', { class: 'btn primary small', type: 'submit', disabled: true }, 'Prepare predictors');
  const err = h('div', { class: 'form-error small', role: 'alert', hidden: true });
  const form = h('form', { class: 'prepare-form', novalidate: true, 'aria-label': `Prepare LeMo predictors for ${m.id}` },
    h('label', { for: fileSel.id }, 'Training file'), fileSel,
    h('label', { for: ctx.id }, 'Context length'), ctx,
    submit,
    h('button', { class: 'btn small', type: 'button', onclick: onClose }, 'Cancel'),
    h('p', { class: 'small muted prepare-help' }, 'Trains each layer\'s predictor on this dataset against the model\'s exact '
      + 'block scores and calibrates the kept shares; it runs as a job (no adapter), and every later LeMo job on '
      + `${m.id} reuses the result.`),
    err);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const c of [fileSel, ctx]) c.removeAttribute('aria-invalid');
    err.hidden = true;
    const body = { training_file: fileSel.value };
    if (ctx.value.trim() !== '') body.context_length = parseInt(ctx.value, 10);
    submit.disabled = true;
    try {
      const job = await post(`/v1/models/${encodeURIComponent(m.id)}/lemo`, body);
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (e) {
      submit.disabled = false;
      if (e.status === 401) { reportError(e); return; }
      const p = String(e.param || '');
      if (/training_file/.test(p)) fileSel.setAttribute('aria-invalid', 'true');
      else if (/context_length/.test(p)) ctx.setAttribute('aria-invalid', 'true');
      err.textContent = errorText(e);
      err.hidden = false;
    }
  });

  (async () => {
    try {
      const page = await get('/v1/files?limit=100');
      const files = ((page && page.data) || []).filter((f) => !f.purpose || f.purpose === 'fine-tune');
      fileSel.replaceChildren(h('option', { value: '' }, files.length ? '— choose a dataset —' : '— none uploaded —'),
        ...files.map((f) => h('option', { value: f.id, title: `${f.filename} · ${f.id}` }, fileLabel(f))));
      if (files.length === 1) fileSel.value = files[0].id;
      if (!files.length) err.replaceChildren('Upload a dataset first, on the ', h('a', { href: '#/files' }, 'Datasets'), ' page.');
      err.hidden = files.length > 0;
    } catch (e) { reportError(e); }
    const sync = () => { submit.disabled = !fileSel.value; };
    fileSel.addEventListener('change', sync);
    sync();
  })();

  return h('tr', { class: 'prepare-row', 'data-for': m.id }, h('td', { colspan }, form));
}
