// Batching invariance: continuous batching must not change what a
// sequence computes.  16 different greedy requests sent at once (so that
// they share decode steps, join the batch at different steps and prefill
// while others generate) give the same text as the same requests one at a
// time.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startServer } from './lib/server.mjs';
import * as prom from './lib/prom.mjs';

let server, client;
before(async () => {
  server = await startServer({ parallel: 16 });
  client = server.client();
});
after(async () => { await server?.stop(); });

const SUBJECTS = ['a cat', 'a dog', 'a bird', 'the sun', 'a boat', 'a tree', 'a ball', 'the moon',
  'a frog', 'a cake', 'a train', 'a girl', 'a boy', 'a fish', 'a king', 'a star'];

// Prompts of different lengths, and different max_tokens, so that the
// sequences start and finish at different steps.
const requests = SUBJECTS.map((s, i) => ({
  chat: i % 2 === 0,
  prompt: `Once upon a time there was ${s}.${' It was happy.'.repeat(i % 5)}`,
  max_tokens: 24 + 8 * (i % 4),
}));

async function run(req) {
  if (req.chat) {
    const r = await client.chat.completions.create({ model: server.model, temperature: 0, max_tokens: req.max_tokens,
      messages: [{ role: 'user', content: req.prompt }] });
    return r.choices[0].message.content;
  }
  const r = await client.completions.create({ model: server.model, temperature: 0, max_tokens: req.max_tokens, prompt: req.prompt });
  return r.choices[0].text;
}

test('16 concurrent greedy requests give the texts of the same requests one at a time', async () => {
  const sequential = [];
  for (const req of requests) sequential.push(await run(req));
  assert.ok(new Set(sequential).size > 8, 'the requests differ');
  for (let round = 0; round < 2; round++) {
    const concurrent = await Promise.all(requests.map(run));
    for (let i = 0; i < requests.length; i++) assert.equal(concurrent[i], sequential[i], `request ${i}, round ${round}`);
  }
});

test('staggered arrivals (joining a running batch) change nothing either', async () => {
  const sequential = [];
  for (const req of requests.slice(0, 8)) sequential.push(await run(req));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const concurrent = await Promise.all(requests.slice(0, 8).map(async (req, i) => { await sleep(i * 7); return run(req); }));
  assert.deepEqual(concurrent, sequential);
});

test('streamed and plain answers agree under load', async () => {
  const plain = await Promise.all(requests.slice(0, 8).map(run));
  const streamed = await Promise.all(requests.slice(0, 8).map(async (req) => {
    const s = await client.completions.create({ model: server.model, temperature: 0, max_tokens: req.max_tokens, prompt: req.prompt, stream: true });
    let t = '';
    for await (const c of s) t += c.choices[0]?.text ?? '';
    return t;
  }));
  for (let i = 0; i < 8; i++) {
    if (requests[i].chat) continue; // plain ran chat for these
    assert.equal(streamed[i], plain[i], `request ${i}`);
  }
});

test('the prefix cache changes no answer: a prompt that prefixes an earlier one, and one that runs on over cached generated text', async () => {
  const [fresh, warm] = await Promise.all([startServer({ parallel: 2 }), startServer({ parallel: 2 })]);
  try {
    const P = 'Once upon a time there was a little boy named Tom who liked to play with his red truck in the garden near the old tree';
    const greedy = async (srv, prompt, max_tokens) => {
      const r = await srv.postJSON('/v1/completions', { model: srv.model, prompt, max_tokens, temperature: 0 });
      assert.equal(r.status, 200, r.text);
      return r.json.choices[0].text;
    };
    const ref = await greedy(fresh, P, 40);
    // warm computes P plus more first, so P's blocks (and a partial one) are cached.
    await greedy(warm, `${P} and he was very happy because`, 60);
    const m0 = prom.parse(await warm.metricsText());
    assert.equal(await greedy(warm, P, 40), ref);
    const m1 = prom.parse(await warm.metricsText());
    assert.ok(prom.value(m1, 'ember_prefix_cache_hits_total') > prom.value(m0, 'ember_prefix_cache_hits_total'), 'the cache was used');
    // A prompt that runs on over text the cache holds from a generation.
    assert.equal(await greedy(warm, P + ref, 20), await greedy(fresh, P + ref, 20));
    // Embeddings of a cached prompt are those of a fresh one.
    const embed = async (srv) => (await srv.postJSON('/v1/embeddings', { model: srv.model, input: P })).json.data[0].embedding;
    assert.deepEqual(await embed(warm), await embed(fresh));
  } finally {
    await Promise.all([fresh.stop(), warm.stop()]);
  }
});

test('a long prompt prefilled in chunks while others stream gives the answer it gives alone', async () => {
  const long = `${'The little dog ran to the park and played with the red ball. '.repeat(70)}Then the dog`;
  const alone = await client.completions.create({ model: server.model, prompt: long, max_tokens: 16, temperature: 0 });
  assert.ok(alone.usage.prompt_tokens > 1000, `a prompt of several prefill chunks: ${alone.usage.prompt_tokens} tokens`);
  const streams = requests.slice(0, 6).map(async (req) => {
    const s = await client.completions.create({ model: server.model, temperature: 0, max_tokens: 200, prompt: req.prompt, stream: true });
    let t = '';
    for await (const c of s) t += c.choices[0]?.text ?? '';
    return t;
  });
  await new Promise((r) => setTimeout(r, 20));
  const busy = await client.completions.create({ model: server.model, prompt: long, max_tokens: 16, temperature: 0 });
  const streamed = await Promise.all(streams);
  assert.equal(busy.choices[0].text, alone.choices[0].text);
  for (let i = 0; i < 6; i++) {
    const solo = await client.completions.create({ model: server.model, temperature: 0, max_tokens: 200, prompt: requests[i].prompt });
    assert.equal(streamed[i], solo.choices[0].text, `stream ${i}`);
  }
});
