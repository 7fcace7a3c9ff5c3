// Constrained decoding: response_format json_object and json_schema, and
// tool calls through a template that supports tools (Hermes, from
// $EMBER_TEST_DATA/templates).  stories260K knows nothing of JSON, so every
// well-formed answer here is the grammar's doing.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startServer, TEMPLATES } from './lib/server.mjs';
import { collect } from './lib/sse.mjs';
import { validate } from './lib/schema.mjs';

let server, tools, qwen;
before(async () => {
  [server, tools, qwen] = await Promise.all([
    startServer({ parallel: 4 }),
    startServer({ parallel: 4, template: path.join(TEMPLATES, 'NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja') }),
    startServer({ parallel: 4, template: path.join(TEMPLATES, 'Qwen-Qwen2.5-7B-Instruct.jinja') }),
  ]);
});
after(async () => { await Promise.all([server?.stop(), tools?.stop(), qwen?.stop()]); });

const USER = [{ role: 'user', content: 'Describe a pet as JSON.' }];

// Bounded on every path (enums, lengths, item counts), so that an answer
// can always close within the token budget.
const PET = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 12 },
    kind: { type: 'string', enum: ['cat', 'dog', 'bird'] },
    age: { type: 'integer' },
    friendly: { type: 'boolean' },
    toys: { type: 'array', items: { type: 'string', maxLength: 8 }, maxItems: 3 },
  },
  required: ['name', 'kind', 'age', 'friendly', 'toys'],
  additionalProperties: false,
};

test('json_object: the answer parses as a JSON object', async () => {
  const client = server.client();
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model: server.model, messages: USER, response_format: { type: 'json_object' },
      temperature: 0.8, seed, max_tokens: 400,
    });
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'stop', `seed ${seed}: the object closes within 400 tokens: ${c.message.content}`);
    const v = JSON.parse(c.message.content);
    assert.ok(v !== null && typeof v === 'object' && !Array.isArray(v), `an object: ${c.message.content}`);
  }
});

test('json_schema: the answer parses and validates, greedy and sampled', async () => {
  const client = server.client();
  for (const extra of [{ temperature: 0 }, { temperature: 1.0, seed: 11 }, { temperature: 1.0, seed: 12 }]) {
    const r = await client.chat.completions.create({
      model: server.model, messages: USER, max_tokens: 300, ...extra,
      response_format: { type: 'json_schema', json_schema: { name: 'pet', schema: PET, strict: true } },
    });
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'stop', c.message.content);
    const v = JSON.parse(c.message.content);
    assert.deepEqual(validate(PET, v), [], `${c.message.content} validates`);
  }
});

test('json_schema on a stream and on /v1/completions', async () => {
  const s = await collect(server, '/v1/chat/completions', {
    model: server.model, messages: USER, max_tokens: 300, temperature: 0,
    response_format: { type: 'json_schema', json_schema: { name: 'pet', schema: PET } },
  });
  assert.equal(s.status, 200, s.body);
  const text = s.chunks.flatMap((c) => c.choices).map((c) => c.delta.content ?? '').join('');
  assert.deepEqual(validate(PET, JSON.parse(text)), []);
  const r = await server.postJSON('/v1/completions', {
    model: server.model, prompt: 'Once upon a time', max_tokens: 300, temperature: 0.7, seed: 5,
    response_format: { type: 'json_schema', json_schema: { name: 'pet', schema: PET } },
  });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(validate(PET, JSON.parse(r.json.choices[0].text)), []);
});

test('numeric bounds are enforced, or the schema is refused: never an answer that does not validate', async () => {
  const schema = { type: 'object', properties: { age: { type: 'integer', minimum: 10, maximum: 20 }, score: { type: 'number', minimum: 5, maximum: 6 } },
    required: ['age', 'score'], additionalProperties: false };
  for (const seed of [1, 2, 3, 4]) {
    const r = await server.postJSON('/v1/chat/completions', {
      model: server.model, messages: USER, max_tokens: 200, temperature: 1.0, seed,
      response_format: { type: 'json_schema', json_schema: { name: 'bounds', schema } },
    });
    if (r.status === 400) {
      assert.match(r.json.error.param ?? '', /^response_format/);
      return;
    }
    assert.equal(r.status, 200, r.text);
    const v = JSON.parse(r.json.choices[0].message.content);
    const problems = [];
    if (!(Number.isInteger(v.age) && v.age >= 10 && v.age <= 20)) problems.push(`age ${v.age} outside 10..20`);
    if (!(typeof v.score === 'number' && v.score >= 5 && v.score <= 6)) problems.push(`score ${v.score} outside 5..6`);
    assert.deepEqual(problems, [], `seed ${seed}: ${r.json.choices[0].message.content}`);
  }
});

test('an invalid json_schema is a 400 naming response_format', async () => {
  const r = await server.postJSON('/v1/chat/completions', {
    model: server.model, messages: USER,
    response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'no-such-type' } } },
  });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error.param ?? '', /^response_format/);
});

const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the weather for a city.',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string', description: 'The city name.', maxLength: 20 },
        unit: { type: 'string', description: 'The unit.', enum: ['celsius', 'fahrenheit'] },
      },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
};
const TIME = {
  type: 'function',
  function: {
    name: 'get_time',
    description: 'Get the time in a timezone.',
    parameters: {
      type: 'object',
      properties: { tz: { type: 'string', description: 'An IANA timezone.', maxLength: 30 } },
      required: ['tz'],
      additionalProperties: false,
    },
  },
};
const ASK = [{ role: 'user', content: 'What is the weather in Paris?' }];

function checkCall(call, fn) {
  assert.equal(call.type, 'function');
  assert.equal(typeof call.id, 'string');
  assert.ok(call.id.length > 0);
  assert.equal(call.function.name, fn.function.name);
  const args = JSON.parse(call.function.arguments);
  assert.deepEqual(validate(fn.function.parameters, args), [], `${call.function.arguments} validates`);
  return args;
}

test('a named tool_choice forces that call; its arguments follow the parameters schema (Hermes and Qwen 2.5 templates)', async () => {
  for (const [srv, fn, seed] of [[tools, WEATHER, 1], [tools, TIME, 2], [tools, WEATHER, 3], [qwen, WEATHER, 4], [qwen, TIME, 5]]) {
    const r = await srv.client().chat.completions.create({
      model: srv.model, messages: ASK, tools: [WEATHER, TIME], max_tokens: 300, temperature: 0.8, seed,
      tool_choice: { type: 'function', function: { name: fn.function.name } },
    });
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'tool_calls', JSON.stringify(c.message));
    assert.ok(Array.isArray(c.message.tool_calls) && c.message.tool_calls.length >= 1);
    checkCall(c.message.tool_calls[0], fn);
  }
});

test('tool_choice "required" calls one of the tools; "none" calls none', async () => {
  const client = tools.client();
  const r = await client.chat.completions.create({
    model: tools.model, messages: ASK, tools: [WEATHER, TIME], max_tokens: 300, temperature: 0, tool_choice: 'required',
  });
  const call = r.choices[0].message.tool_calls?.[0];
  assert.ok(call, JSON.stringify(r.choices[0].message));
  checkCall(call, call.function.name === 'get_time' ? TIME : WEATHER);
  const n = await client.chat.completions.create({
    model: tools.model, messages: ASK, tools: [WEATHER, TIME], max_tokens: 16, temperature: 0, tool_choice: 'none',
  });
  assert.ok(!n.choices[0].message.tool_calls?.length);
  assert.notEqual(n.choices[0].finish_reason, 'tool_calls');
});

test('tool_choice auto streams a text answer token by token, the same text as without streaming', async () => {
  const client = tools.client();
  const body = { model: tools.model, messages: ASK, tools: [WEATHER, TIME], max_tokens: 24, temperature: 0, tool_choice: 'auto' };
  const plain = await client.chat.completions.create(body);
  assert.equal(plain.choices[0].finish_reason, 'length');
  assert.ok(!plain.choices[0].message.tool_calls?.length);
  const s = await collect(tools, '/v1/chat/completions', { ...body, stream: true, logprobs: true });
  assert.equal(s.status, 200, s.body);
  const deltas = s.chunks.flatMap((c) => c.choices).map((c) => c.delta?.content).filter((t) => t);
  assert.ok(deltas.length >= 8, `the answer came in ${deltas.length} content deltas, not held to the end`);
  assert.equal(deltas.join(''), plain.choices[0].message.content);
  const entries = s.chunks.flatMap((c) => c.choices).flatMap((c) => c.logprobs?.content ?? []);
  assert.equal(entries.length, 24, 'every token\'s logprobs arrive with the deltas');
});

test('a forced tool call resolves $refs inside its parameters', async () => {
  const BOOK = {
    type: 'function',
    function: {
      name: 'book_room',
      description: 'Book a hotel room.',
      parameters: {
        $defs: { size: { type: 'string', enum: ['single', 'double'] }, nights: { type: 'integer', minimum: 1, maximum: 9 } },
        type: 'object',
        properties: { size: { $ref: '#/$defs/size' }, nights: { $ref: '#/$defs/nights' } },
        required: ['size', 'nights'],
        additionalProperties: false,
      },
    },
  };
  for (const seed of [1, 2]) {
    const r = await tools.postJSON('/v1/chat/completions', {
      model: tools.model, messages: [{ role: 'user', content: 'Book me a room for two nights.' }], tools: [BOOK, WEATHER],
      max_tokens: 200, temperature: 0.8, seed, tool_choice: { type: 'function', function: { name: 'book_room' } },
    });
    assert.equal(r.status, 200, r.text);
    const call = r.json.choices[0].message.tool_calls?.[0];
    assert.ok(call, r.text);
    assert.equal(call.function.name, 'book_room');
    const args = JSON.parse(call.function.arguments);
    assert.deepEqual(Object.keys(args).sort(), ['nights', 'size'], call.function.arguments);
    assert.ok(['single', 'double'].includes(args.size), call.function.arguments);
    assert.ok(Number.isInteger(args.nights) && args.nights >= 1 && args.nights <= 9, call.function.arguments);
  }
});

test('a forced tool call streams as tool_calls deltas whose arguments join to valid JSON', async () => {
  const s = await collect(tools, '/v1/chat/completions', {
    model: tools.model, messages: ASK, tools: [WEATHER], max_tokens: 300, temperature: 0,
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  assert.equal(s.status, 200, s.body);
  assert.ok(s.done);
  const calls = [];
  let finish = null;
  for (const c of s.chunks.flatMap((x) => x.choices)) {
    for (const d of c.delta.tool_calls ?? []) {
      const at = d.index ?? 0;
      calls[at] ??= { id: '', type: 'function', function: { name: '', arguments: '' } };
      if (d.id) calls[at].id = d.id;
      if (d.function?.name) calls[at].function.name += d.function.name;
      if (d.function?.arguments) calls[at].function.arguments += d.function.arguments;
    }
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.equal(finish, 'tool_calls');
  assert.equal(calls.length, 1);
  checkCall(calls[0], WEATHER);
});

test('a conversation with an assistant tool call and a tool result renders and answers', async () => {
  const client = tools.client();
  const r = await client.chat.completions.create({
    model: tools.model, max_tokens: 16, temperature: 0, tools: [WEATHER],
    messages: [
      ...ASK,
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"celsius"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temperature": 18}' },
    ],
    tool_choice: 'none',
  });
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(r.usage.prompt_tokens > 100, 'the tool definitions and the call are in the prompt');
});
