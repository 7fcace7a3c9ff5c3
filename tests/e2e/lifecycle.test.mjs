// The server's life: refusing to start on bad options, the key from a
// file, and a graceful SIGTERM that lets the request in flight finish.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { freePort, MODEL_PATH, startServer } from './lib/server.mjs';
import { events } from './lib/sse.mjs';
import * as prom from './lib/prom.mjs';

// Runs `ember serve ARGS` expecting it to exit by itself (within 30 s) and
// returns its exit code and output.
function runToExit(args) {
  return new Promise((resolve) => {
    const proc = spawn(process.env.EMBER_BIN, ['serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d) => { out += d; });
    proc.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
    proc.on('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal, out }); });
  });
}

test('bad options are refused with a message and a non-zero exit', async () => {
  const port = String(await freePort());
  const cases = [
    [['-m', '/nonexistent/model.gguf', '--port', port], /nonexistent/],
    [['-m', MODEL_PATH, '--port', port, '--chat-template', 'no-such-template'], /template/i],
    [['-m', MODEL_PATH, '--port', 'eighty'], /port/i],
    [['-m', MODEL_PATH, '--port', port, '--parallel', '0'], /parallel/i],
    [['-m', MODEL_PATH, '--port', port, '--api-key-file', '/nonexistent/key'], /nonexistent|key/i],
    [['--port', port], /-m|model/i],
  ];
  for (const [args, pattern] of cases) {
    const r = await runToExit(args);
    assert.ok(r.code !== 0 && r.code !== null, `${args.join(' ')}: exit ${r.code} ${r.signal}`);
    assert.match(r.out, pattern, `${args.join(' ')}: ${r.out}`);
  }
});

test('a port already in use is an error, not a hang', async () => {
  const blocker = net.createServer();
  await new Promise((r) => blocker.listen(0, '127.0.0.1', r));
  const { port } = blocker.address();
  try {
    const r = await runToExit(['-m', MODEL_PATH, '--host', '127.0.0.1', '--port', String(port), '--chat-template', 'chatml']);
    assert.ok(r.code !== 0 && r.code !== null, `exit ${r.code} ${r.signal}: ${r.out}`);
  } finally {
    blocker.close();
  }
});

test('--api-key-file reads the key from the file', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ember-e2e-'));
  const file = path.join(dir, 'key');
  writeFileSync(file, 'sk-from-file-123\n');
  const server = await startServer({ keyFile: file, apiKey: 'sk-from-file-123' });
  try {
    const ok = await server.client().models.list();
    assert.equal(ok.data.length, 1);
    const wrong = await fetch(`${server.url}/v1/models`, { headers: { authorization: 'Bearer sk-other' } });
    assert.equal(wrong.status, 401);
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SIGTERM lets the requests in flight finish (streams to data: [DONE]), then the server exits 0', async () => {
  const server = await startServer({ parallel: 2 });
  try {
    const send = (i, stream) => server.fetch('/v1/completions', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: server.model, prompt: `Once upon a time ${i}`, max_tokens: 600, temperature: 0, stream }),
    });
    // Three streams and a plain request on two sequences: one waits in the
    // queue when the signal comes.
    const streamsP = [0, 1, 2].map((i) => send(i, true));
    const plain = send(3, false).then(async (r) => ({ status: r.status, json: await r.json() }));
    // Signal once the engine holds all four (running or queued).
    for (let k = 0; k < 400; k++) {
      const m = prom.parse(await server.metricsText());
      if (prom.value(m, 'ember_active_sequences') + prom.value(m, 'ember_queue_depth') >= 4) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    server.proc.kill('SIGTERM');
    const streams = await Promise.all(streamsP);
    const results = await Promise.all(streams.map(async (res) => {
      assert.equal(res.status, 200);
      const seen = [];
      try {
        for await (const data of events(res)) seen.push(data);
      } catch (e) {
        return { seen, error: `${e.message} ${e.cause?.code ?? ''}` };
      }
      return { seen, error: null };
    }));
    for (const [i, r] of results.entries()) {
      assert.equal(r.error, null, `stream ${i} broke after ${r.seen.length} events`);
      assert.equal(r.seen[r.seen.length - 1], '[DONE]', `stream ${i} ran to its end`);
      const finish = r.seen.slice(0, -1).map((d) => JSON.parse(d)).flatMap((c) => c.choices).map((c) => c.finish_reason).filter(Boolean);
      assert.equal(finish.length, 1);
    }
    const p = await plain;
    assert.equal(p.status, 200);
    assert.ok(p.json.usage.completion_tokens > 0);
    const exit = await server.exited;
    assert.deepEqual(exit, { code: 0, signal: null });
  } finally {
    await server.stop();
  }
});

test('SIGTERM during a lone stream: the stream still ends with data: [DONE]', async () => {
  const server = await startServer({ parallel: 2 });
  try {
    const res = await server.fetch('/v1/completions', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: server.model, prompt: 'Once upon a time', max_tokens: 400, temperature: 0, stream: true }),
    });
    assert.equal(res.status, 200);
    const seen = [];
    let error = null;
    try {
      for await (const data of events(res)) {
        if (!seen.length) server.proc.kill('SIGTERM');
        seen.push(data);
      }
    } catch (e) {
      error = `${e.message} ${e.cause?.code ?? ''}`;
    }
    assert.equal(error, null, `the stream broke after ${seen.length} events`);
    assert.equal(seen[seen.length - 1], '[DONE]');
    assert.deepEqual(await server.exited, { code: 0, signal: null });
  } finally {
    await server.stop();
  }
});
