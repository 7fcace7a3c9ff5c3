// The bad-input suite: raw sockets on loopback, no HTTP client to tidy the
// bytes up.  Malformed, truncated and huge bodies, wrong types for every
// field, invalid UTF-8, NUL bytes, deep nesting, slow partial requests and
// clients that vanish mid-request.  After each group the server must still
// answer /health and a real completion.  Every loop is bounded and every
// socket has a deadline, so the suite stops by itself.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { startServer } from './lib/server.mjs';

let server;
before(async () => { server = await startServer({ parallel: 4 }); });
after(async () => { await server?.stop(); });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const SOCKET_DEADLINE_MS = 20_000;

// Sends `parts` (Buffers or strings, each written after `gapMs`) on a fresh
// connection and reads until the server closes, a full response with
// Content-Length has arrived, or the deadline.  endWrite half-closes after
// the last part; destroyAfterMs drops the connection instead of reading.
function raw(parts, { gapMs = 0, endWrite = false, destroyAfterMs = null, deadline = SOCKET_DEADLINE_MS } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect(server.port, '127.0.0.1');
    const chunks = [];
    let settled = false;
    const finish = (how) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      const buf = Buffer.concat(chunks);
      const text = buf.toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      const split = text.indexOf('\r\n\r\n');
      const head = split >= 0 ? text.slice(0, split) : text;
      const body = split >= 0 ? buf.subarray(split + 4).toString('utf8') : '';
      let json = null;
      try { json = JSON.parse(body); } catch { /* not JSON */ }
      resolve({ status: m ? Number(m[1]) : null, head, body, json, how });
    };
    const timer = setTimeout(() => finish('deadline'), deadline);
    sock.on('data', (d) => {
      chunks.push(d);
      const text = Buffer.concat(chunks).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const cl = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, split));
      if (split >= 0 && cl && Buffer.concat(chunks).length >= split + 4 + Number(cl[1])) finish('complete');
    });
    sock.on('end', () => finish('closed'));
    sock.on('error', () => finish('error'));
    sock.on('connect', async () => {
      try {
        for (const p of parts) {
          if (settled) return;
          sock.write(p);
          if (gapMs) await sleep(gapMs);
        }
        if (endWrite) sock.end();
        if (destroyAfterMs !== null) { await sleep(destroyAfterMs); finish('destroyed'); }
      } catch { finish('error'); }
    });
  });
}

function request(method, route, body, { headers = {}, contentLength } = {}) {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body ?? '', 'utf8');
  const lines = [`${method} ${route} HTTP/1.1`, 'Host: 127.0.0.1', `Authorization: Bearer ${server.apiKey}`,
    'Content-Type: application/json', 'Connection: close', `Content-Length: ${contentLength ?? b.length}`];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), b]);
}

const post = (route, body, opts) => raw([request('POST', route, body, opts)]);

// The server still serves: /health and a real completion.
async function alive(what) {
  const h = await fetch(`${server.url}/health`);
  assert.equal(h.status, 200, `/health after ${what}`);
  const r = await server.postJSON('/v1/completions', { model: server.model, prompt: 'Once upon a time', max_tokens: 4, temperature: 0 });
  assert.equal(r.status, 200, `a completion after ${what}: ${r.text}`);
  assert.equal(r.json.usage.completion_tokens, 4);
  assert.equal(server.proc.exitCode, null, 'the server is running');
}

function is400(r, what) {
  assert.equal(r.status, 400, `${what}: got ${r.status} (${r.how}) ${r.body.slice(0, 200)}`);
  assert.ok(r.json?.error?.message, `${what}: an OpenAI error body`);
}

const ROUTES = ['/v1/chat/completions', '/v1/completions', '/v1/embeddings'];

test('malformed JSON is a 400 on every endpoint', async () => {
  const bodies = ['', '{', '}', '{"model":}', '{"model": "m",}', "{'model': 'm'}", '[]', '"text"', 'null', '42', 'true',
    '{"a":1}{"b":2}', '{"a":1} x', '{"a":NaN}', '{"a":1e999999}', '{"a":"\\x41"}', '{"a":"unterminated', '{"a" 1}',
    '\ufeff{"model":"m"}', '{"model":"m","messages":[{"role":"user","content":"hi"}]', '{"a":tru}', '{"a":-}', '{"a":01}'];
  for (const route of ROUTES) {
    for (const body of bodies) is400(await post(route, body), `${route} ${JSON.stringify(body)}`);
  }
  await alive('malformed JSON');
});

test('truncated bodies and clients that vanish mid-request', async () => {
  const full = JSON.stringify({ model: server.model, prompt: 'Once upon a time', max_tokens: 4 });
  // Content-Length promises more than comes, then the client half-closes.
  for (const cut of [0, 1, 10, full.length - 1]) {
    const r = await raw([request('POST', '/v1/completions', full.slice(0, cut), { contentLength: full.length })], { endWrite: true });
    assert.ok(r.status === null || (r.status >= 400 && r.status < 500), `cut at ${cut}: ${r.status} ${r.how}`);
  }
  // The client disconnects: in the headers, in the body, right after it.
  const req = request('POST', '/v1/completions', full).toString('latin1');
  for (const at of [5, 40, req.length - 20, req.length]) {
    const r = await raw([req.slice(0, at)], { destroyAfterMs: 100 });
    assert.notEqual(r.status, 500);
  }
  // Many connections opened and closed at once.
  await Promise.all(Array.from({ length: 50 }, () => raw([], { destroyAfterMs: 0 })));
  await alive('truncated bodies and disconnects');
});

test('huge bodies are refused with 413 without being read', async () => {
  for (const cl of ['17000000', '10737418240', '9223372036854775807']) {
    const r = await raw([request('POST', '/v1/chat/completions', '{"model":', { contentLength: cl })]);
    assert.equal(r.status, 413, `Content-Length ${cl}: ${r.status} ${r.how} ${r.body.slice(0, 200)}`);
  }
  // Beyond 64 bits: a 400 or 413, never a crash.
  const over = await raw([request('POST', '/v1/chat/completions', '{', { contentLength: '99999999999999999999999999' })]);
  assert.ok([400, 413].includes(over.status) || over.status === null, `overflowing Content-Length: ${over.status}`);
  // A chunked body that grows past the limit: 413 once it passes it (the
  // writer stops after 32 MiB whatever happens).
  const head = ['POST /v1/chat/completions HTTP/1.1', 'Host: 127.0.0.1', `Authorization: Bearer ${server.apiKey}`,
    'Content-Type: application/json', 'Transfer-Encoding: chunked', 'Connection: close', '', ''].join('\r\n');
  const piece = 'a'.repeat(1 << 20);
  const chunk = `${(1 << 20).toString(16)}\r\n${piece}\r\n`;
  const parts = [head, `b\r\n{"model":"x\r\n`, ...Array.from({ length: 32 }, () => chunk), '0\r\n\r\n'];
  const r = await raw(parts, { gapMs: 5 });
  assert.ok(r.status === 413 || (r.status === null && r.how !== 'deadline'), `chunked flood: ${r.status} ${r.how}`);
  // A real 20 MiB JSON body, sent whole.
  const big = JSON.stringify({ model: server.model, prompt: 'x'.repeat(20 << 20) });
  const b = await post('/v1/completions', big);
  assert.ok(b.status === 413 || (b.status === null && b.how !== 'deadline'), `20 MiB body: ${b.status} ${b.how}`);
  await alive('huge bodies');
});

// The JSON types each field takes; every other type is a 400 naming it.
const FIELDS = {
  '/v1/chat/completions': {
    base: { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
    types: {
      model: ['string'], messages: ['array'], max_tokens: ['integer'], max_completion_tokens: ['integer'],
      temperature: ['number'], top_p: ['number'], seed: ['integer'], presence_penalty: ['number'],
      frequency_penalty: ['number'], logit_bias: ['object'], n: ['integer'], stop: ['string', 'array'],
      logprobs: ['boolean'], top_logprobs: ['integer'], stream: ['boolean'], stream_options: ['object'],
      response_format: ['object'], tools: ['array'], tool_choice: ['string', 'object'],
    },
  },
  '/v1/completions': {
    base: { prompt: 'hi', max_tokens: 2 },
    types: {
      model: ['string'], prompt: ['string', 'array'], max_tokens: ['integer'], temperature: ['number'], top_p: ['number'],
      seed: ['integer'], presence_penalty: ['number'], frequency_penalty: ['number'], logit_bias: ['object'], n: ['integer'],
      stop: ['string', 'array'], logprobs: ['integer'], echo: ['boolean'], stream: ['boolean'], stream_options: ['object'],
    },
  },
  '/v1/embeddings': {
    base: { input: 'hi' },
    types: { model: ['string'], input: ['string', 'array'], encoding_format: ['string'] },
  },
};
const SAMPLES = { string: 'x', integer: 7, number: 1.5, boolean: true, array: [1], object: { a: 1 } };
const accepts = (types, kind) => types.includes(kind) || (kind === 'integer' && types.includes('number'));

test('wrong types for every field: 400 naming the field, for each endpoint', async () => {
  let checked = 0;
  for (const [route, { base, types }] of Object.entries(FIELDS)) {
    for (const [field, ok] of Object.entries(types)) {
      for (const [kind, value] of Object.entries(SAMPLES)) {
        if (accepts(ok, kind)) continue;
        const body = JSON.stringify({ model: server.model, ...base, [field]: value });
        const r = await post(route, body);
        is400(r, `${route} ${field}=${JSON.stringify(value)}`);
        assert.ok((r.json.error.param ?? '').startsWith(field) || r.json.error.message.includes(field),
          `${route} ${field}=${JSON.stringify(value)} names the field: ${JSON.stringify(r.json.error)}`);
        checked++;
      }
    }
  }
  assert.ok(checked > 150);
  await alive('wrong types');
});

test('invalid UTF-8 and NUL bytes in strings', async () => {
  const start = Buffer.from(`{"model":"${server.model}","prompt":"`);
  const end = Buffer.from('","max_tokens":2}');
  const bad = [[0xff], [0xfe, 0xff], [0xc0, 0xaf], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80], [0xf0, 0x9f, 0x98]];
  for (const bytes of bad) {
    is400(await post('/v1/completions', Buffer.concat([start, Buffer.from(bytes), end])), `bytes ${bytes.map((b) => b.toString(16))}`);
  }
  for (const esc of ['\\ud800', '\\udc00', '\\ud800\\u0041']) {
    is400(await post('/v1/completions', `{"model":"${server.model}","prompt":"a${esc}b","max_tokens":2}`), `escape ${esc}`);
  }
  // A raw NUL (a control character) is not JSON; an escaped one may be
  // refused or served, but never crashes the server.
  is400(await post('/v1/completions', Buffer.concat([start, Buffer.from([0x61, 0x00, 0x62]), end])), 'raw NUL');
  const esc = await post('/v1/chat/completions', `{"model":"${server.model}","messages":[{"role":"user","content":"a\\u0000b"}],"max_tokens":2}`);
  assert.ok([200, 400].includes(esc.status), `escaped NUL: ${esc.status}`);
  const inKey = await post('/v1/completions', `{"model":"${server.model}","prompt":"hi","max_tokens":2,"x\\u0000y":1}`);
  assert.ok([200, 400].includes(inKey.status), `NUL in a key: ${inKey.status}`);
  // NUL and invalid bytes in the request line and headers.
  for (const line of ['POST /v1/comp\x00letions HTTP/1.1', 'POST /v1/completions\xff HTTP/1.1', 'GET /health HTTP/1.1\r\nX-A: b\x00c']) {
    const r = await raw([Buffer.from(`${line}\r\nHost: x\r\nConnection: close\r\n\r\n`, 'latin1')]);
    assert.ok(r.status === null || (r.status >= 400 && r.status < 500) || (r.status === 200 && line.startsWith('GET')), `${JSON.stringify(line)}: ${r.status}`);
  }
  await alive('invalid UTF-8 and NUL bytes');
});

test('deeply nested JSON is a 400, not a stack overflow', async () => {
  for (const depth of [100, 10_000, 200_000]) {
    const arr = '['.repeat(depth) + ']'.repeat(depth);
    is400(await post('/v1/chat/completions', `{"model":"${server.model}","messages":${arr}}`), `arrays ${depth} deep`);
    const obj = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
    is400(await post('/v1/chat/completions', `{"model":"${server.model}","unknown":${obj},"messages":[{"role":"user","content":"x"}]}`), `objects ${depth} deep in an unknown field`);
    is400(await post('/v1/completions', `{"model":"${server.model}","prompt":"x","response_format":{"type":"json_schema","json_schema":{"name":"d","schema":${'{"type":"array","items":'.repeat(Math.min(depth, 20_000))}{"type":"string"}${'}'.repeat(Math.min(depth, 20_000))}}}}`), `a schema ${depth} deep`);
  }
  await alive('deep nesting');
});

test('slow partial requests (slowloris) do not stop the server from serving others', async () => {
  const head = `POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${server.apiKey}\r\nContent-Type: application/json\r\n`;
  // Twelve clients send their headers a byte at a time, then stop without
  // the blank line; the test serves real requests while they hang.
  const socks = Array.from({ length: 12 }, () => net.connect(server.port, '127.0.0.1'));
  await Promise.all(socks.map((s) => new Promise((r) => s.on('connect', r))));
  for (const s of socks) s.on('error', () => {});
  const dribble = (async () => {
    for (let i = 0; i < head.length; i++) {
      for (const s of socks) if (!s.destroyed) s.write(head[i]);
      await sleep(10);
    }
  })();
  await sleep(200);
  await alive('slowloris clients connecting');
  await dribble;
  await alive('slowloris clients holding partial headers');
  for (const s of socks) s.destroy();
  // A slow but complete client is served.
  const body = JSON.stringify({ model: server.model, prompt: 'Once upon a time', max_tokens: 3 });
  const req = request('POST', '/v1/completions', body).toString('latin1');
  const pieces = req.match(/[\s\S]{1,16}/g);
  const slow = await raw(pieces, { gapMs: 10 });
  assert.equal(slow.status, 200, `a slow complete request: ${slow.status} ${slow.body.slice(0, 200)}`);
  assert.equal(slow.json.usage.completion_tokens, 3);
  await alive('slowloris');
});

test('junk on the wire, oversized headers, keep-alive and pipelining', async () => {
  for (const junk of ['HELLO\r\n\r\n', '\r\n\r\n\r\n', 'GET\r\n\r\n', 'POST /v1/completions HTTP/9.9\r\nHost: x\r\n\r\n', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03']) {
    const r = await raw([Buffer.from(junk, 'latin1')], { endWrite: true });
    assert.ok(r.status === null || (r.status >= 400 && r.status < 600 && r.status !== 500), `${JSON.stringify(junk)}: ${r.status}`);
  }
  const longHeader = await raw([Buffer.from(`GET /health HTTP/1.1\r\nHost: x\r\nX-Long: ${'a'.repeat(200_000)}\r\nConnection: close\r\n\r\n`)]);
  assert.ok(longHeader.status === null || (longHeader.status >= 400 && longHeader.status < 500), `a 200 kB header: ${longHeader.status}`);
  const many = Array.from({ length: 2000 }, (_, i) => `X-H${i}: v`).join('\r\n');
  const manyHeaders = await raw([Buffer.from(`GET /health HTTP/1.1\r\nHost: x\r\n${many}\r\nConnection: close\r\n\r\n`)]);
  assert.ok(manyHeaders.status === null || manyHeaders.status < 500, `2000 headers: ${manyHeaders.status}`);
  // Two requests on one connection, sent back to back: two answers.
  const two = await new Promise((resolve) => {
    const sock = net.connect(server.port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => { sock.destroy(); resolve(text); }, SOCKET_DEADLINE_MS);
    sock.on('data', (d) => { text += d.toString('latin1'); if ((text.match(/HTTP\/1\.1 200/g) ?? []).length >= 2 && text.endsWith('}')) { clearTimeout(timer); sock.destroy(); resolve(text); } });
    sock.on('error', () => { clearTimeout(timer); resolve(text); });
    sock.on('end', () => { clearTimeout(timer); resolve(text); });
    sock.on('connect', () => sock.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
  });
  assert.equal((two.match(/HTTP\/1\.1 200/g) ?? []).length, 2, `pipelined: ${two.slice(0, 300)}`);
  await alive('junk and headers');
});
