// POST /v1/embeddings and GET /v1/models.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import { startServer } from './lib/server.mjs';

let server, client;
before(async () => {
  server = await startServer({ parallel: 4 });
  client = server.client();
});
after(async () => { await server?.stop(); });

const N_EMBD = 64; // stories260K's hidden size

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const maxDiff = (a, b) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

function embed(input, extra = {}) {
  return client.embeddings.create({ model: server.model, input, encoding_format: 'float', ...extra });
}

test('an embedding has the model\'s size, unit L2 norm and OpenAI\'s shape', async () => {
  const r = await embed('The little girl played in the park.');
  assert.equal(r.object, 'list');
  assert.equal(r.model, server.model);
  assert.equal(r.data.length, 1);
  assert.equal(r.data[0].object, 'embedding');
  assert.equal(r.data[0].index, 0);
  const v = r.data[0].embedding;
  assert.equal(v.length, N_EMBD);
  assert.ok(v.every(Number.isFinite));
  assert.ok(Math.abs(norm(v) - 1) < 1e-4, `norm ${norm(v)}`);
  assert.ok(r.usage.prompt_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens);
});

test('embeddings are deterministic, in a batch too, and differ between texts', async () => {
  const a = (await embed('A cat sat on the mat.')).data[0].embedding;
  const again = (await embed('A cat sat on the mat.')).data[0].embedding;
  assert.deepEqual(again, a);
  const batch = await embed(['A cat sat on the mat.', 'The dog ran away.', 'A cat sat on the mat.']);
  assert.deepEqual(batch.data.map((d) => d.index), [0, 1, 2]);
  assert.ok(maxDiff(batch.data[0].embedding, a) < 1e-5, 'a batch gives the single answer');
  assert.deepEqual(batch.data[2].embedding, batch.data[0].embedding);
  assert.ok(maxDiff(batch.data[1].embedding, a) > 1e-3, 'two texts, two vectors');
  for (const d of batch.data) assert.ok(Math.abs(norm(d.embedding) - 1) < 1e-4);
});

test('base64 encoding (the openai client\'s default) gives the same floats', async () => {
  const f = (await embed('Hello world')).data[0].embedding;
  const raw = await server.postJSON('/v1/embeddings', { model: server.model, input: 'Hello world', encoding_format: 'base64' });
  assert.equal(raw.status, 200, raw.text);
  const buf = Buffer.from(raw.json.data[0].embedding, 'base64');
  assert.equal(buf.length, N_EMBD * 4);
  const decoded = Array.from({ length: N_EMBD }, (_, i) => buf.readFloatLE(i * 4));
  assert.ok(maxDiff(decoded, f) < 1e-6);
  const viaDefault = await client.embeddings.create({ model: server.model, input: 'Hello world' });
  assert.ok(maxDiff(Array.from(viaDefault.data[0].embedding), f) < 1e-6);
});

test('token-id input', async () => {
  const r = await embed([1, 400, 401, 402]);
  assert.equal(r.data.length, 1);
  assert.equal(r.usage.prompt_tokens, 4);
  const two = await embed([[1, 400], [1, 401, 402]]);
  assert.equal(two.data.length, 2);
  assert.equal(two.usage.prompt_tokens, 5);
});

test('bad embeddings requests are 400s naming input or encoding_format', async () => {
  for (const [body, param] of [
    [{ input: '' }, 'input'],
    [{ input: [] }, 'input'],
    [{ input: 5 }, 'input'],
    [{ input: [{}] }, 'input'],
    [{ input: 'x', encoding_format: 'hex' }, 'encoding_format'],
    [{}, 'input'],
  ]) {
    const err = await client.embeddings.create({ model: server.model, encoding_format: 'float', ...body }).then(() => null, (e) => e);
    assert.ok(err instanceof OpenAI.BadRequestError, `${JSON.stringify(body)}: ${err}`);
    assert.equal(err.status, 400);
    assert.match(err.param ?? '', new RegExp(`^${param}`), `${JSON.stringify(body)} names ${param}: ${err.message}`);
  }
});

test('GET /v1/models lists the served model; /v1/models/ID returns it', async () => {
  const list = await client.models.list();
  assert.equal(list.data.length, 1);
  const m = list.data[0];
  assert.equal(m.id, 'stories260K');
  assert.equal(m.object, 'model');
  assert.equal(typeof m.owned_by, 'string');
  assert.ok(Number.isInteger(m.created));
  const one = await client.models.retrieve(m.id);
  assert.equal(one.id, m.id);
  const err = await client.models.retrieve('no-such-model').then(() => null, (e) => e);
  assert.ok(err instanceof OpenAI.NotFoundError, String(err));
});
