// lib_server.mjs: starts a real `lemo serve` for the node tests.
//
// Each test gets its own server: a free loopback port, a fresh temporary data dir, and a
// models dir (the real models in ../shared/models when present, else a random tiny model
// made with `lemo init-model`). The binary is $LEMO_BIN (tests/run.sh sets it; default
// build/lemo); the working directory is the repository root, so the server finds web/
// and migrations/ as it would in a checkout. stop() ends the process and removes the
// temporary dirs; the server's output is kept for printing when a test fails.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

export const repoRoot = process.cwd();
export const lemoBin = process.env.LEMO_BIN || path.join(repoRoot, 'build', 'lemo');
export const buildDir = process.env.LEMO_BUILD || path.join(repoRoot, 'build');
export const sharedDir = process.env.LEMO_SHARED || path.resolve(repoRoot, '..', 'shared');

// Exit 77 with a reason on the first line (tests/run.sh shows lines starting with SKIP).
export function skip(reason) {
  console.log(`SKIP ${reason}`);
  process.exit(77);
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function tempDir(tag) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `lemo-${tag}-`));
}

// Checks that the binary exists and has the `serve` command; skips the test otherwise.
export function requireServe() {
  if (!fs.existsSync(lemoBin)) skip(`${lemoBin} not built (run make)`);
  const r = spawnSync(lemoBin, ['serve', '--help'], { encoding: 'utf8' });
  if (r.status !== 0) skip(`\`lemo serve\` is not in this build: ${(r.stderr || r.stdout || '').trim().split('\n')[0]}`);
  return r.stdout;
}

// A models dir: the shared real models when present (stories260K trains in seconds on a
// CPU), else a temp dir holding `lemo init-model tiny` output. Returns {dir, model, temp}.
export function modelsDir() {
  const shared = path.join(sharedDir, 'models');
  if (fs.existsSync(path.join(shared, 'stories260K', 'config.json')))
    return { dir: shared, model: 'stories260K', temp: false };
  const dir = tempDir('models');
  const r = spawnSync(lemoBin, ['init-model', 'tiny', path.join(dir, 'tiny')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`lemo init-model failed: ${r.stderr}`);
  return { dir, model: 'tiny', temp: true };
}

// Starts `lemo serve`. Options: models (dir), dataDir (default: fresh temp dir),
// extraArgs, env. Resolves once GET /healthz answers 200.
export async function startServer(opts = {}) {
  const port = await freePort();
  const dataDir = opts.dataDir || tempDir('data');
  const models = opts.models || modelsDir().dir;
  const args = ['serve', '--port', String(port), '--data-dir', dataDir, '--models', models, ...(opts.extraArgs || [])];
  const proc = spawn(lemoBin, args, { cwd: repoRoot, env: { ...process.env, ...(opts.env || {}) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout.on('data', (d) => { output += d; });
  proc.stderr.on('data', (d) => { output += d; });
  let exited = null;
  proc.on('exit', (code, sig) => { exited = { code, sig }; });
  const url = `http://127.0.0.1:${port}`;
  const t0 = Date.now();
  for (;;) {
    if (exited) throw new Error(`lemo serve exited (${exited.code ?? exited.sig}) before answering:\n${output}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() - t0 > 15000) { proc.kill('SIGKILL'); throw new Error(`lemo serve did not answer /healthz in 15 s:\n${output}`); }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url, port, dataDir, models, proc,
    log: () => output,
    async stop() {
      if (!exited) {
        proc.kill('SIGTERM');
        const dead = await Promise.race([
          new Promise((r) => proc.once('exit', () => r(true))),
          new Promise((r) => setTimeout(() => r(false), 20000))]);
        if (!dead) proc.kill('SIGKILL');
      }
      if (!opts.dataDir && !process.env.LEMO_KEEP_DATA) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// Polls fn() until it returns a truthy value; returns that value or throws after ms.
export async function waitFor(what, fn, ms = 60000, every = 250) {
  const t0 = Date.now();
  let last;
  for (;;) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, every));
  }
}

// A small real-text dataset: the shared RFC/Austen corpus cut into short documents, or,
// without it, the project's own docs and sources (real English/code text either way).
export function writeDataset(file, nDocs = 24, chars = 1500) {
  const docs = [];
  const gz = path.join(sharedDir, 'data', 'finetune.jsonl.gz');
  if (fs.existsSync(gz)) {
    const lines = zlib.gunzipSync(fs.readFileSync(gz)).toString('utf8').split('\n').filter(Boolean);
    for (let i = 0; i < lines.length && docs.length < nDocs; i++) {
      const text = JSON.parse(lines[i]).text;
      for (let off = 2000; off + chars < text.length && docs.length < nDocs && off < 2000 + 4 * chars; off += chars)
        docs.push(text.slice(off, off + chars));
    }
  } else {
    const sources = fs.readdirSync(path.join(repoRoot, 'engine'), { withFileTypes: true }).filter((d) => d.isDirectory())
      .flatMap((d) => fs.readdirSync(path.join(repoRoot, 'engine', d.name)).map((n) => `engine/${d.name}/${n}`));
    for (const f of ['README.md', ...sources]) {
      const p = path.join(repoRoot, f);
      if (!fs.statSync(p).isFile()) continue;
      const text = fs.readFileSync(p, 'utf8');
      for (let off = 0; off < text.length && docs.length < nDocs; off += chars) docs.push(text.slice(off, off + chars));
      if (docs.length >= nDocs) break;
    }
  }
  fs.writeFileSync(file, docs.map((text) => JSON.stringify({ text })).join('\n') + '\n');
  return docs.length;
}
