// Slow and idle connections cannot deny service: a server with a small
// connection table (--max-connections) and a short request deadline
// (--request-timeout) is flooded with more idle and trickling connections
// than the table holds (raw sockets: idle ones, idle keep-alive ones after
// an answer, and ones that send a header byte every 250 ms, which no idle
// timeout would ever close).  A legitimate chat request through the openai
// client must be answered at once, well before the deadline; every
// trickler must be closed by its deadline although it never stops
// sending; a stream whose reader stalls for longer than the deadline must
// run to data: [DONE]; and the server must be healthy afterwards, its KV
// blocks back to 0.  A flood from a second address (127.0.0.2) must push
// out its own idle connections, not the kept-alive ones of 127.0.0.1.
// Every socket and loop is bounded.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import path from 'node:path';
import { DATA, startServer } from './lib/server.mjs';
import * as prom from './lib/prom.mjs';
import { answers, assertAllClosed, attacker, flood, getOwn, keptAlive, sleep } from './lib/flood.mjs';

const TABLE = 8;
const DEADLINE_S = 3;

let server;
before(async () => {
  server = await startServer({
    // A model with a 4096-position context (stories260K has 512), so that a
    // stream can outgrow the socket buffers; three sequences: the stream's
    // two choices and the legitimate request.
    modelPath: path.join(DATA, 'models', 'llama-2-tiny-random.gguf'), parallel: 3, ctx: 4096,
    extra: ['--max-connections', String(TABLE), '--request-timeout', String(DEADLINE_S)],
  });
});
after(async () => { await server?.stop(); });

// /metrics on a connection of its own (see getOwn).
const scrape = async () => prom.parse(await getOwn(server.port, '/metrics', server.apiKey));
const closed = (m, reason) => prom.value(m, 'ember_connections_closed_total', { reason }) ?? 0;

// A chat stream read through a raw socket that stops reading after its
// first bytes for stallMs, then reads to the end.  Two choices whose
// events carry 20 top logprobs each: the answer outgrows the socket
// buffers, so the server's thread for it waits, mid-answer, for the reader
// (its log line shows how long the answer took to send).
function stalledStream(stallMs) {
  return new Promise((resolve) => {
    const body = JSON.stringify({
      model: server.model, messages: [{ role: 'user', content: 'Tell me a story.' }],
      max_tokens: 3000, temperature: 0.8, seed: 7, n: 2, logit_bias: { 2: -100 }, stream: true, logprobs: true, top_logprobs: 20,
    });
    const sock = net.connect(server.port, '127.0.0.1');
    const chunks = [];
    let stalled = false;
    const t0 = Date.now();
    const finish = (how) => {
      clearTimeout(bound);
      sock.destroy();
      resolve({ how, text: Buffer.concat(chunks).toString('utf8'), ms: Date.now() - t0 });
    };
    const bound = setTimeout(() => finish('deadline'), 120_000);
    sock.on('connect', () => sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${server.apiKey}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`));
    sock.on('data', (d) => {
      chunks.push(d);
      if (!stalled) {
        stalled = true;
        sock.pause();
        setTimeout(() => sock.resume(), stallMs);
      }
    });
    sock.on('end', () => finish('closed'));
    sock.on('error', (e) => finish(`error ${e.code}`));
  });
}

test('idle and trickling connections beyond the table keep no client out, and are closed by the deadline', async () => {
  const m0 = await scrape();
  const streamP = stalledStream(DEADLINE_S * 1000 * 1.5);
  await sleep(200);

  // Twice the table: idle ones first, then kept-alive ones, then tricklers.
  const attackers = await flood(server.port, { table: TABLE, deadlineS: DEADLINE_S, apiKey: server.apiKey, settleMs: 500 });

  // The legitimate client is served at once, though the table is full.
  const t0 = Date.now();
  const chat = await server.client({ timeout: 30_000 }).chat.completions.create({
    model: server.model, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8, temperature: 0,
  });
  const waited = Date.now() - t0;
  assert.equal(chat.choices[0].finish_reason, 'length');
  assert.equal(chat.usage.completion_tokens, 8);
  assert.ok(waited < (DEADLINE_S * 1000) / 2, `the chat request took ${waited} ms with the table full`);

  await assertAllClosed(attackers, DEADLINE_S);
  const m1 = await scrape();
  const evicted = closed(m1, 'evicted') - closed(m0, 'evicted');
  const timedOut = closed(m1, 'header_timeout') - closed(m0, 'header_timeout');
  assert.ok(evicted >= TABLE, `evicted ${evicted}`);
  assert.ok(timedOut >= 1, `closed at the headers' deadline: ${timedOut}`);

  // The stalled stream outlived the deadline and ran to its end.
  const stream = await streamP;
  assert.equal(stream.how, 'closed');
  assert.match(stream.text, /^HTTP\/1\.1 200/);
  assert.ok(stream.ms > DEADLINE_S * 1000, `the stream took ${stream.ms} ms`);
  // The server logs the request once it has sent the last byte, which the
  // client may have read a moment before.
  const longSent = () => [...server.log().matchAll(/POST \/v1\/chat\/completions 200 ([\d.]+) ms prompt \d+ completion (\d+)/g)]
    .map((x) => Number(x[1])).filter((ms) => ms > DEADLINE_S * 1000);
  for (let k = 0; k < 100 && !longSent().length; k++) await sleep(50);
  const sent = longSent();
  assert.equal(sent.length, 1, `the server sent the stream for longer than the deadline (${stream.text.length} bytes):\n${server.log().slice(-1500)}`);
  // The last event, then the end of the chunked body.
  assert.ok(/data: \[DONE\]\n\n\r\n0\r\n\r\n$/.test(stream.text), `the stream ends with: ${JSON.stringify(stream.text.slice(-120))}`);
  assert.equal(closed(m1, 'body_timeout') - closed(m0, 'body_timeout'), 0);

  // Healthy afterwards: nothing holds a sequence or a KV block, and a
  // request is served.
  let m;
  for (let k = 0; k < 200; k++) {
    m = await scrape();
    if (prom.value(m, 'ember_kv_blocks_used') === 0 && prom.value(m, 'ember_active_sequences') === 0) break;
    await sleep(50);
  }
  assert.equal(prom.value(m, 'ember_kv_blocks_used'), 0);
  assert.equal(prom.value(m, 'ember_active_sequences'), 0);
  assert.ok(prom.value(m, 'ember_connections_open') <= TABLE);
  const again = await server.client().chat.completions.create({
    model: server.model, messages: [{ role: 'user', content: 'Hello again' }], max_tokens: 4, temperature: 0,
  });
  assert.equal(again.usage.completion_tokens, 4);
});

test('a body trickled slower than its deadline allows is closed at the deadline, unanswered', async () => {
  const m0 = await scrape();
  const body = JSON.stringify({ model: server.model, prompt: 'Once upon a time', max_tokens: 2 });
  const slow = attacker(server.port, 'slow-body');
  await slow.ready;
  slow.sock.write(`POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${server.apiKey}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
  let i = 0;
  slow.timer = setInterval(() => { if (!slow.sock.destroyed && i < body.length) slow.sock.write(body[i++]); }, 250);
  const bound = Date.now() + DEADLINE_S * 1000 + 5_000;
  while (slow.closedAt === null && Date.now() < bound) await sleep(50);
  assert.notEqual(slow.closedAt, null, 'the slow body was not closed');
  assert.ok(slow.closedAt - slow.t0 >= DEADLINE_S * 1000 - 200, `closed after ${slow.closedAt - slow.t0} ms, before its deadline`);
  assert.equal(slow.got, '', 'the slow body got an answer');
  const m1 = await scrape();
  assert.equal(closed(m1, 'body_timeout') - closed(m0, 'body_timeout'), 1);
});

test('a flood from a second address evicts its own idle connections, not the kept-alive ones of 127.0.0.1', async () => {
  const m0 = await scrape();
  // 127.0.0.1: the openai client, whose pooled connection is kept alive,
  // and a raw kept-alive connection; both have waited longer than the
  // flood, so oldest-first eviction would take them first.
  const client = server.client({ timeout: 30_000 });
  const ask = () => client.chat.completions.create({
    model: server.model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, temperature: 0,
  });
  assert.equal((await ask()).usage.completion_tokens, 2);
  const mine = keptAlive(server.port);
  assert.equal(await answers(mine, 1), 1);

  // Twice the table from 127.0.0.2, which soon holds more slots than
  // 127.0.0.1: each new one takes the slot of its own oldest idle one.
  const flooders = [];
  for (let i = 0; i < 2 * TABLE; i++) flooders.push(attacker(server.port, 'idle', '127.0.0.2'));
  try {
    await Promise.all(flooders.map((a) => a.ready));
    const gone = () => flooders.filter((a) => a.closedAt !== null).length;
    for (let k = 0; k < 200 && gone() < TABLE + 1; k++) await sleep(25);
    assert.ok(gone() >= TABLE + 1, `only ${gone()} of the flood were evicted`);
    assert.equal(mine.closedAt, null, 'the flood evicted the kept-alive connection of 127.0.0.1');
    // Those evicted are the flood's oldest.
    assert.ok(flooders.slice(0, TABLE + 1).every((a) => a.closedAt !== null), 'a newer connection of the flood went first');

    const m1 = await scrape();
    assert.equal(prom.value(m1, 'ember_connections_clients'), 2);
    assert.ok(closed(m1, 'evicted') - closed(m0, 'evicted') >= TABLE + 1);
    assert.equal(closed(m1, 'per_client') - closed(m0, 'per_client'), 0);
    assert.equal(closed(m1, 'refused') - closed(m0, 'refused'), 0);

    // 127.0.0.1 is still served on its kept-alive connection, and through
    // the openai client.
    mine.sock.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    assert.equal(await answers(mine, 2), 2);
    assert.equal(mine.closedAt, null);
    assert.equal((await ask()).usage.completion_tokens, 2);
  } finally {
    for (const a of [mine, ...flooders]) a.sock.destroy();
  }
});
