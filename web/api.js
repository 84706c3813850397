// api.js: the dashboard's only door to the server's /v1 API.
//
// Every request carries `Authorization: Bearer KEY` when a key is saved (localStorage),
// and every failure becomes an ApiError holding the API's typed error fields
// (message, type, param, code, line), so views can show exactly what the server said.

const KEY_STORE = 'lemo.apiKey';

export function apiKey() {
  try { return localStorage.getItem(KEY_STORE) || ''; } catch { return ''; }
}

export function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORE, key);
    else localStorage.removeItem(KEY_STORE);
  } catch { /* storage disabled: the key lives for this page only */ }
}

export function authHeaders(extra = {}) {
  const h = { ...extra };
  const k = apiKey();
  if (k) h.Authorization = `Bearer ${k}`;
  return h;
}

export class ApiError extends Error {
  constructor(status, err) {
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.type = err.type || '';
    this.param = err.param ?? null;
    this.code = err.code ?? null;
    this.line = err.line ?? null;
    this.raw = err;
  }
}

// Sends one request; body is JSON unless it is FormData. Resolves to the parsed JSON reply.
export async function api(method, path, body) {
  const opts = { method, headers: authHeaders({ Accept: 'application/json' }) };
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    throw new ApiError(0, { message: `cannot reach the server (${e.message})`, type: 'network_error' });
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const err = (data && data.error) || { message: text.trim() || res.statusText };
    throw new ApiError(res.status, err);
  }
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
export const del = (path) => api('DELETE', path);

// Fetches every page of a cursor list (`has_more` + `?after=`), newest-first as the API
// returns them, stopping after maxPages so a huge history cannot stall the page.
export async function getAll(path, limit = 100, maxPages = 50) {
  const out = [];
  let after = '';
  for (let i = 0; i < maxPages; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await get(`${path}${sep}limit=${limit}${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    const data = (page && page.data) || [];
    out.push(...data);
    if (!page.has_more || data.length === 0) break;
    after = data[data.length - 1].id;
  }
  return out;
}

// Downloads a URL with the saved key (plain links cannot carry a header) and saves the blob.
export async function downloadWithKey(url, filename) {
  const res = await fetch(url, { headers: authHeaders() });
  if (!res.ok) {
    let msg = res.statusText;
    try { msg = (await res.json()).error.message; } catch { /* not JSON */ }
    throw new ApiError(res.status, { message: msg });
  }
  const blob = await res.blob();
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}
