// jobs.js: the jobs list: status, a progress bar with ETA per job, newest first; filters by
// status and model; a checkbox per job to compare their loss curves (#/compare/...).
//
// Polls GET /v1/fine_tuning/jobs every few seconds while shown; "Show more" follows the
// list cursor (?after=) and keeps the extra pages in view across refreshes. The API filters
// a list by metadata only, so the status and model filters apply here, to the jobs loaded;
// they live in the hash (#/jobs?status=running&model=M) so a reload or a shared link keeps
// them. Rows are kept per job id and refilled in place: a refresh every two seconds must
// not swap a checkbox or a copy button out from under the user's click.

import { get } from './api.js';
import {
  h, copyButton, fmtAgo, fmtNum, fmtRate, progressBar, reportError, showBanner, statusBadge, TERMINAL,
} from './util.js';

const PAGE = 20;
const STATUSES = ['validating_files', 'queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled'];
const PICKED = 'lemo.compare';  // the jobs ticked for comparison, kept for this tab

function loadPicked() {
  try { return JSON.parse(sessionStorage.getItem(PICKED) || '[]').filter((x) => typeof x === 'string'); } catch { return []; }
}
function savePicked(ids) {
  try { sessionStorage.setItem(PICKED, JSON.stringify(ids)); } catch { /* this page only */ }
}

export function renderJobs(main, params = new URLSearchParams()) {
  let pages = 1, timer = 0, alive = true, jobs = [], hasMore = false;
  const filter = { status: params.get('status') || '', model: params.get('model') || '' };
  const picked = new Set(loadPicked());
  const rows = new Map();  // job id -> { tr, box, cells: [model, status, progress, loss, speed, created] }

  const tbody = h('tbody');
  const more = h('button', { class: 'btn', type: 'button', hidden: true, onclick: () => { pages++; refresh(); } }, 'Show more');
  const empty = h('div', { class: 'empty', hidden: true },
    h('p', {}, 'No fine-tuning jobs yet.'),
    h('p', {}, h('a', { class: 'btn primary', href: '#/new' }, 'Create a job')));
  const noMatch = h('div', { class: 'empty', id: 'jobs-nomatch', hidden: true },
    h('p', {}, 'No loaded job matches these filters.'),
    h('p', {}, h('button', { class: 'btn', type: 'button', onclick: () => setFilter({ status: '', model: '' }) }, 'Clear filters')));

  const statusSel = h('select', { id: 'filter-status', 'aria-label': 'Filter by status' },
    h('option', { value: '' }, 'All statuses'), STATUSES.map((s) => h('option', { value: s }, s.replace(/_/g, ' '))));
  const modelSel = h('select', { id: 'filter-model', 'aria-label': 'Filter by model' }, h('option', { value: '' }, 'All models'));
  const count = h('span', { class: 'small muted', id: 'jobs-count', role: 'status' });
  const clear = h('button', { class: 'btn small', type: 'button', id: 'filter-clear', hidden: true,
    onclick: () => setFilter({ status: '', model: '' }) }, 'Clear');
  const compareBtn = h('button', { class: 'btn', type: 'button', id: 'compare-btn', disabled: true, onclick: openCompare }, 'Compare');
  const allBox = h('input', { type: 'checkbox', id: 'pick-all', 'aria-label': 'Select every job shown for comparison' });
  statusSel.value = STATUSES.includes(filter.status) ? filter.status : '';
  filter.status = statusSel.value;
  statusSel.addEventListener('change', () => setFilter({ ...filter, status: statusSel.value }));
  modelSel.addEventListener('change', () => setFilter({ ...filter, model: modelSel.value }));
  allBox.addEventListener('change', () => {
    for (const j of jobs) if (matches(j)) { if (allBox.checked) picked.add(j.id); else picked.delete(j.id); }
    syncPicked();
  });

  main.append(
    h('div', { class: 'page-head' },
      h('h1', {}, 'Fine-tuning jobs'),
      h('div', { class: 'actions' }, compareBtn, h('a', { class: 'btn primary', href: '#/new' }, 'New job'))),
    h('div', { class: 'card' },
      h('div', { class: 'toolbar', role: 'group', 'aria-label': 'Filter jobs' },
        h('label', { class: 'inline-field' }, h('span', {}, 'Status'), statusSel),
        h('label', { class: 'inline-field' }, h('span', {}, 'Model'), modelSel),
        clear, count,
        h('span', { class: 'small muted toolbar-end', id: 'compare-hint' }, 'Tick two or more jobs to compare their loss curves.')),
      h('div', { class: 'table-scroll' }, h('table', { class: 'jobs', 'aria-label': 'Fine-tuning jobs' },
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col', class: 'pick' }, allBox),
          h('th', { scope: 'col', class: 'job-cell' }, 'Job'), h('th', { scope: 'col' }, 'Model'),
          h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col', class: 'wide' }, 'Progress'),
          h('th', { scope: 'col' }, 'Loss'), h('th', { scope: 'col', class: 'col-speed' }, 'Speed'),
          h('th', { scope: 'col' }, 'Created'))),
        tbody)),
      empty, noMatch, h('div', { class: 'more' }, more)));

  const matches = (j) => (!filter.status || j.status === filter.status) && (!filter.model || j.model === filter.model);

  function setFilter(f) {
    filter.status = f.status;
    filter.model = f.model;
    statusSel.value = f.status;
    syncModels();
    const q = new URLSearchParams();
    if (filter.status) q.set('status', filter.status);
    if (filter.model) q.set('model', filter.model);
    const hash = `#/jobs${q.toString() ? `?${q}` : ''}`;
    if (location.hash !== hash) history.replaceState(null, '', hash);
    applyFilter();
  }

  // The model filter offers every model among the loaded jobs, plus the one asked for (a
  // link may name a model whose jobs are on a later page).
  let modelsShown = '';
  function syncModels() {
    const names = [...new Set(jobs.map((j) => j.model).concat(filter.model ? [filter.model] : []))].sort();
    const key = names.join('\n');
    if (key !== modelsShown) {
      modelsShown = key;
      modelSel.replaceChildren(h('option', { value: '' }, 'All models'), ...names.map((m) => h('option', { value: m }, m)));
    }
    modelSel.value = filter.model;
  }

  function applyFilter() {
    let shown = 0;
    for (const j of jobs) {
      const r = rows.get(j.id);
      r.tr.hidden = !matches(j);
      if (!r.tr.hidden) shown++;
    }
    const on = !!(filter.status || filter.model);
    clear.hidden = !on;
    noMatch.hidden = !on || shown > 0 || jobs.length === 0;
    count.textContent = on ? `${shown} of ${jobs.length}${hasMore ? ' loaded' : ''} job${jobs.length === 1 ? '' : 's'}` : '';
    syncPicked();
  }

  function syncPicked() {
    for (const [id, r] of rows) r.box.checked = picked.has(id);
    const visible = jobs.filter(matches);
    const n = visible.filter((j) => picked.has(j.id)).length;
    allBox.checked = visible.length > 0 && n === visible.length;
    allBox.indeterminate = n > 0 && n < visible.length;
    compareBtn.disabled = picked.size < 2;
    compareBtn.textContent = picked.size ? `Compare ${picked.size} job${picked.size === 1 ? '' : 's'}` : 'Compare';
    savePicked([...picked]);
  }

  function openCompare() {
    if (picked.size < 2) return;
    location.hash = `#/compare/${[...picked].map(encodeURIComponent).join(',')}`;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const list = [];
      let after = '', next = false;
      for (let i = 0; i < pages; i++) {
        const page = await get(`/v1/fine_tuning/jobs?limit=${PAGE}${after ? `&after=${encodeURIComponent(after)}` : ''}`);
        list.push(...page.data);
        next = page.has_more;
        if (!next || !page.data.length) break;
        after = page.data[page.data.length - 1].id;
      }
      if (!alive) return;
      showBanner('');
      jobs = list;
      hasMore = next;
      draw();
      const busy = jobs.some((j) => !TERMINAL.has(j.status));
      timer = setTimeout(refresh, busy ? 2000 : 6000);
    } catch (e) {
      if (!alive) return;
      reportError(e);
      timer = setTimeout(refresh, 5000);
    }
  }

  function draw() {
    const ids = new Set(jobs.map((j) => j.id));
    for (const [id, r] of rows) if (!ids.has(id)) { r.tr.remove(); rows.delete(id); }
    jobs.forEach((job, i) => {
      const r = rows.get(job.id) || makeRow(job);
      fill(r, job);
      if (tbody.children[i] !== r.tr) tbody.insertBefore(r.tr, tbody.children[i] || null);
    });
    empty.hidden = jobs.length > 0;
    more.hidden = !hasMore;
    syncModels();
    applyFilter();
  }

  // The parts of a row that stay while it is shown: its checkbox and its id (with the copy button).
  function makeRow(job) {
    const href = `#/jobs/${encodeURIComponent(job.id)}`;
    const box = h('input', { type: 'checkbox', class: 'pick-box', value: job.id, 'aria-label': `Compare ${job.id}` });
    box.addEventListener('change', () => { if (box.checked) picked.add(job.id); else picked.delete(job.id); syncPicked(); });
    const cells = ['model-cell', '', 'wide', 'num', 'num col-speed', 'small muted nowrap'].map((c) => h('td', { class: c || undefined }));
    const suffix = h('div', { class: 'small muted job-suffix' });
    const tr = h('tr', { 'data-job-id': job.id },
      h('td', { class: 'pick' }, box),
      h('td', { class: 'job-cell' },
        h('div', { class: 'job-id-line' }, h('a', { href, class: 'mono job-id', title: job.id }, job.id), copyButton(job.id, `job id ${job.id}`)),
        suffix),
      ...cells);
    const r = { tr, box, cells, suffix };
    rows.set(job.id, r);
    return r;
  }

  function fill(r, job) {
    const p = job.progress || {};
    r.suffix.textContent = job.suffix || '';
    r.suffix.title = job.suffix || '';
    r.suffix.hidden = !job.suffix;
    const [model, status, prog, loss, speed, created] = r.cells;
    if (model.textContent !== job.model) { model.textContent = job.model; model.title = job.model; }
    status.replaceChildren(statusBadge(job.status),
      job.status === 'failed' && job.error ? h('div', { class: 'small err-text' }, job.error.message) : '');
    prog.replaceChildren(progressBar(job));
    loss.textContent = fmtNum(p.loss);
    speed.textContent = job.status === 'running' ? fmtRate(p.tokens_per_s) : '–';
    created.textContent = fmtAgo(job.created_at);
  }

  syncModels();
  refresh();
  return () => { alive = false; clearTimeout(timer); };
}
