// Starts the real `ember serve` for one test file and talks to it.
//
// The binary comes from $EMBER_BIN (run.sh sets it to the build's ember),
// the model from $EMBER_TEST_DATA/models/stories260K.gguf.  Each server gets
// a free loopback port and a fresh API key; the test file stops it in an
// after() hook, so no server outlives its file.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import OpenAI from 'openai';

export const DATA = process.env.EMBER_TEST_DATA ?? '';
export const MODEL_PATH = path.join(DATA, 'models', 'stories260K.gguf');
export const TEMPLATES = path.join(DATA, 'templates');

// How long the server may take to answer /health after it starts, and to
// exit after SIGTERM.  Generous: the machine is shared and may be slow; no
// test asserts a time.
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

function requireEnv() {
  const bin = process.env.EMBER_BIN;
  if (!bin || !existsSync(bin)) throw new Error(`EMBER_BIN (${bin ?? 'unset'}) is not the ember binary; run through tests/e2e/run.sh`);
  if (!existsSync(MODEL_PATH)) throw new Error(`${MODEL_PATH} is missing; set EMBER_TEST_DATA to the shared test data`);
  return bin;
}

// A port the kernel just handed out and released.  Another process could
// take it before the server binds it; the server then fails to start and
// the error says so.
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every server this process started and has not seen exit: killed when the
// test file's process exits by any path (a failed before() hook that lost a
// handle, a timeout), so that no server outlives its file.
const running = new Set();
process.on('exit', () => { for (const p of running) p.kill('SIGKILL'); });

// startServer({template, parallel, ctx, cors, extra, apiKey, keyFile, modelPath}) -> server
// handle (modelPath: a GGUF other than stories260K; keyFile: pass --api-key-file FILE instead; apiKey must then be its key).
// template: a built-in name or a file path (default chatml, since stories260K
// has no chat template of its own).
export async function startServer(opts = {}) {
  const bin = requireEnv();
  const port = await freePort();
  const apiKey = opts.apiKey ?? `sk-e2e-${randomBytes(12).toString('hex')}`;
  const args = ['serve', '-m', opts.modelPath ?? MODEL_PATH, '--host', '127.0.0.1', '--port', String(port),
    ...(opts.keyFile ? ['--api-key-file', opts.keyFile] : ['--api-key', apiKey]),
    '--chat-template', opts.template ?? 'chatml',
    '-t', process.env.EMBER_E2E_THREADS ?? '1'];
  if (opts.parallel) args.push('--parallel', String(opts.parallel));
  if (opts.ctx) args.push('-c', String(opts.ctx));
  for (const origin of opts.cors ?? []) args.push('--cors-origin', origin);
  args.push(...(opts.extra ?? []));

  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  proc.on('exit', () => running.delete(proc));
  let log = '';
  const keep = (chunk) => { log = (log + chunk.toString()).slice(-20_000); };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  let exitStatus = null;
  exited.then((s) => { exitStatus = s; });

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (exitStatus) throw new Error(`ember serve exited (${JSON.stringify(exitStatus)}) before answering /health:\n${log}`);
    try {
      const res = await fetch(`${url}/health`);
      if (res.status === 200) { await res.arrayBuffer(); break; }
      await res.arrayBuffer();
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`ember serve did not answer /health within ${START_TIMEOUT_MS} ms:\n${log}`);
    }
    await sleep(100);
  }

  const server = {
    url, port, apiKey, proc, args,
    log: () => log,
    exited,
    // An openai client for this server; retries off so that every error
    // surfaces as the server sent it.
    client(extra = {}) {
      return new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0, timeout: 120_000, ...extra });
    },
    // fetch with the key.
    fetch(route, init = {}) {
      const headers = { authorization: `Bearer ${apiKey}`, ...(init.headers ?? {}) };
      return fetch(`${url}${route}`, { ...init, headers });
    },
    async postJSON(route, body, init = {}) {
      const res = await server.fetch(route, {
        method: 'POST', ...init,
        headers: { 'content-type': 'application/json', ...(init.headers ?? {}) },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.text();
      let json = null;
      try { json = JSON.parse(text); } catch { /* left null: the caller checks */ }
      return { status: res.status, headers: res.headers, text, json };
    },
    async metricsText() {
      const res = await server.fetch('/metrics');
      const text = await res.text();
      if (res.status !== 200) throw new Error(`/metrics answered ${res.status}: ${text}`);
      return text;
    },
    // Stops the server with SIGTERM (SIGKILL after the timeout) and returns
    // how it exited.  A server built with sanitizers that reported anything
    // (an error, a leak at exit) fails the file here.
    async stop() {
      if (!exitStatus) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
        await sleep(50); // the last of stderr
      }
      const at = log.search(/ERROR: (Address|Leak|Thread)Sanitizer|runtime error:|WARNING: ThreadSanitizer/);
      if (at >= 0) throw new Error(`ember serve's sanitizer report:\n${log.slice(Math.max(0, at - 200))}`);
      return exitStatus;
    },
  };
  const models = await server.client().models.list();
  server.model = models.data[0]?.id;
  if (!server.model) throw new Error('GET /v1/models lists no model');
  return server;
}

// Greedy request defaults: the same text every time.
export const GREEDY = { temperature: 0 };
