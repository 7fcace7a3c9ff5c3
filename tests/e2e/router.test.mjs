// The router (`ember serve --config`) through the official openai client:
// chat and streaming to a local model (stories260K, in the router's
// process) and to a stub upstream (tests/tools/stub_upstream.py); a
// fallback after the stub's 500; a cascade's headers (x-ember-backend,
// x-ember-cost-usd, x-ember-escalated) read with withResponse(); a budget's
// 429 and a wrong key's 401 as the client's error classes; and the
// front's connection guard: idle and trickling connections beyond a small
// table (max_connections, request_timeout_s) keep no client out and are
// closed by their deadline, while a slow stream through the router runs on;
// and its share per client address (max_connections_per_client).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import { MODEL_PATH } from './lib/server.mjs';
import { startRouter, startStub } from './lib/router.mjs';
import { answers, assertAllClosed, attacker, flood, getOwn, keptAlive, sleep } from './lib/flood.mjs';

let cheap, strong, router, client;
const MAX = 8; // the stubs answer min(max_tokens, 8) tokens
const stubText = (name) => `stub ${name} says hello and then some more`;
const user = (content) => [{ role: 'user', content }];

before(async () => {
  [cheap, strong] = await Promise.all([startStub('cheap', ['--lp', '-0.1']), startStub('strong')]);
  router = await startRouter(`
ledger: sqlite://$DIR/ledger.db
backends:
  - {name: local, model: "${MODEL_PATH}", ctx: 256, parallel: 2, threads: 1, chat_template: chatml, price: {hourly_usd: 2}}
  - {name: cheap, url: "${cheap.url}", price: {input_per_mtok: 0.5, output_per_mtok: 1}, retries: 0}
  - {name: flaky, url: "${cheap.url}", price: {input_per_mtok: 0.5, output_per_mtok: 1}, retries: 0}
  - {name: strong, url: "${strong.url}", price: {input_per_mtok: 3, output_per_mtok: 15}, retries: 0}
routes:
  - {name: to-local, policy: direct, backends: [local]}
  - {name: to-stub, policy: direct, backends: [strong]}
  - {name: safe, policy: fallback, backends: [flaky, local]}
  - {name: auto, policy: cascade, backends: [cheap, strong], accept: {mean_logprob: -1.0, min_logprob: -3}}
keys:
  - {name: team, key: sk-team-e2e}
  - {name: poor, key: sk-poor-e2e, budget: {daily_usd: 0.0000001, on_exceed: deny}}
`);
  client = router.client('sk-team-e2e');
});
after(async () => { await Promise.all([router?.stop(), cheap?.stop(), strong?.stop()]); });

const cost = (response) => Number(response.headers.get('x-ember-cost-usd'));

async function streamed(params) {
  const stream = await client.chat.completions.create({ ...params, stream: true });
  let text = '', finish = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    const c = chunk.choices[0];
    if (c?.delta?.content) text += c.delta.content;
    if (c?.finish_reason) finish = c.finish_reason;
  }
  return { text, finish, chunks };
}

test('chat and streaming through a route to the local model', async () => {
  const { data, response } = await client.chat.completions
    .create({ model: 'to-local', messages: user('Once upon a time'), max_tokens: 12, temperature: 0 })
    .withResponse();
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('x-ember-backend'), 'local');
  assert.equal(response.headers.get('x-ember-route'), 'to-local');
  assert.ok(cost(response) > 0, 'a local answer has a cost (hourly hardware price)');
  assert.equal(typeof data.choices[0].message.content, 'string');
  assert.ok(data.choices[0].message.content.length > 0);
  assert.ok(data.usage.completion_tokens > 0 && data.usage.completion_tokens <= 12);
  const s = await streamed({ model: 'to-local', messages: user('Once upon a time'), max_tokens: 12, temperature: 0 });
  assert.equal(s.text, data.choices[0].message.content, 'greedy: the stream says what the answer said');
  assert.ok(s.finish, 'the stream ends with a finish_reason');
});

test('chat and streaming through a route to the stub upstream', async () => {
  const { data, response } = await client.chat.completions
    .create({ model: 'to-stub', messages: user('hi'), max_tokens: MAX })
    .withResponse();
  assert.equal(response.headers.get('x-ember-backend'), 'strong');
  assert.equal(data.choices[0].message.content, stubText('strong'));
  // The price: usage at 3 and 15 USD per million tokens.
  const want = (data.usage.prompt_tokens * 3 + data.usage.completion_tokens * 15) / 1e6;
  assert.ok(Math.abs(cost(response) - want) < 1e-8, `cost ${cost(response)} vs ${want}`);
  const s = await streamed({ model: 'to-stub', messages: user('hi'), max_tokens: MAX });
  assert.equal(s.text, stubText('strong'));
  assert.equal(s.finish, 'length');
  // A backend's name is a direct route too.
  const r = await client.chat.completions.create({ model: 'strong', messages: user('hi'), max_tokens: MAX });
  assert.equal(r.choices[0].message.content, stubText('strong'));
});

test('fallback: the stub answers 500, the local model answers', async () => {
  const before500 = (await cheap.stats()).count['500'] ?? 0;
  const { data, response } = await client.chat.completions
    .create({ model: 'safe', messages: user('hello #stub:500'), max_tokens: 6 })
    .withResponse();
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('x-ember-backend'), 'local');
  assert.ok(data.choices[0].message.content.length > 0);
  assert.equal((await cheap.stats()).count['500'], before500 + 1, 'the stub was asked once and failed');
  // Streaming falls back the same way, before any byte reached the client.
  const s = await streamed({ model: 'safe', messages: user('hello #stub:500'), max_tokens: 6 });
  assert.ok(s.text.length > 0);
});

test('cascade: a confident cheap answer is kept; an unsure one escalates and both are charged', async () => {
  const kept = await client.chat.completions.create({ model: 'auto', messages: user('easy'), max_tokens: MAX }).withResponse();
  assert.equal(kept.response.headers.get('x-ember-backend'), 'cheap');
  assert.equal(kept.response.headers.get('x-ember-escalated'), null);
  assert.equal(kept.data.choices[0].message.content, stubText('cheap'));
  assert.equal(kept.data.choices[0].logprobs ?? null, null, 'logprobs the client did not ask for are removed');
  const cheapCost = cost(kept.response);
  assert.ok(cheapCost > 0);

  const esc = await client.chat.completions.create({ model: 'auto', messages: user('hard #lp:-2.5'), max_tokens: MAX }).withResponse();
  assert.equal(esc.response.headers.get('x-ember-backend'), 'strong');
  assert.match(esc.response.headers.get('x-ember-escalated') ?? '', /^cheap: mean_logprob -2\.5/);
  assert.equal(esc.data.choices[0].message.content, stubText('strong'));
  const u = esc.data.usage;
  const strongCost = (u.prompt_tokens * 3 + u.completion_tokens * 15) / 1e6;
  assert.ok(cost(esc.response) > strongCost, `both attempts charged: ${cost(esc.response)} > ${strongCost}`);

  // A streaming client gets the kept answer as events.
  const s = await streamed({ model: 'auto', messages: user('easy'), max_tokens: MAX });
  assert.equal(s.text, stubText('cheap'));
});

test('over budget: 429 budget_exceeded in OpenAI error shape', async () => {
  const poor = router.client('sk-poor-e2e');
  const err = await poor.chat.completions.create({ model: 'to-stub', messages: user('hi'), max_tokens: MAX }).then(() => null, (e) => e);
  assert.ok(err instanceof OpenAI.RateLimitError, String(err));
  assert.equal(err.status, 429);
  assert.equal(err.code, 'budget_exceeded');
  assert.equal(typeof err.error.message, 'string');
  assert.match(err.error.message, /budget/);
  assert.equal(err.headers.get('retry-after'), '1');
});

test('keys: a wrong key is 401, a known key lists the routes', async () => {
  const wrong = router.client('sk-not-a-key');
  const err = await wrong.chat.completions.create({ model: 'to-stub', messages: user('hi'), max_tokens: 4 }).then(() => null, (e) => e);
  assert.ok(err instanceof OpenAI.AuthenticationError, String(err));
  assert.equal(err.status, 401);
  const models = await client.models.list();
  const ids = models.data.map((m) => m.id);
  for (const id of ['to-local', 'to-stub', 'safe', 'auto', 'local', 'strong']) assert.ok(ids.includes(id), `${id} in ${ids}`);
  const unknown = await client.chat.completions.create({ model: 'nosuch', messages: user('hi') }).then(() => null, (e) => e);
  assert.ok(unknown instanceof OpenAI.NotFoundError, String(unknown));
});

// The router's front with a table of 6 and a 2 s request deadline: twice
// the table in raw attackers (idle, idle keep-alive after an answer, and
// header bytes every 250 ms, which no idle timeout would ever close); a
// legitimate request is answered at once, every attacker is closed by its
// deadline, and a stream through the router that lasts longer than the
// deadline (the stub's #stub:slow, 0.3 s an event) runs to its end.  Every
// socket and loop is bounded.
test('connections: idle and trickling clients beyond the table keep no client out, and are closed by the deadline', async () => {
  const TABLE = 6, DEADLINE_S = 2;
  const slow = await startStub('slowpoke');
  let guarded;
  try {
    guarded = await startRouter(`
ledger: none
max_connections: ${TABLE}
request_timeout_s: ${DEADLINE_S}
backends:
  - {name: slowpoke, url: "${slow.url}", retries: 0}
`);
    // /health on a connection of its own (see getOwn).
    const health = async () => JSON.parse(await getOwn(guarded.port, '/health')).connections;
    const h0 = await health();
    assert.equal(h0.max, TABLE);

    // The slow stream first: its connection has a request in progress.
    const c = guarded.client('sk-any', { timeout: 30_000 });
    const streamP = (async () => {
      const t0 = Date.now();
      const stream = await c.chat.completions.create({
        model: 'slowpoke', messages: user('a slow one #stub:slow'), max_tokens: MAX, stream: true,
      });
      let text = '', finish = null;
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta?.content) text += chunk.choices[0].delta.content;
        if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
      }
      return { text, finish, ms: Date.now() - t0 };
    })();
    // Awaited below; an assertion that fails first must not leave its
    // rejection unhandled (the stub stops in finally and breaks it).
    streamP.catch(() => {});
    await sleep(200);

    const attackers = await flood(guarded.port, { table: TABLE, deadlineS: DEADLINE_S });

    // The legitimate client is served at once, though the table is full.
    const t0 = Date.now();
    const chat = await c.chat.completions.create({ model: 'slowpoke', messages: user('hi'), max_tokens: MAX });
    const waited = Date.now() - t0;
    assert.equal(chat.choices[0].message.content, stubText('slowpoke'));
    assert.ok(waited < (DEADLINE_S * 1000) / 2, `the chat request took ${waited} ms with the table full`);

    await assertAllClosed(attackers, DEADLINE_S);

    // The stream outlived the deadline and ran to its end.
    const s = await streamP;
    assert.equal(s.text, stubText('slowpoke'));
    assert.equal(s.finish, 'length');
    assert.ok(s.ms > DEADLINE_S * 1000, `the stream took ${s.ms} ms`);

    const h1 = await health();
    assert.ok(h1.closed.evicted - h0.closed.evicted >= TABLE, `evicted ${h1.closed.evicted - h0.closed.evicted}`);
    assert.ok(h1.closed.header_timeout - h0.closed.header_timeout >= 1, 'none closed at the deadline');
    assert.equal(h1.closed.body_timeout - h0.closed.body_timeout, 0);
    assert.ok(h1.open <= TABLE, `${h1.open} open`);
    // Healthy afterwards: a request is served.
    const again = await guarded.client('sk-any', { timeout: 30_000 }).chat.completions.create({ model: 'slowpoke', messages: user('again'), max_tokens: MAX });
    assert.equal(again.choices[0].message.content, stubText('slowpoke'));
  } finally {
    await Promise.all([guarded?.stop(), slow.stop()]);
  }
});

// The front with max_connections_per_client: 2 in a table of 4: the third
// connection from 127.0.0.2 takes the slot of its own oldest idle one, not
// that of 127.0.0.1's kept-alive connection, which has waited longer; with
// both of its connections streaming, a third from 127.0.0.2 is closed at
// once, unanswered (per_client in /health).  Every socket is bounded.
test('connections: a client address holds at most max_connections_per_client of the table', async () => {
  const slow = await startStub('capped');
  let guarded;
  const socks = [];
  try {
    guarded = await startRouter(`
ledger: none
max_connections: 4
max_connections_per_client: 2
request_timeout_s: 10
backends:
  - {name: capped, url: "${slow.url}", retries: 0}
`);
    const health = async () => JSON.parse(await getOwn(guarded.port, '/health')).connections;
    const h0 = await health();
    assert.equal(h0.max_per_client, 2);
    const mine = keptAlive(guarded.port);
    socks.push(mine);
    assert.equal(await answers(mine, 1), 1);

    const from2 = () => {
      const a = attacker(guarded.port, 'idle', '127.0.0.2');
      socks.push(a);
      return a;
    };
    const a = from2(), b = from2();
    await Promise.all([a.ready, b.ready]);
    await sleep(100);
    const c = from2();
    await c.ready;
    for (let k = 0; k < 200 && a.closedAt === null; k++) await sleep(25);
    assert.notEqual(a.closedAt, null, "127.0.0.2's oldest idle connection kept its slot");
    assert.equal(b.closedAt, null);
    assert.equal(mine.closedAt, null, "127.0.0.2 took the slot of 127.0.0.1's kept-alive connection");

    // Both of 127.0.0.2's connections stream (0.3 s an event): no idle one
    // is left to trade.
    const body = JSON.stringify({ model: 'capped', messages: user('slow #stub:slow'), max_tokens: MAX, stream: true });
    for (const x of [b, c]) {
      x.sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    }
    for (let k = 0; k < 400 && !(b.got && c.got); k++) await sleep(25);
    assert.ok(b.got && c.got, 'the streams did not start');
    const d = from2();
    await d.ready.catch(() => {});
    for (let k = 0; k < 200 && d.closedAt === null; k++) await sleep(25);
    assert.notEqual(d.closedAt, null, 'a connection beyond the cap was kept');
    assert.equal(d.got, '');
    assert.equal(b.closedAt, null);
    assert.equal(c.closedAt, null);

    const h1 = await health();
    assert.equal(h1.closed.per_client - h0.closed.per_client, 1);
    // a; and maybe an idle connection the harness left from 127.0.0.1,
    // which the second /health's connection replaces in the full table.
    assert.ok(h1.closed.evicted - h0.closed.evicted >= 1);
    assert.equal(h1.clients, 2);
  } finally {
    for (const x of socks) x.sock.destroy();
    await Promise.all([guarded?.stop(), slow.stop()]);
  }
});
