// Reads a server-sent-event stream byte for byte, without the openai
// client, so that the tests see the framing itself: `data: ...` events
// separated by blank lines, ending with `data: [DONE]`.

// Yields the data of each event of a fetch Response (one string per event;
// several data lines of one event are joined with '\n').
export async function* events(response) {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let buf = '';
  for await (const bytes of response.body) {
    buf += decoder.decode(bytes, { stream: true });
    for (;;) {
      const m = /\r?\n\r?\n/.exec(buf);
      if (!m) break;
      const block = buf.slice(0, m.index);
      buf = buf.slice(m.index + m[0].length);
      const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
      if (data.length) yield data.join('\n');
    }
  }
  buf += decoder.decode();
  if (buf.trim() !== '') throw new Error(`stream ended inside an event: ${JSON.stringify(buf.slice(0, 200))}`);
}

// POSTs body (with stream: true) and collects the whole stream:
// {status, headers, chunks (parsed JSON of each event but [DONE]), done
// (whether [DONE] came, and came last), raw (the event strings)}.
export async function collect(server, route, body) {
  const res = await server.fetch(route, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
  });
  if (res.status !== 200) return { status: res.status, headers: res.headers, body: await res.text() };
  const raw = [];
  for await (const data of events(res)) raw.push(data);
  const doneAt = raw.indexOf('[DONE]');
  const chunks = raw.filter((d) => d !== '[DONE]').map((d) => JSON.parse(d));
  return { status: res.status, headers: res.headers, raw, chunks, done: doneAt === raw.length - 1 && doneAt >= 0 };
}
