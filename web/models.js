// models.js: base models the server can fine-tune and the adapters it has produced.
//
// GET /v1/models lists both. A base model made by `lemo init-model` has random weights
// (random_init: true) and is labelled so, since training it teaches nothing real. With no
// models at all, the list carries a `hint` saying how to add one, shown verbatim.
// Each base model also says where its LeMo predictors stand (lemo.status); lemo_prepare.js
// draws that cell and its Prepare form. While one is preparing the list is re-read every
// few seconds, and only the cells that changed are redrawn, so an open form keeps its input.
// A fine-tuned adapter can be deleted (DELETE /v1/models/ft:...: its adapter and checkpoints
// go, the job stays) after a confirm step in its row; a refusal (409 model_in_use while an
// unfinished job uses it) shows in the banner like every API error.

import { del, get } from './api.js';
import { lemoCell, prepareRow } from './lemo_prepare.js';
import { h, downloadLink, fmtAgo, fmtBytes, fmtNum, reportError, showBanner } from './util.js';

const POLL_MS = 3000;

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
  let alive = true, timer = 0, shownIds = '';
  const rows = new Map();  // model id -> { cell, lemo: JSON of the drawn lemo object, form row or null }
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Models')), body);

  // Opens (or closes, when open) the Prepare form under a model's row.
  function togglePrepare(m) {
    const r = rows.get(m.id);
    if (r.form) { r.form.remove(); r.form = null; return; }
    r.form = prepareRow(m, 4, () => { if (r.form) { r.form.remove(); r.form = null; } });
    r.tr.after(r.form);
  }

  function drawCell(m) {
    const r = rows.get(m.id);
    const key = JSON.stringify(m.lemo ?? null);
    if (r.lemo === key) return;
    r.lemo = key;
    r.cell.replaceChildren(...lemoCell(m, () => togglePrepare(m)));
    r.cell.dataset.lemoStatus = (m.lemo && m.lemo.status) || '';
    // once it is no longer "none", a form left open would prepare again: close it
    if (r.form && m.lemo && m.lemo.status !== 'none') { r.form.remove(); r.form = null; }
  }

  const deletedNote = h('p', { class: 'small muted', id: 'adapters-note', role: 'status' });
  const noAdapters = () => h('p', { class: 'muted' }, 'None yet: a job that succeeds adds its adapter here.');

  function adapterRow(m) {
    const actions = h('span', { class: 'row-actions' });
    const li = h('li', { 'data-model-id': m.id },
      h('div', { class: 'ad-main' },
        h('span', { class: 'mono strong' }, m.id),
        h('span', { class: 'small muted' },
          m.parent ? `on ${m.parent} · ` : '',
          m.job_id ? ['from ', h('a', { class: 'mono', href: `#/jobs/${encodeURIComponent(m.job_id)}` }, m.job_id), ' · '] : '',
          fmtAgo(m.created))),
      actions);
    const plain = () => actions.replaceChildren(
      m.adapter_url ? downloadLink(m.adapter_url, 'Download (.tar)', `${m.job_id || 'adapter'}-adapter.tar`, 'btn small') : '',
      h('button', { class: 'btn small danger model-delete', type: 'button', 'aria-label': `Delete ${m.id}`, onclick: ask }, 'Delete'));
    // the confirm step: in the row, so it is clear which model it is about
    function ask() {
      const yes = h('button', { class: 'btn small danger model-delete-confirm', type: 'button', onclick: () => remove(yes, no) }, 'Delete');
      const no = h('button', { class: 'btn small model-delete-cancel', type: 'button', onclick: plain }, 'Keep');
      actions.replaceChildren(h('span', { class: 'small confirm-text' }, 'Delete with its checkpoints?'), yes, no);
      no.focus();
    }
    async function remove(yes, no) {
      yes.disabled = no.disabled = true;
      try {
        // ':' may stand in a path segment: the id is sent as it is listed
        await del(`/v1/models/${encodeURIComponent(m.id).replace(/%3A/gi, ':')}`);
        const list = li.parentElement;
        li.remove();
        showBanner('');  // an earlier refusal no longer stands
        deletedNote.textContent = `Deleted ${m.id}; its job stays listed.`;
        if (list && !list.children.length) list.replaceWith(noAdapters());
      } catch (e) {
        reportError(e);
        plain();
      }
    }
    plain();
    return li;
  }

  function baseTable(base) {
    rows.clear();
    const tbody = h('tbody');
    for (const m of base) {
      const cell = h('td', { class: 'lemo-cell' });
      const tr = h('tr', { 'data-model-id': m.id },
        h('th', { scope: 'row', class: 'model-id' }, h('span', { class: 'mono strong' }, m.id),
          m.random_init ? h('span', { class: 'badge random', title: 'weights are random: made by lemo init-model' }, 'random') : null),
        h('td', { class: 'small muted' }, facts(m)),
        cell,
        h('td', { class: 'actions' }, h('a', { class: 'btn small', href: `#/new//${encodeURIComponent(m.id)}` }, 'Fine-tune')));
      rows.set(m.id, { tr, cell, lemo: null, form: null });
      tbody.append(tr);
      drawCell(m);
    }
    return h('table', { class: 'models', 'aria-label': 'Base models' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Model'), h('th', { scope: 'col' }, 'Details'),
        h('th', { scope: 'col', title: 'LeMo\'s learned predictors of which token blocks matter, one set per base model' }, 'LeMo predictors'),
        h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
      tbody);
  }

  async function refresh() {
    timer = 0;
    try {
      const { base, adapters, hint } = await loadModels();
      if (!alive) return;
      const ids = base.map((m) => m.id).join('\n');
      if (ids === shownIds && rows.size) base.forEach(drawCell);  // in place: open forms stay
      else {
        shownIds = ids;
        const baseSec = h('section', { class: 'card', 'aria-labelledby': 'bm-h' }, h('h2', { id: 'bm-h' }, 'Base models'));
        if (!base.length) baseSec.append(hintBox(hint));
        else baseSec.append(baseTable(base));
        body.replaceChildren(baseSec, h('section', { class: 'card', id: 'adapters', 'aria-labelledby': 'ad-h' }));
      }
      const adSec = body.querySelector('#adapters');
      adSec.replaceChildren(h('h2', { id: 'ad-h' }, 'Fine-tuned adapters'), deletedNote);
      if (!adapters.length) adSec.append(noAdapters());
      else adSec.append(h('ul', { class: 'model-list', id: 'adapter-list' }, adapters.map(adapterRow)));
      if (base.some((m) => m.lemo && m.lemo.status === 'preparing')) timer = setTimeout(refresh, POLL_MS);
    } catch (e) {
      if (!alive) return;
      if (!rows.size) body.replaceChildren();
      reportError(e);
    }
  }

  refresh();
  return () => { alive = false; clearTimeout(timer); };
}
