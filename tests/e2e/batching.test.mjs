// Batching invariance: continuous batching must not change what a
// sequence computes.  16 different greedy requests sent at once (so that
// they share decode steps, join the batch at different steps and prefill
// while others generate) give the same text as the same requests one at a
// time.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startServer } from './lib/server.mjs';

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
