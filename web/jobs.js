// jobs.js: the jobs list: status, a progress bar with ETA per job, newest first.
//
// Polls GET /v1/fine_tuning/jobs every few seconds while shown; "Show more" follows the
// list cursor (?after=) and keeps the extra pages in view across refreshes.

import { get } from './api.js';
import { h, fmtAgo, fmtNum, fmtRate, progressBar, reportError, showBanner, statusBadge, TERMINAL } from './util.js';

const PAGE = 20;

export function renderJobs(main) {
  let pages = 1, timer = 0, alive = true;
  const tbody = h('tbody');
  const more = h('button', { class: 'btn', type: 'button', hidden: true, onclick: () => { pages++; refresh(); } }, 'Show more');
  const empty = h('div', { class: 'empty', hidden: true },
    h('p', {}, 'No fine-tuning jobs yet.'),
    h('p', {}, h('a', { class: 'btn primary', href: '#/new' }, 'Create a job')));
  main.append(
    h('div', { class: 'page-head' },
      h('h1', {}, 'Fine-tuning jobs'),
      h('a', { class: 'btn primary', href: '#/new' }, 'New job')),
    h('div', { class: 'card' },
      h('table', { class: 'jobs', 'aria-label': 'Fine-tuning jobs' },
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Job'), h('th', { scope: 'col' }, 'Model'),
          h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col', class: 'wide' }, 'Progress'),
          h('th', { scope: 'col' }, 'Loss'), h('th', { scope: 'col' }, 'Speed'),
          h('th', { scope: 'col' }, 'Created'))),
        tbody),
      empty, h('div', { class: 'more' }, more)));

  async function refresh() {
    clearTimeout(timer);
    try {
      const jobs = [];
      let after = '', hasMore = false;
      for (let i = 0; i < pages; i++) {
        const page = await get(`/v1/fine_tuning/jobs?limit=${PAGE}${after ? `&after=${encodeURIComponent(after)}` : ''}`);
        jobs.push(...page.data);
        hasMore = page.has_more;
        if (!hasMore || !page.data.length) break;
        after = page.data[page.data.length - 1].id;
      }
      if (!alive) return;
      showBanner('');
      tbody.replaceChildren(...jobs.map(row));
      empty.hidden = jobs.length > 0;
      more.hidden = !hasMore;
      const busy = jobs.some((j) => !TERMINAL.has(j.status));
      timer = setTimeout(refresh, busy ? 2000 : 6000);
    } catch (e) {
      if (!alive) return;
      reportError(e);
      timer = setTimeout(refresh, 5000);
    }
  }

  function row(job) {
    const p = job.progress || {};
    const href = `#/jobs/${encodeURIComponent(job.id)}`;
    return h('tr', { 'data-job-id': job.id },
      h('td', {}, h('a', { href, class: 'mono' }, job.id), job.suffix ? h('div', { class: 'small muted' }, job.suffix) : null),
      h('td', {}, job.model),
      h('td', {}, statusBadge(job.status),
        job.status === 'failed' && job.error ? h('div', { class: 'small err-text' }, job.error.message) : null),
      h('td', { class: 'wide' }, progressBar(job)),
      h('td', { class: 'num' }, fmtNum(p.loss)),
      h('td', { class: 'num' }, job.status === 'running' ? fmtRate(p.tokens_per_s) : '–'),
      h('td', { class: 'small muted' }, fmtAgo(job.created_at)));
  }

  refresh();
  return () => { alive = false; clearTimeout(timer); };
}
