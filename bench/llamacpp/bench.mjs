#!/usr/bin/env node
// bench/llamacpp/bench.mjs - llama.cpp's prompt processing and generation
// speed on a GGUF file, measured the way `ember bench` measures ember's, so
// that both run side by side on one machine.
//
//   node bench/llamacpp/bench.mjs -m MODEL [-t THREADS] [-p 128,512] [-n 32]
//        [-r REPS] [--mmap 0|1] [--json]
//
// llama.cpp comes from the node-llama-cpp package (npm, pinned by this
// folder's package-lock.json), whose prebuilt CPU libraries come in one
// variant per processor generation; the best one for this CPU is loaded.
// run.sh (LLAMACPP_CPU=haswell) keeps only the AVX2 variant in a copy of
// the package, to measure the AVX2 path on an AVX-512 machine as
// EMBER_CPU=avx2 does for ember.
//
// pp N: one sequence evaluates N prompt tokens in one batch, from an empty
// cache; tg N: then N tokens generated one at a time (greedy).  Each figure
// is the median of REPS runs (default 3) in tokens per second.  Benchmarks
// are not tests: nothing here asserts a time.
import { getLlama } from 'node-llama-cpp';

const args = process.argv.slice(2);
const opt = { m: null, t: 2, p: [128], n: 32, r: 3, mmap: false, json: false };
for (let i = 0; i < args.length; i++) {
  const a = args[i], v = () => args[++i];
  if (a === '-m') opt.m = v();
  else if (a === '-t') opt.t = Number(v());
  else if (a === '-p') opt.p = v().split(',').map(Number);
  else if (a === '-n') opt.n = Number(v());
  else if (a === '-r') opt.r = Number(v());
  else if (a === '--mmap') opt.mmap = v() !== '0';
  else if (a === '--json') opt.json = true;
  else { console.error(`unknown option ${a}`); process.exit(2); }
}
if (!opt.m) { console.error('usage: bench.mjs -m MODEL [-t N] [-p 128,512] [-n 32] [-r 3] [--mmap 0|1] [--json]'); process.exit(2); }

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error', maxThreads: opt.t });
const model = await llama.loadModel({ modelPath: opt.m, useMmap: opt.mmap });
const maxP = Math.max(...opt.p);
const context = await model.createContext({ contextSize: maxP + opt.n + 16, batchSize: maxP, threads: { ideal: opt.t, min: opt.t }, sequences: 1 });
const seq = context.getSequence();
// Token ids spread over the vocabulary (its size from the file's token list).
const nVocab = model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length ?? 512;
const firstTok = 10, span = Math.max(1, Math.min(1000, nVocab - 20));
const prompt = (n) => Array.from({ length: n }, (_, i) => firstTok + ((i * 7919) % span));

const out = { model: opt.m, threads: opt.t, cpu: llama.systemInfo, results: [] };
for (const p of opt.p) {
  const times = [];
  for (let r = 0; r <= opt.r; r++) { // run 0 warms up
    await seq.clearHistory();
    const t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(prompt(p));
    if (r > 0) times.push((performance.now() - t0) / 1000);
  }
  out.results.push({ test: `pp${p}`, tok_s: p / median(times) });
}
{
  const times = [];
  for (let r = 0; r <= opt.r; r++) {
    await seq.clearHistory();
    await seq.evaluateWithoutGeneratingNewTokens(prompt(16));
    let n = 0;
    const t0 = performance.now();
    for await (const tok of seq.evaluate([firstTok], { temperature: 0 })) {
      void tok;
      if (++n >= opt.n) break;
    }
    if (r > 0) times.push((performance.now() - t0) / 1000);
  }
  out.results.push({ test: `tg${opt.n}`, tok_s: opt.n / median(times) });
}
if (opt.json) console.log(JSON.stringify(out));
else for (const r of out.results) console.log(`llama.cpp ${r.test} ${r.tok_s.toFixed(1)} tok/s (${opt.t} threads)`);
await context.dispose();
await model.dispose();
await llama.dispose();
