// POST /v1/completions: the reference greedy text of stories260K, the
// legacy logprobs shape, prompt forms, stop strings and streaming.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startServer } from './lib/server.mjs';
import { collect } from './lib/sse.mjs';

let server, client;
before(async () => {
  server = await startServer({ parallel: 4 });
  client = server.client();
});
after(async () => { await server?.stop(); });

// llama2.c's greedy continuation of "Once upon a time" for this model
// ($EMBER_TEST_DATA/models/stories260K.expected.md).
const REFERENCE = ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.';

function complete(extra = {}) {
  return client.completions.create({ model: server.model, prompt: 'Once upon a time', temperature: 0, max_tokens: 24, ...extra });
}

test('greedy completion reproduces the reference implementation', async () => {
  const r = await complete();
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.object, 'text_completion');
  assert.equal(r.model, server.model);
  assert.equal(r.choices.length, 1);
  assert.ok(REFERENCE.startsWith(r.choices[0].text), `got ${JSON.stringify(r.choices[0].text)}`);
  assert.ok(r.choices[0].text.length >= 40, '24 tokens are at least 40 characters of this text');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 24);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 24);
  assert.ok(r.usage.prompt_tokens >= 4 && r.usage.prompt_tokens <= 8, `prompt_tokens ${r.usage.prompt_tokens}`);
});

test('a prompt of token ids and a list of prompts', async () => {
  const one = await complete({ max_tokens: 8 });
  const list = await complete({ prompt: ['Once upon a time', 'The dog'], max_tokens: 8 });
  assert.equal(list.choices.length, 2);
  const byIndex = list.choices.sort((a, b) => a.index - b.index);
  assert.equal(byIndex[0].text, one.choices[0].text);
  assert.notEqual(byIndex[1].text, byIndex[0].text);
  // Token ids: BOS then whatever ids; the server accepts them and counts them.
  const ids = await complete({ prompt: [1, 400, 401, 402], max_tokens: 4 });
  assert.equal(ids.usage.prompt_tokens, 4);
  assert.equal(ids.usage.completion_tokens, 4);
});

test('echo prepends the prompt', async () => {
  const r = await complete({ echo: true, max_tokens: 8 });
  const plain = await complete({ max_tokens: 8 });
  assert.equal(r.choices[0].text, 'Once upon a time' + plain.choices[0].text);
});

test('legacy logprobs: tokens, token_logprobs, top_logprobs, text_offset', async () => {
  const r = await complete({ max_tokens: 10, logprobs: 3 });
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, 10);
  assert.equal(lp.token_logprobs.length, 10);
  assert.equal(lp.top_logprobs.length, 10);
  assert.equal(lp.text_offset.length, 10);
  assert.equal(lp.tokens.join(''), r.choices[0].text);
  let offset = 0;
  for (let i = 0; i < 10; i++) {
    assert.ok(lp.token_logprobs[i] <= 0);
    const top = Object.entries(lp.top_logprobs[i]);
    assert.equal(top.length, 3);
    const best = top.reduce((a, b) => (b[1] > a[1] ? b : a));
    assert.equal(best[0], lp.tokens[i], 'greedy takes the most likely token');
    assert.ok(Math.abs(best[1] - lp.token_logprobs[i]) < 1e-4);
    assert.equal(lp.text_offset[i], offset);
    offset += lp.tokens[i].length;
  }
});

test('stop string and list on completions; never in the text', async () => {
  const full = (await complete({ max_tokens: 24 })).choices[0].text;
  const r = await complete({ max_tokens: 24, stop: ' named' });
  assert.equal(r.choices[0].text, full.slice(0, full.indexOf(' named')));
  assert.equal(r.choices[0].finish_reason, 'stop');
  const l = await complete({ max_tokens: 24, stop: ['park', 'ttle gi'] });
  assert.equal(l.choices[0].text, full.slice(0, full.indexOf('ttle gi')));
  assert.equal(l.choices[0].finish_reason, 'stop');
});

test('stop text split across tokens never leaks into a completion stream', async () => {
  const full = (await complete({ max_tokens: 24 })).choices[0].text;
  for (const stop of ['le girl', ['ed Li', 'NEVER-IN-TEXT'], 'y. S']) {
    const first = Array.isArray(stop) ? stop[0] : stop;
    assert.ok(full.indexOf(first) > 0, `${first} is in ${JSON.stringify(full)}`);
    const s = await collect(server, '/v1/completions', { model: server.model, prompt: 'Once upon a time', temperature: 0, max_tokens: 24, stop });
    assert.equal(s.status, 200, s.body);
    assert.ok(s.done);
    const pieces = s.chunks.flatMap((c) => c.choices).map((c) => c.text);
    assert.equal(pieces.join(''), full.slice(0, full.indexOf(first)));
    const finish = s.chunks.flatMap((c) => c.choices).map((c) => c.finish_reason).filter(Boolean);
    assert.deepEqual(finish, ['stop']);
  }
});

test('streamed completion through the client, with include_usage', async () => {
  const plain = (await complete({ max_tokens: 12 })).choices[0].text;
  const s = await complete({ max_tokens: 12, stream: true, stream_options: { include_usage: true } });
  let text = '', usage = null, finish = null;
  for await (const chunk of s) {
    assert.equal(chunk.object, 'text_completion');
    for (const c of chunk.choices) { text += c.text; if (c.finish_reason) finish = c.finish_reason; }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, plain);
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 12);
});

test('seeded sampling is reproducible on completions', async () => {
  const get = (seed) => complete({ temperature: 0.9, seed, max_tokens: 16 }).then((r) => r.choices[0].text);
  assert.equal(await get(5), await get(5));
});

test('n > 1 on completions', async () => {
  const r = await complete({ n: 2, temperature: 1.0, seed: 3, max_tokens: 16 });
  assert.deepEqual(r.choices.map((c) => c.index).sort(), [0, 1]);
  assert.notEqual(r.choices[0].text, r.choices[1].text);
});
