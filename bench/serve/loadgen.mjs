#!/usr/bin/env node
// bench/serve/loadgen.mjs - a load generator for any OpenAI-compatible
// server (ember serve, llama-server, vLLM, Ollama's /v1): N concurrent
// streaming clients for each N given, and per N the aggregate generated
// tokens per second, time to first token and inter-token latency (p50 and
// p99), and the errors.  Plain HTTP (node:http, keep-alive) and server-sent
// events, no client library, so that every server is measured by the same
// code.
//
//   node bench/serve/loadgen.mjs --url http://127.0.0.1:8080 --model NAME
//        [--api-key KEY] [--concurrency 1,4,16,64] [--requests R]
//        [--prompt-tokens 128] [--max-tokens 128] [--endpoint completions|chat]
//        [--temperature 0] [--stagger 0|auto|MS] [--vary-tokens F]
//        [--server-pid PID] [--ember-metrics] [--json FILE]
//
// --requests: requests per concurrency level (default: 4 x N, at least 8);
// each of the N clients sends its next request as soon as its last one ends.
//
// --stagger: when the N clients of a level start.  0 (the default, and the
// only behaviour before session 14, so earlier figures compare): all in the
// same instant.  MS: client i starts i x MS milliseconds after the first.
// auto: MS = the expected time of one request / N, so that the N clients'
// starts are spread evenly over one request; the expected time is the
// previous level's median request time (Total p50), or, for the first
// level, the median of three timed requests of the level's shape sent alone
// before it (a request alone is quicker than one among N streams, so the
// starts then cover somewhat less than one request at N; three, since one
// slow request on a loaded machine would set a stagger near the level's own
// request time / (N - 1), and the last client's first start would fall on
// the first client's second).  Why it matters: every request asks for the
// same --max-tokens greedily and the engine gives every stream one token
// per step, so the clients of a lock-step level finish within a few decode
// steps of each other (one per prompt step) and send their next prompts
// together again: every round is a burst of N prompts, and the last of a
// burst waits for N prompts' arithmetic.  Staggered clients keep their
// phase the same way (a closed loop of equal requests), so each prompt
// arrives while the others stream: what a server sees when arrivals are
// spread, and what continuous batching is for.  The stagger's ramp (the
// first round's starts, and the last round's ends) counts in the level's
// wall time, which matters only with few requests per client.
// --vary-tokens F (default 0: every request asks for --max-tokens): request
// k asks for a max_tokens drawn uniformly from [(1 - F), (1 + F)] x
// --max-tokens (at least 1), from a fixed hash of k, so that runs send the
// same lengths; the mean stays about --max-tokens.  Unequal lengths let the
// clients' phases drift, as a dataset's answers would, rather than hold
// whatever phase they started with: it breaks lock-step bursts after the
// first round, and on staggered starts it lets phases drift into each
// other, so staggered starts do not need it.
// --prompt-tokens: the prompt's length in the server's own tokens; the
// generator calibrates its text on the server first (usage.prompt_tokens of
// a 1-token request), since every model tokenizes differently.  Every prompt
// starts differently, so a prefix cache cannot skip the prompts.
//
// Definitions: the wall time of a level runs from its first request to its
// last byte; generated tok/s = the completion tokens of all its successful
// requests (usage.completion_tokens, or the content chunks where the server
// sends no usage) / that wall time.  TTFT = from sending a request to its
// first content byte.  ITL = the gaps between consecutive content chunks of
// a request, divided by the tokens in the later chunk where the server
// streams several tokens per chunk (known only from usage; otherwise one
// token per chunk is assumed).  Total = from sending a request to the end of
// its stream (in --json only, with each request's start, TTFT, Total and
// tokens, to check how the arrivals fell).  Percentiles are nearest-rank.
//
// CPU per generated token, per level: the generator's own (process.cpuUsage),
// and with --server-pid (a server on this machine, Linux) the server
// process's user + system time from /proc/PID/stat.  On a machine the
// client and server share, and on one loaded by others, these say what the
// wall-time figures cannot: how much CPU each token costs either side.
//
// --ember-metrics (ember serve only): per level, the engine's counters from
// GET /metrics (ember_engine_*): steps, mean rows per step, and the mean
// milliseconds of a step in the model and outside it (batch, sampling,
// text, events), and the server's own mean time to first token (from its
// ember_time_to_first_token_seconds histogram: from the request's arrival
// at the server to its first token's sampling, so without the client's and
// the connection's part), printed as a second table.
import { readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import http from 'node:http';
import https from 'node:https';

function parseArgs(argv) {
  const o = { url: null, model: null, apiKey: process.env.OPENAI_API_KEY ?? '', concurrency: [1, 4, 16, 64], requests: null,
    promptTokens: 128, maxTokens: 128, endpoint: 'completions', temperature: 0, json: null, timeoutS: 600, serverPid: null, emberMetrics: false,
    stagger: 0, varyTokens: 0 };
  const need = (i) => { if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`); return argv[i + 1]; };
  const int = (s, name) => { const v = Number(s); if (!Number.isInteger(v) || v < 1) throw new Error(`${name}: a positive integer, not ${s}`); return v; };
  for (let i = 0; i < argv.length; i += 2) {
    const a = argv[i];
    switch (a) {
      case '--url': o.url = need(i).replace(/\/+$/, '').replace(/\/v1$/, ''); break;
      case '--model': o.model = need(i); break;
      case '--api-key': o.apiKey = need(i); break;
      case '--concurrency': o.concurrency = need(i).split(',').map((s) => int(s, a)); break;
      case '--requests': o.requests = int(need(i), a); break;
      case '--prompt-tokens': o.promptTokens = int(need(i), a); break;
      case '--max-tokens': o.maxTokens = int(need(i), a); break;
      case '--endpoint': o.endpoint = need(i); if (!['completions', 'chat'].includes(o.endpoint)) throw new Error('--endpoint: completions or chat'); break;
      case '--temperature': o.temperature = Number(need(i)); break;
      case '--stagger': {
        const v = need(i);
        o.stagger = v === 'auto' ? 'auto' : Number(v);
        if (o.stagger !== 'auto' && !(Number.isFinite(o.stagger) && o.stagger >= 0)) throw new Error(`--stagger: auto or milliseconds >= 0, not ${v}`);
        break;
      }
      case '--vary-tokens': {
        o.varyTokens = Number(need(i));
        if (!(o.varyTokens >= 0 && o.varyTokens < 1)) throw new Error(`--vary-tokens: a fraction in [0, 1), not ${argv[i + 1]}`);
        break;
      }
      case '--json': o.json = need(i); break;
      case '--server-pid': o.serverPid = int(need(i), a); break;
      case '--ember-metrics': o.emberMetrics = true; i--; break; // a flag: no value to skip
      case '--timeout': o.timeoutS = int(need(i), a); break;
      case '-h': case '--help':
        console.log('usage: loadgen.mjs --url URL --model NAME [--api-key KEY] [--concurrency 1,4,16,64] [--requests R]\n' +
          '                   [--prompt-tokens 128] [--max-tokens 128] [--endpoint completions|chat] [--temperature 0]\n' +
          '                   [--stagger 0|auto|MS] [--vary-tokens F] [--server-pid PID] [--ember-metrics] [--json FILE]\n' +
          '(the options are described at the top of this file)');
        process.exit(0);
      default: throw new Error(`unknown option ${a} (--help lists them)`);
    }
  }
  if (!o.url || !o.model) throw new Error('--url and --model are required');
  return o;
}

// Deterministic words (a small LCG), so that runs send the same prompts.
const WORDS = ('the a little girl boy dog cat park sun tree ball red big happy sad went saw played ran jumped said mom dad ' +
  'friend house garden bird flower water sky day night time story king queen ship sea fish cake box toy home').split(' ');
function words(n, seed) {
  let x = seed >>> 0 || 1;
  const out = [];
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out.push(WORDS[x % WORDS.length]);
  }
  return out.join(' ');
}
const promptText = (id, nWords) => `Request ${id}: ${words(nWords, id * 7919 + 1)}`;

// Request id's max_tokens: --max-tokens, or with --vary-tokens F a value
// uniform in [(1 - F), (1 + F)] x --max-tokens from a hash of the id (a
// 32-bit integer mix), the same in every run.
function maxTokensOf(o, id) {
  if (!o.varyTokens) return o.maxTokens;
  let x = Math.imul(id ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  const u = x / 4294967296; // [0, 1)
  return Math.max(1, Math.round(o.maxTokens * (1 - o.varyTokens + 2 * o.varyTokens * u)));
}

function body(o, prompt, maxTokens, stream) {
  const common = { model: o.model, max_tokens: maxTokens, temperature: o.temperature, stream };
  if (stream) common.stream_options = { include_usage: true };
  return o.endpoint === 'chat' ? { ...common, messages: [{ role: 'user', content: prompt }] } : { ...common, prompt };
}

// The requests go through node:http rather than fetch: the generator shares
// the cores with the server it measures, so its CPU per streamed event is
// taken from the server.  One keep-alive agent per protocol, so that every
// client keeps its connection from request to request, as fetch's pool did.
const AGENTS = { 'http:': new http.Agent({ keepAlive: true, maxSockets: Infinity }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: Infinity }) };

// Sends a request (data: a JSON text, or null); resolves with the status
// and the response stream, not yet read, once the headers are in.
function request(o, method, route, data, signal) {
  const url = new URL(o.url + route);
  const lib = url.protocol === 'https:' ? https : http;
  const headers = {};
  if (data !== null) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = Buffer.byteLength(data);
  }
  if (o.apiKey) headers.authorization = `Bearer ${o.apiKey}`;
  return new Promise((resolve, reject) => {
    const req = lib.request(url, { method, headers, agent: AGENTS[url.protocol], signal }, (res) =>
      resolve({ status: res.statusCode, res }));
    req.on('error', reject);
    req.end(data ?? undefined);
  });
}

function post(o, payload, signal) {
  const route = o.endpoint === 'chat' ? '/v1/chat/completions' : '/v1/completions';
  return request(o, 'POST', route, JSON.stringify(payload), signal);
}

// The whole body of a response as text.
async function text(res) {
  res.setEncoding('utf8');
  let s = '';
  for await (const part of res) s += part;
  return s;
}

// The number of words that makes a prompt of about o.promptTokens tokens
// on this server.
async function calibrate(o) {
  let n = o.promptTokens;
  for (let round = 0; round < 3; round++) {
    const { status, res } = await post(o, body(o, promptText(0, n), 1, false));
    let j = null;
    try { j = JSON.parse(await text(res)); } catch { /* reported below */ }
    if (status !== 200 || !j?.usage?.prompt_tokens) throw new Error(`calibration request failed: ${status} ${JSON.stringify(j).slice(0, 300)}`);
    const got = j.usage.prompt_tokens;
    if (Math.abs(got - o.promptTokens) <= Math.max(2, o.promptTokens * 0.02)) break;
    n = Math.max(1, Math.round(n * o.promptTokens / got));
  }
  return n;
}

// The server-sent events of one streamed answer, fed as the text arrives:
// the content chunks (those with text) and their arrival times, the usage,
// and whether data: [DONE] came.  Events end at a blank line (\n\n, or with
// \r\n line ends); an event's data is its data: lines joined by \n.  The
// common shape (\n line ends, one data: line) skips the regular
// expressions, which cost more than the JSON parse at every token.
class SseReader {
  constructor(chat) {
    this.chat = chat;
    this.buf = '';
    this.chunks = 0;
    this.done = false;
    this.usage = null;
    this.first = null;
    this.last = null;
    this.gaps = [];
  }

  feed(part, now) {
    const buf = this.buf + part;
    const cr = buf.includes('\r');
    let pos = 0;
    for (;;) {
      let at, end;
      if (!cr) {
        at = buf.indexOf('\n\n', pos);
        if (at < 0) break;
        end = at + 2;
      } else {
        const sep = /\r?\n\r?\n/g;
        sep.lastIndex = pos;
        const m = sep.exec(buf);
        if (!m) break;
        at = m.index;
        end = at + m[0].length;
      }
      const event = buf.slice(pos, at);
      pos = end;
      this.event(event, now);
    }
    this.buf = pos ? buf.slice(pos) : buf;
  }

  event(event, now) {
    let data;
    if (event.startsWith('data:') && !event.includes('\n')) data = event.slice(5).trim();
    else data = event.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
    if (!data) return;
    if (data === '[DONE]') { this.done = true; return; }
    const j = JSON.parse(data);
    if (j.error) throw new Error(`error event: ${JSON.stringify(j.error).slice(0, 200)}`);
    if (j.usage) this.usage = j.usage;
    const choices = j.choices ?? [];
    let text = '';
    for (const c of choices) text += (this.chat ? c.delta?.content : c.text) ?? '';
    if (!text) return;
    this.chunks++;
    if (this.first === null) this.first = now;
    else this.gaps.push(now - this.last);
    this.last = now;
  }
}

// One streaming request: its timings, tokens and error, if any.
async function one(o, id, nWords) {
  const r = { id, ok: false, t0: null, ttft: null, total: null, itl: [], tokens: 0, promptTokens: null, error: null };
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), o.timeoutS * 1000);
  const t0 = performance.now();
  r.t0 = t0;
  try {
    const { status, res } = await post(o, body(o, promptText(id, nWords), maxTokensOf(o, id), true), ac.signal);
    if (status !== 200) {
      r.error = `HTTP ${status}: ${(await text(res)).slice(0, 200)}`;
      return r;
    }
    res.setEncoding('utf8'); // decodes characters split across reads
    const sse = new SseReader(o.endpoint === 'chat');
    // 'data' callbacks rather than an async iterator over the response: the
    // iterator costs a promise and a microtask round per read, which on a
    // machine the server shares is CPU taken from it at every token.
    await new Promise((resolve, reject) => {
      let ended = false;
      res.on('data', (part) => {
        try {
          sse.feed(part, performance.now());
        } catch (e) {
          res.destroy();
          reject(e);
        }
      });
      res.on('end', () => { ended = true; resolve(); });
      res.on('error', reject);
      res.on('close', () => { if (!ended) reject(new Error('the connection closed before the end of the stream')); });
    });
    const { chunks, done, usage, gaps } = sse;
    if (sse.first !== null) r.ttft = sse.first - t0;
    if (!done) throw new Error('the stream ended without data: [DONE]');
    r.tokens = usage?.completion_tokens ?? chunks;
    r.promptTokens = usage?.prompt_tokens ?? null;
    // Several tokens per chunk: spread each gap over its tokens.
    const perChunk = chunks > 0 ? r.tokens / chunks : 1;
    r.itl = perChunk > 1 ? gaps.map((g) => g / perChunk) : gaps;
    r.total = performance.now() - t0;
    r.ok = true;
  } catch (e) {
    r.error = ac.signal.aborted ? `timeout after ${o.timeoutS} s` : String(e.message ?? e);
  } finally {
    clearTimeout(timer);
  }
  return r;
}

// The server's user + system CPU seconds so far (fields 14 and 15 of
// /proc/PID/stat, in the kernel's 100 Hz user ticks); null without a pid.
function serverCpuS(o) {
  if (!o.serverPid) return null;
  try {
    const stat = readFileSync(`/proc/${o.serverPid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from 3 on
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return null;
  }
}

// ember's engine counters (ember_engine_*) from GET /metrics; null when
// not asked for or not there.
const ENGINE = ['steps', 'step_rows', 'compute_seconds', 'host_seconds'];
async function engineCounters(o) {
  if (!o.emberMetrics) return null;
  const got = await request(o, 'GET', '/metrics', null).catch(() => null);
  if (!got) return null;
  const body = await text(got.res).catch(() => null);
  if (got.status !== 200 || body === null) return null;
  const out = {};
  for (const k of ENGINE) {
    const m = body.match(new RegExp(`^ember_engine_${k}_total ([0-9.eE+-]+)$`, 'm'));
    if (!m) return null;
    out[k] = Number(m[1]);
  }
  for (const k of ['sum', 'count']) {
    const m = body.match(new RegExp(`^ember_time_to_first_token_seconds_${k} ([0-9.eE+-]+)$`, 'm'));
    out[`ttft_${k}`] = m ? Number(m[1]) : NaN;
  }
  return out;
}

function pct(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The stagger of a level of n clients in milliseconds (see --stagger):
// with auto, the expected request time / n, that time being the previous
// level's Total p50 or the median of three timed requests sent alone now
// (their ids outside the levels' ids).
async function staggerMs(o, n, nWords, prev) {
  if (n < 2 || o.stagger !== 'auto') return n < 2 ? 0 : o.stagger;
  let t = prev && Number.isFinite(prev.total_p50_ms) ? prev.total_p50_ms : NaN;
  if (!Number.isFinite(t)) {
    const times = [];
    for (let k = 0; k < 3; k++) {
      const r = await one({ ...o, varyTokens: 0 }, 2_000_000 + k, nWords); // the mean length
      if (!r.ok) throw new Error(`a timed request for --stagger auto failed: ${r.error}`);
      times.push(r.total);
    }
    t = times.sort((a, b) => a - b)[1];
  }
  return t / n;
}

async function level(o, n, nWords, firstId, prev) {
  const total = o.requests ?? Math.max(8, 4 * n);
  const stagger = await staggerMs(o, n, nWords, prev);
  let next = 0;
  const results = [];
  const eng0 = await engineCounters(o);
  const cpu0 = process.cpuUsage(), srv0 = serverCpuS(o);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, async (_, i) => {
    // Client i's start, i x stagger after the first (setTimeout's
    // resolution, about a millisecond, is well under any useful stagger).
    if (i > 0 && stagger > 0) await sleep(t0 + i * stagger - performance.now());
    while (next < total) {
      const id = firstId + next++;
      results.push(await one(o, id, nWords));
    }
  }));
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0), srv1 = serverCpuS(o);
  const eng1 = await engineCounters(o);
  let engine = null;
  if (eng0 && eng1) {
    const d = Object.fromEntries(ENGINE.map((k) => [k, eng1[k] - eng0[k]]));
    engine = { steps: d.steps, rows_per_step: d.step_rows / d.steps, compute_ms_per_step: (1000 * d.compute_seconds) / d.steps,
      host_ms_per_step: (1000 * d.host_seconds) / d.steps, host_share: d.host_seconds / (d.compute_seconds + d.host_seconds),
      server_ttft_mean_ms: (1000 * (eng1.ttft_sum - eng0.ttft_sum)) / (eng1.ttft_count - eng0.ttft_count) };
  }
  const ok = results.filter((r) => r.ok);
  const ttft = ok.map((r) => r.ttft).filter((x) => x !== null).sort((a, b) => a - b);
  const itl = ok.flatMap((r) => r.itl).sort((a, b) => a - b);
  const latency = ok.map((r) => r.total).sort((a, b) => a - b);
  const tokens = ok.reduce((s, r) => s + r.tokens, 0);
  const prompts = ok.map((r) => r.promptTokens).filter((x) => x !== null);
  const errors = results.filter((r) => !r.ok);
  return {
    concurrency: n, requests: total, stagger_ms: stagger, ok: ok.length, errors: errors.length, first_error: errors[0]?.error ?? null,
    wall_s: wall, generated_tokens: tokens, gen_tok_s: tokens / wall, req_s: ok.length / wall,
    prompt_tokens_mean: prompts.length ? prompts.reduce((s, x) => s + x, 0) / prompts.length : null,
    ttft_p50_ms: pct(ttft, 50), ttft_p99_ms: pct(ttft, 99), ttft_mean_ms: ttft.length ? ttft.reduce((s, x) => s + x, 0) / ttft.length : NaN, itl_p50_ms: pct(itl, 50), itl_p99_ms: pct(itl, 99),
    total_p50_ms: pct(latency, 50), total_p99_ms: pct(latency, 99),
    client_cpu_ms_per_token: tokens ? (cpu.user + cpu.system) / 1000 / tokens : null,
    server_cpu_ms_per_token: tokens && srv0 !== null && srv1 !== null ? ((srv1 - srv0) * 1000) / tokens : null,
    engine,
    // Each request: when it was sent (ms from the level's start), its TTFT
    // and Total (ms) and its tokens, in the order sent: to check how the
    // arrivals fell.
    each: results.slice().sort((a, b) => a.t0 - b.t0).map((r) => ({ id: r.id, start_ms: +(r.t0 - t0).toFixed(2),
      ttft_ms: r.ttft === null ? null : +r.ttft.toFixed(2), total_ms: r.total === null ? null : +r.total.toFixed(2), tokens: r.tokens })),
  };
}

const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const nWords = await calibrate(o);
  // One untimed request pages the weights in and warms the server.
  await one({ ...o, maxTokens: Math.min(o.maxTokens, 16) }, 1_000_000, nWords);
  console.log(`# ${o.url} model ${o.model}: /v1/${o.endpoint === 'chat' ? 'chat/completions' : 'completions'}, streaming, ` +
    `prompt ~${o.promptTokens} tokens, max_tokens ${o.maxTokens}` +
    (o.varyTokens ? ` (each request's in [${1 - o.varyTokens}, ${1 + o.varyTokens}] x)` : '') +
    `, temperature ${o.temperature}, ` +
    (o.stagger === 0 ? 'clients start together' : o.stagger === 'auto' ? 'client starts staggered (auto)' : `client starts ${o.stagger} ms apart`));
  console.log('');
  console.log('|   N | requests | errors | prompt tok | gen tok/s |  req/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | srv CPU ms/tok | client CPU ms/tok |');
  console.log('|----:|---------:|-------:|-----------:|----------:|-------:|------------:|------------:|-----------:|-----------:|---------------:|------------------:|');
  const rows = [];
  let firstId = 1;
  for (const n of o.concurrency) {
    const r = await level(o, n, nWords, firstId, rows[rows.length - 1]);
    firstId += r.requests;
    rows.push(r);
    console.log(`| ${String(n).padStart(3)} | ${String(r.requests).padStart(8)} | ${String(r.errors).padStart(6)} | ${f(r.prompt_tokens_mean, 0).padStart(10)} | ` +
      `${f(r.gen_tok_s).padStart(9)} | ${f(r.req_s, 2).padStart(6)} | ${f(r.ttft_p50_ms).padStart(11)} | ${f(r.ttft_p99_ms).padStart(11)} | ` +
      `${f(r.itl_p50_ms).padStart(10)} | ${f(r.itl_p99_ms).padStart(10)} | ${f(r.server_cpu_ms_per_token, 2).padStart(14)} | ` +
      `${f(r.client_cpu_ms_per_token, 2).padStart(17)} |`);
    if (r.first_error) console.log(`#   N=${n}: first error: ${r.first_error}`);
  }
  for (const r of rows.filter((x) => x.stagger_ms > 0)) console.log(`#   N=${r.concurrency}: client starts ${f(r.stagger_ms)} ms apart`);
  if (rows.some((r) => r.engine)) {
    console.log('');
    console.log('|   N | engine steps | rows/step | model ms/step | outside ms/step | outside share | server TTFT mean ms |');
    console.log('|----:|-------------:|----------:|--------------:|----------------:|--------------:|--------------------:|');
    for (const r of rows.filter((x) => x.engine)) {
      const e = r.engine;
      console.log(`| ${String(r.concurrency).padStart(3)} | ${String(e.steps).padStart(12)} | ${f(e.rows_per_step).padStart(9)} | ` +
        `${f(e.compute_ms_per_step, 2).padStart(13)} | ${f(e.host_ms_per_step, 3).padStart(15)} | ${(f(100 * e.host_share, 1) + ' %').padStart(13)} | ${f(e.server_ttft_mean_ms).padStart(19)} |`);
    }
  }
  if (o.json) writeFileSync(o.json, JSON.stringify({ url: o.url, model: o.model, endpoint: o.endpoint, prompt_tokens: o.promptTokens, max_tokens: o.maxTokens,
    stagger: o.stagger, vary_tokens: o.varyTokens, levels: rows }, null, 2) + '\n');
  if (rows.some((r) => r.errors)) process.exitCode = 2;
}

main().catch((e) => { console.error(`loadgen: ${e.message ?? e}`); process.exit(1); });
