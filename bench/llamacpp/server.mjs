#!/usr/bin/env node
// bench/llamacpp/server.mjs - llama.cpp's engine behind a minimal
// OpenAI-compatible endpoint, so that bench/serve/loadgen.mjs can measure
// it exactly as it measures `ember serve`: same model file, same number of
// parallel sequences, same threads, same load.
//
//   node bench/llamacpp/server.mjs -m MODEL [--port 8081] [--parallel 4]
//        [-t 2] [-c CTX_PER_SEQUENCE] [--batch 512]
//
// It serves POST /v1/completions (prompt text; max_tokens; greedy; stream
// or not; usage), GET /v1/models and GET /health, and nothing else: it is a
// benchmark harness, not a server for users.  Concurrency comes from
// node-llama-cpp: one context with --parallel sequences, whose pending
// evaluations it gathers into one llama_decode batch per step (continuous
// batching, as llama-server does with --parallel).  A request waits for a
// free sequence when all are busy.
import http from 'node:http';
import { getLlama } from 'node-llama-cpp';

const args = process.argv.slice(2);
const o = { m: null, port: 8081, parallel: 4, t: 2, c: 1024, batch: 512 };
for (let i = 0; i < args.length; i++) {
  const a = args[i], v = () => args[++i];
  if (a === '-m') o.m = v();
  else if (a === '--port') o.port = Number(v());
  else if (a === '--parallel') o.parallel = Number(v());
  else if (a === '-t') o.t = Number(v());
  else if (a === '-c') o.c = Number(v());
  else if (a === '--batch') o.batch = Number(v());
  else { console.error(`unknown option ${a}`); process.exit(2); }
}
if (!o.m) { console.error('usage: server.mjs -m MODEL [--port N] [--parallel N] [-t N] [-c N] [--batch N]'); process.exit(2); }

const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error', maxThreads: o.t });
const model = await llama.loadModel({ modelPath: o.m, useMmap: true });
const context = await model.createContext({
  contextSize: o.c * o.parallel, sequences: o.parallel, batchSize: o.batch, threads: { ideal: o.t, min: o.t },
  ignoreMemorySafetyChecks: true, // its estimate refuses 64 x 1024 positions on a 24 GiB machine
});
const name = o.m.replace(/^.*\//, '').replace(/\.gguf$/, '');

// A pool of sequences; requests queue for one.
const free = Array.from({ length: o.parallel }, () => context.getSequence());
const waiting = [];
const acquire = () => (free.length ? Promise.resolve(free.pop()) : new Promise((res) => waiting.push(res)));
const release = async (seq) => {
  await seq.clearHistory();
  const w = waiting.shift();
  if (w) w(seq); else free.push(seq);
};

function send(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

async function completions(req, res, body) {
  const prompt = typeof body.prompt === 'string' ? body.prompt : '';
  const maxTokens = Number.isInteger(body.max_tokens) ? body.max_tokens : 16;
  const tokens = model.tokenize(prompt);
  if (model.tokens.bos !== null && model.shouldPrependBosToken) tokens.unshift(model.tokens.bos);
  if (tokens.length + maxTokens > o.c) return send(res, 400, { error: { message: 'prompt too long' } });
  const id = `cmpl-${Date.now().toString(36)}`;
  const created = Math.floor(Date.now() / 1000);
  const chunk = (text, finish) => ({ id, object: 'text_completion', created, model: name,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finish }] });
  const seq = await acquire();
  let closed = false;
  res.on('close', () => { closed = true; });
  if (body.stream) res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  let text = '', n = 0, finish = 'length';
  const generated = [];
  try {
    for await (const tok of seq.evaluate(tokens, { temperature: 0 })) {
      if (model.isEogToken(tok)) { finish = 'stop'; break; }
      const piece = model.detokenize([tok], false, generated.slice(-8));
      generated.push(tok);
      n++;
      if (body.stream) { if (!closed) res.write(`data: ${JSON.stringify(chunk(piece, null))}\n\n`); }
      else text += piece;
      if (n >= maxTokens || closed) break;
    }
  } finally {
    await release(seq);
  }
  const usage = { prompt_tokens: tokens.length, completion_tokens: n, total_tokens: tokens.length + n };
  if (!body.stream) return send(res, 200, { ...chunk(text, finish), usage });
  if (closed) return;
  res.write(`data: ${JSON.stringify({ ...chunk('', finish), usage })}\n\n`);
  res.end('data: [DONE]\n\n');
}

const server = http.createServer((req, res) => {
  const url = req.url.split('?')[0];
  if (req.method === 'GET' && url === '/health') return send(res, 200, { status: 'ok' });
  if (req.method === 'GET' && url === '/v1/models') return send(res, 200, { object: 'list', data: [{ id: name, object: 'model', owned_by: 'llama.cpp' }] });
  if (req.method !== 'POST' || url !== '/v1/completions') return send(res, 404, { error: { message: 'not found' } });
  let raw = '';
  req.on('data', (d) => { raw += d; });
  req.on('end', () => {
    let body;
    try { body = JSON.parse(raw); } catch { return send(res, 400, { error: { message: 'bad JSON' } }); }
    completions(req, res, body).catch((e) => { if (!res.headersSent) send(res, 500, { error: { message: String(e) } }); else res.end(); });
  });
});
server.listen(o.port, '127.0.0.1', () => console.log(`llama.cpp (node-llama-cpp) serving ${name} on http://127.0.0.1:${o.port}, ${o.parallel} sequences, ${o.t} threads`));
const stop = async () => { server.close(); await context.dispose(); await model.dispose(); await llama.dispose(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
