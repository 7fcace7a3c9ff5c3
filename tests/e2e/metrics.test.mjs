// GET /metrics: the Prometheus text parses, counters and histograms move
// with the requests, gauges show the queue and the batch, and clients that
// disconnect give their KV blocks back.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startServer } from './lib/server.mjs';
import { events } from './lib/sse.mjs';
import * as prom from './lib/prom.mjs';

let server, client;
before(async () => {
  server = await startServer({ parallel: 4 });
  client = server.client();
});
after(async () => { await server?.stop(); });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const scrape = async () => prom.parse(await server.metricsText());
const v = (m, name, labels) => prom.value(m, name, labels);

const FAMILIES = {
  ember_requests_total: 'counter',
  ember_prompt_tokens_total: 'counter',
  ember_generated_tokens_total: 'counter',
  ember_queue_depth: 'gauge',
  ember_active_sequences: 'gauge',
  ember_kv_blocks_used: 'gauge',
  ember_kv_blocks_free: 'gauge',
  ember_prefix_cache_hits_total: 'counter',
  ember_engine_steps_total: 'counter',
  ember_engine_step_rows_total: 'counter',
  ember_engine_compute_seconds_total: 'counter',
  ember_engine_host_seconds_total: 'counter',
  ember_time_to_first_token_seconds: 'histogram',
  ember_inter_token_latency_seconds: 'histogram',
  ember_request_duration_seconds: 'histogram',
  ember_connections_open: 'gauge',
  ember_connections_closed_total: 'counter',
};

// Polls /metrics until pred(parsed) holds or the bound passes; returns the
// last scrape either way, so the assertion after it shows the values.
async function waitFor(pred, ms = 30_000) {
  const end = Date.now() + ms;
  let m;
  for (;;) {
    m = await scrape();
    if (pred(m) || Date.now() > end) return m;
    await sleep(50);
  }
}

test('the exposition parses, declares every family with its type, and the idle gauges are zero', async () => {
  const res = await server.fetch('/metrics');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  const m = prom.parse(await res.text());
  for (const [name, type] of Object.entries(FAMILIES)) assert.equal(m.types.get(name), type, `${name} is a ${type}`);
  for (const name of ['ember_time_to_first_token_seconds', 'ember_inter_token_latency_seconds', 'ember_request_duration_seconds']) prom.checkHistogram(m, name);
  assert.equal(v(m, 'ember_queue_depth'), 0);
  assert.equal(v(m, 'ember_active_sequences'), 0);
  assert.equal(v(m, 'ember_kv_blocks_used'), 0);
  assert.ok(v(m, 'ember_kv_blocks_free') > 0);
  for (const s of m.samples.filter((x) => x.name === 'ember_requests_total')) assert.match(s.labels.status ?? '', /^[1-5]\d\d$/);
});

test('counters and histograms move with a request', async () => {
  const m0 = await scrape();
  const r = await client.chat.completions.create({ model: server.model, messages: [{ role: 'user', content: 'Count the tokens.' }], temperature: 0, max_tokens: 20 });
  const m1 = await waitFor((m) => v(m, 'ember_request_duration_seconds_count') > v(m0, 'ember_request_duration_seconds_count'));
  const d = (name, labels) => (v(m1, name, labels) ?? 0) - (v(m0, name, labels) ?? 0);
  assert.ok(d('ember_requests_total', { status: '200' }) >= 1);
  assert.equal(d('ember_prompt_tokens_total'), r.usage.prompt_tokens);
  assert.equal(d('ember_generated_tokens_total'), r.usage.completion_tokens);
  assert.equal(d('ember_time_to_first_token_seconds_count'), 1);
  assert.equal(d('ember_inter_token_latency_seconds_count'), r.usage.completion_tokens - 1);
  assert.ok(d('ember_request_duration_seconds_count') >= 1);
  assert.ok(d('ember_request_duration_seconds_sum') > 0);
  assert.ok(d('ember_time_to_first_token_seconds_sum') > 0);
  // Alone, a short prompt takes one step that also gives the first token,
  // then one step per further token; the prefix cache may spare prompt rows.
  assert.equal(d('ember_engine_steps_total'), r.usage.completion_tokens);
  const rows = d('ember_engine_step_rows_total');
  assert.ok(rows >= r.usage.completion_tokens && rows <= r.usage.prompt_tokens + r.usage.completion_tokens - 1, `${rows} rows`);
  assert.ok(d('ember_engine_compute_seconds_total') > 0);
  assert.ok(d('ember_engine_host_seconds_total') >= 0);
  for (const name of ['ember_time_to_first_token_seconds', 'ember_inter_token_latency_seconds', 'ember_request_duration_seconds']) prom.checkHistogram(m1, name);
});

test('errors are counted by status', async () => {
  const m0 = await scrape();
  await fetch(`${server.url}/v1/models`); // no key: 401
  await server.postJSON('/v1/chat/completions', { model: server.model, messages: 'x' }); // 400
  await server.fetch('/v1/nope'); // 404
  const m1 = await scrape();
  for (const status of ['401', '400', '404']) {
    const delta = (v(m1, 'ember_requests_total', { status }) ?? 0) - (v(m0, 'ember_requests_total', { status }) ?? 0);
    assert.equal(delta, 1, `status ${status}`);
  }
});

test('a shared system prompt is served from the prefix cache the second time', async () => {
  const system = 'You are a kind storyteller who tells short stories about animals in the park. '.repeat(12);
  const ask = (q) => client.chat.completions.create({ model: server.model, temperature: 0, max_tokens: 4,
    messages: [{ role: 'system', content: system }, { role: 'user', content: q }] });
  await ask('Tell me about a cat.');
  const m0 = await scrape();
  await ask('Tell me about a dog.');
  const m1 = await scrape();
  assert.ok(v(m1, 'ember_prefix_cache_hits_total') > v(m0, 'ember_prefix_cache_hits_total'), 'cached blocks were reused');
});

// Opens `count` streams of long answers, waits until each has sent a few
// chunks, and returns them with their AbortControllers.
async function openStreams(count, tag) {
  const streams = [];
  for (let i = 0; i < count; i++) {
    const ac = new AbortController();
    const res = await server.fetch('/v1/chat/completions', {
      method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: server.model, stream: true, temperature: 0.9, seed: i, max_tokens: 1800,
        messages: [{ role: 'user', content: `${tag} story number ${i}: the fox and the ${i} rabbits.` }] }),
    });
    assert.equal(res.status, 200);
    const it = events(res)[Symbol.asyncIterator]();
    streams.push({ ac, it });
  }
  for (const s of streams) for (let k = 0; k < 3; k++) await s.it.next();
  return streams;
}

test('streams aborted mid-way free their KV blocks and sequences (checked through /metrics)', async () => {
  const m0 = await waitFor((m) => v(m, 'ember_active_sequences') === 0);
  const used0 = v(m0, 'ember_kv_blocks_used');
  const streams = await openStreams(6, 'abort');
  const live = await scrape();
  assert.ok(v(live, 'ember_active_sequences') >= 1, 'the streams are running');
  assert.ok(v(live, 'ember_kv_blocks_used') > used0, 'and hold KV blocks');
  for (const s of streams) s.ac.abort();
  const atAbort = v(await scrape(), 'ember_generated_tokens_total');
  const m1 = await waitFor((m) => v(m, 'ember_active_sequences') === 0 && v(m, 'ember_kv_blocks_used') === used0 && v(m, 'ember_queue_depth') === 0);
  assert.equal(v(m1, 'ember_active_sequences'), 0);
  assert.equal(v(m1, 'ember_queue_depth'), 0);
  assert.equal(v(m1, 'ember_kv_blocks_used'), used0);
  // Cancelled within a few steps: the tokens generated after the abort are
  // a small part of what the six answers still had to go.
  const left = 6 * 1800 - (atAbort - v(m0, 'ember_generated_tokens_total'));
  const after = v(m1, 'ember_generated_tokens_total') - atAbort;
  assert.ok(after < left / 2, `the aborted sequences were cut short: ${after} tokens after the abort, ${left} to go`);
  // The server still answers.
  const r = await client.chat.completions.create({ model: server.model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 });
  assert.equal(r.usage.completion_tokens, 3);
});

test('a non-streaming client that disconnects also cancels its sequence', async () => {
  const m0 = await waitFor((m) => v(m, 'ember_active_sequences') === 0);
  const used0 = v(m0, 'ember_kv_blocks_used');
  const acs = [];
  const pending = [];
  for (let i = 0; i < 4; i++) {
    const ac = new AbortController();
    acs.push(ac);
    pending.push(server.fetch('/v1/completions', { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: server.model, prompt: `The ${i} foxes`, max_tokens: 1800, temperature: 0.9, seed: i }) }).catch(() => null));
  }
  const live = await waitFor((m) => v(m, 'ember_active_sequences') >= 1, 10_000);
  assert.ok(v(live, 'ember_active_sequences') >= 1, 'the requests are running');
  for (const ac of acs) ac.abort();
  const atAbort = v(await scrape(), 'ember_generated_tokens_total');
  await Promise.all(pending);
  const m1 = await waitFor((m) => v(m, 'ember_active_sequences') === 0 && v(m, 'ember_kv_blocks_used') === used0);
  assert.equal(v(m1, 'ember_active_sequences'), 0);
  assert.equal(v(m1, 'ember_kv_blocks_used'), used0);
  const left = 4 * 1800 - (atAbort - v(m0, 'ember_generated_tokens_total'));
  const after = v(m1, 'ember_generated_tokens_total') - atAbort;
  assert.ok(after < left / 2, `cut short: ${after} tokens after the abort, ${left} to go`);
});

test('requests beyond --parallel wait in the queue, shown by ember_queue_depth', async () => {
  const streams = await openStreams(4, 'busy');
  // Four streams fill the four sequences; two more must queue.
  const extra = [0, 1].map((i) => {
    const ac = new AbortController();
    const p = server.fetch('/v1/completions', { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: server.model, prompt: `Queued ${i}`, max_tokens: 8 }) }).then((r) => r.json()).catch(() => null);
    return { ac, p };
  });
  const m = await waitFor((x) => v(x, 'ember_queue_depth') >= 1, 10_000);
  assert.ok(v(m, 'ember_queue_depth') >= 1, 'queued requests are counted');
  assert.ok(v(m, 'ember_active_sequences') <= 4, '--parallel bounds the batch');
  for (const s of streams) s.ac.abort();
  const done = await Promise.all(extra.map((e) => e.p));
  for (const d of done) assert.ok(d?.usage?.completion_tokens > 0, `queued requests run once sequences free up: ${JSON.stringify(d)}`);
  const idle = await waitFor((x) => v(x, 'ember_active_sequences') === 0 && v(x, 'ember_queue_depth') === 0);
  assert.equal(v(idle, 'ember_queue_depth'), 0);
});

test('a storm of mixed requests, many abandoned at random moments (some still queued), leaves nothing behind', async () => {
  const m0 = await waitFor((m) => v(m, 'ember_active_sequences') === 0 && v(m, 'ember_queue_depth') === 0);
  const used0 = v(m0, 'ember_kv_blocks_used');
  let x = 12345;
  const rand = (n) => { x = (Math.imul(x, 1103515245) + 12345) >>> 0; return x % n; };
  const kinds = [
    ['/v1/completions', (i) => ({ prompt: `Storm ${i} the cat`, max_tokens: 400, temperature: 0.8, seed: i, stream: true })],
    ['/v1/completions', (i) => ({ prompt: `Storm ${i} the dog`, max_tokens: 400, temperature: 0.8, seed: i })],
    ['/v1/chat/completions', (i) => ({ messages: [{ role: 'user', content: `Storm ${i}` }], max_tokens: 400, n: 2, stream: true, stream_options: { include_usage: true } })],
    ['/v1/chat/completions', (i) => ({ messages: [{ role: 'user', content: `Storm ${i}` }], max_tokens: 300, logprobs: true, top_logprobs: 5 })],
    ['/v1/embeddings', (i) => ({ input: [`Storm ${i}`, 'a b c'] })],
  ];
  const jobs = Array.from({ length: 40 }, (_, i) => {
    const [route, body] = kinds[i % kinds.length];
    const ac = new AbortController();
    const abortAfter = rand(3) === 0 ? null : rand(300); // a third run to the end
    const p = server.fetch(route, { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: server.model, ...body(i) }) })
      .then(async (r) => ({ status: r.status, text: await r.text() }))
      .catch((e) => ({ status: null, error: e.name }));
    if (abortAfter !== null) setTimeout(() => ac.abort(), abortAfter);
    return { p, abortAfter };
  });
  const results = await Promise.all(jobs.map((j) => j.p));
  results.forEach((r, i) => {
    if (jobs[i].abortAfter === null) assert.equal(r.status, 200, `request ${i} ran to its end: ${r.status} ${r.text?.slice(0, 200)}`);
    else assert.ok(r.status === 200 || r.error === 'AbortError', `request ${i}: ${JSON.stringify(r).slice(0, 200)}`);
  });
  const m1 = await waitFor((m) => v(m, 'ember_active_sequences') === 0 && v(m, 'ember_queue_depth') === 0 && v(m, 'ember_kv_blocks_used') === used0);
  assert.equal(v(m1, 'ember_active_sequences'), 0);
  assert.equal(v(m1, 'ember_queue_depth'), 0);
  assert.equal(v(m1, 'ember_kv_blocks_used'), used0);
  assert.ok(v(m1, 'ember_requests_total', { status: '499' }) > 0, 'abandoned requests count as 499');
  const r = await client.chat.completions.create({ model: server.model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 });
  assert.equal(r.usage.completion_tokens, 3);
});
