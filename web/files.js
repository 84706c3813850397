// files.js: datasets: the drag-and-drop upload zone and the list of uploaded files.
//
// Uploads are multipart POST /v1/files (file + purpose=fine-tune) through XMLHttpRequest,
// the one browser API that reports upload progress. The server validates every line;
// its error (message, param, line) is shown as it came, so a user can go to that line.

import { apiKey, del, get } from './api.js';
import { h, fmtAgo, fmtBytes, fmtNum, reportError, showBanner } from './util.js';

// Uploads one File; resolves to the file object, rejects with {status, error}.
function uploadFile(file, onProgress) {
  return new Promise((resolve, reject) => {
    const fd = new FormData();
    fd.append('purpose', 'fine-tune');
    fd.append('file', file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/v1/files');
    const k = apiKey();
    if (k) xhr.setRequestHeader('Authorization', `Bearer ${k}`);
    xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) onProgress(ev.loaded / ev.total); };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300 && body) resolve(body);
      else reject({ status: xhr.status, error: (body && body.error) || { message: xhr.responseText || xhr.statusText || 'upload failed' } });
    };
    xhr.onerror = () => reject({ status: 0, error: { message: 'cannot reach the server' } });
    xhr.send(fd);
  });
}

// The validation error as a readable block: where (line, field) and what.
function errorBlock(name, status, err) {
  const where = [];
  if (err.line !== undefined && err.line !== null) where.push(`line ${err.line}`);
  if (err.param) where.push(`field ${err.param}`);
  return h('div', { class: 'upload-error', role: 'alert' },
    h('div', { class: 'upload-error-head' },
      h('strong', {}, `${name} was rejected`), status ? h('span', { class: 'muted small' }, ` (HTTP ${status}${err.code ? `, ${err.code}` : ''})`) : null),
    where.length ? h('div', { class: 'upload-error-where' }, where.map((w) => h('span', { class: 'pill' }, w))) : null,
    h('div', { class: 'upload-error-msg' }, err.message || 'invalid file'));
}

// A drop zone with a real file input inside (keyboard and screen-reader usable).
// onUploaded(fileObject) runs after each successful upload.
export function createDropZone(onUploaded) {
  const input = h('input', { type: 'file', id: 'dataset-input', class: 'visually-hidden', accept: '.jsonl,.json,.txt,application/jsonl,application/x-ndjson', multiple: true });
  const results = h('div', { class: 'upload-results', 'aria-live': 'polite' });
  const zone = h('label', { class: 'dropzone', for: 'dataset-input' },
    h('span', { class: 'dropzone-icon', 'aria-hidden': 'true' }, '⇪'),
    h('span', { class: 'dropzone-title' }, 'Drop a JSONL dataset here'),
    h('span', { class: 'small muted' }, 'or click to choose a file · one JSON object per line: {"text"}, {"prompt","completion"} or {"messages":[…]}'));
  const wrap = h('div', { class: 'upload' }, input, zone, results);

  async function handle(files) {
    for (const file of files) {
      const bar = h('div', { class: 'progress thin', role: 'progressbar', 'aria-label': `Uploading ${file.name}`, 'aria-valuemin': 0, 'aria-valuemax': 100 },
        h('div', { class: 'progress-fill', style: 'width:0%' }));
      const item = h('div', { class: 'upload-item' }, h('div', {}, h('span', { class: 'mono' }, file.name), ' ', h('span', { class: 'muted small' }, fmtBytes(file.size))), bar);
      results.prepend(item);
      try {
        const obj = await uploadFile(file, (f) => {
          bar.firstChild.style.width = `${(f * 100).toFixed(1)}%`;
          bar.setAttribute('aria-valuenow', (f * 100).toFixed(0));
        });
        item.replaceChildren(h('div', { class: 'upload-ok', role: 'status' },
          h('strong', {}, file.name), ' uploaded as ', h('span', { class: 'mono', 'data-file-id': obj.id }, obj.id),
          obj.bytes !== undefined ? h('span', { class: 'muted small' }, ` · ${fmtBytes(obj.bytes)}`) : null,
          obj.n_examples !== undefined ? h('span', { class: 'muted small' }, ` · ${fmtNum(obj.n_examples)} examples`) : null,
          ' · ', h('a', { href: `#/new/${encodeURIComponent(obj.id)}` }, 'train on it')));
        onUploaded && onUploaded(obj);
      } catch (e) {
        item.replaceChildren(errorBlock(file.name, e.status, e.error || { message: String(e) }));
      }
    }
  }

  input.addEventListener('change', () => { const f = [...input.files]; input.value = ''; handle(f); });
  for (const ev of ['dragenter', 'dragover']) zone.addEventListener(ev, (e) => { e.preventDefault(); zone.classList.add('over'); });
  for (const ev of ['dragleave', 'dragend']) zone.addEventListener(ev, () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    if (e.dataTransfer && e.dataTransfer.files.length) handle([...e.dataTransfer.files]);
  });
  return wrap;
}

export function renderFiles(main) {
  let alive = true;
  const tbody = h('tbody');
  const empty = h('p', { class: 'empty muted', hidden: true }, 'No datasets uploaded yet.');
  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Datasets')),
    h('section', { class: 'card', 'aria-labelledby': 'up-h' }, h('h2', { id: 'up-h' }, 'Upload'), createDropZone(() => refresh())),
    h('section', { class: 'card', 'aria-labelledby': 'ls-h' },
      h('h2', { id: 'ls-h' }, 'Uploaded files'),
      h('table', { class: 'files', 'aria-label': 'Uploaded files' },
        h('thead', {}, h('tr', {}, ['File', 'Name', 'Size', 'Examples', 'Purpose', 'Uploaded', ''].map((t) => h('th', { scope: 'col' }, t)))),
        tbody),
      empty));

  async function refresh() {
    try {
      const page = await get('/v1/files?limit=100');
      if (!alive) return;
      const files = page.data || [];
      empty.hidden = files.length > 0;
      tbody.replaceChildren(...files.map((f) => h('tr', { 'data-file-id': f.id },
        h('td', { class: 'mono' }, f.id),
        h('td', {}, f.filename),
        h('td', { class: 'num' }, fmtBytes(f.bytes)),
        h('td', { class: 'num' }, fmtNum(f.n_examples)),
        h('td', {}, f.purpose),
        h('td', { class: 'small muted' }, fmtAgo(f.created_at)),
        h('td', { class: 'actions' },
          h('a', { class: 'btn small', href: `#/new/${encodeURIComponent(f.id)}` }, 'Train'),
          h('button', { class: 'btn small danger', type: 'button', 'aria-label': `Delete ${f.filename}`, onclick: async () => {
            if (!confirm(`Delete ${f.filename} (${f.id})?`)) return;
            try { await del(`/v1/files/${encodeURIComponent(f.id)}`); showBanner(''); refresh(); } catch (e) { reportError(e); }
          } }, 'Delete')))));
    } catch (e) { if (alive) reportError(e); }
  }
  refresh();
  return () => { alive = false; };
}
