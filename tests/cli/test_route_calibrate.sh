#!/usr/bin/env bash
# `ember route calibrate` end to end against two stub upstreams
# (tests/tools/stub_upstream.py) whose token log-probabilities the labelled
# set dictates (#lp:X in the prompt).  The expected grid and recommendation
# are computed here, independently, in Python: each checker applied to the
# stubs' known answers, each call's cost from the stub's token counts and
# the configured prices.  Also: the table's pasteable accept line, the
# --by min grid, and the errors for a bad data line and a non-cascade route.
. "$(dirname "$0")/lib.sh"
need_cmd python3
here=$(cd "$(dirname "$0")/../tools" && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

stub cheap
stub strong

cat >"$tmp/ember.yaml" <<YAML
ledger: none
backends:
  - {name: cheap, url: "http://127.0.0.1:$port_cheap/v1", price: {input_per_mtok: 100, output_per_mtok: 200}}
  - {name: strong, url: "http://127.0.0.1:$port_strong/v1", price: {input_per_mtok: 1000, output_per_mtok: 5000}}
routes:
  - {name: auto, policy: cascade, backends: [cheap, strong], accept: {mean_logprob: -1.0, min_logprob: -6}}
  - {name: plain, policy: direct, backends: [strong]}
keys:
  - {name: k, key: secret}
YAML

# The labelled set: confidence (#lp, the same for every token, so mean =
# min) and which stub's answer each checker accepts.  Answers are
# "stub NAME says hello and then some more" (8 tokens).
python3 - "$tmp/set.jsonl" <<'PY'
import json, sys
both = {"regex": "^stub (cheap|strong) says hello"}
cheap_only = {"exact": "  stub cheap says hello and then some more "}
strong_only = {"answer": "STUB  strong says Hello and then some more."}
neither = {"contains": "nobody"}
items = [(-0.05, both), (-0.1, both), (-0.15, both), (-0.2, strong_only), (-0.25, both), (-0.3, both),
         (-0.5, strong_only), (-0.8, strong_only), (-1.0, neither), (-1.5, strong_only), (-2.0, cheap_only),
         (-7.0, both)]
with open(sys.argv[1], "w") as f:
    f.write("# a comment line, then the items\n")
    for i, (lp, chk) in enumerate(items):
        q = "question %d with some padding %s #lp:%g" % (i, "x" * (i * 7), lp)
        line = {"messages": [{"role": "user", "content": q}], **chk}
        if i == 3:
            line = {"prompt": q, **chk}   # a completions item
        f.write(json.dumps(line) + "\n")
PY

# expect TARGET BY: the grid and recommendation, computed independently.
expect() {
  python3 - "$tmp/set.jsonl" "$1" "$2" <<'PY'
import json, re, sys
path, target, by = sys.argv[1], float(sys.argv[2]), sys.argv[3]
other = -6.0 if by == "mean" else -1.0          # the route's fixed threshold
price = {"cheap": (100, 200), "strong": (1000, 5000)}
def norm(s):
    s = " ".join(s.lower().split())
    return s.rstrip(".!?").rstrip(" ")
def correct(item, ans):
    if "answer" in item: return norm(ans) == norm(item["answer"])
    if "exact" in item: return ans.strip() == item["exact"].strip()
    if "contains" in item: return item["contains"] in ans
    return re.search(item["regex"], ans) is not None
rows = []
items = [json.loads(l) for l in open(path) if l.strip() and not l.startswith("#")]
data = []
for it in items:
    text = it["messages"][0]["content"] if "messages" in it else it["prompt"]
    lp = float(re.search(r"#lp:(-?[0-9.]+)", text).group(1))
    pt, ct = max(1, len(text) // 4), 8
    cost = {n: (pt * p[0] + ct * p[1]) / 1e6 for n, p in price.items()}
    ok = {n: correct(it, "stub %s says hello and then some more" % n) for n in price}
    data.append((lp, ok, cost))
strong_ok = sum(d[1]["strong"] for d in data)
def row(t):
    kept = [d for d in data if t is not None and d[0] >= t - 1e-9 and d[0] >= other - 1e-9]
    acc = sum(d[1]["cheap"] if d in kept else d[1]["strong"] for d in data)
    cost = sum(d[2]["cheap"] + (0 if d in kept else d[2]["strong"]) for d in data)
    return {"t": t, "kept": len(kept), "quality": acc / strong_ok, "cost": cost}
grid = [row(None)] + [row(t) for t in sorted({d[0] for d in data}, reverse=True)]
ok_rows = [r for r in grid if r["quality"] >= target - 1e-12]
best = min(ok_rows, key=lambda r: (round(r["cost"], 12), -r["kept"]))
print(json.dumps({"rows": grid, "best": best}))
PY
}

# check_run TARGET BY: calibrate's JSON against the expectation.
check_run() {
  local target=$1 by=$2
  if ! "$EMBER_BIN" route calibrate --config "$tmp/ember.yaml" --route auto --data "$tmp/set.jsonl" \
      --target "$target" --by "$by" -o json >"$tmp/out.json" 2>"$tmp/err"; then
    bad "calibrate --target $target --by $by exits 0"; cat "$tmp/err"; return
  fi
  expect "$target" "$by" >"$tmp/want.json"
  if python3 - "$tmp/out.json" "$tmp/want.json" "$by" <<'PY'
import json, math, sys
got, want, by = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
assert got["items"] == 12 and got["skipped"] == 0, got
assert abs(got["strong_accuracy"] - 10 / 12) < 1e-9 and abs(got["cheap_accuracy"] - 7 / 12) < 1e-9, got
assert len(got["rows"]) == len(want["rows"]), (len(got["rows"]), len(want["rows"]))
for g, w in zip(got["rows"], want["rows"]):
    if w["t"] is None: assert g["threshold"] is None, g
    else: assert w["t"] - 1e-4 < g["threshold"] <= w["t"] + 1e-9, (g, w)
    assert g["kept"] == w["kept"], (g, w)
    assert abs(g["quality"] - w["quality"]) < 1e-9, (g, w)
    assert math.isclose(g["cost_usd"], w["cost"], rel_tol=1e-6), (g, w)
b, w = got["recommended"], want["best"]
assert b["kept"] == w["kept"] and math.isclose(b["cost_usd"], w["cost"], rel_tol=1e-6), (b, w)
if w["t"] is not None:
    acc = b["accept"]["mean_logprob" if by == "mean" else "min_logprob"]
    assert w["t"] - 1e-4 < acc <= w["t"] + 1e-9, (b, w)
print("recommended: kept", b["kept"], "threshold", b["threshold"], "cost", b["cost_usd"])
PY
  then ok "calibrate --target $target --by $by matches the independent computation"
  else bad "calibrate --target $target --by $by"; cat "$tmp/out.json"; fi
}

check_run 0.95 mean
check_run 0.9 mean
check_run 0.8 min
check_run 1.0 mean

# The table, and the accept line to paste into the route.
if "$EMBER_BIN" route calibrate --config "$tmp/ember.yaml" --route auto --data "$tmp/set.jsonl" --target 0.9 \
    >"$tmp/table" 2>"$tmp/err" && grep -q "recommended" "$tmp/table" &&
    grep -Eq '^  accept: \{mean_logprob: -0\.3000, min_logprob: -6\}$' "$tmp/table"; then
  ok "table: the recommended row and the pasteable accept line"
else
  bad "table output"; cat "$tmp/table" "$tmp/err"
fi
# The accept line is valid configuration.
sed "s/accept: {mean_logprob: -1.0, min_logprob: -6}/$(sed -n 's/^  \(accept: .*\)$/\1/p' "$tmp/table")/" \
  "$tmp/ember.yaml" >"$tmp/pasted.yaml"
if grep -q "mean_logprob: -0.3000" "$tmp/pasted.yaml" && "$EMBER_BIN" serve --config "$tmp/pasted.yaml" --check >/dev/null; then
  ok "the pasted accept line is a valid configuration"
else bad "pasted accept line"; fi

# Errors: a bad line names the file and line; a route that is no cascade.
printf '{"messages": [{"role": "user", "content": "hi"}], "answer": "x"}\n{"messages": [], "answer": "x"}\n' >"$tmp/bad.jsonl"
"$EMBER_BIN" route calibrate --config "$tmp/ember.yaml" --route auto --data "$tmp/bad.jsonl" >/dev/null 2>"$tmp/err"
rc=$?
if [ $rc = 1 ] && grep -q "bad.jsonl:2: 'messages' must be a non-empty array" "$tmp/err"; then ok "a bad data line: its line named"
else bad "bad data line (rc $rc)"; cat "$tmp/err"; fi
printf '{"prompt": "hi", "answer": "x", "regex": "y"}\n' >"$tmp/bad.jsonl"
"$EMBER_BIN" route calibrate --config "$tmp/ember.yaml" --route auto --data "$tmp/bad.jsonl" >/dev/null 2>"$tmp/err"
if grep -q "bad.jsonl:1: 'answer' and 'regex': give one checker" "$tmp/err"; then ok "two checkers refused"
else bad "two checkers"; cat "$tmp/err"; fi
printf '{"prompt": "hi", "regex": "(unclosed"}\n' >"$tmp/bad.jsonl"
"$EMBER_BIN" route calibrate --config "$tmp/ember.yaml" --route auto --data "$tmp/bad.jsonl" >/dev/null 2>"$tmp/err"
if grep -q "bad.jsonl:1: 'regex' does not compile" "$tmp/err"; then ok "a bad regex refused"
else bad "bad regex"; cat "$tmp/err"; fi
"$EMBER_BIN" route calibrate --config "$tmp/ember.yaml" --route plain --data "$tmp/set.jsonl" >/dev/null 2>"$tmp/err"
rc=$?
if [ $rc = 1 ] && grep -q "'plain' is not a cascade route" "$tmp/err"; then ok "a direct route refused"
else bad "non-cascade route (rc $rc)"; cat "$tmp/err"; fi

finish calibrate
