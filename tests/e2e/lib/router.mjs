// Starts the router (`ember serve --config FILE`) and the stub upstreams
// (tests/tools/stub_upstream.py) it routes to, for one test file.
//
// startStub(name, args) -> {name, port, url, control(obj), stop()}
// startRouter(yaml) -> {url, port, proc, log(), client(apiKey, extra), stop()}
// Both wait until they listen and are killed when the test process exits.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { freePort } from './server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const STUB = path.join(HERE, '..', '..', 'tools', 'stub_upstream.py');
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

const running = new Set();
process.on('exit', () => { for (const p of running) p.kill('SIGKILL'); });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function track(proc) {
  running.add(proc);
  let log = '';
  const keep = (chunk) => { log = (log + chunk.toString()).slice(-20_000); };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  let exitStatus = null;
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => {
    running.delete(proc);
    exitStatus = { code, signal };
    resolve(exitStatus);
  }));
  return { log: () => log, exited, status: () => exitStatus };
}

async function stop(proc, exited) {
  if (proc.exitCode === null && proc.signalCode === null) {
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }
}

export async function startStub(name, args = []) {
  const proc = spawn('python3', [STUB, '--name', name, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const t = track(proc);
  const deadline = Date.now() + START_TIMEOUT_MS;
  let port = null;
  while (!port) {
    const m = /listening on (\d+)/.exec(t.log());
    if (m) port = Number(m[1]);
    else if (t.status()) throw new Error(`stub ${name} exited: ${t.log()}`);
    else if (Date.now() > deadline) throw new Error(`stub ${name} did not start: ${t.log()}`);
    else await sleep(50);
  }
  const url = `http://127.0.0.1:${port}`;
  return {
    name, port, url: `${url}/v1`,
    async control(obj) { await (await fetch(`${url}/control`, { method: 'POST', body: JSON.stringify(obj) })).text(); },
    async stats() { return (await fetch(`${url}/stats`)).json(); },
    stop: () => stop(proc, t.exited),
  };
}

export async function startRouter(yaml) {
  const bin = process.env.EMBER_BIN;
  if (!bin) throw new Error('EMBER_BIN is unset; run through tests/e2e/run.sh');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ember-e2e-router-'));
  const config = path.join(dir, 'ember.yaml');
  writeFileSync(config, yaml.replaceAll('$DIR', dir));
  const port = await freePort();
  const proc = spawn(bin, ['serve', '--config', config, '--host', '127.0.0.1', '--port', String(port)],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const t = track(proc);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (t.status()) throw new Error(`the router exited (${JSON.stringify(t.status())}):\n${t.log()}`);
    try {
      const res = await fetch(`${url}/health`);
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`the router did not answer /health within ${START_TIMEOUT_MS} ms:\n${t.log()}`);
    }
    await sleep(100);
  }
  return {
    url, port, proc, dir, log: t.log,
    // An openai client with this key; retries off, so that every error
    // surfaces as the router sent it.
    client(apiKey, extra = {}) {
      return new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0, timeout: 60_000, ...extra });
    },
    async stop() {
      await stop(proc, t.exited);
      rmSync(dir, { recursive: true, force: true });
      const at = t.log().search(/ERROR: (Address|Leak|Thread)Sanitizer|runtime error:/);
      if (at >= 0) throw new Error(`the router's sanitizer report:\n${t.log().slice(Math.max(0, at - 200))}`);
      return t.status();
    },
  };
}
