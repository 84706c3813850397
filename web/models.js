// models.js: base models the server can fine-tune and the adapters it has produced.
//
// GET /v1/models lists both. A base model made by `lemo init-model` has random weights
// (random_init: true) and is labelled so, since training it teaches nothing real. With no
// models at all, the list carries a `hint` saying how to add one, shown verbatim.

import { get } from './api.js';
import { h, downloadLink, fmtAgo, fmtBytes, fmtNum, reportError } from './util.js';

// A fine-tuned adapter rather than a base model.
function isAdapter(m) {
  return m.kind === 'adapter' || (!m.kind && (m.id.startsWith('ft:') || !!m.parent));
}

export function modelLabel(m) {
  return m.random_init ? `${m.id} (random weights)` : m.id;
}

// Loads the models list; resolves to {base, adapters, hint}.
export async function loadModels() {
  const page = await get('/v1/models');
  const data = (page && page.data) || [];
  return { base: data.filter((m) => !isAdapter(m)), adapters: data.filter(isAdapter), hint: page && page.hint };
}

export function hintBox(hint) {
  return h('div', { class: 'hint', role: 'note' },
    h('strong', {}, 'No base models yet. '),
    hint ? h('span', { class: 'hint-text' }, hint) : 'Put a Hugging Face model folder in the models directory.');
}

function facts(m) {
  const out = [];
  const ctx = m.context_length ?? m.max_position_embeddings;
  if (m.family || m.model_type) out.push(m.family || m.model_type);
  if (m.params ?? m.parameters) out.push(`${fmtNum(m.params ?? m.parameters)} params`);
  if (ctx) out.push(`context ${fmtNum(ctx)}`);
  if (m.bytes) out.push(fmtBytes(m.bytes));
  return out.join(' · ');
}

export function renderModels(main) {
  let alive = true;
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Models')), body);
  (async () => {
    try {
      const { base, adapters, hint } = await loadModels();
      if (!alive) return;
      const baseSec = h('section', { class: 'card', 'aria-labelledby': 'bm-h' }, h('h2', { id: 'bm-h' }, 'Base models'));
      if (!base.length) baseSec.append(hintBox(hint));
      else baseSec.append(h('ul', { class: 'model-list' }, base.map((m) => h('li', { 'data-model-id': m.id },
        h('span', { class: 'mono strong' }, m.id),
        m.random_init ? h('span', { class: 'badge random', title: 'weights are random: made by lemo init-model' }, 'random') : null,
        h('span', { class: 'small muted' }, ` ${facts(m)}`),
        h('a', { class: 'btn small', href: `#/new//${encodeURIComponent(m.id)}` }, 'Fine-tune')))));
      const adSec = h('section', { class: 'card', 'aria-labelledby': 'ad-h' }, h('h2', { id: 'ad-h' }, 'Fine-tuned adapters'));
      if (!adapters.length) adSec.append(h('p', { class: 'muted' }, 'None yet: a job that succeeds adds its adapter here.'));
      else adSec.append(h('ul', { class: 'model-list' }, adapters.map((m) => h('li', {},
        h('span', { class: 'mono strong' }, m.id),
        m.parent ? h('span', { class: 'small muted' }, ` on ${m.parent}`) : null,
        m.job_id ? h('a', { class: 'small', href: `#/jobs/${encodeURIComponent(m.job_id)}` }, ` from ${m.job_id}`) : null,
        h('span', { class: 'small muted' }, ` ${fmtAgo(m.created)}`),
        m.adapter_url ? downloadLink(m.adapter_url, 'Download (.tar)', `${m.job_id || 'adapter'}-adapter.tar`, 'btn small') : null))));
      body.replaceChildren(baseSec, adSec);
    } catch (e) { if (alive) { body.replaceChildren(); reportError(e); } }
  })();
  return () => { alive = false; };
}
