// sse.js: follows a Server-Sent Events URL and hands each event's JSON to a callback.
//
// Without an API key it uses the browser's EventSource (auto-reconnect, Last-Event-ID).
// EventSource cannot send an Authorization header, so with a key saved it reads the same
// stream through fetch() and parses the text/event-stream framing itself. Either way the
// caller gets {name, id, data} objects and a close() function.

import { apiKey, authHeaders } from './api.js';

// Event names the server may put on `event:` lines; unnamed events arrive as 'message'.
const NAMED = ['message', 'event', 'step', 'eval', 'log', 'checkpoint', 'done', 'status',
  'metrics', 'end', 'cancelled', 'paused', 'failed', 'succeeded'];

function parseData(text) {
  try { return JSON.parse(text); } catch { return { message: text }; }
}

// Opens the stream. onEvent({name,id,data}); onState('open'|'retry'|'closed').
export function followStream(url, onEvent, onState = () => {}) {
  return apiKey() ? followWithFetch(url, onEvent, onState) : followWithEventSource(url, onEvent, onState);
}

function followWithEventSource(url, onEvent, onState) {
  const es = new EventSource(url);
  const handler = (name) => (ev) => onEvent({ name, id: ev.lastEventId || null, data: parseData(ev.data) });
  for (const name of NAMED) es.addEventListener(name, handler(name));
  es.onopen = () => onState('open');
  es.onerror = () => onState(es.readyState === EventSource.CLOSED ? 'closed' : 'retry');
  return { close() { es.close(); onState('closed'); } };
}

function followWithFetch(url, onEvent, onState) {
  const ctl = new AbortController();
  let lastId = null;
  let stopped = false;
  (async () => {
    while (!stopped) {
      try {
        const headers = authHeaders({ Accept: 'text/event-stream' });
        if (lastId) headers['Last-Event-ID'] = lastId;
        const res = await fetch(url, { headers, signal: ctl.signal });
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        onState('open');
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value.replace(/\r\n?/g, '\n');
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let name = 'message', id = null;
            const data = [];
            for (const line of block.split('\n')) {
              if (!line || line.startsWith(':')) continue;
              const i = line.indexOf(':');
              const field = i < 0 ? line : line.slice(0, i);
              const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
              if (field === 'event') name = val;
              else if (field === 'id') id = lastId = val;
              else if (field === 'data') data.push(val);
            }
            if (data.length) onEvent({ name, id, data: parseData(data.join('\n')) });
          }
        }
        // The server ends the stream when the job ends; the caller decides whether to reopen.
        onState('ended');
        return;
      } catch (e) {
        if (stopped) return;
        onState('retry');
        await new Promise((r) => setTimeout(r, 3000));
      }
    }
  })();
  return { close() { stopped = true; ctl.abort(); onState('closed'); } };
}
