// newjob.js: the create-job form with a live memory/time estimate.
//
// Every change re-asks POST /v1/fine_tuning/jobs?dry_run=true with the same body the real
// create will send, so the estimate shown (peak memory, fits, largest context that fits,
// time) is for exactly what will be submitted; with LeMo on, the same job without it is
// estimated beside it. "Create job" stays disabled until the
// estimate for the current values has arrived; empty fields mean "server default".
// LeMo's learned predictors are per base model: the dry run says whether the model's are
// ready or whether this job will first prepare them, and the form says so under the estimate.

import { get, post } from './api.js';
import { createDropZone } from './files.js';
import { loadModels, hintBox, modelLabel } from './models.js';
import { h, debounce, errorText, fileLabel, fmtBytes, fmtDuration, fmtNum, reportError, showBanner } from './util.js';

const TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const DEFAULT_TARGETS = new Set(['q_proj', 'k_proj', 'v_proj', 'o_proj']);

// Numeric hyperparameter fields: [name, label, kind, help, step].
const NUMBERS = [
  ['max_steps', 'Max steps', 'int', 'optimizer steps; empty = from epochs', 1],
  ['context_length', 'Context length', 'int', 'tokens per training window', 1],
  ['learning_rate', 'Learning rate', 'float', 'peak LR (AdamW, warmup + cosine)', 'any'],
  ['batch_size', 'Batch size', 'int', 'windows per optimizer step', 1],
  ['lora_r', 'LoRA rank r', 'int', 'adapter rank', 1],
  ['lora_alpha', 'LoRA alpha', 'float', 'scale = alpha / r', 'any'],
  ['checkpoint_every', 'Checkpoint every', 'int', 'steps between checkpoints', 1],
  ['eval_every', 'Eval every', 'int', 'steps between eval-loss runs', 1],
];

function field(id, label, control, help) {
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    control,
    help ? h('div', { class: 'help small muted', id: `${id}-help` }, help) : null);
}

export function renderNewJob(main, presetFile = '', presetModel = '') {
  let alive = true, estimateSeq = 0, estimatedKey = '';
  const modelSel = h('select', { id: 'f-model', name: 'model', required: true });
  const fileSel = h('select', { id: 'f-file', name: 'training_file', required: true });
  const valSel = h('select', { id: 'f-valfile', name: 'validation_file' });
  const suffix = h('input', { id: 'f-suffix', name: 'suffix', type: 'text', maxlength: 64, placeholder: 'optional', 'aria-describedby': 'f-suffix-help' });
  const seed = h('input', { id: 'f-seed', name: 'seed', type: 'number', min: 0, step: 1, placeholder: 'default', 'aria-describedby': 'f-seed-help' });
  const nums = {};
  for (const [name, , kind, , step] of NUMBERS)
    nums[name] = h('input', { id: `hp-${name}`, name, type: 'number', min: 0, step, placeholder: 'default', inputmode: kind === 'int' ? 'numeric' : 'decimal', 'aria-describedby': `hp-${name}-help` });
  // where each layer's activations wait for its backward (hyperparameters.memory). The
  // labels are short enough for the narrowest grid column (the help line says the rest):
  // a select cut mid-word hides which choice is made.
  const memSel = h('select', { id: 'hp-memory', name: 'memory', 'aria-describedby': 'hp-memory-help' },
    [['recompute', 'Recompute', 'layer checkpoints on the device, the rest recomputed'],
      ['offload', 'Offload', 'layer checkpoints in host memory'],
      ['offload_attention', 'Offload + attention', 'layer checkpoints and attention in host memory'],
      ['keep', 'Keep all', 'every activation on the device'],
      ['auto', 'Auto', 'the fastest that fits the GPU, per layer']]
      .map(([v, t, title]) => h('option', { value: v, title }, t)));
  // LeMo's token elimination (method.type "lemo"): the scores, the kept share of a sparse
  // layer's blocks (a number, or "auto": the predictors' calibrated schedule), the block size
  const lemoSel = h('select', { id: 'hp-lemo', name: 'lemo', 'aria-describedby': 'hp-lemo-help' },
    [['', 'Off (dense)'], ['exact', 'LeMo: exact scores'], ['predictor', 'LeMo: predictors'],
      ['random', 'LeMo: random blocks']]
      .map(([v, t]) => h('option', { value: v }, t)));
  // text, not type=number: it also takes the word "auto" (the datalist offers it)
  const lemoKeep = h('input', { id: 'hp-lemo-keep', name: 'lemo_keep', type: 'text', placeholder: '0.4', inputmode: 'decimal',
    autocomplete: 'off', spellcheck: 'false', list: 'hp-lemo-keep-list', 'aria-describedby': 'hp-lemo-keep-help' });
  const keepList = h('datalist', { id: 'hp-lemo-keep-list' },
    h('option', { value: 'auto' }, 'calibrated schedule (predictor scores)'), h('option', { value: '0.4' }), h('option', { value: '0.25' }));
  const lemoBlock = h('select', { id: 'hp-lemo-block', name: 'lemo_block', 'aria-describedby': 'hp-lemo-block-help' },
    ['64', '32', '128'].map((v) => h('option', { value: v }, `${v} tokens`)));
  const targets = TARGETS.map((t) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', name: 'target_modules', value: t, checked: DEFAULT_TARGETS.has(t) }), ` ${t}`));

  const estBox = h('div', { class: 'estimate', id: 'estimate', 'aria-live': 'polite' },
    h('p', { class: 'muted' }, 'Choose a model and a dataset to see the memory and time estimate.'));
  const submit = h('button', { class: 'btn primary', type: 'submit', id: 'create-job', disabled: true }, 'Create job');
  const formErr = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const modelHint = h('div', {});

  const form = h('form', { class: 'newjob', id: 'newjob-form', novalidate: true },
    h('section', { class: 'card', 'aria-labelledby': 'nj-what' },
      h('h2', { id: 'nj-what' }, 'Model and data'),
      modelHint,
      h('div', { class: 'grid2' },
        field('f-model', 'Base model', modelSel, 'from the server\'s models directory'),
        field('f-file', 'Training file', fileSel, 'an uploaded JSONL dataset'),
        field('f-valfile', 'Validation file', valSel, 'optional; default holds out part of the training file'),
        field('f-suffix', 'Suffix', suffix, 'added to the fine-tuned model name'),
        field('f-seed', 'Seed', seed, 'same seed, same data order and init')),
      h('details', { class: 'inline-upload' }, h('summary', {}, 'Upload a new dataset'),
        createDropZone((obj) => loadFiles(obj.id)))),
    h('section', { class: 'card', 'aria-labelledby': 'nj-hp' },
      h('h2', { id: 'nj-hp' }, 'Hyperparameters'),
      h('div', { class: 'grid4' }, NUMBERS.map(([name, label, , help]) => field(`hp-${name}`, label, nums[name], help)),
        field('hp-memory', 'Activation memory', memSel, 'recompute: checkpoints on the device; offload: in host memory, a lower GPU peak; + attention: long contexts train faster; keep all: nothing recomputed; auto: the fastest that fits, per layer'),
        field('hp-lemo', 'Token elimination', lemoSel, 'LeMo: each layer\'s attention keeps only its most informative token blocks (first and last layers dense); predictors are learned once per base model; random blocks are the control'),
        field('hp-lemo-keep', 'Kept share', [lemoKeep, keepList], 'of a sparse layer\'s blocks; default 0.4; "auto": the predictors\' calibrated schedule (with learned predictors only)'),
        field('hp-lemo-block', 'Block size', lemoBlock, 'the context length must be a multiple of it')),
      h('fieldset', { class: 'targets' }, h('legend', {}, 'LoRA target modules'), targets)),
    h('section', { class: 'card', 'aria-labelledby': 'nj-est' },
      h('h2', { id: 'nj-est' }, 'Estimate'),
      estBox, formErr,
      h('div', { class: 'actions' }, submit, h('a', { class: 'btn', href: '#/jobs' }, 'Cancel'))));

  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'New fine-tuning job')), form);

  // The request body for both the estimate and the create.
  function body() {
    const hp = {};
    for (const [name, , kind] of NUMBERS) {
      const v = nums[name].value.trim();
      if (v !== '') hp[name] = kind === 'int' ? parseInt(v, 10) : parseFloat(v);
    }
    hp.target_modules = targets.map((l) => l.firstChild).filter((c) => c.checked).map((c) => c.value);
    if (memSel.value !== 'recompute') hp.memory = memSel.value;
    const b = { model: modelSel.value, training_file: fileSel.value };
    if (lemoSel.value) {
      const lemo = { hyperparameters: hp, scores: lemoSel.value, block: parseInt(lemoBlock.value, 10) };
      const keep = lemoKeep.value.trim();
      // a number goes as one, anything else as typed: the dry run names what is wrong with it
      if (keep !== '') lemo.keep = keep.toLowerCase() === 'auto' ? 'auto' : (isFinite(Number(keep)) ? Number(keep) : keep);
      b.method = { type: 'lemo', lemo };
    } else b.hyperparameters = hp;
    if (valSel.value) b.validation_file = valSel.value;
    if (suffix.value.trim()) b.suffix = suffix.value.trim();
    if (seed.value.trim() !== '') b.seed = parseInt(seed.value, 10);
    return b;
  }

  // Marks the control the API's error.param names ("hyperparameters.lora_r", "lora.r", "model" ...).
  function markInvalid(param) {
    for (const c of form.querySelectorAll('[aria-invalid]')) c.removeAttribute('aria-invalid');
    if (!param) return;
    const p = String(param).replace(/^hyperparameters\./, '').replace(/^method\.lemo\.(hyperparameters\.)?/, (m, hp) => hp ? '' : 'lemo_');
    const named = { model: modelSel, training_file: fileSel, validation_file: valSel, seed, suffix, memory: memSel,
      lemo_keep: lemoKeep, lemo_block: lemoBlock, lemo_scores: lemoSel, lemo_dense_layers: lemoSel };
    for (const k of [p, p.replace(/\./g, '_'), p.split('.').pop()]) {
      const c = nums[k] || named[k];
      if (c) { c.setAttribute('aria-invalid', 'true'); return; }
    }
    if (p.startsWith('target_modules')) targets[0].firstChild.setAttribute('aria-invalid', 'true');
  }

  // est: the estimate of the job as set; dense: the same job without LeMo (or null)
  function showEstimate(est, dense) {
    const fits = est.fits !== false;
    // offloaded checkpoints live in pinned host memory: the device can fit while the host does not
    const hostShort = !fits && est.device_fits === true;
    const rows = [
      ['Peak memory', fmtBytes(est.peak_bytes)],
      ['Fits on the device', (est.device_fits ?? fits) ? 'yes' : 'no'],
      ['Largest context that fits', est.max_context_length ? `${fmtNum(Math.round(est.max_context_length))} tokens` : '–'],
      ['Estimated time', fmtDuration(est.est_seconds)],
    ];
    const devMem = est.device_mem_bytes ?? est.device_bytes;
    if (est.device || devMem) rows.push(['Device', [est.device, devMem ? `${fmtBytes(devMem)}${est.device_mem_source ? ` (${est.device_mem_source})` : ''}` : ''].filter(Boolean).join(' · ')]);
    const steps = est.steps ?? est.total_steps;
    if (steps) rows.push(['Steps', fmtNum(Math.ceil(steps))]);
    if (est.tokens) rows.push(['Tokens', fmtNum(est.tokens)]);
    if (est.tokens_per_s) rows.push(['Expected speed', `${fmtNum(Math.round(est.tokens_per_s))} tok/s`]);
    // the activation policy per layer (with auto: the one the trainer will pick)
    const ml = est.memory_layers && typeof est.memory_layers === 'object' ? Object.entries(est.memory_layers) : [];
    if (ml.length) rows.push(['Layers', ml.map(([k, n]) => `${n} ${k.replace(/_/g, ' ')}`).join(', ')]);
    const lemo = est.lemo && typeof est.lemo === 'object' ? est.lemo : null;
    if (lemo && Array.isArray(lemo.kept_fraction)) {
      const kf = lemo.kept_fraction;
      // with keep "auto" before the predictors exist, the server says which schedule it priced
      rows.push(['Kept per layer', kf.map((f) => `${Math.round(100 * f)}%`).join(' ')
        + (typeof lemo.schedule === 'string' ? ` (${lemo.schedule})` : '')]);
    } else if (lemo && lemo.predictor === 'pending') rows.push(['Kept per layer', 'calibrated when the predictors are prepared']);
    if (lemo && lemo.predictor) rows.push(['Predictors', lemo.predictor === 'ready' ? 'ready' : 'prepared first']);
    if (dense) rows.push(['Without LeMo', `${fmtBytes(dense.peak_bytes)} · ${fmtDuration(dense.est_seconds)}`]);
    if (est.host_bytes) rows.push(['Pinned host memory', `${fmtBytes(est.host_bytes)}${est.host_mem_bytes ? ` of ${fmtBytes(est.host_mem_bytes)}` : ''}${hostShort ? ': too much' : ''}`]);
    // Where the peak memory goes, largest first.
    const parts = est.breakdown && typeof est.breakdown === 'object'
      ? Object.entries(est.breakdown).filter(([, v]) => typeof v === 'number').sort((a, b) => b[1] - a[1]) : [];
    const breakdown = parts.length ? h('details', { class: 'breakdown' }, h('summary', {}, 'Memory breakdown'),
      h('table', { class: 'compact' }, h('tbody', {}, parts.map(([k, v]) => h('tr', {},
        h('th', { scope: 'row' }, k.replace(/_/g, ' ')), h('td', { class: 'num' }, fmtBytes(v)),
        h('td', { class: 'bar-cell' }, h('span', { class: 'mini-bar', style: `width:${Math.max(1, (100 * v) / parts[0][1]).toFixed(1)}%` }))))))) : null;
    estBox.replaceChildren(...[
      h('dl', { class: `est-grid ${fits ? 'fits' : 'nofit'}`, 'data-fits': String(fits) },
        rows.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))),
      breakdown,
      lemo && lemo.predictor === 'pending' ? h('p', { class: 'note', id: 'predictor-note', role: 'note' },
        `${est.model || 'This model'} has no LeMo predictors yet: this job first prepares them (it trains each layer's `
        + 'predictor on the training file and calibrates the kept shares), which takes a while; later LeMo jobs on this model reuse them.') : null,
      fits ? null : h('p', { class: 'warn' },
        `This job needs more ${hostShort ? 'host memory for its offloaded checkpoints than this machine has' : 'memory than the device has'}${est.max_context_length ? `: lower the context length to ${fmtNum(est.max_context_length)} or less` : ''}.`)].filter(Boolean));
  }

  const estimate = debounce(async () => {
    const b = body();
    const key = JSON.stringify(b);
    submit.disabled = true;
    formErr.hidden = true;
    if (!b.model || !b.training_file) {
      estBox.replaceChildren(h('p', { class: 'muted' }, 'Choose a model and a dataset to see the memory and time estimate.'));
      return;
    }
    const seq = ++estimateSeq;
    estBox.classList.add('loading');
    try {
      // with LeMo, the same job dense beside it: what the token elimination saves
      const dense = b.method ? { ...b, hyperparameters: b.method.lemo.hyperparameters } : null;
      if (dense) delete dense.method;
      const [est, dest] = await Promise.all([post('/v1/fine_tuning/jobs?dry_run=true', b),
        dense ? post('/v1/fine_tuning/jobs?dry_run=true', dense).catch(() => null) : null]);
      if (!alive || seq !== estimateSeq) return;
      markInvalid(null);
      showEstimate(est, dest);
      estimatedKey = key;
      submit.disabled = false;
    } catch (e) {
      if (!alive || seq !== estimateSeq) return;
      markInvalid(e.param);
      estBox.replaceChildren(h('p', { class: 'err-text', role: 'alert' }, errorText(e)));
    } finally {
      if (seq === estimateSeq) estBox.classList.remove('loading');
    }
  }, 350);

  form.addEventListener('input', estimate);
  form.addEventListener('change', estimate);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const b = body();
    if (JSON.stringify(b) !== estimatedKey) { estimate(); return; }
    submit.disabled = true;
    try {
      const job = await post('/v1/fine_tuning/jobs', b);
      showBanner('');
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (e) {
      markInvalid(e.param);
      formErr.textContent = errorText(e);
      formErr.hidden = false;
      submit.disabled = false;
    }
  });

  async function loadFiles(select) {
    try {
      const page = await get('/v1/files?limit=100');
      if (!alive) return;
      const files = (page.data || []).filter((f) => !f.purpose || f.purpose === 'fine-tune');
      const opts = (sel, blank) => {
        const keep = sel.value;
        sel.replaceChildren(h('option', { value: '' }, blank),
          ...files.map((f) => h('option', { value: f.id, title: `${f.filename} · ${f.id}` }, fileLabel(f))));
        if (keep && files.some((f) => f.id === keep)) sel.value = keep;
      };
      opts(fileSel, files.length ? '— choose a dataset —' : '— upload a dataset first —');
      opts(valSel, 'none (held out)');
      const want = select || presetFile;
      if (want && files.some((f) => f.id === want)) fileSel.value = want;
      else if (!fileSel.value && files.length === 1) fileSel.value = files[0].id;
      estimate();
    } catch (e) { if (alive) reportError(e); }
  }

  async function loadModelList() {
    try {
      const { base, hint } = await loadModels();
      if (!alive) return;
      modelSel.replaceChildren(...base.map((m) => h('option', { value: m.id, 'data-random': m.random_init ? 'true' : 'false' }, modelLabel(m))));
      if (!base.length) {
        modelSel.append(h('option', { value: '' }, '— no models —'));
        modelHint.replaceChildren(hintBox(hint));
      } else modelHint.replaceChildren();
      if (presetModel && base.some((m) => m.id === presetModel)) modelSel.value = presetModel;
      estimate();
    } catch (e) { if (alive) reportError(e); }
  }

  loadModelList();
  loadFiles();
  return () => { alive = false; };
}
