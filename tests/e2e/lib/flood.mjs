// Raw connections that try to hold a server's connection table, for the
// tests of the connection guard (ember serve's and the router's front):
// idle ones, idle keep-alive ones after an answer, and tricklers that send
// a header byte every 250 ms and never the blank line that ends the
// headers, which no idle timeout would ever close.  Each records when the
// server closed it.  An attacker connects from 127.0.0.1 unless given
// another loopback address (`from`: 127.0.0.2 is a second client of the
// same machine on Linux).  Every socket is bounded by the caller's wait.
import assert from 'node:assert/strict';
import net from 'node:net';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// GET path on a connection of its own, closed after the answer (HTTP/1.0),
// resolving to the body of a 200: a pooled keep-alive connection of fetch
// could sit idle past the deadline while a test waits, and be closed just
// as fetch reuses it.
export function getOwn(port, path, apiKey) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    const bound = setTimeout(() => { sock.destroy(); reject(new Error(`GET ${path}: no answer`)); }, 30_000);
    const auth = apiKey ? `Authorization: Bearer ${apiKey}\r\n` : '';
    sock.on('connect', () => sock.write(`GET ${path} HTTP/1.0\r\n${auth}\r\n`));
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', (e) => { clearTimeout(bound); reject(e); });
    sock.on('end', () => {
      clearTimeout(bound);
      const text = Buffer.concat(chunks).toString('utf8');
      const split = text.indexOf('\r\n\r\n');
      if (!/^HTTP\/1\.[01] 200/.test(text) || split < 0) reject(new Error(`GET ${path}: ${text.slice(0, 200)}`));
      else resolve(text.slice(split + 4));
    });
  });
}

// A raw connection to port, from address `from`, that records what it got
// and when it closed.
export function attacker(port, kind, from = '127.0.0.1') {
  const sock = net.connect({ port, host: '127.0.0.1', localAddress: from });
  const a = { kind, sock, t0: Date.now(), closedAt: null, timer: null, got: '' };
  const done = () => {
    if (a.closedAt === null) a.closedAt = Date.now();
    clearInterval(a.timer);
  };
  sock.on('data', (d) => { a.got += d.toString('latin1'); });
  sock.on('close', done);
  sock.on('error', done);
  a.ready = new Promise((r) => sock.on('connect', r));
  return a;
}

// An idle keep-alive connection: one answered GET /health, then silence.
export function keptAlive(port, from) {
  const a = attacker(port, 'keep-alive', from);
  a.ready.then(() => a.sock.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
  return a;
}

// Waits (bounded) until attacker a has n answers of 200 (a small body
// comes with its headers), then a moment more, for the server to have
// finished each request; returns how many it has.
export async function answers(a, n) {
  const count = () => (a.got.match(/HTTP\/1\.1 200 /g) || []).length;
  for (let k = 0; k < 400 && count() < n && a.closedAt === null; k++) await sleep(25);
  await sleep(100);
  return count();
}

// Headers a byte every 250 ms (with the key when one is given).
export function trickler(port, apiKey) {
  const a = attacker(port, 'trickle');
  const auth = apiKey ? `Authorization: Bearer ${apiKey}\r\n` : '';
  const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}X-Pad: ${'a'.repeat(400)}`;
  let i = 0;
  a.ready.then(() => {
    a.timer = setInterval(() => { if (!a.sock.destroyed && i < head.length) a.sock.write(head[i++]); }, 250);
  });
  return a;
}

// Twice a table of `table` connections: half of it idle, half idle after a
// kept-alive answer (which must tell the deadline in its Keep-Alive
// header), then a table's worth of tricklers; resolves once all are
// connected and `settleMs` has passed.
export async function flood(port, { table, deadlineS, apiKey, settleMs = 300 }) {
  const attackers = [];
  for (let i = 0; i < table / 2; i++) attackers.push(attacker(port, 'idle'));
  for (let i = 0; i < table / 2; i++) attackers.push(keptAlive(port));
  await Promise.all(attackers.map((a) => a.ready));
  for (let k = 0; k < 200 && attackers.some((a) => a.kind === 'keep-alive' && !/\r\n\r\n\{/.test(a.got)); k++) await sleep(25);
  for (const a of attackers.filter((x) => x.kind === 'keep-alive')) {
    assert.match(a.got, /^HTTP\/1\.1 200/, 'the kept-alive connection got its answer');
    assert.match(a.got, new RegExp(`\r\nKeep-Alive: timeout=${deadlineS}\r\n`, 'i'), 'the answer tells how long the connection is kept');
  }
  for (let i = 0; i < table; i++) attackers.push(trickler(port, apiKey));
  await Promise.all(attackers.map((a) => a.ready));
  await sleep(settleMs);
  return attackers;
}

// Every attacker is closed by its deadline (or sooner, to make room for a
// new connection), the tricklers although they never stopped sending, and
// a trickler that was not evicted lived until its deadline.
export async function assertAllClosed(attackers, deadlineS) {
  const bound = Date.now() + deadlineS * 1000 + 5_000;
  while (attackers.some((a) => a.closedAt === null) && Date.now() < bound) await sleep(50);
  for (const a of attackers) {
    assert.notEqual(a.closedAt, null, `a ${a.kind} connection is still open after its deadline`);
    assert.ok(a.closedAt - a.t0 < deadlineS * 1000 + 4_000, `a ${a.kind} connection was closed after ${a.closedAt - a.t0} ms`);
  }
  const tricklers = attackers.filter((a) => a.kind === 'trickle');
  assert.ok(tricklers.some((a) => a.closedAt - a.t0 >= deadlineS * 1000 - 200), 'no trickler reached its deadline');
}
