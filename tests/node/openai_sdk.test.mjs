// openai_sdk.test.mjs: the official OpenAI Node SDK, unchanged, against a real `lemo serve`.
//
// lemo promises OpenAI fine-tuning shapes so existing clients work; this drives the npm
// `openai` package exactly as a user would (only baseURL and apiKey differ): files.create
// from a read stream, a bad file's typed 400, files retrieve/list/content/delete,
// fineTuning.jobs create/retrieve/list (cursor pagination through the SDK's own pager),
// listEvents, cancel (queued and running), a job run to success with its checkpoints,
// models.list, and the key check (a wrong key is a 401 AuthenticationError).
// Exit 0 pass, 1 fail, 77 skip.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { lemoBin, modelsDir, requireServe, skip, startServer, tempDir, waitFor, writeDataset } from './lib_server.mjs';

let OpenAI;
try { OpenAI = (await import('openai')).default; } catch { skip('npm package openai not installed (npm install in tests/node)'); }
requireServe();

let failures = 0;
const t0 = Date.now();
function check(cond, what, detail = '') {
  const t = `[${((Date.now() - t0) / 1000).toFixed(1)}s]`;
  if (cond) console.log(`ok   ${t} ${what}`);
  else { failures++; console.log(`FAIL ${t} ${what}${detail ? `: ${detail}` : ''}`); }
  return !!cond;
}
const isInt = (v) => Number.isInteger(v);
const now = () => Math.floor(Date.now() / 1000);

const models = modelsDir();
const work = tempDir('sdk');
const dataDir = tempDir('sdk-data');
const ds = path.join(work, 'train.jsonl');
writeDataset(ds, 8, 600);  // small: n_epochs 1 is a few steps, even on a busy CPU
const bad = path.join(work, 'bad.jsonl');
fs.writeFileSync(bad, '{"text": "ok"}\n{"prompt": "a prompt without its completion"}\n');

// A real key: the server then demands it on every /v1 call.
const kc = spawnSync(lemoBin, ['keys', 'create', '--data-dir', dataDir, '--name', 'sdk-test'], { encoding: 'utf8' });
const key = (kc.stdout || '').split(/\s+/).find((w) => /^[A-Za-z0-9_-]{20,}$/.test(w));
if (!key) { console.log(`FAIL lemo keys create gave no key: ${kc.stderr}${kc.stdout}`); process.exit(1); }

const srv = await startServer({ models: models.dir, dataDir });
const client = new OpenAI({ apiKey: key, baseURL: `${srv.url}/v1`, maxRetries: 0, timeout: 60000 });

async function expectError(what, fn, Cls, status, more = () => true) {
  try {
    await fn();
    check(false, what, 'no error thrown');
    return null;
  } catch (e) {
    const statuses = [].concat(status);
    check(e instanceof Cls && statuses.includes(e.status) && more(e), what, `${e.constructor.name} ${e.status} ${e.message}`);
    return e;
  }
}

async function run() {
  // --- auth ---
  const wrong = new OpenAI({ apiKey: 'not-a-real-key', baseURL: `${srv.url}/v1`, maxRetries: 0 });
  await expectError('wrong key: AuthenticationError 401', () => wrong.files.list(), OpenAI.AuthenticationError, 401);

  // --- files ---
  const f = await client.files.create({ file: fs.createReadStream(ds), purpose: 'fine-tune' });
  check(/^file-/.test(f.id) && f.object === 'file', 'files.create returns a file object', JSON.stringify(f));
  check(f.purpose === 'fine-tune' && f.filename === 'train.jsonl', 'file purpose and filename', `${f.purpose} ${f.filename}`);
  check(f.bytes === fs.statSync(ds).size, 'file bytes = upload size', `${f.bytes}`);
  check(isInt(f.created_at) && Math.abs(f.created_at - now()) < 120, 'file created_at is Unix seconds', `${f.created_at}`);
  const e400 = await expectError('bad file: BadRequestError 400', () => client.files.create({ file: fs.createReadStream(bad), purpose: 'fine-tune' }),
    OpenAI.BadRequestError, 400);
  if (e400) {
    const body = e400.error || {};
    check(body.line === 2 || /line 2\b/.test(e400.message), 'bad file error names line 2', JSON.stringify(body));
    check(typeof body.message === 'string' && body.message.length > 0 && 'param' in body && 'code' in body && 'type' in body,
      'error has message, type, param, code', JSON.stringify(body));
  }
  const fr = await client.files.retrieve(f.id);
  check(fr.id === f.id && fr.bytes === f.bytes && fr.filename === f.filename, 'files.retrieve', JSON.stringify(fr));
  const content = await (await client.files.content(f.id)).text();
  check(content === fs.readFileSync(ds, 'utf8'), 'files.content returns the upload byte for byte', `${content.length} chars`);
  const extra = await client.files.create({ file: fs.createReadStream(ds), purpose: 'fine-tune' });
  const fl = await client.files.list();
  check(fl.data.some((x) => x.id === f.id) && fl.data.some((x) => x.id === extra.id), 'files.list has both uploads', fl.data.map((x) => x.id).join(','));
  const fd = await client.files.delete(extra.id);
  check(fd.id === extra.id && fd.deleted === true, 'files.delete', JSON.stringify(fd));
  await expectError('deleted file: NotFoundError 404', () => client.files.retrieve(extra.id), OpenAI.NotFoundError, 404);

  // --- models ---
  const ml = [];
  for await (const m of client.models.list()) ml.push(m);
  check(ml.some((m) => m.id === models.model && m.object === 'model'), 'models.list has the base model', ml.map((m) => m.id).join(','));

  // --- jobs: create three (the first runs, the others queue behind it) ---
  await expectError('unknown model: 4xx naming the model', () => client.fineTuning.jobs.create({ model: 'no-such-model', training_file: f.id }),
    OpenAI.APIError, [400, 404], (e) => (e.param || (e.error && e.error.param)) === 'model');
  const long = await client.fineTuning.jobs.create({
    model: models.model, training_file: f.id, suffix: 'sdk-long', seed: 1234,
    hyperparameters: { n_epochs: 200, batch_size: 1 }, metadata: { test: 'openai-sdk' },
  });
  check(/^ftjob-/.test(long.id) && long.object === 'fine_tuning.job', 'jobs.create returns a job', JSON.stringify(long));
  check(long.model === models.model && long.training_file === f.id && long.seed === 1234 && long.suffix === 'sdk-long',
    'job echoes model, training_file, seed, suffix', JSON.stringify(long));
  check(['validating_files', 'queued', 'running'].includes(long.status), 'new job is queued or running', long.status);
  check(long.hyperparameters && long.hyperparameters.n_epochs === 200 && long.hyperparameters.batch_size === 1,
    'job echoes hyperparameters', JSON.stringify(long.hyperparameters));
  check(long.metadata && long.metadata.test === 'openai-sdk', 'job echoes metadata', JSON.stringify(long.metadata));
  check(isInt(long.created_at) && long.finished_at === null && long.fine_tuned_model === null, 'created_at set, finished_at/fine_tuned_model null');
  const ok = await client.fineTuning.jobs.create({ model: models.model, training_file: f.id, hyperparameters: { n_epochs: 1 }, suffix: 'sdk-ok' });
  const queued = await client.fineTuning.jobs.create({ model: models.model, training_file: f.id, hyperparameters: { n_epochs: 1 } });

  // --- list with pagination ---
  const p1 = await client.fineTuning.jobs.list({ limit: 2 });
  check(p1.data.length === 2 && p1.has_more === true && p1.hasNextPage(), 'jobs.list limit=2: two jobs, has_more', `${p1.data.length} ${p1.has_more}`);
  check(p1.data[0].id === queued.id && p1.data[1].id === ok.id, 'jobs.list is newest first', p1.data.map((j) => j.id).join(','));
  const p2 = await p1.getNextPage();
  check(p2.data.length === 1 && p2.data[0].id === long.id && p2.has_more === false, 'next page (after=) has the oldest job', p2.data.map((j) => j.id).join(','));
  const all = [];
  for await (const j of client.fineTuning.jobs.list({ limit: 1 })) all.push(j.id);
  check(all.length === 3 && new Set(all).size === 3 && [long.id, ok.id, queued.id].every((id) => all.includes(id)),
    'auto-pagination visits each job once', all.join(','));

  // --- the running job: retrieve, events ---
  const running = await waitFor('the first job to run', async () => {
    const j = await client.fineTuning.jobs.retrieve(long.id);
    return j.status === 'running' && j.progress && j.progress.step > 2 && j;
  }, 120000);
  check(isInt(running.started_at) && running.started_at >= running.created_at, 'running job has started_at', `${running.started_at}`);
  check(running.progress.total_steps > running.progress.step && typeof running.progress.loss === 'number', 'running job has progress', JSON.stringify(running.progress));
  check(running.estimated_finish === null || (isInt(running.estimated_finish) && running.estimated_finish >= now() - 5), 'estimated_finish null or in the future', `${running.estimated_finish}`);
  const ev1 = await client.fineTuning.jobs.listEvents(long.id, { limit: 2 });
  check(ev1.data.length === 2 && ev1.hasNextPage(), 'listEvents limit=2 pages', `${ev1.data.length} ${ev1.has_more}`);
  const e0 = ev1.data[0];
  check(e0.object === 'fine_tuning.job.event' && /^ftevent-/.test(e0.id) && isInt(e0.created_at) && typeof e0.message === 'string'
    && ['info', 'warn', 'error'].includes(e0.level) && ['message', 'metrics'].includes(e0.type), 'event object shape', JSON.stringify(e0));
  const ev2 = await ev1.getNextPage();
  check(ev2.data.length > 0 && !ev2.data.some((e) => ev1.data.some((x) => x.id === e.id)), 'events next page is disjoint');
  check(ev1.data[0].created_at >= ev2.data[ev2.data.length - 1].created_at, 'events newest first');
  const metric = (await client.fineTuning.jobs.listEvents(long.id, { limit: 50 })).data.find((e) => e.type === 'metrics');
  check(metric && metric.data && typeof metric.data.step === 'number', 'a metrics event carries data.step', JSON.stringify(metric));

  // --- cancel: the queued job at once, the running one after its current step ---
  const cq = await client.fineTuning.jobs.cancel(queued.id);
  check(cq.id === queued.id && cq.object === 'fine_tuning.job', 'cancel returns the job', JSON.stringify(cq));
  const cqDone = await waitFor('the queued job to be cancelled', async () => (await client.fineTuning.jobs.retrieve(queued.id)).status === 'cancelled', 20000)
    .catch((e) => e);
  check(cqDone === true, 'queued job cancelled', String(cqDone));
  await client.fineTuning.jobs.cancel(long.id);
  const lc = await waitFor('the running job to be cancelled', async () => {
    const j = await client.fineTuning.jobs.retrieve(long.id);
    return j.status === 'cancelled' && j;
  }, 60000).catch((e) => e);
  check(lc && lc.status === 'cancelled' && isInt(lc.finished_at), 'running job cancelled, finished_at set', lc && lc.message);
  await expectError('cancel of a finished job: 4xx', () => client.fineTuning.jobs.cancel(long.id), OpenAI.APIError, [400, 409]);

  // --- the other job runs to success ---
  const done = await waitFor('the second job to finish', async () => {
    const j = await client.fineTuning.jobs.retrieve(ok.id);
    return ['succeeded', 'failed', 'cancelled'].includes(j.status) && j;
  }, 240000);
  check(done.status === 'succeeded', 'second job succeeded', JSON.stringify(done.error));
  check(typeof done.fine_tuned_model === 'string' && done.fine_tuned_model.length > 0, 'fine_tuned_model set', `${done.fine_tuned_model}`);
  check(done.trained_tokens > 0 && isInt(done.finished_at) && done.finished_at >= done.started_at, 'trained_tokens and finished_at', `${done.trained_tokens} ${done.finished_at}`);
  const cks = await client.fineTuning.jobs.checkpoints.list(ok.id);
  check(cks.data.length > 0, 'checkpoints.list has checkpoints', `${cks.data.length}`);
  if (cks.data.length) {
    const c = cks.data[0];
    check(c.object === 'fine_tuning.job.checkpoint' && /^ftckpt-/.test(c.id) && isInt(c.step_number) && c.fine_tuning_job_id === ok.id && c.metrics,
      'checkpoint object shape', JSON.stringify(c));
  }
  const ml2 = [];
  for await (const m of client.models.list()) ml2.push(m.id);
  check(ml2.includes(done.fine_tuned_model), 'models.list has the fine-tuned model', ml2.join(','));
}

let crashed = null;
try { await run(); } catch (e) { crashed = e; }
if (crashed) { failures++; console.log(`FAIL ${crashed.stack || crashed}`); }
if (failures) {
  console.log('--- server log (tail) ---');
  console.log(srv.log().split('\n').slice(-40).join('\n'));
}
await srv.stop();
for (const d of [work, dataDir, ...(models.temp ? [models.dir] : [])]) fs.rmSync(d, { recursive: true, force: true });
console.log(failures ? `${failures} check(s) failed` : 'all checks passed');
process.exit(failures ? 1 : 0);
