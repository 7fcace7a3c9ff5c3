// The context limit (-c) at its edges: a prompt plus max_tokens that fits
// exactly runs to the last position; one more is a 400 giving both numbers;
// without max_tokens an answer stops at the end of the context.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import { startServer } from './lib/server.mjs';

const CTX = 128;
let server, client;
before(async () => {
  server = await startServer({ parallel: 2, ctx: CTX });
  client = server.client();
});
after(async () => { await server?.stop(); });

const PROMPT = 'Once upon a time';
// logit_bias bans the end-of-sequence token (id 2), so that the answer
// runs until a limit stops it.
const NO_EOS = { 2: -100 };

test('prompt plus max_tokens equal to the context runs to the last position', async () => {
  const probe = await client.completions.create({ model: server.model, prompt: PROMPT, max_tokens: 1 });
  const n = probe.usage.prompt_tokens;
  const r = await client.completions.create({ model: server.model, prompt: PROMPT, max_tokens: CTX - n, temperature: 0, logit_bias: NO_EOS });
  assert.equal(r.usage.completion_tokens, CTX - n);
  assert.equal(r.choices[0].finish_reason, 'length');
  const err = await client.completions.create({ model: server.model, prompt: PROMPT, max_tokens: CTX - n + 1 }).then(() => null, (e) => e);
  assert.ok(err instanceof OpenAI.BadRequestError, String(err));
  assert.ok(err.message.includes(String(n)) && err.message.includes(String(CTX - n + 1)) && err.message.includes(String(CTX)),
    `gives the prompt (${n}), max_tokens (${CTX - n + 1}) and the context (${CTX}): ${err.message}`);
});

test('without max_tokens a chat answer stops at the end of the context, with finish_reason "length"', async () => {
  for (const stream of [false, true]) {
    const body = { model: server.model, messages: [{ role: 'user', content: 'Tell me a story.' }], temperature: 0, logit_bias: NO_EOS };
    if (!stream) {
      const r = await client.chat.completions.create(body);
      assert.equal(r.usage.total_tokens, CTX, 'prompt and answer fill the context');
      assert.equal(r.choices[0].finish_reason, 'length');
    } else {
      const s = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
      let usage = null, finish = null;
      for await (const c of s) { if (c.usage) usage = c.usage; for (const ch of c.choices) if (ch.finish_reason) finish = ch.finish_reason; }
      assert.equal(usage.total_tokens, CTX);
      assert.equal(finish, 'length');
    }
  }
});

test('a prompt longer than the context is a 400 on every endpoint, not truncated', async () => {
  const long = 'the cat sat on the mat '.repeat(60);
  for (const call of [
    () => client.completions.create({ model: server.model, prompt: long, max_tokens: 1 }),
    () => client.chat.completions.create({ model: server.model, messages: [{ role: 'user', content: long }], max_tokens: 1 }),
    () => client.embeddings.create({ model: server.model, input: long, encoding_format: 'float' }),
  ]) {
    const err = await call().then(() => null, (e) => e);
    assert.ok(err instanceof OpenAI.BadRequestError, String(err));
    assert.ok(err.message.includes(String(CTX)), `gives the context size: ${err.message}`);
  }
});
