// Tools through the built-in templates, the fallbacks for a model without
// a template of its own (stories260K has none): each built-in renders the
// tools, an earlier call and its result (chatml, llama2 and gemma in the
// Hermes convention, llama3 in Llama 3.1's, mistral in Mistral's), and a
// forced call comes back as tool_calls whose id the next turn accepts.
// The model cannot call a tool by itself, so the parsing of a call it
// writes is tests/unit/test_chat.c's (test_builtin_tools).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startServer } from './lib/server.mjs';
import { collect } from './lib/sse.mjs';
import { validate } from './lib/schema.mjs';

const BUILTINS = ['chatml', 'llama2', 'llama3', 'gemma', 'mistral'];
const servers = {};
before(async () => {
  const started = await Promise.all(BUILTINS.map((template) => startServer({ parallel: 2, ctx: 4096, template })));
  BUILTINS.forEach((name, i) => { servers[name] = started[i]; });
});
after(async () => { await Promise.all(Object.values(servers).map((s) => s.stop())); });

const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the weather for a city.',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string', description: 'The city name.', maxLength: 12 },
        unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
      },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
};
const ASK = [{ role: 'system', content: 'You are helpful.' }, { role: 'user', content: 'What is the weather in Paris?' }];

test('every built-in renders the tools into the prompt, and a conversation without tools as before', async () => {
  for (const name of BUILTINS) {
    const client = servers[name].client();
    const base = { model: servers[name].model, messages: ASK, max_tokens: 4, temperature: 0 };
    const plain = await client.chat.completions.create(base);
    const withTools = await client.chat.completions.create({ ...base, tools: [WEATHER] });
    assert.ok(withTools.usage.prompt_tokens > plain.usage.prompt_tokens + 50,
      `${name}: the tools are in the prompt (${plain.usage.prompt_tokens} -> ${withTools.usage.prompt_tokens} tokens)`);
    // tool_choice "none" renders no tools, so the prompt is the plain one.
    const none = await client.chat.completions.create({ ...base, tools: [WEATHER], tool_choice: 'none' });
    assert.equal(none.usage.prompt_tokens, plain.usage.prompt_tokens, name);
    assert.equal(none.choices[0].message.content, plain.choices[0].message.content, name);
  }
});

test('a forced call comes back as tool_calls, and the next turn renders it and its result', async () => {
  for (const name of BUILTINS) {
    const srv = servers[name];
    const client = srv.client();
    const r = await client.chat.completions.create({
      model: srv.model, messages: ASK, tools: [WEATHER], max_tokens: 200, temperature: 0,
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
    });
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'tool_calls', `${name}: ${JSON.stringify(c.message)}`);
    assert.equal(c.message.tool_calls.length, 1);
    const call = c.message.tool_calls[0];
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(validate(WEATHER.function.parameters, JSON.parse(call.function.arguments)), [], call.function.arguments);
    // Mistral's convention wants ids of 9 alphanumerics; the others get call_ and 9.
    assert.match(call.id, name === 'mistral' ? /^[0-9A-Za-z]{9}$/ : /^call_[0-9A-Za-z]{9}$/, name);
    const next = await client.chat.completions.create({
      model: srv.model, tools: [WEATHER], max_tokens: 4, temperature: 0,
      messages: [...ASK, c.message, { role: 'tool', tool_call_id: call.id, content: '{"temperature": 18}' }],
    });
    assert.equal(typeof next.choices[0].message.content, 'string', `${name}: ${JSON.stringify(next.choices[0])}`);
    assert.ok(next.usage.prompt_tokens > r.usage.prompt_tokens, `${name}: the call and its result are in the prompt`);
  }
});

test('a forced call streams as tool_calls deltas through a built-in', async () => {
  for (const name of ['chatml', 'llama3', 'mistral']) {
    const s = await collect(servers[name], '/v1/chat/completions', {
      model: servers[name].model, messages: ASK, tools: [WEATHER], max_tokens: 200, temperature: 0, tool_choice: 'required',
    });
    assert.equal(s.status, 200, s.body);
    let args = '', fn = '', finish = null;
    for (const c of s.chunks.flatMap((x) => x.choices)) {
      for (const d of c.delta.tool_calls ?? []) {
        fn += d.function?.name ?? '';
        args += d.function?.arguments ?? '';
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
    assert.equal(finish, 'tool_calls', name);
    assert.equal(fn, 'get_weather', name);
    assert.deepEqual(validate(WEATHER.function.parameters, JSON.parse(args)), [], args);
  }
});

test('the llama3 built-in refuses two calls in one assistant message with a 400 that says why', async () => {
  const srv = servers.llama3;
  const call = (id, city) => ({ id, type: 'function', function: { name: 'get_weather', arguments: JSON.stringify({ city, unit: 'celsius' }) } });
  const r = await srv.postJSON('/v1/chat/completions', {
    model: srv.model, tools: [WEATHER], max_tokens: 4,
    messages: [...ASK, { role: 'assistant', content: null, tool_calls: [call('call_a', 'Paris'), call('call_b', 'Rome')] }],
  });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error.message, /one tool call per assistant message/);
});
