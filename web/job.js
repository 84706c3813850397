// job.js: one job's page, live: progress (with a LeMo preparation's stage and recall), loss
// chart, speed, memory, LeMo's kept tokens per layer (a layer x step heatmap and the latest
// step's bars), controls, downloads and the event log.
//
// Two feeds keep it current. The job object (GET .../jobs/ID, polled) gives status and
// the latest progress; the event stream (GET .../events?stream=true) gives every step,
// eval, checkpoint and log line as it happens. The history is also fetched as a list and
// merged by event id, so the page is whole whether or not the stream replays old events,
// and a reconnecting stream never draws a point twice.

import { get, post, getAll, apiKey } from './api.js';
import { drawKeptBars } from './chart.js';
import { drawKeptHeatmap, KeptSeries } from './heatmap.js';
import { drawLossChart } from './loss_chart.js';
import { ema, smoothingControl, smoothingWeight } from './smoothing.js';
import { followStream } from './sse.js';
import {
  h, downloadLink, fmtBytes, fmtDuration, fmtNum, fmtRate, fmtTime, memOf, progressBar, reportError, showBanner,
  statusBadge, TERMINAL, debounce,
} from './util.js';

const MAX_SHOWN_EVENTS = 300;
// The history is read in pages of the API's largest size: a job of thousands of steps has
// a metrics event per step, and the heatmap wants all of them.
const HISTORY_PAGE = 1000, HISTORY_PAGES = 50;

// Reads a (step, loss) point out of an event: {kind: 'train'|'eval', step, loss} or null.
// The child's progress lines (DESIGN section 6) travel in event.data; a `type` of "step"
// is training, "eval" is evaluation; OpenAI-style metrics (train_loss, valid_loss) count too.
function eventPoints(ev) {
  // A "message" event's data is the line behind a message: a LeMo preparation's own steps
  // (its predictors' loss, on their own step count) are not the job's training points.
  if (ev.type === 'message') return [];
  const d = ev.data && typeof ev.data === 'object' ? ev.data : {};
  const kind = d.type || ev.type;
  const step = d.step ?? d.step_number;
  if (step === undefined || step === null) return [];
  const out = [];
  const num = (v) => (typeof v === 'number' && isFinite(v) ? v : null);
  if (kind === 'eval') {
    const v = num(d.eval_loss ?? d.loss ?? d.valid_loss);
    if (v !== null) out.push({ kind: 'eval', step, loss: v });
    return out;
  }
  if (kind === 'step' || kind === 'metrics') {
    const t = num(d.loss ?? d.train_loss);
    if (t !== null) out.push({ kind: 'train', step, loss: t });
    const e = num(d.eval_loss ?? d.valid_loss ?? d.full_valid_loss);
    if (e !== null) out.push({ kind: 'eval', step, loss: e });
  }
  return out;
}

// A LeMo step's kept share per layer: {step, fractions} from a metrics event, or null.
function eventKept(ev) {
  if (ev.type === 'message') return null;
  const d = ev.data && typeof ev.data === 'object' ? ev.data : null;
  if (!d || !Array.isArray(d.kept_fraction)) return null;
  const kind = d.type || ev.type;
  const step = d.step ?? d.step_number;
  if ((kind !== 'step' && kind !== 'metrics') || typeof step !== 'number') return null;
  return { step, fractions: d.kept_fraction };
}

// One line of text for an event: its message, or a summary of its data.
function eventText(ev) {
  if (ev.message) return ev.message;
  const d = ev.data || {};
  if (d.message) return d.message;
  const kind = d.type || ev.type;
  if (kind === 'step') return `step ${d.step}${d.total_steps ? `/${d.total_steps}` : ''} · loss ${fmtNum(d.loss)}${d.tokens_per_s ? ` · ${fmtRate(d.tokens_per_s)}` : ''}`;
  if (kind === 'eval') return `eval at step ${d.step} · loss ${fmtNum(d.loss ?? d.eval_loss)}`;
  if (kind === 'checkpoint') return `checkpoint at step ${d.step}`;
  return JSON.stringify(d);
}

function eventKey(ev) {
  return ev.id || `${ev.created_at}|${ev.type}|${ev.message}|${JSON.stringify(ev.data)}`;
}

export function renderJob(main, id) {
  let alive = true, job = null, pollTimer = 0, stream = null, ckptTimer = 0;
  const base = `/v1/fine_tuning/jobs/${encodeURIComponent(id)}`;
  const events = new Map();            // key -> {ev, seq}; seq orders events within one second
  let seq = 0;
  const train = new Map(), evals = new Map();  // step -> loss
  const kept = new KeptSeries();               // step -> kept share per layer
  const prepared = {};                         // a finished LeMo preparation's results, from its events

  // Static frame; the parts below are refilled as data arrives.
  const title = h('h1', { class: 'mono' }, id);
  const badge = h('span', {});
  const btnCancel = h('button', { class: 'btn danger', type: 'button', id: 'btn-cancel', onclick: () => act('cancel') }, 'Cancel');
  const btnPause = h('button', { class: 'btn', type: 'button', id: 'btn-pause', onclick: () => act('pause') }, 'Pause');
  const btnResume = h('button', { class: 'btn', type: 'button', id: 'btn-resume', onclick: () => act('resume') }, 'Resume');
  const progressHost = h('div', { id: 'job-progress' });
  const prepLine = h('p', { class: 'prep-line small', id: 'lemo-prepare', hidden: true });
  const stats = h('dl', { class: 'stats', id: 'job-stats' });
  const errBox = h('div', { class: 'job-error', role: 'alert', hidden: true });
  const chartHost = h('div', { class: 'chart-host', id: 'loss-chart' });
  const heatHost = h('div', { class: 'chart-host', id: 'kept-heatmap' });
  const heatCaption = h('span', { class: 'small muted', id: 'kept-caption' });
  const barsHost = h('div', { class: 'chart-host', id: 'kept-chart' });
  const barsHead = h('h3', { id: 'kept-latest-h' }, 'Latest step');
  const keptCard = h('section', { class: 'card', id: 'kept-card', hidden: true, 'aria-labelledby': 'kept-h' },
    h('div', { class: 'card-head' }, h('h2', { id: 'kept-h' }, 'Kept tokens per layer'), heatCaption),
    h('p', { class: 'small muted' }, 'Share of tokens each decoder layer\'s attention keeps after LeMo\'s token elimination, '
      + 'step by step (100% = a dense layer). Hover a cell for its layer, steps and share.'),
    heatHost, barsHead, barsHost);
  const info = h('dl', { class: 'kv', id: 'job-info' });
  const hpBox = h('dl', { class: 'kv', id: 'job-hparams' });
  const downloads = h('div', { id: 'downloads' });
  // The adapter links and the checkpoint list are updated in place: a node the user is
  // clicking must not be swapped out by a reload (checkpoints can arrive several a second),
  // or the click lands on a detached element and the download never starts.
  const adapterBox = h('div');
  const ckptHead = h('h3', {}, 'Checkpoints');
  const ckptList = h('ul', { class: 'ckpts', id: 'checkpoints', 'aria-label': 'Checkpoints' });
  const ckptNone = h('p', { class: 'muted small' }, 'None yet.');
  const ckptItems = new Map();  // step -> { li, meta }
  let adapterState = '';
  downloads.replaceChildren(adapterBox, ckptHead, ckptNone);

  const streamState = h('span', { class: 'small muted', id: 'stream-state', role: 'status' });
  const evList = h('ol', { class: 'events', id: 'events', 'aria-label': 'Job events, newest first' });
  const evCount = h('span', { class: 'small muted', id: 'events-count' });

  main.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('a', { href: '#/jobs', class: 'small' }, '← All jobs'), h('div', { class: 'title-row' }, title, badge)),
      h('div', { class: 'actions', role: 'group', 'aria-label': 'Job controls' }, btnPause, btnResume, btnCancel)),
    errBox,
    h('section', { class: 'card', 'aria-labelledby': 'pr-h' },
      h('h2', { id: 'pr-h', class: 'visually-hidden' }, 'Progress'), progressHost, prepLine, stats),
    h('section', { class: 'card', 'aria-labelledby': 'loss-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'loss-h' }, 'Loss'), h('span', { class: 'small muted', id: 'chart-caption' }),
        smoothingControl(() => redrawChart())),
      chartHost),
    keptCard,
    h('div', { class: 'grid2' },
      h('section', { class: 'card', 'aria-labelledby': 'dl-h' }, h('h2', { id: 'dl-h' }, 'Adapter'), downloads),
      h('section', { class: 'card', 'aria-labelledby': 'in-h' }, h('h2', { id: 'in-h' }, 'Details'), info, h('h3', {}, 'Hyperparameters'), hpBox)),
    h('section', { class: 'card', 'aria-labelledby': 'ev-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'ev-h' }, 'Events'), evCount, streamState),
      evList));
  drawLossChart(chartHost, [], [], { weight: smoothingWeight() });

  async function act(what) {
    if (what === 'cancel' && !confirm(`Cancel ${id}? It stops after the current step and keeps its checkpoints.`)) return;
    for (const b of [btnCancel, btnPause, btnResume]) b.disabled = true;
    try {
      job = await post(`${base}/${what}`);
      showBanner('');
      renderJobObject();
      schedulePoll(500);
    } catch (e) { reportError(e); renderButtons(); }
  }

  function renderButtons() {
    const s = job ? job.status : '';
    btnCancel.disabled = !job || TERMINAL.has(s);
    btnPause.disabled = s !== 'running' && s !== 'queued';
    btnResume.disabled = s !== 'paused';
  }

  function statItem(label, value, idAttr) {
    return h('div', { 'data-stat': idAttr }, h('dt', {}, label), h('dd', {}, value));
  }

  // Refills everything that comes from the job object.
  function renderJobObject() {
    const p = job.progress || {};
    document.title = `${job.id} · ${job.status} · lemo`;
    badge.replaceChildren(statusBadge(job.status));
    renderAdapterLinks();  // the status may arrive by the stream, which reloads nothing else
    renderButtons();
    progressHost.replaceChildren(progressBar(job));
    const elapsed = job.started_at ? (job.finished_at || Date.now() / 1000) - job.started_at : null;
    const lastEval = [...evals.entries()].sort((a, b) => a[0] - b[0]).pop();
    stats.replaceChildren(
      statItem('Step', p.total_steps ? `${fmtNum(p.step ?? 0)} / ${fmtNum(p.total_steps)}` : fmtNum(p.step), 'step'),
      statItem('Train loss', fmtNum(p.loss), 'loss'),
      statItem('Eval loss', fmtNum(lastEval ? lastEval[1] : p.eval_loss), 'eval_loss'),
      statItem('Speed', job.status === 'running' || p.tokens_per_s ? fmtRate(p.tokens_per_s) : '–', 'tokens_per_s'),
      statItem(p.gpu_mem_bytes !== undefined ? 'GPU memory' : 'Memory', fmtBytes(memOf(p)), 'mem'),
      statItem('Learning rate', fmtNum(p.lr, 3), 'lr'),
      statItem('Trained tokens', fmtNum(job.trained_tokens || p.tokens), 'tokens'),
      statItem('Elapsed', fmtDuration(elapsed), 'elapsed'));
    if (job.error && (job.error.message || job.error.code)) {
      errBox.hidden = false;
      errBox.replaceChildren(h('strong', {}, `Job ${job.status}: `), job.error.message || '',
        job.error.code ? h('span', { class: 'muted small' }, ` (${job.error.code}${job.error.param ? `, ${job.error.param}` : ''})`) : '');
    } else errBox.hidden = true;
    renderKept();
    // the job's progress names the preparation while it runs; afterwards its events still tell
    renderPrepare(p.lemo_prepare || ('recall' in prepared ? { stage: 'done', ...prepared } : null));
    const kv = (k, v) => [h('dt', {}, k), h('dd', {}, v ?? '–')];
    info.replaceChildren(
      ...kv('Model', job.model),
      ...kv('Training file', job.training_file),
      ...(job.validation_file ? kv('Validation file', job.validation_file) : []),
      ...kv('Fine-tuned model', job.fine_tuned_model),
      ...kv('Created', fmtTime(job.created_at)),
      ...kv('Started', fmtTime(job.started_at)),
      ...kv('Finished', fmtTime(job.finished_at)),
      ...(job.seed !== undefined && job.seed !== null ? kv('Seed', String(job.seed)) : []),
      ...(job.suffix ? kv('Suffix', job.suffix) : []),
      ...(job.method && job.method.type ? kv('Method', job.method.type) : []));
    const hp = job.hyperparameters || {};
    hpBox.replaceChildren(...Object.entries(hp).flatMap(([k, v]) =>
      kv(k, v === null ? '–' : Array.isArray(v) ? v.join(', ') : (typeof v === 'object' ? JSON.stringify(v) : String(v)))));
    redrawChart();
  }

  function redrawChart() {
    const sorted = (m) => [...m.entries()].sort((a, b) => a[0] - b[0]).map(([step, loss]) => ({ step, loss }));
    const t = sorted(train), e = sorted(evals);
    const w = smoothingWeight();
    drawLossChart(chartHost, t, e, {
      totalSteps: job && job.progress ? job.progress.total_steps : 0, finished: !!job && TERMINAL.has(job.status), weight: w,
    });
    const sm = t.length ? ema(t.map((p) => p.loss), w).pop() : null;
    document.getElementById('chart-caption').textContent = t.length
      ? `${t.length} steps · latest ${fmtNum(t[t.length - 1].loss)}${w > 0 ? ` (smoothed ${fmtNum(sm)})` : ''}`
        + `${e.length ? ` · eval ${fmtNum(e[e.length - 1].loss)}` : ''}` : '';
  }

  // A LeMo preparation (a job of its own, or a LeMo job's first phase when its base model had
  // no predictors yet): where it stands, from progress.lemo_prepare.
  const PREP_STAGE = { targets: 'exact block scores of the frozen model', training: 'training', calibrated: 'schedule calibrated', done: 'prepared' };
  function renderPrepare(lp) {
    prepLine.hidden = !lp || typeof lp !== 'object';
    if (prepLine.hidden) return;
    const bits = [PREP_STAGE[lp.stage] || lp.stage || 'starting'];
    if (typeof lp.step === 'number') bits.push(`step ${fmtNum(lp.step)}${lp.total_steps ? ` / ${fmtNum(lp.total_steps)}` : ''}`);
    if (typeof lp.loss === 'number') bits.push(`loss ${fmtNum(lp.loss)}`);
    if (typeof lp.recall === 'number')
      bits.push(`held-out recall ${(100 * lp.recall).toFixed(0)}%${typeof lp.random_recall === 'number' ? ` (random ${(100 * lp.random_recall).toFixed(0)}%)` : ''}`);
    if (typeof lp.mean_keep === 'number') bits.push(`mean kept share ${(100 * lp.mean_keep).toFixed(0)}%`);
    prepLine.replaceChildren(h('span', { class: `badge ${lp.stage === 'done' ? 'st-succeeded' : job && TERMINAL.has(job.status) ? '' : 'st-running'}` }, 'LeMo predictors'),
      bits.join(' · '));
  }

  // The kept-token card: the heatmap of every step seen and the newest step's bars. Shown
  // for LeMo jobs only (their steps carry kept_fraction). A long job's heatmap of a deep model
  // can take a tenth of a second to draw on a slow machine, so while steps stream in it is
  // redrawn at most every five times its last drawing time, and only when its data or its
  // width changed.
  let heatDrawn = '', barsDrawn = '', heatTimer = 0, heatCost = 0, heatAt = 0;
  function renderKept() {
    const p = (job && job.progress) || {};
    const last = kept.latest();
    const bars = last ? last.fractions : (Array.isArray(p.kept_fraction) && p.kept_fraction.length ? p.kept_fraction : null);
    keptCard.hidden = !bars;
    if (!bars) return;
    const w = keptCard.clientWidth;
    heatHost.hidden = kept.size === 0;
    const heatKey = `${kept.version}|${w}`;
    if (kept.size && heatKey !== heatDrawn) {
      const wait = heatAt + 5 * heatCost - performance.now();
      if (wait > 0) {
        if (!heatTimer) heatTimer = setTimeout(() => { heatTimer = 0; if (alive) renderKept(); }, wait);
      } else {
        const t = performance.now();
        const { columns, bin } = drawKeptHeatmap(heatHost, kept);
        heatAt = performance.now();
        heatCost = heatAt - t;
        heatDrawn = heatKey;
        heatCaption.textContent = `${kept.layers} layers · ${fmtNum(kept.size)} step${kept.size === 1 ? '' : 's'}`
          + (bin > 1 ? ` · ${fmtNum(columns)} columns of ${bin} steps` : '');
      }
    }
    const barsKey = `${bars.join(',')}|${w}`;
    if (barsKey !== barsDrawn) {
      drawKeptBars(barsHost, bars);
      barsDrawn = barsKey;
    }
    barsHead.textContent = last ? `Latest step (${fmtNum(last.step)})` : 'Latest step';
  }

  let redrawQueued = false;
  function queueRedraw() {
    if (redrawQueued) return;
    redrawQueued = true;
    requestAnimationFrame(() => {
      redrawQueued = false;
      if (!alive) return;
      if (job) renderJobObject(); else { redrawChart(); renderKept(); }  // stats follow the newest eval too
      renderEvents();
    });
  }

  // Adds events (from the list or the stream); returns true when one was new.
  function addEvents(list) {
    let fresh = false;
    for (const ev of list) {
      const k = eventKey(ev);
      if (events.has(k)) continue;
      events.set(k, { ev, seq: seq++ });
      fresh = true;
      for (const pt of eventPoints(ev)) (pt.kind === 'eval' ? evals : train).set(pt.step, pt.loss);
      const kf = eventKept(ev);
      if (kf) kept.add(kf.step, kf.fractions);
      // `lemo prepare`'s recall and calibrate lines (message events; the trainer has neither)
      const d = ev.type === 'message' && ev.data && typeof ev.data === 'object' ? ev.data : null;
      if (d && d.type === 'recall') Object.assign(prepared, { recall: d.mean, random_recall: d.random });
      if (d && d.type === 'calibrate') prepared.mean_keep = d.mean_keep;
      const kind = (ev.data && ev.data.type) || ev.type;
      // at most one reload per 300 ms: a debounce would starve while checkpoints keep coming
      if (kind === 'checkpoint' && !ckptTimer) ckptTimer = setTimeout(() => { ckptTimer = 0; loadCheckpoints(); }, 300);
    }
    if (fresh) queueRedraw();
    return fresh;
  }

  function renderEvents() {
    const all = [...events.values()]
      .sort((a, b) => (b.ev.created_at || 0) - (a.ev.created_at || 0) || b.seq - a.seq).map((x) => x.ev);
    evCount.textContent = `${all.length} event${all.length === 1 ? '' : 's'}${all.length > MAX_SHOWN_EVENTS ? `, latest ${MAX_SHOWN_EVENTS} shown` : ''}`;
    evList.replaceChildren(...all.slice(0, MAX_SHOWN_EVENTS).map((ev) => {
      const kind = (ev.data && ev.data.type) || ev.type || 'message';
      return h('li', { class: `ev lv-${ev.level || 'info'} k-${kind}` },
        h('time', { class: 'mono small muted', datetime: ev.created_at ? new Date(ev.created_at * 1000).toISOString() : undefined }, fmtTime(ev.created_at).slice(11)),
        h('span', { class: 'ev-kind small' }, kind),
        h('span', { class: 'ev-msg' }, eventText(ev)));
    }));
  }

  function renderAdapterLinks() {
    const adapterUrl = `${base}/adapter`;
    const hasAdapter = !!(job && (job.status === 'succeeded' || job.fine_tuned_model));
    const state = `${hasAdapter}/${job ? TERMINAL.has(job.status) : false}/${apiKey() ? 1 : 0}`;
    if (state === adapterState) return;
    adapterState = state;
    const link = downloadLink;
    if (hasAdapter) {
      adapterBox.replaceChildren(h('p', {}, link(adapterUrl, 'Download adapter (.tar)', `${id}-adapter.tar`)),
        h('p', { class: 'small' }, 'or one file: ',
          link(`${adapterUrl}/adapter_config.json`, 'adapter_config.json', 'adapter_config.json'), ' · ',
          link(`${adapterUrl}/adapter_model.safetensors`, 'adapter_model.safetensors', 'adapter_model.safetensors')),
        h('pre', { class: 'curl small' }, `curl ${apiKey() ? '-H "Authorization: Bearer $LEMO_KEY" ' : ''}-o adapter.tar ${location.origin}${adapterUrl}`));
    } else {
      adapterBox.replaceChildren(h('p', { class: 'muted' }, job && TERMINAL.has(job.status)
        ? 'This job has no final adapter; checkpoints below hold the adapter at each saved step.'
        : 'The adapter is ready when the job succeeds; checkpoints appear as they are saved.'));
    }
  }

  async function loadCheckpoints() {
    renderAdapterLinks();
    let ckpts = [];
    try { ckpts = await getAll(`${base}/checkpoints`); } catch (e) { if (e.status !== 404) reportError(e); }
    if (!alive) return;
    ckpts.sort((a, b) => (b.step_number ?? b.step ?? 0) - (a.step_number ?? a.step ?? 0));
    const nodes = ckpts.map((c) => {
      const step = c.step_number ?? c.step;
      let item = ckptItems.get(step);
      if (!item) {
        const meta = h('span', { class: 'small muted' });
        item = { li: h('li', {}, downloadLink(`${base}/adapter?step=${step}`, `step ${step}`, `${id}-step-${step}-adapter.tar`), meta), meta };
        ckptItems.set(step, item);
      }
      const m = c.metrics || {};
      const loss = m.train_loss ?? m.loss;
      const el = m.valid_loss ?? m.eval_loss;
      const text = [loss !== undefined ? ` · loss ${fmtNum(loss)}` : '', el !== undefined ? ` · eval ${fmtNum(el)}` : '', c.created_at ? ` · ${fmtTime(c.created_at)}` : ''].join('');
      if (item.meta.textContent !== text) item.meta.textContent = text;
      return item.li;
    });
    // move or insert only what differs, so existing items stay where they are
    nodes.forEach((li, i) => { if (ckptList.children[i] !== li) ckptList.insertBefore(li, ckptList.children[i] || null); });
    while (ckptList.children.length > nodes.length) ckptList.lastElementChild.remove();
    ckptHead.textContent = `Checkpoints (${ckpts.length})`;
    const shown = ckpts.length ? ckptList : ckptNone;
    if (downloads.lastElementChild !== shown) downloads.lastElementChild.replaceWith(shown);
  }

  // Polls after ms, or sooner if a poll is already due sooner (fast steps never starve it).
  let pollAt = 0;
  function schedulePoll(ms) {
    const at = Date.now() + ms;
    if (pollTimer && pollAt <= at) return;
    clearTimeout(pollTimer);
    pollAt = at;
    pollTimer = setTimeout(() => { pollTimer = 0; poll(); }, ms);
  }

  async function poll() {
    try {
      const prev = job ? job.status : null;
      job = await get(base);
      if (!alive) return;
      renderJobObject();
      if (prev !== job.status) loadCheckpoints();
      if (TERMINAL.has(job.status)) {
        // The stream ends with the job; take the full history once more and stop.
        if (stream) { const s = stream; stream = null; setTimeout(() => s.close(), 1500); }
        // The stopping child may record its last checkpoint just after the status flips.
        if (prev !== job.status) setTimeout(() => { loadHistory(); loadCheckpoints(); }, 1600);
        return;
      }
      if (!stream) openStream();
      schedulePoll(2000);
    } catch (e) {
      if (!alive) return;
      reportError(e);
      schedulePoll(e.status === 404 ? 30000 : 5000);
    }
  }

  async function loadHistory() {
    try {
      const list = await getAll(`${base}/events`, HISTORY_PAGE, HISTORY_PAGES);
      if (alive) addEvents(list.reverse());  // the API lists newest first; add in time order
    } catch (e) { if (alive) reportError(e); }
  }

  function openStream() {
    stream = followStream(`${base}/events?stream=true`, ({ data }) => {
      if (!alive || !data || typeof data !== 'object') return;
      if (data.object === 'fine_tuning.job' && data.status) {
        const prev = job ? job.status : null;
        job = data;
        renderJobObject();
        if (prev !== job.status) loadCheckpoints();
        return;
      }
      if (addEvents([data])) schedulePoll(300);
    }, (state) => {
      streamState.textContent = { open: '● live', retry: 'reconnecting…', ended: 'stream ended', closed: '' }[state] ?? '';
      streamState.classList.toggle('live', state === 'open');
      if (state === 'ended') stream = null;  // poll() reopens it while the job still runs
    });
  }

  // Charts are drawn at the page's width: redraw them when it changes.
  const onResize = debounce(() => { if (alive && job) renderJobObject(); }, 150);
  window.addEventListener('resize', onResize);

  (async () => {
    await poll();
    await loadHistory();
  })();

  return () => {
    alive = false;
    window.removeEventListener('resize', onResize);
    clearTimeout(pollTimer);
    clearTimeout(ckptTimer);
    clearTimeout(heatTimer);
    if (stream) stream.close();
  };
}
