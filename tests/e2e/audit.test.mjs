// Defects found by checking `ember serve` against issue 11's list end to
// end (session 14's audit), one test each, with the official openai client
// where it can send the request.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startServer, TEMPLATES } from './lib/server.mjs';
import * as prom from './lib/prom.mjs';
import { events } from './lib/sse.mjs';

let mistral, cohere, small;
before(async () => {
  [mistral, cohere, small] = await Promise.all([
    startServer({ parallel: 2, ctx: 2048, template: path.join(TEMPLATES, 'mistralai-Mistral-Nemo-Instruct-2407.jinja') }),
    startServer({ parallel: 2, ctx: 6144, template: path.join(TEMPLATES, 'CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja') }),
    startServer({ parallel: 2, extra: ['--queue', '2'] }),
  ]);
});
after(async () => { await Promise.all([mistral?.stop(), cohere?.stop(), small?.stop()]); });

const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 8 } },
      required: ['city'],
      additionalProperties: false,
    },
  },
};
const ASK = [{ role: 'user', content: 'What is the weather in Paris?' }];

// A client sends the assistant message back as it came, with the tool's
// result under the call's id: the next turn must render through the same
// template.  Mistral's template refuses ids that are not 9 alphanumeric
// characters; ids must also differ between answers, or a template that
// matches results to calls by id (Command R7B's) mixes them up.
test('tool-call ids survive the next turn through the template, and never repeat', async () => {
  for (const srv of [mistral, cohere]) {
    const client = srv.client();
    const ids = new Set();
    for (let round = 0; round < 2; round++) {
      const r = await client.chat.completions.create({
        model: srv.model, messages: ASK, tools: [WEATHER], tool_choice: 'required', max_tokens: 200, temperature: 0,
      });
      const msg = r.choices[0].message;
      assert.equal(r.choices[0].finish_reason, 'tool_calls', JSON.stringify(r.choices[0]));
      const call = msg.tool_calls[0];
      assert.ok(!ids.has(call.id), `id ${call.id} was handed out before`);
      ids.add(call.id);
      if (srv === mistral) assert.match(call.id, /^[A-Za-z0-9]{9}$/);
      const next = await client.chat.completions.create({
        model: srv.model, tools: [WEATHER], tool_choice: 'none', max_tokens: 4, temperature: 0,
        messages: [...ASK, msg, { role: 'tool', tool_call_id: call.id, content: '{"temperature": 18}' }],
      });
      assert.equal(typeof next.choices[0].message.content, 'string');
    }
  }
});

// OpenAI takes up to 2048 inputs in one embeddings request.  They must not
// all have to fit in the queue at once: on an idle server with a queue of 2
// a request of 20 inputs is answered, every vector at its index.
test('an embeddings request with more inputs than the queue holds is answered in full', async () => {
  const client = small.client();
  const input = Array.from({ length: 20 }, (_, i) => `Input number ${i} is about a cat.`);
  const r = await client.embeddings.create({ model: small.model, input });
  assert.equal(r.data.length, input.length);
  r.data.forEach((d, i) => assert.equal(d.index, i));
  const one = await client.embeddings.create({ model: small.model, input: input[7] });
  assert.deepEqual(r.data[7].embedding, one.data[0].embedding);
  const m = await small.metricsText();
  assert.match(m, /^ember_kv_blocks_used 0$/m);
});

// text_offset is where each token starts in choices[i].text; with echo
// that text opens with the prompt, so the first generated token starts
// after it (OpenAI's legacy shape), streamed or not.
test('with echo, text_offset indexes the returned text, prompt included', async () => {
  const client = small.client();
  const prompt = 'Once upon a time';
  const body = { model: small.model, prompt, echo: true, logprobs: 1, max_tokens: 6, temperature: 0 };
  const r = await client.completions.create(body);
  const { text, logprobs: lp } = r.choices[0];
  assert.ok(text.startsWith(prompt));
  assert.equal(lp.text_offset[0], prompt.length);
  lp.tokens.forEach((t, i) => assert.equal(text.slice(lp.text_offset[i], lp.text_offset[i] + t.length), t));
  const offsets = [];
  for await (const chunk of await client.completions.create({ ...body, stream: true }))
    offsets.push(...(chunk.choices[0].logprobs?.text_offset ?? []));
  assert.deepEqual(offsets, lp.text_offset);
});

// 2^63 written as a real is an integer to JSON but not an int64: the
// conversion would be undefined behaviour, so it is a 400 naming the field.
test('a seed of 2^63 written as a real is a 400, not a wrapped seed', async () => {
  for (const seed of ['9223372036854775808.0', '9.3e18', '-9.3e18']) {
    const r = await small.postJSON('/v1/completions',
      `{"model": "${small.model}", "prompt": "Once", "max_tokens": 2, "seed": ${seed}}`);
    assert.equal(r.status, 400, `${seed}: ${r.text}`);
    assert.equal(r.json.error.param, 'seed');
  }
  const ok = await small.postJSON('/v1/completions',
    `{"model": "${small.model}", "prompt": "Once", "max_tokens": 2, "seed": 9223372036854775807}`);
  assert.equal(ok.status, 200, ok.text);
});

// A completions request may carry up to 64 prompts, each its own engine
// request.  On an idle server whose queue holds 2, ten prompts must still
// be answered (the later ones wait for the earlier ones), streamed or not,
// each choice equal to its prompt's answer alone.
test('a completions request with more prompts than the queue holds is answered in full', async () => {
  const client = small.client();
  const prompt = Array.from({ length: 10 }, (_, i) => `Once upon a time ${i}`);
  const body = { model: small.model, prompt, max_tokens: 6, temperature: 0 };
  const r = await client.completions.create(body);
  assert.equal(r.choices.length, 10);
  const alone = await client.completions.create({ ...body, prompt: prompt[9] });
  assert.equal(r.choices.find((c) => c.index === 9).text, alone.choices[0].text);
  const texts = new Array(10).fill('');
  let finished = 0;
  for await (const chunk of await client.completions.create({ ...body, stream: true })) {
    for (const c of chunk.choices) {
      texts[c.index] += c.text;
      if (c.finish_reason) finished++;
    }
  }
  assert.equal(finished, 10);
  r.choices.forEach((c) => assert.equal(texts[c.index], c.text));
  assert.match(await small.metricsText(), /^ember_kv_blocks_used 0$/m);
});

// A request the shutdown timeout cuts short was not failed by the server's
// fault: it is a 503 (code shutting_down, with Retry-After), which clients
// retry, not a 500, streamed (as the last event) or not.
test('requests cut by the shutdown timeout get a 503 shutting_down, not a 500', async () => {
  const server = await startServer({ parallel: 2, ctx: 32768, extra: ['--shutdown-timeout', '0'] });
  try {
    // The end-of-sequence token (id 2) is banned and the context is long (32000
    // tokens, seconds of generation even for this model): both run until the signal.
    const send = (stream) => server.fetch('/v1/completions', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: server.model, prompt: 'Once upon a time', max_tokens: 32000, logit_bias: { 2: -100 }, stream }),
    });
    const plain = send(false);
    for (let k = 0; k < 400; k++) {
      if (prom.value(prom.parse(await server.metricsText()), 'ember_active_sequences') >= 1) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const res = await send(true);
    assert.equal(res.status, 200);
    const seen = [];
    for await (const data of events(res)) {
      if (!seen.length) server.proc.kill('SIGTERM');
      seen.push(data);
    }
    assert.equal(seen[seen.length - 1], '[DONE]');
    const last = JSON.parse(seen[seen.length - 2]);
    assert.equal(last.error?.code, 'shutting_down', seen[seen.length - 2]);
    const p = await plain;
    const body = await p.json();
    assert.equal(p.status, 503, JSON.stringify(body));
    assert.equal(body.error.code, 'shutting_down');
    assert.equal(p.headers.get('retry-after'), '1');
    assert.deepEqual(await server.exited, { code: 0, signal: null });
  } finally {
    await server.stop();
  }
});

// Batching invariance on a quantized model (batching.test.mjs uses F32
// stories260K): prompts prefilled in one step must answer as they do one at
// a time.  A Q8_0 model's last layer once read stale quantized inputs for
// Wo whenever a prompt step held several sequences.
test('concurrent greedy prompts on a Q8_0 model answer as they do alone', async () => {
  const q8 = await startServer({ parallel: 8, ctx: 512, modelPath: path.join(process.env.EMBER_TEST_DATA, 'models', 'tiny-256', 'tiny-256-Q8_0.gguf') });
  try {
    const client = q8.client();
    const prompts = ['The cat', 'The dog ran', 'A bird flew over the', 'Once', 'She said', 'Tom had a big red', 'It was', 'The sun'];
    const one = (prompt) => client.completions.create({ model: q8.model, prompt, max_tokens: 12, temperature: 0, logprobs: 1 })
      .then((r) => ({ text: r.choices[0].text, first: r.choices[0].logprobs.token_logprobs[0] }));
    const alone = [];
    for (const p of prompts) alone.push(await one(p));
    const together = await Promise.all(prompts.map(one));
    prompts.forEach((p, i) => assert.deepEqual(together[i], alone[i], `prompt ${JSON.stringify(p)}`));
  } finally {
    await q8.stop();
  }
});
