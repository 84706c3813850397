// compare.js: the loss curves of several jobs on one chart (#/compare/ID,ID,...), with a
// table of each job's numbers under it. The jobs are picked with the checkboxes of the jobs
// list.
//
// Each job's points come from its metrics events (GET .../events, type "metrics"): data.step
// with data.train_loss for every step and data.valid_loss for every eval, OpenAI's fields,
// which every job records whatever trainer line they came from. While any of the jobs still
// runs, the newest page of each job's events is read again every few seconds and merged by
// event id; the whole history is read again only if that page does not reach back to events
// already seen (more arrived in between than one page holds).

import { get, getAll } from './api.js';
import { drawLossCurves } from './loss_chart.js';
import { ema, smoothingControl, smoothingWeight } from './smoothing.js';
import { h, debounce, fmtNum, reportError, showBanner, statusBadge, TERMINAL } from './util.js';

const EVENTS_PAGE = 1000, EVENTS_PAGES = 50, POLL_MS = 4000, PALETTE = 8;

const num = (v) => (typeof v === 'number' && isFinite(v) ? v : null);

export function renderCompare(main, ids) {
  let alive = true, timer = 0;
  ids = [...new Set(ids)];
  // per job: {id, job, error, seen: Set of event ids, train: Map step -> loss, evals: Map}
  const runs = ids.map((id) => ({ id, job: null, error: null, seen: new Set(), train: new Map(), evals: new Map() }));

  const chartHost = h('div', { class: 'chart-host', id: 'compare-chart' });
  const caption = h('span', { class: 'small muted', id: 'compare-caption' });
  const tbody = h('tbody');
  main.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('a', { href: '#/jobs', class: 'small' }, '← All jobs'), h('div', { class: 'title-row' }, h('h1', {}, 'Compare jobs')))),
    ...(ids.length < 2 ? [h('p', { class: 'note' }, 'Tick two or more jobs on the ', h('a', { href: '#/jobs' }, 'Jobs'), ' page and press Compare.')] : []),
    h('section', { class: 'card', 'aria-labelledby': 'cmp-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'cmp-h' }, 'Loss'), caption, smoothingControl(() => redraw())),
      chartHost),
    h('section', { class: 'card', 'aria-labelledby': 'cmp-t' },
      h('h2', { id: 'cmp-t' }, 'Jobs'),
      h('div', { class: 'table-scroll' }, h('table', { class: 'compare', id: 'compare-table', 'aria-labelledby': 'cmp-t' },
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Job'), h('th', { scope: 'col' }, 'Model'), h('th', { scope: 'col' }, 'Status'),
          h('th', { scope: 'col', class: 'num' }, 'Steps'), h('th', { scope: 'col', class: 'num' }, 'Train loss'),
          h('th', { scope: 'col', class: 'num' }, 'Smoothed'), h('th', { scope: 'col', class: 'num' }, 'Best eval'),
          h('th', { scope: 'col', class: 'num' }, 'Last eval'), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Remove')))),
        tbody))));

  // Takes a job's metrics events into its maps; returns how many were new.
  function take(run, events) {
    let fresh = 0;
    for (const ev of events) {
      if (!ev || ev.type !== 'metrics' || run.seen.has(ev.id)) continue;
      run.seen.add(ev.id);
      fresh++;
      const d = ev.data && typeof ev.data === 'object' ? ev.data : {};
      if (typeof d.step !== 'number') continue;
      const t = num(d.train_loss), v = num(d.valid_loss);
      if (t !== null) run.train.set(d.step, t);
      if (v !== null) run.evals.set(d.step, v);
    }
    return fresh;
  }

  async function load(run) {
    const base = `/v1/fine_tuning/jobs/${encodeURIComponent(run.id)}`;
    try {
      run.job = await get(base);
      run.error = null;
      if (!run.seen.size) { take(run, await getAll(`${base}/events`, EVENTS_PAGE, EVENTS_PAGES)); return; }
      const page = await get(`${base}/events?limit=${EVENTS_PAGE}`);
      const data = (page && page.data) || [];
      const reaches = !page.has_more || data.some((ev) => run.seen.has(ev.id));
      take(run, reaches ? data : await getAll(`${base}/events`, EVENTS_PAGE, EVENTS_PAGES));
    } catch (e) {
      if (e.status === 404) run.error = 'no such job';
      else { run.error = e.message; reportError(e); }
    }
  }

  async function refresh() {
    timer = 0;
    await Promise.all(runs.map(load));
    if (!alive) return;
    if (runs.every((r) => !r.error)) showBanner('');
    redraw();
    if (runs.some((r) => r.job && !TERMINAL.has(r.job.status))) timer = setTimeout(refresh, POLL_MS);
  }

  const sorted = (m) => [...m.entries()].sort((a, b) => a[0] - b[0]).map(([step, loss]) => ({ step, loss }));

  function redraw() {
    const w = smoothingWeight();
    const groups = runs.map((r) => ({
      key: r.id, href: `#/jobs/${encodeURIComponent(r.id)}`,
      label: r.job && r.job.suffix ? `${r.id} · ${r.job.suffix}` : r.id,
      title: r.job ? `${r.id}${r.job.suffix ? ` (${r.job.suffix})` : ''} · ${r.job.model} · ${r.job.status}` : r.id,
      train: sorted(r.train), evals: sorted(r.evals),
    }));
    const total = Math.max(0, ...runs.map((r) => (r.job && r.job.progress && r.job.progress.total_steps) || 0));
    const finished = runs.every((r) => !r.job || TERMINAL.has(r.job.status));
    drawLossCurves(chartHost, groups, { weight: w, totalSteps: total, finished, empty: 'No metrics recorded yet' });
    caption.textContent = `${runs.length} job${runs.length === 1 ? '' : 's'}`;
    tbody.replaceChildren(...runs.map((r, i) => row(r, groups[i], w, i)));
  }

  function row(r, g, w, i) {
    const sm = g.train.length ? ema(g.train.map((p) => p.loss), w).pop() : null;
    const best = g.evals.reduce((b, p) => (!b || p.loss < b.loss ? p : b), null);
    const last = g.train[g.train.length - 1], lastEval = g.evals[g.evals.length - 1];
    const others = runs.filter((o) => o !== r).map((o) => encodeURIComponent(o.id)).join(',');
    return h('tr', { 'data-job-id': r.id },
      h('td', { class: 'nowrap' }, h('span', { class: 'swatch-dot', style: `background: var(--c${i % PALETTE})`, 'aria-hidden': 'true' }),
        h('a', { class: 'mono', href: g.href }, r.id),
        r.job && r.job.suffix ? h('span', { class: 'small muted' }, ` ${r.job.suffix}`) : null,
        r.error ? h('span', { class: 'small err-text' }, ` ${r.error}`) : null),
      h('td', {}, r.job ? r.job.model : '–'),
      h('td', {}, r.job ? statusBadge(r.job.status) : '–'),
      h('td', { class: 'num' }, last ? fmtNum(last.step) : '–'),
      h('td', { class: 'num' }, last ? fmtNum(last.loss) : '–'),
      h('td', { class: 'num' }, fmtNum(sm)),
      h('td', { class: 'num', title: best ? `at step ${best.step}` : undefined }, best ? `${fmtNum(best.loss)} @ ${fmtNum(best.step)}` : '–'),
      h('td', { class: 'num' }, lastEval ? fmtNum(lastEval.loss) : '–'),
      h('td', { class: 'row-end' }, runs.length > 1
        ? h('a', { class: 'btn small', href: `#/compare/${others}`, title: `Leave ${r.id} out`, 'aria-label': `Leave ${r.id} out of the comparison` }, 'Remove')
        : null));
  }

  const onResize = debounce(() => { if (alive) redraw(); }, 150);
  window.addEventListener('resize', onResize);
  redraw();
  refresh();
  return () => { alive = false; clearTimeout(timer); window.removeEventListener('resize', onResize); };
}
