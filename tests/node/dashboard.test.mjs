// dashboard.test.mjs: the dashboard driven in headless Chromium against a real `lemo serve`.
//
// A user's path end to end: upload a bad dataset and read its line error, drop a good one
// on the drop zone, fill the create-job form, wait for the dry-run estimate, submit, watch
// the job run (progress bar moves, loss chart gains points, events arrive live over SSE),
// pause, resume and cancel it from its page, fetch a checkpoint's adapter through its
// link, then run a short job to the end and fetch its adapter tar through the page's link.
// LeMo: the form offers learned predictors and the "auto" kept share (the estimate says when
// the model's predictors will be prepared first); a LeMo job's page draws the layer x step
// heatmap of kept shares, live, one column per step until the width calls for binning, and a
// plain job's page has none; the Models page prepares a base model's predictors (none ->
// Prepare -> the job's page -> preparing or ready, with the recall).
// A second server with no models and an API key checks the `hint` and the key field.
// The job page's loss chart smooths the train loss (an EMA whose weight a slider sets and
// localStorage keeps), draws the raw points faint behind it and the eval loss with markers;
// the jobs list filters by status and model (kept in the hash across a reload), shows each
// id on one line with a copy button, and its checkboxes open the compare view (every picked
// job's curves on one chart, from its metrics events); the Models page deletes a fine-tuned
// model behind a confirm step (a 409 shows in the banner); no select cuts its longest option.
// Screenshots: BUILD/test-logs (or $DASHBOARD_SHOTS)/dashboard-{job,job-chart,jobs,jobs-filters,
// compare,heatmap,models,nomodels,...}.png.
// Exit 0 pass, 1 fail, 77 skip (no chromium, no playwright-core or no `lemo serve`).

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  buildDir, lemoBin, requireServe, sharedDir, skip, startServer, tempDir, waitFor, writeDataset,
} from './lib_server.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
if (!fs.existsSync(CHROMIUM)) skip(`${CHROMIUM} missing (apt-get install chromium; scripts/setup.sh lists it)`);
let chromium;
try { ({ chromium } = await import('playwright-core')); } catch { skip('playwright-core not installed (npm install in tests/node)'); }
requireServe();

let failures = 0;
const t0 = Date.now();
function check(cond, what, detail = '') {
  const t = `[${((Date.now() - t0) / 1000).toFixed(1)}s]`;
  if (cond) console.log(`ok   ${t} ${what}`);
  else { failures++; console.log(`FAIL ${t} ${what}${detail ? `: ${detail}` : ''}`); }
  return !!cond;
}

// Models: the real stories260K (when ../shared is here) next to a random tiny model, so
// both labels show; without ../shared, the tiny model alone.
const realModel = path.join(sharedDir, 'models', 'stories260K');
const hasReal = fs.existsSync(path.join(realModel, 'config.json'));
const models = tempDir('models');
if (hasReal) fs.cpSync(realModel, path.join(models, 'stories260K'), { recursive: true });
const mk = spawnSync(lemoBin, ['init-model', 'tiny', path.join(models, 'tiny-random')], { encoding: 'utf8' });
if (mk.status !== 0) { console.log(`lemo init-model failed: ${mk.stderr}`); process.exit(1); }
const trainModel = hasReal ? 'stories260K' : 'tiny-random';

const work = tempDir('dash');
const good = path.join(work, 'train.jsonl');
writeDataset(good, 24, 1200);
const bad = path.join(work, 'broken.jsonl');
fs.writeFileSync(bad, '{"text": "first line is fine"}\n{"text": "so is the second"}\nthis third line is not JSON\n{"text": "fourth"}\n');

const logDir = path.join(buildDir, 'test-logs');
const shotDir = process.env.DASHBOARD_SHOTS || logDir;
fs.mkdirSync(shotDir, { recursive: true });

const srv = await startServer({ models });
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const pageErrors = [];
let srv2 = null;
const extraDirs = [];

async function newPage() {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(m.text()); });
  page.setDefaultTimeout(30000);
  return page;
}

async function api(method, p, body) {
  const r = await fetch(srv.url + p, { method, headers: body ? { 'Content-Type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
  const j = await r.json().catch(() => null);
  if (!r.ok) throw new Error(`${method} ${p}: HTTP ${r.status} ${JSON.stringify(j)}`);
  return j;
}

// A tar's member names (ustar: 512-byte headers, name at 0..100, size octal at 124..136).
function tarNames(buf) {
  const names = [];
  for (let off = 0; off + 512 <= buf.length;) {
    const name = buf.subarray(off, off + 100).toString('latin1').replace(/\0.*$/s, '');
    if (!name) break;
    const size = parseInt(buf.subarray(off + 124, off + 136).toString('latin1').replace(/\0.*$/s, '').trim() || '0', 8);
    names.push(name);
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}

// A job's metrics events as the API gives them: train_loss per step, valid_loss per eval.
async function metricsOf(id) {
  const evs = (await api('GET', `/v1/fine_tuning/jobs/${id}/events?limit=1000`)).data
    .filter((e) => e.type === 'metrics' && e.data && typeof e.data.step === 'number');
  const train = new Map(), evals = new Map();
  for (const e of evs) {
    if (typeof e.data.train_loss === 'number') train.set(e.data.step, e.data.train_loss);
    if (typeof e.data.valid_loss === 'number') evals.set(e.data.step, e.data.valid_loss);
  }
  const sorted = (m) => [...m.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
  return { train: sorted(train), evals: sorted(evals) };
}

// TensorBoard's debiased EMA, written out again here so the page's is checked, not reused.
function emaLast(values, w) {
  let acc = 0, out = NaN;
  values.forEach((v, i) => { acc = acc * w + (1 - w) * v; out = acc / (1 - w ** (i + 1)); });
  return out;
}
const near = (a, b) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));

// Every shown select is wide enough for its longest option. A select's scrollWidth never
// exceeds its clientWidth in Chromium (the text is clipped inside), so a copy of it is also
// laid out at its natural width, which is its widest option's.
async function selectsFit(page, where) {
  const rows = await page.evaluate(() => [...document.querySelectorAll('select')].filter((s) => s.offsetParent !== null).map((s) => {
    const c = s.cloneNode(true);
    for (const [k, v] of [['width', 'auto'], ['min-width', '0'], ['max-width', 'none'], ['position', 'absolute'], ['visibility', 'hidden']])
      c.style.setProperty(k, v, 'important');
    s.after(c);
    const need = c.offsetWidth;
    c.remove();
    return { id: s.id || s.className, sw: s.scrollWidth, cw: s.clientWidth, have: s.offsetWidth, need };
  }));
  const bad = rows.filter((r) => r.sw > r.cw + 1 || r.need > r.have + 1);
  check(rows.length > 0 && bad.length === 0, `${where}: no select cuts an option (${rows.length} selects)`, JSON.stringify(bad));
}

// The shown job id links of the jobs table, measured.
function idCells(page) {
  return page.evaluate(() => [...document.querySelectorAll('table.jobs tbody tr:not([hidden]) a.job-id')].map((a) => {
    const cs = getComputedStyle(a);
    return { id: a.closest('tr').dataset.jobId, text: a.textContent, title: a.title, h: a.getBoundingClientRect().height,
      lh: parseFloat(cs.lineHeight) || parseFloat(cs.fontSize) * 1.45, rects: a.getClientRects().length, sw: a.scrollWidth, cw: a.clientWidth };
  }));
}
const oneLine = (c) => c.rects === 1 && c.h <= c.lh * 1.5;

const shownJobs = (page) => page.evaluate(() => [...document.querySelectorAll('table.jobs tbody tr:not([hidden])')].map((tr) => tr.dataset.jobId).sort());

async function fetchLink(page, selector) {
  const href = await page.locator(selector).first().getAttribute('href');
  const url = new URL(href, srv.url).toString();
  const r = await fetch(url);
  return { href, status: r.status, buf: Buffer.from(await r.arrayBuffer()) };
}

async function run() {
  const page = await newPage();

  // --- page shell and models ---
  await page.goto(`${srv.url}/#/models`);
  await page.locator(`[data-model-id="${trainModel}"]`).waitFor();
  check((await page.locator('[data-model-id="tiny-random"] .badge.random').count()) === 1, 'random model labelled random');
  if (hasReal)
    check((await page.locator('[data-model-id="stories260K"] .badge.random').count()) === 0, 'stories260K not labelled random');
  check(await page.locator('[data-model-id="tiny-random"] .lemo-cell').getAttribute('data-lemo-status') === 'none'
    && (await page.locator('[data-model-id="tiny-random"] button.lemo-prepare').count()) === 1,
  'models page: no LeMo predictors yet, a Prepare button', await page.locator('[data-model-id="tiny-random"]').innerText());

  // --- datasets: a bad file shows its line error ---
  await page.goto(`${srv.url}/#/files`);
  await page.locator('h1', { hasText: 'Datasets' }).waitFor();
  await page.setInputFiles('#dataset-input', bad);
  const errBox = page.locator('.upload-error');
  await errBox.waitFor();
  const errText = await errBox.innerText();
  check(/line 3\b/i.test(errText), 'bad dataset: error names line 3', errText);
  check(/broken\.jsonl was rejected/.test(errText), 'bad dataset: error names the file', errText);

  // --- datasets: a good file dropped on the drop zone (a real drop event) ---
  const content = fs.readFileSync(good, 'utf8');
  await page.evaluate((text) => {
    const dt = new DataTransfer();
    dt.items.add(new File([text], 'train.jsonl', { type: 'application/jsonl' }));
    const zone = document.querySelector('.dropzone');
    for (const type of ['dragenter', 'dragover', 'drop'])
      zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, content);
  const okBox = page.locator('.upload-ok [data-file-id]');
  await okBox.waitFor();
  const fileId = await okBox.getAttribute('data-file-id');
  check(/^file-/.test(fileId || ''), 'dropped dataset uploaded', fileId);
  await page.locator(`tr[data-file-id="${fileId}"]`).waitFor();
  const apiFile = await api('GET', `/v1/files/${fileId}`);
  check(apiFile.bytes === Buffer.byteLength(content), 'uploaded size matches the file', `${apiFile.bytes} vs ${Buffer.byteLength(content)}`);

  // --- create a job through the form ---
  await page.goto(`${srv.url}/#/new/${fileId}`);
  await page.locator(`#f-model option[value="${trainModel}"]`).waitFor({ state: 'attached' });
  check(/random weights/.test(await page.locator('#f-model option[value="tiny-random"]').innerText()), 'random model marked in the model select');
  await page.selectOption('#f-model', trainModel);
  await waitFor('training file preselected', async () => (await page.inputValue('#f-file')) === fileId, 10000);
  // An invalid value: the estimate names the problem and the form cannot be submitted.
  await page.fill('#hp-lora_r', '0');
  await page.locator('#estimate .err-text').waitFor();
  check(await page.locator('#create-job').isDisabled(), 'invalid lora_r blocks submit', await page.locator('#estimate').innerText());
  const hp = { max_steps: '100000', context_length: '128', learning_rate: '0.002', batch_size: '1', lora_r: '4', lora_alpha: '8', checkpoint_every: '5', eval_every: '10' };
  for (const [k, v] of Object.entries(hp)) await page.fill(`#hp-${k}`, v);
  await page.locator('#estimate .est-grid').waitFor();
  await waitFor('create button enabled', () => page.locator('#create-job').isEnabled(), 15000);
  await selectsFit(page, 'new job form');
  const est = await page.locator('#estimate').innerText();
  check(/Peak memory\s*\n?\s*[\d.]+ (B|KiB|MiB|GiB)/i.test(est), 'estimate shows peak memory', est);
  check(/Fits on the device\s*\n?\s*yes/i.test(est), 'estimate says it fits', est);
  check(/Largest context that fits\s*\n?\s*[\d,]+ tokens/i.test(est), 'estimate shows the largest context', est);
  check(/Estimated time\s*\n?\s*\d/i.test(est), 'estimate shows a time', est);
  check(/Layers\s*\n?\s*\d+ recompute/i.test(est), 'estimate shows the layers recomputed by default', est);
  // memory auto: the estimate says what the trainer will pick (on the CPU every layer of a tiny model is kept)
  await page.selectOption('#hp-memory', 'auto');
  await waitFor('estimate with memory auto', async () => /Layers\s*\n?\s*\d+ keep/i.test(await page.locator('#estimate').innerText()), 15000);
  await waitFor('create button enabled again', () => page.locator('#create-job').isEnabled(), 15000);
  // LeMo: the estimate shows each layer's kept share and the same job without LeMo beside it
  await page.selectOption('#hp-lemo', 'exact');
  await page.selectOption('#hp-lemo-block', '32');
  await waitFor('estimate with LeMo', async () => /Kept per layer[\s\S]*Without LeMo/i.test(await page.locator('#estimate').innerText()), 15000)
    .then(() => check(true, 'LeMo estimate: kept per layer and without LeMo'),
      async (e) => check(false, 'LeMo estimate: kept per layer and without LeMo', await page.locator('#estimate').innerText()));
  // learned predictors with the calibrated kept share: the model has none yet, so the estimate
  // says this job prepares them first (the dense estimate stays beside it)
  check((await page.locator('#hp-lemo option[value="predictor"]').count()) === 1, 'the form offers learned predictors');
  check((await page.locator('#hp-lemo-keep-list option[value="auto"]').count()) === 1, 'the kept share offers "auto"');
  await page.selectOption('#hp-lemo', 'predictor');
  await page.fill('#hp-lemo-keep', 'auto');
  await page.locator('#predictor-note').waitFor({ timeout: 15000 })
    .then(async () => check(/prepares them/.test(await page.locator('#predictor-note').innerText())
      && /Without LeMo/i.test(await page.locator('#estimate').innerText()), 'predictor scores, keep auto: the estimate says the predictors are prepared first',
    await page.locator('#estimate').innerText()),
    async () => check(false, 'predictor scores, keep auto: the estimate says the predictors are prepared first', await page.locator('#estimate').innerText()));
  await page.screenshot({ path: path.join(shotDir, 'dashboard-newjob-predictor.png'), fullPage: true });
  await page.selectOption('#hp-lemo', 'exact');
  await page.locator('#estimate .err-text').waitFor();
  check(await page.locator('#hp-lemo-keep').getAttribute('aria-invalid') === 'true', 'keep auto without predictor scores marks the kept share',
    await page.locator('#estimate').innerText());
  await page.fill('#hp-lemo-keep', '1.5');
  await page.locator('#estimate .err-text').waitFor();
  check(await page.locator('#hp-lemo-keep').getAttribute('aria-invalid') === 'true', 'a bad kept share marks its field',
    await page.locator('#estimate').innerText());
  await page.fill('#hp-lemo-keep', '0.4');
  await waitFor('create button enabled with LeMo', () => page.locator('#create-job').isEnabled(), 15000);
  await page.click('#create-job');
  await page.waitForURL(/#\/jobs\/ftjob-/);
  const jobId = decodeURIComponent(page.url().split('#/jobs/')[1]);
  check(/^ftjob-/.test(jobId), 'form created a job', jobId);
  const created = await api('GET', `/v1/fine_tuning/jobs/${jobId}`);
  check(created.model === trainModel && created.training_file === fileId, 'job has the chosen model and file', JSON.stringify(created));
  check(created.hyperparameters && Number(created.hyperparameters.lora_r) === 4 && Number(created.hyperparameters.context_length) === 128,
    'job has the form\'s hyperparameters', JSON.stringify(created.hyperparameters));
  check(created.method && created.method.type === 'lemo' && created.method.lemo.scores === 'exact' && created.method.lemo.block === 32,
    'job has the form\'s LeMo method', JSON.stringify(created.method));

  // --- watch it run ---
  await page.locator('.badge.st-running').waitFor({ timeout: 60000 });
  const bar = page.locator('#job-progress [role=progressbar]');
  const stepOf = async () => {
    const t = await page.locator('[data-stat=step] dd').innerText();
    return parseInt(t.replace(/,/g, ''), 10) || 0;
  };
  const s1 = await waitFor('a first step', async () => (await stepOf()) > 0 && stepOf(), 60000);
  const w1 = await bar.evaluate((e) => e.firstChild.style.width);
  const s2 = await waitFor('the step counter to move', async () => { const s = await stepOf(); return s > s1 + 2 && s; }, 60000);
  const w2 = await bar.evaluate((e) => e.firstChild.style.width);
  check(s2 > s1, 'step counter moves', `${s1} -> ${s2}`);
  check(parseFloat(w2) >= parseFloat(w1) && (await bar.getAttribute('aria-valuenow')) !== null, 'progress bar has a value and does not go back', `${w1} -> ${w2}`);
  const pts = await waitFor('loss chart points', async () => {
    const n = parseInt(await page.locator('#loss-chart svg').getAttribute('data-train-points'), 10);
    return n >= 3 && n;
  }, 30000);
  check(pts >= 3 && (await page.locator('#loss-chart polyline.series.train').count()) === 1, 'loss chart has a training line', `${pts} points`);
  await waitFor('an eval point', async () => parseInt(await page.locator('#loss-chart svg').getAttribute('data-eval-points'), 10) > 0, 60000)
    .then(() => check(true, 'loss chart has eval points'), (e) => check(false, 'loss chart has eval points', e.message));
  const nEv = await waitFor('events', async () => { const n = await page.locator('#events li').count(); return n >= 3 && n; }, 30000);
  check(nEv >= 3, 'events listed', `${nEv}`);
  check((await page.locator('#events li.k-step').count()) > 0, 'step events in the list');
  await waitFor('the live stream', async () => (await page.locator('#stream-state').innerText()).includes('live'), 15000)
    .then(() => check(true, 'event stream connected (SSE)'), (e) => check(false, 'event stream connected (SSE)', e.message));
  const before = await page.locator('#events li').count();
  await waitFor('events arriving live', async () => (await page.locator('#events li').count()) > before, 30000)
    .then(() => check(true, 'events arrive live'), (e) => check(false, 'events arrive live', e.message));
  const speed = await page.locator('[data-stat=tokens_per_s] dd').innerText();
  check(/\d+ tok\/s/.test(speed), 'tokens/s shown', speed);
  const mem = await page.locator('[data-stat=mem] dd').innerText();
  check(/[\d.]+ (B|KiB|MiB|GiB)/.test(mem), 'memory shown', mem);
  const loss = await page.locator('[data-stat=loss] dd').innerText();
  check(/^\d+(\.\d+)?$/.test(loss) && parseFloat(loss) > 0, 'train loss shown', loss);
  const prog = (await api('GET', `/v1/fine_tuning/jobs/${jobId}`)).progress || {};
  check((await page.locator('#kept-card').isVisible()) === (Array.isArray(prog.kept_fraction) && prog.kept_fraction.length > 0),
    'kept-token card shown exactly when progress has kept_fraction', JSON.stringify(prog.kept_fraction));
  // stories260K (5 layers) has sparse layers under the default schedule; a 1-layer tiny model has none
  if (hasReal) check((await page.locator('#kept-chart svg').getAttribute('data-layers')) === '5',
    'the kept-token chart shows the LeMo job\'s 5 layers', JSON.stringify(prog.kept_fraction));
  // the heatmap: one row per layer, one column per step so far, growing as steps arrive
  const heat = page.locator('#kept-heatmap svg');
  await heat.waitFor({ timeout: 15000 });
  const nLayers = (prog.kept_fraction || []).length;
  check(await heat.getAttribute('data-layers') === String(nLayers) && (await page.locator('#kept-heatmap g.hm-row').count()) === nLayers,
    'heatmap: one row per layer', `${await heat.getAttribute('data-layers')} rows, ${nLayers} layers`);
  // (a column per step until the width is full, then one per bin of consecutive steps)
  // read in one evaluation: the chart redraws live, and three separate reads can straddle a redraw
  const heatNums = async () => heat.evaluate((el) => Object.fromEntries(['columns', 'steps', 'bin']
    .map((k) => [k, parseInt(el.getAttribute(`data-${k}`), 10)])));
  const h1 = await heatNums();
  check(h1.steps > 0 && h1.columns === Math.ceil(h1.steps / h1.bin) && (h1.bin === 1 || h1.steps > 300),
    'heatmap: one column per step', JSON.stringify(h1));
  check((await page.locator('#kept-heatmap .hm-legend').count()) === 1 && /layer \d+ · steps? \d+/.test(await page.locator('#kept-heatmap rect.hm-cell title').first().textContent()),
    'heatmap: a legend, and a title per cell');
  await waitFor('the heatmap to grow', async () => (await heatNums()).steps > h1.steps, 30000)
    .then(() => check(true, 'heatmap gains columns live'), (e) => check(false, 'heatmap gains columns live', e.message));
  await page.locator('#checkpoints li').first().waitFor({ timeout: 60000 });
  // A second eval point (step 10) so the picture shows both curves.
  await waitFor('a second eval point', async () => parseInt(await page.locator('#loss-chart svg').getAttribute('data-eval-points'), 10) >= 2, 60000)
    .catch(() => {});
  await page.screenshot({ path: path.join(shotDir, 'dashboard-job.png'), fullPage: true });
  console.log(`screenshot: ${path.join(shotDir, 'dashboard-job.png')}`);

  // --- pause, resume, cancel from the page ---
  check(await page.locator('#btn-resume').isDisabled(), 'resume disabled while running');
  await page.click('#btn-pause');
  await page.locator('.badge.st-paused').waitFor({ timeout: 60000 });
  check(await page.locator('#btn-resume').isEnabled(), 'resume enabled when paused');
  const pausedStep = (await api('GET', `/v1/fine_tuning/jobs/${jobId}`)).progress.step;
  await page.click('#btn-resume');
  await page.locator('.badge.st-running').waitFor({ timeout: 60000 });
  await waitFor('steps after resume', async () => (await stepOf()) > pausedStep + 1, 60000)
    .then(() => check(true, 'job trains again after resume'), (e) => check(false, 'job trains again after resume', e.message));
  page.once('dialog', (d) => d.accept());
  await page.click('#btn-cancel');
  await page.locator('.badge.st-cancelled').waitFor({ timeout: 60000 });
  check(await page.locator('#btn-cancel').isDisabled(), 'cancel disabled once cancelled');
  const apiCk = await api('GET', `/v1/fine_tuning/jobs/${jobId}/checkpoints?limit=100`);
  const nCk = await waitFor('one link per checkpoint', async () => {
    const n = await page.locator('#checkpoints li a').count();
    return n === apiCk.data.length && n;
  }, 15000).catch(async () => page.locator('#checkpoints li a').count());
  check(nCk > 0 && nCk === apiCk.data.length, 'one link per checkpoint', `${nCk} links, ${apiCk.data.length} checkpoints`);
  const ck = await fetchLink(page, '#checkpoints li a');
  check(/\/adapter\?step=\d+$/.test(ck.href) && ck.status === 200, 'checkpoint link downloads', `${ck.href} -> ${ck.status}`);
  const ckNames = tarNames(ck.buf);
  check(ckNames.includes('adapter_config.json') && ckNames.includes('adapter_model.safetensors'), 'checkpoint tar holds the adapter files', ckNames.join(','));

  // --- the loss chart: raw train loss, its EMA, eval with markers, the smoothing control ---
  const lm = await metricsOf(jobId);
  const svgAttr = (k) => page.locator('#loss-chart svg').getAttribute(k);
  await waitFor('the whole history in the chart', async () => (await svgAttr('data-train-points')) === String(lm.train.length), 15000).catch(() => {});
  const smooth = page.locator('#loss-chart polyline.series.train.smooth');
  const raw = page.locator('#loss-chart polyline.series.raw');
  check(await svgAttr('data-train-points') === String(lm.train.length) && await raw.getAttribute('data-points') === String(lm.train.length)
    && await smooth.getAttribute('data-points') === String(lm.train.length),
  'chart: a raw and a smoothed train line, one point per metrics step', `${await svgAttr('data-train-points')} drawn, ${lm.train.length} steps`);
  check(lm.evals.length > 0 && await svgAttr('data-eval-points') === String(lm.evals.length)
    && (await page.locator('#loss-chart circle.dot.eval').count()) === lm.evals.length,
  'chart: a marker per eval', `${await page.locator('#loss-chart circle.dot.eval').count()} markers, ${lm.evals.length} evals`);
  check(await page.locator('#smoothing').inputValue() === '0.6' && await svgAttr('data-smoothing') === '0.6'
    && near(Number(await smooth.getAttribute('data-last')), emaLast(lm.train, 0.6)),
  'chart: smoothed by a 0.6 EMA by default', `${await smooth.getAttribute('data-last')} vs ${emaLast(lm.train, 0.6)}`);
  const rawOpacity = Number(await raw.evaluate((e) => getComputedStyle(e).opacity));
  check(rawOpacity > 0 && rawOpacity < 0.6, 'chart: the raw points drawn faint', String(rawOpacity));
  const legend = await page.locator('#loss-chart .loss-legend').innerText();
  check(/train \(raw\)/.test(legend) && /smoothed 0\.60/.test(legend) && /eval/.test(legend), 'chart: a legend', legend);
  const setSmoothing = (w) => page.locator('#smoothing').evaluate((e, v) => { e.value = String(v); e.dispatchEvent(new Event('input', { bubbles: true })); }, w);
  await setSmoothing(0.9);
  check(await svgAttr('data-smoothing') === '0.9' && near(Number(await smooth.getAttribute('data-last')), emaLast(lm.train, 0.9))
    && await page.evaluate(() => localStorage.getItem('lemo.smoothing')) === '0.9',
  'smoothing 0.9: the curve follows it and localStorage keeps it', await smooth.getAttribute('data-last'));
  await page.reload();
  await page.locator('.badge.st-cancelled').waitFor();
  check(await page.locator('#smoothing').inputValue() === '0.9' && await svgAttr('data-smoothing') === '0.9', 'smoothing weight kept across a reload');
  await waitFor('the history again', async () => (await svgAttr('data-train-points')) === String(lm.train.length), 15000).catch(() => {});
  await setSmoothing(0);
  check(await smooth.getAttribute('points') === await raw.getAttribute('points'), 'smoothing 0 gives the raw curve back');
  await setSmoothing(0.6);
  await page.locator('#loss-chart').locator('xpath=..').screenshot({ path: path.join(shotDir, 'dashboard-job-chart.png') });
  console.log(`screenshot: ${path.join(shotDir, 'dashboard-job-chart.png')}`);

  // --- a short job that succeeds: the final adapter link ---
  const short = await api('POST', '/v1/fine_tuning/jobs', {
    model: trainModel, training_file: fileId,
    hyperparameters: { max_steps: 6, context_length: 128, lora_r: 4, lora_alpha: 8, eval_every: 3, checkpoint_every: 3 },
  });
  await page.goto(`${srv.url}/#/jobs/${short.id}`);
  await page.locator('.badge.st-succeeded').waitFor({ timeout: 120000 });
  const dl = page.locator('#downloads a.dl', { hasText: 'Download adapter' });
  await dl.waitFor();
  const tar = await fetchLink(page, '#downloads a.dl >> text=Download adapter');
  check(/\/v1\/fine_tuning\/jobs\/ftjob-[^/]+\/adapter$/.test(tar.href) && tar.status === 200, 'adapter link downloads', `${tar.href} -> ${tar.status}`);
  const names = tarNames(tar.buf);
  check(names.includes('adapter_config.json') && names.includes('adapter_model.safetensors'), 'adapter tar holds the PEFT files', names.join(','));
  const cfgLink = await fetchLink(page, '#downloads a.dl >> text=adapter_config.json');
  let cfg = null;
  try { cfg = JSON.parse(cfgLink.buf.toString('utf8')); } catch { /* checked below */ }
  check(cfgLink.status === 200 && cfg && cfg.peft_type === 'LORA' && cfg.r === 4, 'adapter_config.json link serves the config', cfgLink.buf.toString('utf8').slice(0, 200));
  check(/^100(\.0)?%$/.test(await page.locator('#job-progress .progress-fill').evaluate((e) => e.style.width)), 'finished job shows a full bar');
  const finalPts = parseInt(await page.locator('#loss-chart svg').getAttribute('data-train-points'), 10);
  check(finalPts === 6, 'finished job: one chart point per step', `${finalPts}`);
  check(await page.locator('#kept-card').isHidden() && (await page.locator('#kept-heatmap svg').count()) === 0,
    'a plain (supervised) job has no kept-token heatmap');

  // --- the jobs list ---
  await page.goto(`${srv.url}/#/jobs`);
  await page.locator(`tr[data-job-id="${short.id}"]`).waitFor();
  check(/succeeded/.test(await page.locator(`tr[data-job-id="${short.id}"] .badge`).innerText()), 'list: short job succeeded');
  check(/cancelled/.test(await page.locator(`tr[data-job-id="${jobId}"] .badge`).innerText()), 'list: long job cancelled');
  check((await page.locator(`tr[data-job-id="${short.id}"] [role=progressbar]`).getAttribute('data-fraction')) === '1.0000', 'list: finished job at 100%');
  await page.screenshot({ path: path.join(shotDir, 'dashboard-jobs.png'), fullPage: true });

  // --- a LeMo job on the tiny model: the finished job's heatmap, then binned when narrow ---
  const lemoSteps = 150;
  const lj = await api('POST', '/v1/fine_tuning/jobs', {
    model: 'tiny-random', training_file: fileId,
    method: { type: 'lemo', lemo: { scores: 'random', block: 32, keep: [0.5, 1], hyperparameters: { max_steps: lemoSteps, context_length: 128, lora_r: 2, lora_alpha: 4 } } },
  });
  await page.goto(`${srv.url}/#/jobs/${lj.id}`);
  await page.locator('.badge.st-succeeded').waitFor({ timeout: 120000 });
  const ljEvents = (await api('GET', `/v1/fine_tuning/jobs/${lj.id}/events?limit=1000`)).data;
  const keptSteps = new Set(ljEvents.filter((e) => e.type === 'metrics' && Array.isArray(e.data && e.data.kept_fraction)).map((e) => e.data.step)).size;
  const lheat = page.locator('#kept-heatmap svg');
  await waitFor('every step in the heatmap', async () => (await lheat.getAttribute('data-steps')) === String(keptSteps), 15000).catch(() => {});
  check(keptSteps === lemoSteps && (await lheat.getAttribute('data-steps')) === String(keptSteps)
    && (await lheat.getAttribute('data-columns')) === String(keptSteps) && (await page.locator('#kept-heatmap g.hm-row').count()) === 2,
  'finished LeMo job: 2 layer rows, one column per recorded step',
  `${await lheat.getAttribute('data-columns')} columns, ${await lheat.getAttribute('data-steps')} steps drawn, ${keptSteps} recorded`);
  const cellTitle = await page.locator('#kept-heatmap g.hm-row[data-layer="0"] rect.hm-cell title').first().textContent();
  check(/^layer 0 · steps? 1\b.*\d+(\.\d)?% kept/.test(cellTitle), 'a cell\'s title names its layer, steps and share', cellTitle);
  await page.locator('#kept-card').screenshot({ path: path.join(shotDir, 'dashboard-heatmap.png') });
  console.log(`screenshot: ${path.join(shotDir, 'dashboard-heatmap.png')}`);
  // a narrow window has room for fewer columns: consecutive steps share one
  await page.setViewportSize({ width: 480, height: 900 });
  await waitFor('a binned heatmap', async () => parseInt(await lheat.getAttribute('data-bin'), 10) > 1, 10000)
    .then(async () => {
      const bin = parseInt(await lheat.getAttribute('data-bin'), 10), cols = parseInt(await lheat.getAttribute('data-columns'), 10);
      check(cols === Math.ceil(keptSteps / bin) && cols < keptSteps, 'narrow: steps binned into fewer columns', `${cols} columns of ${bin} steps`);
    }, async () => check(false, 'narrow: steps binned into fewer columns', `bin ${await lheat.getAttribute('data-bin')}`));
  await page.setViewportSize({ width: 1280, height: 900 });

  // --- the jobs list: ids on one line, copy, filters in the hash, compare ---
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: srv.url });
  await page.goto(`${srv.url}/#/jobs`);
  for (const id of [jobId, short.id, lj.id]) await page.locator(`tr[data-job-id="${id}"]`).waitFor();
  let cells = await idCells(page);
  check(cells.length >= 3 && cells.every((c) => oneLine(c) && c.sw <= c.cw + 1 && c.title === c.id && c.text === c.id),
    'jobs: every id on one line, whole, with its title', JSON.stringify(cells));
  await page.locator(`tr[data-job-id="${short.id}"] .copy-btn`).click();
  await waitFor('copied', async () => (await page.locator(`tr[data-job-id="${short.id}"] .copy-btn`).getAttribute('data-copied')) === 'yes', 5000).catch(() => {});
  const clip = await page.evaluate(() => navigator.clipboard.readText()).catch((e) => `unreadable: ${e.message}`);
  check(clip === short.id, 'jobs: the copy button copies the id', clip);
  await selectsFit(page, 'jobs filters');
  await page.selectOption('#filter-status', 'succeeded');
  check(JSON.stringify(await shownJobs(page)) === JSON.stringify([short.id, lj.id].sort()) && /status=succeeded/.test(page.url()),
    'jobs: the status filter shows the succeeded jobs only, and names itself in the hash', `${await shownJobs(page)} at ${page.url()}`);
  await page.selectOption('#filter-model', 'tiny-random');
  const wantShown = (hasReal ? [lj.id] : [short.id, lj.id]).sort();
  check(JSON.stringify(await shownJobs(page)) === JSON.stringify(wantShown) && /model=tiny-random/.test(page.url()),
    'jobs: the model filter narrows it to the model\'s jobs', `${await shownJobs(page)}`);
  await page.screenshot({ path: path.join(shotDir, 'dashboard-jobs-filters.png'), fullPage: true });
  console.log(`screenshot: ${path.join(shotDir, 'dashboard-jobs-filters.png')}`);
  await page.reload();
  await page.locator(`tr[data-job-id="${lj.id}"]`).waitFor();
  check(await page.inputValue('#filter-status') === 'succeeded' && await page.inputValue('#filter-model') === 'tiny-random'
    && JSON.stringify(await shownJobs(page)) === JSON.stringify(wantShown), 'jobs: the filters survive a reload', `${await shownJobs(page)}`);
  await page.click('#filter-clear');
  check(JSON.stringify(await shownJobs(page)) === JSON.stringify([jobId, short.id, lj.id].sort()) && /#\/jobs$/.test(page.url()),
    'jobs: Clear shows every job again', page.url());
  // a narrow window cuts an id with an ellipsis: still one line, the title whole
  await page.setViewportSize({ width: 760, height: 900 });
  cells = await idCells(page);
  check(cells.every((c) => oneLine(c) && c.title === c.id), 'jobs, narrow: every id still on one line', JSON.stringify(cells.map((c) => [c.h, c.rects, c.sw, c.cw])));
  await page.screenshot({ path: path.join(shotDir, 'dashboard-jobs-narrow.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  check(await page.locator('#compare-btn').isDisabled(), 'compare: disabled until two jobs are ticked');
  await page.locator(`tr[data-job-id="${jobId}"] .pick-box`).check();
  await page.locator(`tr[data-job-id="${short.id}"] .pick-box`).check();
  check(await page.locator('#compare-btn').isEnabled() && /2 jobs/.test(await page.locator('#compare-btn').innerText()), 'compare: enabled with two ticked');
  await page.click('#compare-btn');
  await page.waitForURL(/#\/compare\//);
  await page.locator('#compare-chart svg[data-groups="2"]').waitFor();
  const sm = await metricsOf(short.id);
  const group = (id) => page.locator(`#compare-chart g.loss-group[data-key="${id}"]`);
  await waitFor('both jobs drawn', async () => (await group(jobId).getAttribute('data-train-points')) === String(lm.train.length)
    && (await group(short.id).getAttribute('data-train-points')) === String(sm.train.length), 15000).catch(() => {});
  for (const [id, m] of [[jobId, lm], [short.id, sm]]) {
    const g = group(id);
    check(await g.getAttribute('data-train-points') === String(m.train.length) && await g.getAttribute('data-eval-points') === String(m.evals.length)
      && (await g.locator('circle.dot.eval').count()) === m.evals.length
      && near(Number(await g.locator('polyline.series.train.smooth').getAttribute('data-last')), emaLast(m.train, 0.6)),
    `compare: ${id === jobId ? 'the long' : 'the short'} job's train (smoothed) and eval curves`,
    `${await g.getAttribute('data-train-points')}/${m.train.length} train, ${await g.getAttribute('data-eval-points')}/${m.evals.length} eval`);
  }
  const lg = await page.locator('#compare-chart .lg-job').allInnerTexts();
  check(lg.length === 2 && lg.some((t) => t.includes(jobId)) && lg.some((t) => t.includes(short.id)), 'compare: a legend entry per job', lg.join(' | '));
  check((await page.locator('#compare-table tbody tr').count()) === 2, 'compare: a table row per job');
  await page.screenshot({ path: path.join(shotDir, 'dashboard-compare.png'), fullPage: true });
  console.log(`screenshot: ${path.join(shotDir, 'dashboard-compare.png')}`);

  // --- the Models page prepares a base model's LeMo predictors ---
  await page.goto(`${srv.url}/#/models`);
  const tinyRow = page.locator('[data-model-id="tiny-random"]');
  await tinyRow.locator('button.lemo-prepare').click();
  const prepForm = page.locator('tr.prepare-row[data-for="tiny-random"] form');
  await prepForm.waitFor();
  await waitFor('the dataset offered', async () => (await prepForm.locator('select.prepare-file option').count()) > 1, 10000);
  await prepForm.locator('select.prepare-file').selectOption(fileId);
  await prepForm.locator('input.prepare-ctx').fill('512');
  await page.screenshot({ path: path.join(shotDir, 'dashboard-models-prepare.png'), fullPage: true });
  await selectsFit(page, 'models page, Prepare form');
  await prepForm.locator('button[type=submit]').click();
  await page.waitForURL(/#\/jobs\/ftjob-/);
  const prepId = decodeURIComponent(page.url().split('#/jobs/')[1]);
  await page.locator('h1', { hasText: prepId }).waitFor();
  check(/^ftjob-/.test(prepId), 'Prepare opens the preparation job\'s page', prepId);
  await page.locator('#lemo-prepare:not([hidden])').waitFor({ timeout: 15000 })
    .then(async () => check(true, 'the job page shows the preparation', await page.locator('#lemo-prepare').innerText()),
      async () => check(false, 'the job page shows the preparation', await page.locator('#job-progress').innerText()));
  await page.goto(`${srv.url}/#/models`);
  const status = await waitFor('a LeMo status', async () => tinyRow.locator('.lemo-cell').getAttribute('data-lemo-status'), 10000);
  check(status === 'preparing' || status === 'ready', 'models page: the predictors are preparing or ready', status);
  if (status === 'preparing') {
    check((await tinyRow.locator(`.lemo-cell a[href="#/jobs/${prepId}"]`).count()) === 1, 'preparing: links the job');
    await page.screenshot({ path: path.join(shotDir, 'dashboard-models-preparing.png'), fullPage: true });
  }
  await waitFor('the predictors ready', async () => (await tinyRow.locator('.lemo-cell').getAttribute('data-lemo-status')) === 'ready', 60000)
    .then(async () => {
      const text = await tinyRow.locator('.lemo-cell').innerText();
      check(/recall \d+% \(random \d+%\)/.test(text), 'ready: recall beside random\'s', text);
      const title = await tinyRow.locator('.lemo-recall').getAttribute('title');
      check(/blocks of 64 tokens/.test(title) && /trained at context 512\b/.test(title), 'ready: block and trained context in the title', title);
    }, async () => check(false, 'the predictors become ready', await tinyRow.innerText()));

  // --- the Models page deletes a fine-tuned model, behind a confirm step ---
  const ftModel = (await api('GET', `/v1/fine_tuning/jobs/${short.id}`)).fine_tuned_model;
  const listed = async () => (await api('GET', '/v1/models')).data.some((m) => m.id === ftModel);
  const adRow = page.locator(`#adapter-list li[data-model-id="${ftModel}"]`);
  await adRow.waitFor();
  await adRow.locator('.model-delete').click();
  await adRow.locator('.model-delete-confirm').waitFor();
  check(await listed(), 'delete: nothing happens before the confirm');
  await adRow.locator('.model-delete-cancel').click();
  check((await adRow.locator('.model-delete').count()) === 1 && await listed(), 'delete: Keep backs out');
  // the refusal while an unfinished job uses the model, as the server words it (making a
  // real one takes a job whose config names this job's files)
  const inUse = { error: { message: `1 job that has not finished uses ${ftModel}; cancel it first`, type: 'invalid_request_error', param: 'model', code: 'model_in_use' } };
  const refuse = (route) => (route.request().method() === 'DELETE'
    ? route.fulfill({ status: 409, contentType: 'application/json', body: JSON.stringify(inUse) }) : route.continue());
  const isModelUrl = (u) => u.pathname.startsWith('/v1/models/ft');
  await page.route(isModelUrl, refuse);
  await adRow.locator('.model-delete').click();
  await adRow.locator('.model-delete-confirm').click();
  await page.locator('#banner:not([hidden])').waitFor();
  check(/has not finished uses/.test(await page.locator('#banner').innerText()) && (await adRow.count()) === 1,
    'delete: a 409 shows in the banner and the row stays', await page.locator('#banner').innerText());
  await page.unroute(isModelUrl, refuse);
  await adRow.locator('.model-delete').click();
  await adRow.locator('.model-delete-confirm').click();
  await adRow.waitFor({ state: 'detached', timeout: 10000 }).catch(() => {});
  check((await adRow.count()) === 0 && !(await listed()) && await page.locator('#banner').isHidden(),
    'delete: the model is gone from the page and the API', await page.locator('#adapters-note').innerText());
  await page.screenshot({ path: path.join(shotDir, 'dashboard-models.png'), fullPage: true });
  console.log(`screenshot: ${path.join(shotDir, 'dashboard-models.png')}`);
  await page.context().close();

  // --- no models + an API key: the hint, and the key field ---
  const data2 = tempDir('data-key');
  const emptyModels = tempDir('nomodels');
  extraDirs.push(data2, emptyModels);
  const kc = spawnSync(lemoBin, ['keys', 'create', '--data-dir', data2, '--name', 'dashboard-test'], { encoding: 'utf8' });
  const key = (kc.stdout || '').split(/\s+/).find((w) => /^[A-Za-z0-9_-]{20,}$/.test(w));
  if (!check(kc.status === 0 && key, '`lemo keys create` prints a key', kc.stderr || kc.stdout)) return;
  srv2 = await startServer({ models: emptyModels, dataDir: data2 });
  const hintRes = await fetch(`${srv2.url}/v1/models`, { headers: { Authorization: `Bearer ${key}` } });
  const hint = (await hintRes.json()).hint;
  check(hintRes.status === 200 && typeof hint === 'string' && hint.length > 0, 'API gives a hint with no models', JSON.stringify(hint));
  const p2 = await newPage();
  await p2.goto(`${srv2.url}/#/models`);
  await p2.locator('#banner:not([hidden])').waitFor();
  check(/API key/.test(await p2.locator('#banner').innerText()), 'without a key the page asks for one', await p2.locator('#banner').innerText());
  await p2.fill('#apikey', key);
  await p2.click('#apikey-form button[type=submit]');
  await p2.locator('.hint').waitFor();
  check((await p2.locator('.hint-text').innerText()).trim() === hint.trim(), 'models page shows the API hint verbatim');
  check(await p2.evaluate(() => localStorage.getItem('lemo.apiKey')) === key, 'key kept in localStorage');
  await p2.goto(`${srv2.url}/#/new`);
  await p2.locator('.hint').waitFor();
  check(await p2.locator('#create-job').isDisabled(), 'no models: create disabled, hint shown');
  await p2.screenshot({ path: path.join(shotDir, 'dashboard-nomodels.png'), fullPage: true });

  // A model appears while the server runs; a job on it is followed live with the key
  // (the stream then goes through fetch, since EventSource cannot send a header), and a
  // checkpoint is downloaded through the keyed link.
  fs.cpSync(path.join(models, 'tiny-random'), path.join(emptyModels, 'tiny-random'), { recursive: true });
  const auth = { Authorization: `Bearer ${key}` };
  const fd = new FormData();
  fd.append('purpose', 'fine-tune');
  fd.append('file', new Blob([content]), 'keyed.jsonl');
  const up = await (await fetch(`${srv2.url}/v1/files`, { method: 'POST', headers: auth, body: fd })).json();
  const jr = await fetch(`${srv2.url}/v1/fine_tuning/jobs`, {
    method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'tiny-random', training_file: up.id, hyperparameters: { max_steps: 100000, context_length: 64, checkpoint_every: 2 } }),
  });
  const kjob = await jr.json();
  if (!check(jr.status === 200 && /^ftjob-/.test(kjob.id || ''), 'keyed server: job created', JSON.stringify(kjob))) return;
  await p2.goto(`${srv2.url}/#/jobs/${kjob.id}`);
  await p2.locator('.badge.st-running').waitFor({ timeout: 60000 });
  await waitFor('keyed stream live', async () => (await p2.locator('#stream-state').innerText()).includes('live'), 20000)
    .then(() => check(true, 'with a key the event stream connects (fetch SSE)'), (e) => check(false, 'with a key the event stream connects (fetch SSE)', e.message));
  const k1 = await p2.locator('#events li.k-step').count();
  await waitFor('keyed step events', async () => (await p2.locator('#events li.k-step').count()) > k1, 30000)
    .then(() => check(true, 'with a key step events arrive live'), (e) => check(false, 'with a key step events arrive live', e.message));
  await p2.locator('#checkpoints li a').first().waitFor({ timeout: 60000 });
  const [download] = await Promise.all([p2.waitForEvent('download'), p2.locator('#checkpoints li a').first().click()]);
  const kt = tarNames(fs.readFileSync(await download.path()));
  check(kt.includes('adapter_model.safetensors'), 'keyed checkpoint download (Bearer through fetch)', kt.join(','));
  p2.once('dialog', (d) => d.accept());
  await p2.click('#btn-cancel');
  await p2.locator('.badge.st-cancelled').waitFor({ timeout: 60000 });
  await p2.context().close();
}

let crashed = null;
try { await run(); } catch (e) { crashed = e; }
await browser.close().catch(() => {});
if (crashed) { failures++; console.log(`FAIL ${crashed.stack || crashed}`); }
check(pageErrors.length === 0, 'no script errors in the page', pageErrors.join(' | '));
if (failures) {
  console.log('--- server log (tail) ---');
  console.log(srv.log().split('\n').slice(-40).join('\n'));
  if (srv2) console.log(srv2.log().split('\n').slice(-15).join('\n'));
}
await srv.stop();
if (srv2) await srv2.stop();
fs.rmSync(work, { recursive: true, force: true });
for (const d of [models, ...extraDirs]) fs.rmSync(d, { recursive: true, force: true });
console.log(failures ? `${failures} check(s) failed` : 'all checks passed');
process.exit(failures ? 1 : 0);
