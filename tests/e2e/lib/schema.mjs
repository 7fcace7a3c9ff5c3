// A small JSON Schema validator for the keywords the tests' schemas use
// (type, properties, required, additionalProperties, items, enum, const,
// minItems, maxItems, minLength, maxLength, minimum, maximum, anyOf).
// validate(schema, value) returns a list of problems, empty when valid.
// An unknown keyword is an error rather than silently ignored, so the tests
// cannot believe they checked something they did not.
const KNOWN = new Set(['type', 'properties', 'required', 'additionalProperties', 'items', 'enum',
  'const', 'minItems', 'maxItems', 'minLength', 'maxLength', 'minimum', 'maximum', 'anyOf',
  'description', 'title']);

function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function typeMatches(want, v) {
  const t = typeOf(v);
  return want === t || (want === 'number' && t === 'integer');
}

export function validate(schema, v, at = '$') {
  const out = [];
  if (schema === true) return out;
  if (schema === false) return [`${at}: no value allowed`];
  for (const k of Object.keys(schema)) if (!KNOWN.has(k)) throw new Error(`schema keyword ${k} is not supported by the test validator`);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => typeMatches(t, v))) return [`${at}: expected ${types.join('|')}, got ${typeOf(v)}`];
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(v))) out.push(`${at}: not one of ${JSON.stringify(schema.enum)}`);
  if ('const' in schema && JSON.stringify(schema.const) !== JSON.stringify(v)) out.push(`${at}: not ${JSON.stringify(schema.const)}`);
  if (schema.anyOf && !schema.anyOf.some((s) => validate(s, v, at).length === 0)) out.push(`${at}: matches no anyOf branch`);
  if (typeof v === 'string') {
    const len = [...v].length;
    if (schema.minLength !== undefined && len < schema.minLength) out.push(`${at}: shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && len > schema.maxLength) out.push(`${at}: longer than ${schema.maxLength}`);
  }
  if (typeof v === 'number') {
    if (schema.minimum !== undefined && v < schema.minimum) out.push(`${at}: below ${schema.minimum}`);
    if (schema.maximum !== undefined && v > schema.maximum) out.push(`${at}: above ${schema.maximum}`);
  }
  if (Array.isArray(v)) {
    if (schema.minItems !== undefined && v.length < schema.minItems) out.push(`${at}: fewer than ${schema.minItems} items`);
    if (schema.maxItems !== undefined && v.length > schema.maxItems) out.push(`${at}: more than ${schema.maxItems} items`);
    if (schema.items !== undefined) v.forEach((x, i) => out.push(...validate(schema.items, x, `${at}[${i}]`)));
  }
  if (typeOf(v) === 'object') {
    const props = schema.properties ?? {};
    for (const r of schema.required ?? []) if (!(r in v)) out.push(`${at}: missing required ${r}`);
    for (const [k, x] of Object.entries(v)) {
      if (k in props) out.push(...validate(props[k], x, `${at}.${k}`));
      else if (schema.additionalProperties !== undefined) out.push(...validate(schema.additionalProperties, x, `${at}.${k}`));
    }
  }
  return out;
}
