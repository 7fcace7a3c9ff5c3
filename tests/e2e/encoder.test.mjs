// /v1/embeddings on encoder models (bert, nomic-bert): the server pools
// their rows as the file says and gives the same vector as `ember embed`,
// also when the text is longer than one prefill chunk (an encoder's rows
// see the whole text, so its prompt must run in one step).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import OpenAI from 'openai';
import { DATA, startServer } from './lib/server.mjs';

const TEXT = 'The little girl played in the park with her dog, and then they went home for a long nap.';
const servers = [];
after(async () => { for (const s of servers) await s.stop(); });

const maxDiff = (a, b) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

for (const arch of ['bert', 'nomic-bert']) {
  const file = path.join(DATA, 'models', 'arch', `tiny-${arch}.gguf`);
  test(`${arch}: the served embedding equals ember embed's, across prefill chunks`, { skip: !existsSync(file) && `${file} missing` }, async () => {
    // --prefill 8 is far below the text's length in tokens.
    const server = await startServer({ modelPath: file, parallel: 2, extra: ['--prefill', '8'] });
    servers.push(server);
    const client = server.client();
    const r = await client.embeddings.create({ model: server.model, input: [TEXT, 'hello'], encoding_format: 'float' });
    assert.equal(r.data.length, 2);
    assert.equal(r.data[0].embedding.length, 128);
    assert.ok(r.usage.prompt_tokens > 16, `prompt_tokens ${r.usage.prompt_tokens}`);
    const ref = JSON.parse(execFileSync(process.env.EMBER_BIN, ['embed', '-m', file, '-p', TEXT, '-t', '1']).toString());
    assert.equal(ref.length, 128);
    assert.ok(maxDiff(r.data[0].embedding, ref) < 1e-5, `differs from ember embed by ${maxDiff(r.data[0].embedding, ref)}`);
    assert.ok(maxDiff(r.data[0].embedding, r.data[1].embedding) > 1e-3, 'two texts gave the same vector');

    // An encoder cannot generate: a 400 that says so.
    const err = await client.completions.create({ model: server.model, prompt: 'hi', max_tokens: 2 }).then(() => null, (e) => e);
    assert.ok(err instanceof OpenAI.BadRequestError, String(err));
    assert.match(err.message, /embedding model/);

    // Beyond the 512 learned positions: a 400 with both numbers, then the server still serves.
    const long = 'word '.repeat(700);
    const big = await client.embeddings.create({ model: server.model, input: long }).then(() => null, (e) => e);
    assert.ok(big instanceof OpenAI.BadRequestError, String(big));
    assert.match(big.message, /\d+ tokens.*512/);
    const again = await client.embeddings.create({ model: server.model, input: TEXT, encoding_format: 'float' });
    assert.ok(maxDiff(again.data[0].embedding, ref) < 1e-5);
  });
}
