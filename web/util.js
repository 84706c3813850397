// util.js: small helpers shared by the views: DOM building, number/time formatting,
// progress bars, the error banner and key-aware download links.
//
// h() builds elements from plain data so views never assemble HTML strings; text from
// the server goes in as text nodes, never as markup.

import { apiKey, downloadWithKey } from './api.js';

export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function fmtBytes(n) {
  if (n === undefined || n === null || !isFinite(n)) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0, v = Number(n);
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${u[i]}`;
}

export function fmtDuration(sec) {
  if (sec === undefined || sec === null || !isFinite(sec)) return '–';
  sec = Math.max(0, Math.round(sec));
  if (sec < 60) return `${sec}s`;
  const m = Math.floor(sec / 60), s = sec % 60;
  if (m < 60) return `${m}m ${String(s).padStart(2, '0')}s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}

export function fmtNum(n, digits = 4) {
  if (n === undefined || n === null || !isFinite(n)) return '–';
  const a = Math.abs(n);
  if (Number.isInteger(n) && a < 1e15) return Number(n).toLocaleString('en-US');
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return Number(n).toExponential(2);
  return Number(n).toPrecision(digits);
}

export function fmtRate(n) {
  if (n === undefined || n === null || !isFinite(n)) return '–';
  return `${Math.round(n).toLocaleString('en-US')} tok/s`;
}

// Unix seconds -> "2026-11-27 14:03:12" in local time.
export function fmtTime(ts) {
  if (!ts) return '–';
  const d = new Date(ts * 1000);
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtAgo(ts) {
  if (!ts) return '–';
  const s = Date.now() / 1000 - ts;
  if (s < 5) return 'just now';
  return `${fmtDuration(s)} ago`;
}

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

export function statusBadge(status) {
  return h('span', { class: `badge st-${status || 'unknown'}` }, (status || 'unknown').replace(/_/g, ' '));
}

// The job's progress as a fraction 0..1, or null when unknown.
function jobFraction(job) {
  const p = job.progress || {};
  if (job.status === 'succeeded') return 1;
  if (p.total_steps > 0 && p.step >= 0) return Math.min(1, p.step / p.total_steps);
  return null;
}

// Seconds left: from estimated_finish when the server gives it, else null.
function jobEtaSeconds(job) {
  if (TERMINAL.has(job.status) || !job.estimated_finish) return null;
  return Math.max(0, job.estimated_finish - Date.now() / 1000);
}

// A progress bar (role=progressbar, with aria values) plus a caption "step a / b · ETA".
export function progressBar(job) {
  const f = jobFraction(job);
  const p = job.progress || {};
  const pct = f === null ? 0 : Math.round(f * 1000) / 10;
  const eta = jobEtaSeconds(job);
  const bits = [];
  if (p.total_steps) bits.push(`step ${fmtNum(p.step ?? 0)} / ${fmtNum(p.total_steps)}`);
  if (eta !== null && job.status === 'running') bits.push(`ETA ${fmtDuration(eta)}`);
  if (job.status === 'queued') bits.push('waiting for a device');
  return h('div', { class: 'progress-wrap' },
    h('div', {
      class: `progress st-${job.status}`, role: 'progressbar', 'aria-label': `Progress of ${job.id}`,
      'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': f === null ? undefined : pct,
      'data-fraction': f === null ? '' : f.toFixed(4),
    }, h('div', { class: 'progress-fill', style: `width:${pct}%` })),
    h('div', { class: 'progress-caption small muted' }, bits.join(' · ') || (f === null ? '' : `${pct}%`)));
}

export function memOf(p) {
  return p ? (p.gpu_mem_bytes ?? p.mem_bytes ?? null) : null;
}

export function debounce(fn, ms) {
  let t = 0;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

export function showBanner(msg) {
  const b = document.getElementById('banner');
  if (!msg) { b.hidden = true; b.textContent = ''; return; }
  b.textContent = msg;
  b.hidden = false;
}

// The API's error as one line, naming the field unless the message already does (for forms).
export function errorText(e) {
  return e.param && !String(e.message).includes(e.param) ? `${e.param}: ${e.message}` : e.message;
}

// Shows an API failure; a 401 points the user at the key field.
export function reportError(e) {
  if (e && e.status === 401) showBanner(`${e.message} — enter an API key (made with \`lemo keys create\`) at the top right.`);
  else showBanner(e && e.message ? e.message : String(e));
}


// A download link that works with or without an API key: a plain link when none is saved,
// else a fetch with the Bearer header saved as a file (links cannot carry headers).
export function downloadLink(href, text, filename, cls = 'dl') {
  const a = h('a', { href, download: filename, class: cls }, text);
  a.addEventListener('click', (ev) => {
    if (!apiKey()) return;
    ev.preventDefault();
    downloadWithKey(href, filename).catch(reportError);
  });
  return a;
}

// Copies text to the clipboard: the async Clipboard API where the page may use it, else the
// old execCommand on a hidden textarea (a page served over plain http to another host is not
// a secure context, and there navigator.clipboard is missing). Resolves to true on success.
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) { await navigator.clipboard.writeText(text); return true; }
  } catch { /* denied: try the old way */ }
  const ta = h('textarea', { readonly: true, 'aria-hidden': 'true', style: 'position:fixed;top:0;left:0;opacity:0' });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch { ok = false; }
  ta.remove();
  return ok;
}

// Two outlined sheets (copy) or a tick (copied), drawn inline: no icon font is fetched.
function copyIcon() {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  for (const [k, v] of Object.entries({ viewBox: '0 0 16 16', width: 14, height: 14, 'aria-hidden': 'true' })) svg.setAttribute(k, v);
  for (const [cls, d] of [['i-copy', 'M5.5 5.5h7v8h-7z M3.5 10.5v-8h7'], ['i-done', 'M3 8.5l3.2 3.2L13 4.8']]) {
    const p = document.createElementNS(NS, 'path');
    p.setAttribute('d', d);
    p.setAttribute('class', cls);
    svg.append(p);
  }
  return svg;
}

// A small button that copies `text`; its label says what (for screen readers and the tooltip)
// and turns to "Copied" for a moment, the icon to a tick.
export function copyButton(text, what = text) {
  const label = `Copy ${what}`;
  const b = h('button', { type: 'button', class: 'copy-btn', title: label, 'aria-label': label }, copyIcon());
  let timer = 0;
  b.addEventListener('click', async (ev) => {
    ev.preventDefault();
    ev.stopPropagation();
    const ok = await copyText(text);
    b.dataset.copied = ok ? 'yes' : 'no';
    b.title = ok ? 'Copied' : 'Copy failed: select the text instead';
    b.setAttribute('aria-label', b.title);
    clearTimeout(timer);
    timer = setTimeout(() => { delete b.dataset.copied; b.title = label; b.setAttribute('aria-label', label); }, 1500);
  });
  return b;
}

// Cuts text longer than max to its start and end around an ellipsis, so both a file name's
// stem and its extension (or an id's tail) stay readable.
export function shorten(text, max) {
  text = String(text ?? '');
  if (text.length <= max) return text;
  const tail = Math.ceil((max - 1) / 3);
  return `${text.slice(0, max - 1 - tail)}…${text.slice(-tail)}`;
}

// A dataset's label in a select: its name and its id's tail, both cut to fit a narrow
// select (a full id is 29 characters); the option's title has both in full.
export function fileLabel(f) {
  return `${shorten(f.filename, 20)} · …${String(f.id).slice(-6)}`;
}
