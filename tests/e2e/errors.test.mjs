// Errors in OpenAI's shape, seen through the openai client's error classes
// (status, param, code), and CORS.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import { startServer } from './lib/server.mjs';

const ORIGIN = 'https://app.example';
let server, cors, client;
before(async () => {
  [server, cors] = await Promise.all([startServer({ parallel: 4 }), startServer({ cors: [ORIGIN, 'http://localhost:3000'] })]);
  client = server.client();
});
after(async () => { await Promise.all([server?.stop(), cors?.stop()]); });

const MESSAGES = [{ role: 'user', content: 'Hello' }];

// Resolves to the error the call threw (null when it succeeded).
const failure = (p) => p.then(() => null, (e) => e);

function checkShape(body, status) {
  assert.ok(body && typeof body.error === 'object', `an OpenAI error body: ${JSON.stringify(body)}`);
  assert.equal(typeof body.error.message, 'string');
  assert.ok(body.error.message.length > 0);
  assert.equal(typeof body.error.type, 'string');
  assert.ok('param' in body.error && 'code' in body.error, 'param and code are present (null when not applicable)');
  if (status >= 500) assert.equal(body.error.type, 'server_error');
}

test('401 without a key, with a wrong key, and on /metrics; /health needs none', async () => {
  const wrong = server.client({ apiKey: 'sk-wrong' });
  const err = await failure(wrong.chat.completions.create({ model: server.model, messages: MESSAGES, max_tokens: 4 }));
  assert.ok(err instanceof OpenAI.AuthenticationError, String(err));
  assert.equal(err.status, 401);
  checkShape({ error: err.error }, 401);
  const almost = server.client({ apiKey: server.apiKey.slice(0, -1) });
  assert.ok((await failure(almost.models.list())) instanceof OpenAI.AuthenticationError, 'a key one character short');
  const longer = server.client({ apiKey: server.apiKey + 'x' });
  assert.ok((await failure(longer.models.list())) instanceof OpenAI.AuthenticationError, 'a key one character longer');
  for (const [route, init] of [
    ['/v1/chat/completions', { method: 'POST', body: JSON.stringify({ model: server.model, messages: MESSAGES }) }],
    ['/v1/models', {}], ['/metrics', {}], ['/v1/embeddings', { method: 'POST', body: '{}' }],
  ]) {
    const res = await fetch(server.url + route, { ...init, headers: { 'content-type': 'application/json' } });
    assert.equal(res.status, 401, route);
    checkShape(await res.json(), 401);
  }
  const basic = await fetch(server.url + '/v1/models', { headers: { authorization: `Basic ${server.apiKey}` } });
  assert.equal(basic.status, 401, 'only Bearer');
  const health = await fetch(server.url + '/health');
  assert.equal(health.status, 200);
  // The scheme name is case-insensitive (RFC 9110, 11.1).
  for (const scheme of ['bearer', 'BEARER']) {
    const res = await fetch(server.url + '/v1/models', { headers: { authorization: `${scheme} ${server.apiKey}` } });
    assert.equal(res.status, 200, `scheme spelt ${scheme}`);
  }
});

test('404 for an unknown model and an unknown route', async () => {
  const err = await failure(client.chat.completions.create({ model: 'gpt-4o', messages: MESSAGES, max_tokens: 4 }));
  assert.ok(err instanceof OpenAI.NotFoundError, String(err));
  assert.equal(err.status, 404);
  assert.ok(err.param === 'model' || err.code === 'model_not_found', `names the model: ${err.message}`);
  const c = await failure(client.completions.create({ model: 'gpt-4o', prompt: 'x', max_tokens: 4 }));
  assert.ok(c instanceof OpenAI.NotFoundError);
  const e = await failure(client.embeddings.create({ model: 'gpt-4o', input: 'x' }));
  assert.ok(e instanceof OpenAI.NotFoundError);
  for (const route of ['/v1/nope', '/v2/chat/completions', '/', '/v1/chat/completions/extra']) {
    const res = await server.fetch(route);
    assert.equal(res.status, 404, route);
    checkShape(await res.json(), 404);
  }
  const get = await server.fetch('/v1/chat/completions');
  assert.ok([404, 405].includes(get.status), `GET on a POST route: ${get.status}`);
  checkShape(await get.json(), get.status);
});

// [field, wrong value, expected param] for the chat endpoint.
const WRONG = [
  ['model', 5, 'model'],
  ['messages', 'hello', 'messages'],
  ['messages', [], 'messages'],
  ['messages', [{ role: 'robot', content: 'x' }], 'messages[0].role'],
  ['messages', [{ role: 'user', content: 5 }], 'messages[0].content'],
  ['messages', [{ role: 'user' }, 'x'], 'messages'],
  ['max_tokens', 'ten', 'max_tokens'],
  ['max_tokens', 0, 'max_tokens'],
  ['max_tokens', 2.5, 'max_tokens'],
  ['max_completion_tokens', -1, 'max_completion_tokens'],
  ['temperature', 'hot', 'temperature'],
  ['temperature', 5, 'temperature'],
  ['top_p', 'x', 'top_p'],
  ['top_p', 1.5, 'top_p'],
  ['seed', 'x', 'seed'],
  ['presence_penalty', 'x', 'presence_penalty'],
  ['frequency_penalty', 9, 'frequency_penalty'],
  ['logit_bias', [1, 2], 'logit_bias'],
  ['logit_bias', { x: 1 }, 'logit_bias'],
  ['logit_bias', { 5: 'x' }, 'logit_bias'],
  ['n', 0, 'n'],
  ['n', 1.5, 'n'],
  ['n', 'two', 'n'],
  ['stop', 5, 'stop'],
  ['stop', [1, 2], 'stop'],
  ['logprobs', 'yes', 'logprobs'],
  ['top_logprobs', 'x', 'top_logprobs'],
  ['top_logprobs', 50, 'top_logprobs'],
  ['stream_options', 'x', 'stream_options'],
  ['response_format', 'json', 'response_format'],
  ['response_format', { type: 'xml' }, 'response_format'],
  ['tools', {}, 'tools'],
  ['tools', [{ type: 'function' }], 'tools'],
  ['tool_choice', 5, 'tool_choice'],
];

test('400 naming the field for each wrong type or value (openai client)', async () => {
  for (const [field, value, param] of WRONG) {
    const body = { model: server.model, messages: MESSAGES, max_tokens: 4, [field]: value };
    const err = await failure(client.chat.completions.create(body));
    assert.ok(err instanceof OpenAI.BadRequestError, `${field}=${JSON.stringify(value)}: ${err}`);
    assert.equal(err.status, 400);
    assert.equal(err.type, 'invalid_request_error');
    assert.ok((err.param ?? '').startsWith(param), `${field}=${JSON.stringify(value)}: param ${err.param}, want ${param}`);
    assert.ok(err.message.length > 10);
  }
});

test('400s on /v1/completions: prompt, logprobs, stream', async () => {
  for (const [field, value] of [['prompt', 5], ['prompt', [{}]], ['prompt', [1, 'x']], ['logprobs', 'x'], ['logprobs', 99], ['stream', 'yes'], ['echo', 'x'], ['max_tokens', 'x']]) {
    const r = await server.postJSON('/v1/completions', { model: server.model, prompt: 'x', max_tokens: 4, [field]: value });
    assert.equal(r.status, 400, `${field}=${JSON.stringify(value)}: ${r.text}`);
    checkShape(r.json, 400);
    assert.ok((r.json.error.param ?? '').startsWith(field), `${field}: param ${r.json.error.param}`);
  }
  const missing = await server.postJSON('/v1/completions', { model: server.model });
  assert.equal(missing.status, 400);
  assert.equal(missing.json.error.param, 'prompt');
});

test('unknown fields are ignored', async () => {
  const r = await client.chat.completions.create({ model: server.model, messages: MESSAGES, max_tokens: 2, user: 'u1', metadata: { a: 1 }, some_future_field: [1, { b: 2 }] });
  assert.equal(r.usage.completion_tokens, 2);
});

test('a prompt plus max_tokens beyond the context is a 400 giving both numbers', async () => {
  const ok = await client.chat.completions.create({ model: server.model, messages: MESSAGES, max_tokens: 1 });
  const prompt = ok.usage.prompt_tokens;
  for (const field of ['max_tokens', 'max_completion_tokens']) {
    const err = await failure(client.chat.completions.create({ model: server.model, messages: MESSAGES, [field]: 1_000_000 }));
    assert.ok(err instanceof OpenAI.BadRequestError, String(err));
    assert.ok(err.message.includes(String(prompt)), `gives the prompt's ${prompt} tokens: ${err.message}`);
    assert.ok(/1,?000,?000/.test(err.message), `gives max tokens: ${err.message}`);
  }
  // A prompt longer than the whole context, with a small max_tokens: never truncated.
  const long = 'The cat sat on the mat and looked at the dog. '.repeat(400);
  const err = await failure(client.completions.create({ model: server.model, prompt: long, max_tokens: 4 }));
  assert.ok(err instanceof OpenAI.BadRequestError, String(err));
  assert.match(err.message, /\d{4,}/, `gives the prompt's length: ${err.message}`);
});

test('413 for a body over the limit, through the client and raw', async () => {
  // A client writes the whole body before it reads the answer: the server
  // must let it (read and drop the rest) for the client to see the 413
  // rather than a reset connection.  Three tries each, since a reset is a
  // race.
  const huge = 'a'.repeat(16 * 1024 * 1024 + 1);
  for (let k = 0; k < 3; k++) {
    const err = await failure(client.chat.completions.create({ model: server.model, messages: [{ role: 'user', content: huge }], max_tokens: 1 }));
    assert.ok(err instanceof OpenAI.APIError && err.status === 413, `try ${k}: a 413 APIError: ${err} ${err?.cause?.cause?.code ?? err?.cause?.code ?? ''}`);
    const res = await server.fetch('/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: server.model, prompt: huge }) }).catch((e) => e);
    assert.equal(res.status, 413, `try ${k}: ${res} ${res?.cause?.code ?? ''}`);
    checkShape(await res.json(), 413);
  }
  const after = await client.chat.completions.create({ model: server.model, messages: MESSAGES, max_tokens: 2 });
  assert.equal(after.usage.completion_tokens, 2);
});

test('CORS: no header by default, even for a request with an Origin', async () => {
  const res = await server.fetch('/v1/models', { headers: { origin: ORIGIN } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('access-control-allow-origin'), null);
  const pre = await fetch(server.url + '/v1/chat/completions', {
    method: 'OPTIONS', headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
  });
  assert.equal(pre.headers.get('access-control-allow-origin'), null);
});

test('CORS: an allowed origin is reflected, others get nothing, never *', async () => {
  const allowed = await cors.fetch('/v1/models', { headers: { origin: ORIGIN } });
  assert.equal(allowed.status, 200);
  assert.equal(allowed.headers.get('access-control-allow-origin'), ORIGIN);
  assert.match(allowed.headers.get('vary') ?? '', /origin/i);
  const second = await cors.fetch('/v1/models', { headers: { origin: 'http://localhost:3000' } });
  assert.equal(second.headers.get('access-control-allow-origin'), 'http://localhost:3000');
  for (const origin of ['https://evil.example', 'https://app.example.evil', 'http://app.example', 'null']) {
    const res = await cors.fetch('/v1/models', { headers: { origin } });
    assert.equal(res.headers.get('access-control-allow-origin'), null, origin);
  }
  const pre = await fetch(cors.url + '/v1/chat/completions', {
    method: 'OPTIONS', headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
  });
  assert.ok([200, 204].includes(pre.status), `preflight ${pre.status}`);
  assert.equal(pre.headers.get('access-control-allow-origin'), ORIGIN);
  assert.match(pre.headers.get('access-control-allow-methods') ?? '', /POST/);
  assert.match(pre.headers.get('access-control-allow-headers') ?? '', /authorization/i);
  const bad = await fetch(cors.url + '/v1/chat/completions', {
    method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
  });
  assert.equal(bad.headers.get('access-control-allow-origin'), null);
  // Errors carry the header too, so that a browser can read them.
  const err = await fetch(cors.url + '/v1/models', { headers: { origin: ORIGIN } });
  assert.equal(err.status, 401);
  assert.equal(err.headers.get('access-control-allow-origin'), ORIGIN);
});

test('a full queue is a 503 with Retry-After (openai InternalServerError), and the server recovers', async () => {
  const small = await startServer({ parallel: 1, extra: ['--queue', '1'] });
  try {
    const c = small.client();
    // Eight long requests at once on one sequence and a queue of one: one
    // runs, one waits, and the others are refused at once.
    const acs = [];
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => {
      const ac = new AbortController();
      acs.push(ac);
      return c.completions.create({ model: small.model, prompt: `Once ${i}`, max_tokens: 2000, logit_bias: { 2: -100 }, stream: true },
        { signal: ac.signal }).then((s) => ({ stream: s }), (e) => ({ error: e }));
    }));
    const refused = results.filter((r) => r.error);
    assert.ok(refused.length >= 1, 'some requests are refused');
    for (const { error: err } of refused) {
      assert.ok(err instanceof OpenAI.InternalServerError, String(err));
      assert.equal(err.status, 503);
      assert.equal(err.code, 'queue_full');
      assert.ok(Number(err.headers.get('retry-after')) >= 1, 'Retry-After in seconds');
    }
    assert.ok(results.filter((r) => r.stream).length <= 2 + 1, 'at most the running, the queued and one that took a freed place');
    for (const ac of acs) ac.abort();
    // Once they are cancelled there is room again.
    let ok = null;
    for (let k = 0; k < 100 && !ok; k++) {
      ok = await c.completions.create({ model: small.model, prompt: 'x', max_tokens: 2 }).catch(() => null);
      if (!ok) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(ok, 'the server serves again');
  } finally {
    await small.stop();
  }
});
