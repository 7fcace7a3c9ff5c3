// A strict reader of the Prometheus text exposition format (0.0.4): it
// throws on any line a Prometheus server would reject, so that a test that
// reads /metrics also checks its syntax.
const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(s, line) {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`bad sample value '${s}' in: ${line}`);
  return Number(s);
}

// Reads `{a="x",b="y"}` from position i of line; returns [labels, next index].
function parseLabels(line, i) {
  const labels = {};
  i++; // past '{'
  for (;;) {
    while (line[i] === ' ') i++;
    if (line[i] === '}') return [labels, i + 1];
    let j = i;
    while (j < line.length && line[j] !== '=') j++;
    const name = line.slice(i, j).trim();
    if (!LABEL.test(name)) throw new Error(`bad label name '${name}' in: ${line}`);
    if (line[j + 1] !== '"') throw new Error(`label value not quoted in: ${line}`);
    let k = j + 2, value = '';
    for (; k < line.length && line[k] !== '"'; k++) {
      if (line[k] === '\\') {
        const e = line[++k];
        if (e === 'n') value += '\n';
        else if (e === '\\' || e === '"') value += e;
        else throw new Error(`bad escape in label value in: ${line}`);
      } else value += line[k];
    }
    if (k >= line.length) throw new Error(`unterminated label value in: ${line}`);
    if (name in labels) throw new Error(`label '${name}' twice in: ${line}`);
    labels[name] = value;
    i = k + 1;
    while (line[i] === ' ') i++;
    if (line[i] === ',') i++;
    else if (line[i] !== '}') throw new Error(`expected ',' or '}' in: ${line}`);
  }
}

// The family a sample belongs to: histogram series carry suffixes.
function familyOf(name, types) {
  if (types.has(name)) return name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const t = types.get(base);
      if (t === 'histogram' || (t === 'summary' && suffix !== '_bucket')) return base;
    }
  }
  return null;
}

// parse(text) -> {types: Map(name -> type), samples: [{name, labels, value}]}
export function parse(text) {
  const types = new Map();
  const samples = [];
  const seen = new Set();
  if (text.length && !text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) continue; // other comments are allowed
      if (!NAME.test(m[2])) throw new Error(`bad metric name in: ${line}`);
      if (m[1] === 'TYPE') {
        if (!TYPES.has(m[3])) throw new Error(`unknown type in: ${line}`);
        if (types.has(m[2])) throw new Error(`TYPE given twice for ${m[2]}`);
        types.set(m[2], m[3]);
      }
      continue;
    }
    let i = 0;
    while (i < line.length && line[i] !== '{' && line[i] !== ' ') i++;
    const name = line.slice(0, i);
    if (!NAME.test(name)) throw new Error(`bad metric name in: ${line}`);
    let labels = {};
    if (line[i] === '{') [labels, i] = parseLabels(line, i);
    const rest = line.slice(i).trim().split(/\s+/);
    if (rest.length < 1 || rest.length > 2 || rest[0] === '') throw new Error(`bad sample line: ${line}`);
    const value = parseValue(rest[0], line);
    const family = familyOf(name, types);
    if (!family) throw new Error(`sample ${name} has no # TYPE before it`);
    const key = name + JSON.stringify(Object.entries(labels).sort());
    if (seen.has(key)) throw new Error(`duplicate series: ${line}`);
    seen.add(key);
    samples.push({ name, labels, value, family });
  }
  return { types, samples };
}

// The sum of the samples named `name` whose labels include `match`.
export function value(parsed, name, match = {}) {
  let sum = 0, found = false;
  for (const s of parsed.samples) {
    if (s.name !== name) continue;
    if (!Object.entries(match).every(([k, v]) => s.labels[k] === v)) continue;
    sum += s.value;
    found = true;
  }
  return found ? sum : undefined;
}

// Checks a histogram family's invariants: cumulative buckets ending with
// le="+Inf", which equals _count; a _sum.  Returns {count, sum}.
export function checkHistogram(parsed, name) {
  if (parsed.types.get(name) !== 'histogram') throw new Error(`${name} is not declared a histogram`);
  const buckets = parsed.samples.filter((s) => s.name === `${name}_bucket`);
  if (!buckets.length) throw new Error(`${name} has no buckets`);
  const les = buckets.map((b) => {
    if (!('le' in b.labels)) throw new Error(`${name}_bucket without le`);
    return [b.labels.le === '+Inf' ? Infinity : Number(b.labels.le), b.value];
  });
  for (let k = 1; k < les.length; k++) {
    if (!(les[k][0] > les[k - 1][0])) throw new Error(`${name} buckets not in increasing le order`);
    if (les[k][1] < les[k - 1][1]) throw new Error(`${name} buckets not cumulative`);
  }
  if (les[les.length - 1][0] !== Infinity) throw new Error(`${name} lacks the le="+Inf" bucket`);
  const count = value(parsed, `${name}_count`);
  const sum = value(parsed, `${name}_sum`);
  if (count === undefined || sum === undefined) throw new Error(`${name} lacks _count or _sum`);
  if (count !== les[les.length - 1][1]) throw new Error(`${name}_count ${count} differs from the +Inf bucket ${les[les.length - 1][1]}`);
  return { count, sum };
}
