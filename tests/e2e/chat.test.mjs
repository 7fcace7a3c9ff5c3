// POST /v1/chat/completions through the official openai client: answers,
// usage, length limits, n, seeds, penalties, logit_bias, stop strings,
// logprobs and streaming.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startServer } from './lib/server.mjs';
import { collect } from './lib/sse.mjs';

let server, client;
after(async () => { await server?.stop(); });

const MESSAGES = [
  { role: 'system', content: 'You are a storyteller.' },
  { role: 'user', content: 'Tell me a story about a cat.' },
];

function chat(extra = {}) {
  return client.chat.completions.create({ model: server.model, messages: MESSAGES, temperature: 0, max_tokens: 48, ...extra });
}

function checkUsage(usage) {
  assert.ok(usage, 'usage is present');
  assert.ok(Number.isInteger(usage.prompt_tokens) && usage.prompt_tokens > 0, `prompt_tokens ${usage.prompt_tokens}`);
  assert.ok(Number.isInteger(usage.completion_tokens) && usage.completion_tokens >= 0);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
}

// The greedy answer every test below compares against: 48 tokens, with
// the token strings (logprobs) so that stop strings can be placed across
// a token boundary.
let greedy;
before(async () => {
  server = await startServer({ parallel: 8 });
  client = server.client();
  const r = await chat({ logprobs: true });
  greedy = { text: r.choices[0].message.content, tokens: r.choices[0].logprobs.content.map((t) => t.token), r };
});

test('a chat completion has OpenAI\'s shape', () => {
  const r = greedy.r;
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, 'chat.completion');
  assert.ok(Number.isInteger(r.created));
  assert.equal(r.model, server.model);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].index, 0);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  checkUsage(r.usage);
  assert.ok(greedy.text.length > 20, `the greedy answer is long enough to test with: ${JSON.stringify(greedy.text)}`);
  assert.equal(r.choices[0].finish_reason, 'length', 'stories260K does not end a 48-token answer early');
  assert.equal(r.usage.completion_tokens, 48);
});

test('greedy decoding gives the same answer every time', async () => {
  const r = await chat();
  assert.equal(r.choices[0].message.content, greedy.text);
  assert.equal(r.choices[0].logprobs ?? null, null, 'no logprobs unless asked');
});

test('text content parts are joined into one string: the same prompt and answer as the plain string', async () => {
  const ask = async (content) => client.chat.completions.create({
    model: server.model, temperature: 0, max_tokens: 12, messages: [{ role: 'user', content }],
  });
  const plain = await ask('Hello there, tell me a story.');
  const parts = await ask([{ type: 'text', text: 'Hello there, ' }, { type: 'text', text: 'tell me a story.' }]);
  assert.equal(parts.usage.prompt_tokens, plain.usage.prompt_tokens);
  assert.equal(parts.choices[0].message.content, plain.choices[0].message.content);
});

test('multi-turn conversations, developer role and content parts are accepted', async () => {
  const r = await client.chat.completions.create({
    model: server.model, temperature: 0, max_tokens: 8,
    messages: [
      { role: 'developer', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Hello' }, { type: 'text', text: ' there.' }] },
      { role: 'assistant', content: 'Once upon a time.' },
      { role: 'user', content: 'More.' },
    ],
  });
  assert.equal(typeof r.choices[0].message.content, 'string');
  checkUsage(r.usage);
  assert.ok(r.usage.prompt_tokens > greedy.r.usage.prompt_tokens / 2);
});

for (const field of ['max_tokens', 'max_completion_tokens']) {
  test(`${field} stops the answer with finish_reason "length"`, async () => {
    const r = await chat({ max_tokens: undefined, [field]: 6 });
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 6);
    assert.ok(greedy.text.startsWith(r.choices[0].message.content), 'a shorter greedy answer is a prefix of the longer one');
    assert.ok(r.choices[0].message.content.length > 0);
  });
}

test('max_completion_tokens wins over max_tokens', async () => {
  const r = await chat({ max_tokens: 20, max_completion_tokens: 4 });
  assert.equal(r.usage.completion_tokens, 4);
});

test('the same seed gives the same sampled answer; other seeds give others', async () => {
  const sampled = (seed) => chat({ temperature: 1.0, top_p: 0.95, seed, max_tokens: 24 }).then((r) => r.choices[0].message.content);
  const a = await sampled(1234);
  const b = await sampled(1234);
  assert.equal(a, b);
  const others = await Promise.all([1, 2, 3, 4].map(sampled));
  assert.ok(others.some((t) => t !== a), 'four other seeds do not all give the same answer');
});

test('n > 1 gives n choices, indexed, with usage counting all of them', async () => {
  const r = await chat({ n: 3, temperature: 1.0, seed: 7, max_tokens: 12, logprobs: true });
  assert.equal(r.choices.length, 3);
  assert.deepEqual(r.choices.map((c) => c.index).sort(), [0, 1, 2]);
  let tokens = 0;
  for (const c of r.choices) {
    assert.equal(typeof c.message.content, 'string');
    assert.ok(['stop', 'length'].includes(c.finish_reason));
    tokens += c.logprobs.content.length;
  }
  assert.equal(r.usage.completion_tokens, tokens);
  assert.ok(new Set(r.choices.map((c) => c.message.content)).size > 1, 'sampled choices differ');
});

test('n > 1 with the same seed is reproducible', async () => {
  const get = () => chat({ n: 2, temperature: 1.0, seed: 99, max_tokens: 12 }).then((r) => r.choices.sort((x, y) => x.index - y.index).map((c) => c.message.content));
  assert.deepEqual(await get(), await get());
});

test('frequency and presence penalties change a greedy answer', async () => {
  const base = (await chat({ max_tokens: 48 })).choices[0].message.content;
  const freq = (await chat({ max_tokens: 48, frequency_penalty: 2 })).choices[0].message.content;
  const pres = (await chat({ max_tokens: 48, presence_penalty: 2 })).choices[0].message.content;
  assert.equal(base, greedy.text);
  assert.notEqual(freq, base);
  assert.notEqual(pres, base);
});

test('logit_bias +100 forces the token with that id', async () => {
  const forced = async (id) => {
    const r = await chat({ max_tokens: 6, logit_bias: { [id]: 100 }, logprobs: true });
    const toks = r.choices[0].logprobs.content.map((t) => t.token);
    assert.equal(toks.length, 6);
    assert.ok(toks.every((t) => t === toks[0]), `one token repeated: ${JSON.stringify(toks)}`);
    return toks[0];
  };
  const a = await forced(300), b = await forced(301);
  assert.notEqual(a, b, 'two ids, two tokens');
  assert.notEqual((await chat({ max_tokens: 6 })).choices[0].message.content, a.repeat(6));
});

test('chat logprobs: one entry per token, top_logprobs sorted, greedy picks the top one', async () => {
  const r = await chat({ max_tokens: 10, logprobs: true, top_logprobs: 3 });
  const content = r.choices[0].logprobs.content;
  assert.equal(content.length, r.usage.completion_tokens);
  const bytes = [];
  for (const e of content) {
    assert.equal(typeof e.token, 'string');
    assert.ok(e.logprob <= 0 && Number.isFinite(e.logprob), `logprob ${e.logprob}`);
    assert.ok(Array.isArray(e.bytes) && e.bytes.every((b) => Number.isInteger(b) && b >= 0 && b < 256));
    bytes.push(...e.bytes);
    assert.equal(e.top_logprobs.length, 3);
    for (let k = 1; k < 3; k++) assert.ok(e.top_logprobs[k - 1].logprob >= e.top_logprobs[k].logprob, 'most likely first');
    assert.equal(e.top_logprobs[0].token, e.token, 'greedy takes the most likely token');
    assert.ok(Math.abs(e.top_logprobs[0].logprob - e.logprob) < 1e-4);
    const p = e.top_logprobs.reduce((s, t) => s + Math.exp(t.logprob), 0);
    assert.ok(p <= 1 + 1e-4, `probabilities sum to at most 1: ${p}`);
  }
  assert.equal(Buffer.from(bytes).toString('utf8'), r.choices[0].message.content, 'the tokens\' bytes spell the answer');
  const plain = await chat({ max_tokens: 4, logprobs: true });
  for (const e of plain.choices[0].logprobs.content) assert.deepEqual(e.top_logprobs, []);
});

// A stop string made of the end of token k and the start of token k+1, so
// that no single token contains it.
function splitStop(k) {
  const t = greedy.tokens;
  for (let i = k; i + 1 < t.length; i++) {
    if (t[i].length >= 2 && t[i + 1].length >= 2) return t[i].slice(-2) + t[i + 1].slice(0, 2);
  }
  throw new Error('no two adjacent tokens of two characters');
}

test('stop (a string split across tokens) ends the answer before it; the stop text never shows', async () => {
  const stop = splitStop(4);
  const at = greedy.text.indexOf(stop);
  assert.ok(at > 0, `stop ${JSON.stringify(stop)} is in the greedy answer`);
  const r = await chat({ stop });
  assert.equal(r.choices[0].message.content, greedy.text.slice(0, at));
  assert.equal(r.choices[0].finish_reason, 'stop');
});

test('logprobs cover the returned text only: tokens of a cut stop string are dropped, usage still counts them', async () => {
  const stop = splitStop(4);
  const visible = greedy.text.slice(0, greedy.text.indexOf(stop));
  const check = (entries, usage, how) => {
    const joined = entries.map((e) => e.token).join('');
    assert.ok(joined.startsWith(visible), `${how}: the logprob tokens ${JSON.stringify(joined)} spell the answer`);
    const butLast = entries.slice(0, -1).map((e) => e.token).join('');
    assert.ok(butLast.length < visible.length, `${how}: every entry shows some of the returned text`);
    assert.ok(usage.completion_tokens > entries.length, `${how}: usage counts the ${usage.completion_tokens} tokens computed`);
  };
  const r = await chat({ stop, logprobs: true });
  assert.equal(r.choices[0].message.content, visible);
  check(r.choices[0].logprobs.content, r.usage, 'plain');
  const s = await collect(server, '/v1/chat/completions', {
    model: server.model, messages: MESSAGES, temperature: 0, max_tokens: 48, stop, logprobs: true,
    stream: true, stream_options: { include_usage: true },
  });
  assert.equal(s.status, 200, s.body);
  const entries = s.chunks.flatMap((c) => c.choices).flatMap((c) => c.logprobs?.content ?? []);
  check(entries, s.chunks.at(-1).usage, 'stream');
  assert.deepEqual(entries.map((e) => e.token), r.choices[0].logprobs.content.map((e) => e.token));
});

test('stop as a list: the earliest match ends the answer', async () => {
  const late = splitStop(10), early = splitStop(3);
  const at = Math.min(greedy.text.indexOf(late), greedy.text.indexOf(early));
  const r = await chat({ stop: [late, 'NEVER-IN-TEXT', early] });
  assert.equal(r.choices[0].message.content, greedy.text.slice(0, at));
  assert.ok(!r.choices[0].message.content.includes(early) && !r.choices[0].message.content.includes(late));
  assert.equal(r.choices[0].finish_reason, 'stop');
});

test('stop strings in a stream: the concatenated deltas stop before the stop text', async () => {
  for (const stop of [splitStop(4), [splitStop(6), 'NEVER-IN-TEXT']]) {
    const first = Array.isArray(stop) ? stop[0] : stop;
    const at = greedy.text.indexOf(first);
    const s = await client.chat.completions.create({ model: server.model, messages: MESSAGES, temperature: 0, max_tokens: 48, stop, stream: true });
    let text = '', finish = null;
    for await (const chunk of s) {
      for (const c of chunk.choices) {
        text += c.delta?.content ?? '';
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    assert.equal(text, greedy.text.slice(0, at));
    assert.equal(finish, 'stop');
  }
});

test('streaming through the client gives the same text as the plain answer', async () => {
  const s = await chat({ stream: true });
  let text = '', finish = null, role = null, chunks = 0;
  for await (const chunk of s) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    for (const c of chunk.choices) {
      if (c.delta?.role) role = c.delta.role;
      text += c.delta?.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
    assert.ok(!chunk.usage, 'no usage without stream_options.include_usage');
  }
  assert.equal(role, 'assistant');
  assert.equal(text, greedy.text);
  assert.equal(finish, 'length');
  assert.ok(chunks > 5, 'the answer comes in pieces');
});

test('SSE framing: text/event-stream, one id, role first, data: [DONE] last; include_usage adds a usage chunk', async () => {
  const s = await collect(server, '/v1/chat/completions', {
    model: server.model, messages: MESSAGES, temperature: 0, max_tokens: 16, stream_options: { include_usage: true },
  });
  assert.equal(s.status, 200, s.body);
  assert.match(s.headers.get('content-type'), /^text\/event-stream/);
  assert.ok(s.done, 'the stream ends with data: [DONE]');
  const ids = new Set(s.chunks.map((c) => c.id));
  assert.equal(ids.size, 1);
  assert.equal(s.chunks[0].choices[0].delta.role, 'assistant');
  const last = s.chunks[s.chunks.length - 1];
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, 16);
  checkUsage(last.usage);
  for (const c of s.chunks.slice(0, -1)) assert.equal(c.usage ?? null, null, 'only the last chunk has usage');
  const text = s.chunks.flatMap((c) => c.choices).map((c) => c.delta.content ?? '').join('');
  assert.ok(greedy.text.startsWith(text) && text.length > 0);
});

test('streaming logprobs arrive with the deltas', async () => {
  const s = await collect(server, '/v1/chat/completions', {
    model: server.model, messages: MESSAGES, temperature: 0, max_tokens: 8, logprobs: true, top_logprobs: 2,
  });
  assert.equal(s.status, 200, s.body);
  const entries = s.chunks.flatMap((c) => c.choices).flatMap((c) => c.logprobs?.content ?? []);
  assert.equal(entries.length, 8);
  for (const e of entries) assert.equal(e.top_logprobs.length, 2);
});

test('a streamed n > 1 answer interleaves choices by index', async () => {
  const s = await collect(server, '/v1/chat/completions', {
    model: server.model, messages: MESSAGES, temperature: 0, max_tokens: 8, n: 2,
  });
  assert.equal(s.status, 200, s.body);
  const texts = ['', ''];
  const finishes = [null, null];
  for (const c of s.chunks.flatMap((x) => x.choices)) {
    texts[c.index] += c.delta.content ?? '';
    if (c.finish_reason) finishes[c.index] = c.finish_reason;
  }
  assert.equal(texts[0], texts[1], 'greedy choices agree');
  assert.ok(greedy.text.startsWith(texts[0]) && texts[0].length > 0);
  assert.deepEqual(finishes, ['length', 'length']);
});
