// app.js: the dashboard's entry point: hash router, API key field and error banner.
//
// Routes: #/jobs (list; #/jobs?status=S&model=M filters it), #/jobs/ID (one job, live),
// #/compare/ID,ID,... (loss curves of several jobs on one chart), #/new (create a job;
// #/new/FILE/MODEL preselects a dataset and a model), #/files (datasets: upload and list),
// #/models. A view that changes its own query (the jobs filters) rewrites the hash with
// history.replaceState, which fires no hashchange, so the view is not rebuilt under the user.
// Each view module exports a render(main, ...args) that returns a cleanup function,
// which stops the view's timers and streams when the route changes.

import { apiKey, setApiKey } from './api.js';
import { renderCompare } from './compare.js';
import { renderJobs } from './jobs.js';
import { renderJob } from './job.js';
import { renderNewJob } from './newjob.js';
import { renderFiles } from './files.js';
import { renderModels } from './models.js';
import { showBanner } from './util.js';

let cleanup = null;

function route() {
  if (cleanup) { try { cleanup(); } catch { /* view already gone */ } }
  cleanup = null;
  showBanner('');
  const main = document.getElementById('main');
  main.replaceChildren();
  const [hash, query = ''] = location.hash.replace(/^#\/?/, '').split('?');
  const [section, id, extra] = hash.split('/').map(decodeURIComponent);
  let nav = section || 'jobs';
  if (section === 'jobs' && id) { cleanup = renderJob(main, id); nav = 'jobs'; }
  else if (section === 'compare') { cleanup = renderCompare(main, (id || '').split(',').filter(Boolean)); nav = 'jobs'; }
  else if (section === 'new') cleanup = renderNewJob(main, id || '', extra || '');
  else if (section === 'files') cleanup = renderFiles(main);
  else if (section === 'models') cleanup = renderModels(main);
  else { cleanup = renderJobs(main, new URLSearchParams(query)); nav = 'jobs'; }
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function initKeyForm() {
  const form = document.getElementById('apikey-form');
  const input = document.getElementById('apikey');
  const state = document.getElementById('apikey-state');
  input.value = apiKey();
  state.textContent = apiKey() ? 'saved' : '';
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    setApiKey(input.value.trim());
    state.textContent = input.value.trim() ? 'saved' : 'cleared';
    route();
  });
}

window.addEventListener('hashchange', route);
window.addEventListener('DOMContentLoaded', () => { initKeyForm(); route(); });
