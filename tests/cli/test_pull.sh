#!/usr/bin/env bash
# Acceptance of `ember pull`, the library (list/show/rm, -m by name) and
# bundles, against tests/tools/fake_hub.py on loopback serving copies of
# stories260K: pull, the default and nearest quantization, resume after a
# cut connection and across pulls, a checksum mismatch refused, split
# models (made by the gguf_split tool) that run as one, the mirror
# endpoint, HF_TOKEN, EMBER_OFFLINE, bundles (round trip, tampered and
# truncated refused, ed25519 signatures).
. "$(dirname "$0")/lib.sh"
need_data
need_cmd python3
TOOLS=${EMBER_TOOLS_DIR:-$(dirname "$EMBER_BIN")}
[ -x "$TOOLS/gguf_split" ] || { echo "SKIP: $TOOLS/gguf_split is not built"; exit 77; }
HUB_PY="$(cd "$(dirname "$0")/../tools" && pwd)/fake_hub.py"
M="$EMBER_TEST_DATA/models/stories260K.gguf"
tmp=$(mktemp -d)
hub_pid=
stop_hub() { if [ -n "$hub_pid" ]; then kill "$hub_pid" 2>/dev/null; wait "$hub_pid" 2>/dev/null; hub_pid=; fi; }
trap 'stop_hub; rm -rf "$tmp"' EXIT

# Loopback only: no proxy may get in the way, and no token leaks in.
unset http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY HF_TOKEN EMBER_OFFLINE
export no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost

# Repositories: two quantizations of one model (copies of stories260K
# under quantization names), and the model split in three parts.
mkdir -p "$tmp/repo1/sub" "$tmp/repo2"
cp "$M" "$tmp/repo1/stories260K-F32.gguf"
cp "$M" "$tmp/repo1/stories260K-Q8_0.gguf"
cp "$M" "$tmp/repo1/sub/mmproj-stories-F16.gguf"   # a projector: never picked
cp "$M" "$tmp/repo1/stories260K-UD-Q3_K_XL.gguf"    # a tag outside the table
echo "# a model card" > "$tmp/repo1/README.md"
"$TOOLS/gguf_split" "$M" "$tmp/repo2/stories260K-Q8_0" 3 || { echo "FAIL: gguf_split"; exit 1; }
SHA=$(sha256sum "$M" | cut -d' ' -f1)
SIZE=$(stat -c %s "$M")

start_hub() {  # extra fake_hub options
    stop_hub
    rm -f "$tmp/port" "$tmp/hub.log"
    python3 "$HUB_PY" --repo test/stories-GGUF="$tmp/repo1" --repo test/split-GGUF="$tmp/repo2" \
        --port-file "$tmp/port" --log "$tmp/hub.log" "$@" &
    hub_pid=$!
    for _ in $(seq 150); do [ -s "$tmp/port" ] && break; sleep 0.1; done
    [ -s "$tmp/port" ] || { echo "FAIL: fake hub did not start"; exit 1; }
    export HF_ENDPOINT="http://127.0.0.1:$(cat "$tmp/port")"
    touch "$tmp/hub.log"
}
E="$EMBER_BIN"
ref=$("$E" run -m "$M" --temp 0 -n 48 2>/dev/null)
[ -n "$ref" ] || { echo "FAIL: no reference text"; exit 1; }

# ---- usage: --help exits 0 on stdout, a bad option or a missing argument 2
for c in pull list show rm bundle "bundle export" "bundle import" "bundle keygen"; do
  $EMBER_BIN $c --help >"$tmp/out" 2>&1
  check "$c --help" '[ $? -eq 0 ] && grep -q "usage: ember" "$tmp/out"'
  $EMBER_BIN $c --no-such-option >/dev/null 2>"$tmp/err"
  check "$c: a bad option is a usage error" '[ $? -eq 2 ] && [ $(wc -l <"$tmp/err") -ge 1 ]'
done

# ---- pull, quantization choice, list, run by name
start_hub
export EMBER_HOME="$tmp/home1"
"$E" pull hf.co/test/stories-GGUF:F32 >"$tmp/out" 2>"$tmp/err"
check "pull :F32" '[ $? -eq 0 ] && grep -q "pulled test/stories-GGUF:F32" "$tmp/out"'
f="$EMBER_HOME/models/test/stories-GGUF/stories260K-F32.gguf"
check "pulled file has the hub's sha256" '[ "$(sha256sum "$f" | cut -d" " -f1)" = "$SHA" ]'
check "progress on stderr" 'grep -q "100%" "$tmp/err"'
"$E" pull hf.co/test/stories-GGUF >"$tmp/out" 2>"$tmp/err"
check "no Q4_K_M: the nearest (Q8_0) is taken" 'grep -q "pulled test/stories-GGUF:Q8_0" "$tmp/out" && grep -q "nearest" "$tmp/err"'
"$E" pull hf.co/test/stories-GGUF:Q2_K >"$tmp/out" 2>"$tmp/err"
check "an absent quantization asked by name is refused" '[ $? -eq 1 ] && grep -q "no Q2_K" "$tmp/err" && grep -q "F32" "$tmp/err"'
"$E" pull hf.co/test/stories-GGUF:ud-q3_k_xl >"$tmp/out" 2>"$tmp/err"
check "a tag outside the table picks the file that names it" '[ $? -eq 0 ] && grep -q "pulled test/stories-GGUF:UD-Q3_K_XL" "$tmp/out"'
"$E" rm test/stories-GGUF:UD-Q3_K_XL >/dev/null
"$E" list >"$tmp/list"
check "list: name, quant, size, arch, context" 'grep -E "^test/stories-GGUF:F32 +F32 +1.1 MiB +llama +2048" "$tmp/list" >/dev/null'
check "list: the projector is not a model" '! grep -q mmproj "$tmp/list"'
out=$("$E" run -m test/stories-GGUF:F32 --temp 0 -n 48 2>/dev/null)
check "run -m NAME gives the file's text" '[ "$out" = "$ref" ]'
out=$("$E" run -m hf.co/test/stories-GGUF:Q8_0 --temp 0 -n 48 2>/dev/null)
check "run -m hf.co/NAME" '[ "$out" = "$ref" ]'
"$E" tokenize -m test/stories-GGUF:Q8_0 -p "Once upon" >/dev/null 2>&1
check "tokenize -m NAME" '[ $? -eq 0 ]'
"$E" run -m no/such-model -n 1 >/dev/null 2>"$tmp/err"
check "an unknown name says so" '[ $? -ne 0 ] && grep -q "ember list" "$tmp/err"'
"$E" show test/stories-GGUF:F32 >"$tmp/show"
check "show: metadata, licence, template" 'grep -q "llama.context_length = 2048" "$tmp/show" && grep -q "^license:" "$tmp/show" && grep -q "^chat template" "$tmp/show"'
"$E" pull test/stories-GGUF/stories260K-F32.gguf >"$tmp/out" 2>"$tmp/err"
check "pull ORG/REPO/FILE.gguf, already present: no download" '[ $? -eq 0 ] && grep -q "already in the library" "$tmp/err"'

# ---- offline
: >"$tmp/hub.log"
EMBER_OFFLINE=1 "$E" pull hf.co/test/stories-GGUF:F32 >"$tmp/out" 2>"$tmp/err"
check "EMBER_OFFLINE=1 refuses pull, touching nothing" '[ $? -eq 1 ] && grep -q EMBER_OFFLINE "$tmp/err" && [ ! -s "$tmp/hub.log" ]'
EMBER_OFFLINE=1 "$E" run -m test/stories-GGUF:F32 -n 4 >/dev/null 2>&1
check "EMBER_OFFLINE=1: library models still run" '[ $? -eq 0 ]'

# ---- rm
"$E" rm test/stories-GGUF:Q8_0 >/dev/null
check "rm: gone from list and disk" '! "$E" list | grep -q Q8_0 && [ ! -e "$EMBER_HOME/models/test/stories-GGUF/stories260K-Q8_0.gguf" ]'
"$E" rm test/stories-GGUF:Q8_0 >/dev/null 2>"$tmp/err"
check "rm of an absent model fails" '[ $? -eq 1 ] && grep -q "no model named" "$tmp/err"'

# ---- split model
"$E" pull hf.co/test/split-GGUF >"$tmp/out" 2>"$tmp/err"
check "pull a split model" '[ $? -eq 0 ] && [ $(ls "$EMBER_HOME/models/test/split-GGUF" | wc -l) -eq 3 ]'
out=$("$E" run -m test/split-GGUF --temp 0 -n 48 2>/dev/null)
check "the split model runs as one, same text" '[ "$out" = "$ref" ]'

# ---- the mirror endpoint: a trailing slash, every request to it
export EMBER_HOME="$tmp/home2"
: >"$tmp/hub.log"
HF_ENDPOINT="$HF_ENDPOINT/" "$E" pull hf.co/test/stories-GGUF:F32 >/dev/null 2>&1
check "HF_ENDPOINT mirror" '[ $? -eq 0 ] && grep -q "GET /api/models/test/stories-GGUF/tree/main" "$tmp/hub.log"'

# ---- resume after a cut connection (within one pull); the listing in pages
start_hub --cut-after 300000 --page-size 2
export EMBER_HOME="$tmp/home3"
"$E" pull hf.co/test/stories-GGUF:F32 >"$tmp/out" 2>"$tmp/err"
check "cut connection: resumed with a Range request" '[ $? -eq 0 ] && grep -q "range=bytes=300000-" "$tmp/hub.log"'
check "a listing in pages is followed to its end" '[ $(grep -c "tree/main" "$tmp/hub.log") -ge 3 ] && grep -q "cursor=4" "$tmp/hub.log"'
check "cut connection: the result is whole" '[ "$(sha256sum "$EMBER_HOME/models/test/stories-GGUF/stories260K-F32.gguf" | cut -d" " -f1)" = "$SHA" ]'

# ---- resume across pulls: a .part left by an earlier run
start_hub
export EMBER_HOME="$tmp/home4"
mkdir -p "$EMBER_HOME/models/test/stories-GGUF"
head -c 200000 "$M" >"$EMBER_HOME/models/test/stories-GGUF/stories260K-F32.gguf.part"
"$E" pull hf.co/test/stories-GGUF:F32 >"$tmp/out" 2>"$tmp/err"
check "a .part from an earlier pull is resumed" '[ $? -eq 0 ] && grep -q "range=bytes=200000-" "$tmp/hub.log" && grep -q resuming "$tmp/err"'
check "resumed file is whole, .part gone" '[ "$(sha256sum "$EMBER_HOME/models/test/stories-GGUF/stories260K-F32.gguf" | cut -d" " -f1)" = "$SHA" ] && [ ! -e "$EMBER_HOME/models/test/stories-GGUF/stories260K-F32.gguf.part" ]'

# ---- checksum mismatch
start_hub --bad-sha
export EMBER_HOME="$tmp/home5"
"$E" pull hf.co/test/stories-GGUF:F32 >"$tmp/out" 2>"$tmp/err"
check "a wrong sha256 is refused" '[ $? -eq 1 ] && grep -q checksum "$tmp/err"'
check "nothing kept after a checksum failure" '[ -z "$(find "$EMBER_HOME/models" -type f)" ] && ! "$E" list | grep -q stories'

# ---- HF_TOKEN
start_hub --token sesame
export EMBER_HOME="$tmp/home6"
"$E" pull hf.co/test/stories-GGUF:F32 >"$tmp/out" 2>"$tmp/err"
check "no token: 401 names HF_TOKEN" '[ $? -eq 1 ] && grep -q HF_TOKEN "$tmp/err"'
HF_TOKEN=sesame "$E" pull hf.co/test/stories-GGUF:F32 >"$tmp/out" 2>"$tmp/err"
check "HF_TOKEN sent as a bearer token" '[ $? -eq 0 ] && grep -q "auth=yes" "$tmp/hub.log"'
stop_hub

# ---- bundles: round trip (from home1: F32 and the split model)
export EMBER_HOME="$tmp/home1"
"$E" bundle export test/stories-GGUF:F32 test/split-GGUF:Q8_0 -o "$tmp/b.tar" >/dev/null 2>"$tmp/err"
check "bundle export" '[ $? -eq 0 ] && [ -s "$tmp/b.tar" ] && [ ! -e "$tmp/b.tar.tmp" ]'
if command -v tar >/dev/null; then
  check "the bundle is a tar other tools read" 'tar tf "$tmp/b.tar" | head -1 | grep -qx manifest.json'
fi
export EMBER_HOME="$tmp/imp1"
"$E" bundle import "$tmp/b.tar" >"$tmp/out" 2>"$tmp/err"
check "bundle import" '[ $? -eq 0 ] && "$E" list | grep -q "test/split-GGUF:Q8_0" && "$E" list | grep -q "test/stories-GGUF:F32"'
out=$("$E" run -m test/split-GGUF:Q8_0 --temp 0 -n 48 2>/dev/null)
check "imported split model runs" '[ "$out" = "$ref" ]'
check "import leaves no temporary folder" '[ -z "$(ls -A "$EMBER_HOME/tmp")" ]'

# ---- tampered and truncated bundles
python3 - "$tmp/b.tar" "$tmp/bad.tar" <<'PY'
import sys
d = bytearray(open(sys.argv[1], "rb").read())
d[len(d) // 2] ^= 0x01          # inside a model file's data
open(sys.argv[2], "wb").write(d)
PY
export EMBER_HOME="$tmp/imp2"
"$E" bundle import "$tmp/bad.tar" >"$tmp/out" 2>"$tmp/err"
check "a tampered bundle is refused" '[ $? -eq 1 ] && grep -q "does not match the manifest" "$tmp/err"'
check "tampered: nothing imported, nothing left" '! "$E" list | grep -q test/ && [ -z "$(find "$EMBER_HOME/models" "$EMBER_HOME/tmp" -type f 2>/dev/null)" ]'
head -c $(( $(stat -c %s "$tmp/b.tar") * 2 / 3 )) "$tmp/b.tar" >"$tmp/short.tar"
"$E" bundle import "$tmp/short.tar" >"$tmp/out" 2>"$tmp/err"
check "a truncated bundle is refused" '[ $? -eq 1 ] && grep -q "truncated" "$tmp/err"'
check "truncated: nothing imported, nothing left" '! "$E" list | grep -q test/ && [ -z "$(find "$EMBER_HOME/models" "$EMBER_HOME/tmp" -type f 2>/dev/null)" ]'
head -c 1536 "$tmp/b.tar" >"$tmp/short2.tar"   # the manifest, then the end of the file
"$E" bundle import "$tmp/short2.tar" >"$tmp/out" 2>"$tmp/err"
check "a bundle cut between entries is refused" '[ $? -eq 1 ] && grep -qE "missing|truncated" "$tmp/err"'
printf 'not a tar at all' >"$tmp/junk.tar"
"$E" bundle import "$tmp/junk.tar" >"$tmp/out" 2>"$tmp/err"
check "junk is refused" '[ $? -eq 1 ] && grep -q "bundle" "$tmp/err"'

# ---- signing
export EMBER_HOME="$tmp/home1"
"$E" bundle keygen -o "$tmp/k1" >/dev/null && "$E" bundle keygen -o "$tmp/k2" >/dev/null
check "keygen writes a secret (0600) and a public key" '[ "$(stat -c %a "$tmp/k1")" = 600 ] && [ -s "$tmp/k1.pub" ]'
"$E" bundle keygen -o "$tmp/k1" >/dev/null 2>&1
check "keygen refuses to overwrite" '[ $? -eq 1 ]'
"$E" bundle export test/stories-GGUF:F32 -o "$tmp/s.tar" --sign "$tmp/k1" >/dev/null
check "signed export" '[ $? -eq 0 ]'
export EMBER_HOME="$tmp/imp3"
"$E" bundle import "$tmp/s.tar" --require-signer "$tmp/k1.pub" >/dev/null 2>"$tmp/err"
check "the right signer is accepted" '[ $? -eq 0 ] && "$E" list | grep -q test/stories-GGUF:F32'
export EMBER_HOME="$tmp/imp4"
"$E" bundle import "$tmp/s.tar" --require-signer "$tmp/k2.pub" >/dev/null 2>"$tmp/err"
check "a wrong signer is refused" '[ $? -eq 1 ] && grep -q "signed by key" "$tmp/err" && ! "$E" list | grep -q test/'
"$E" bundle import "$tmp/b.tar" --require-signer "$tmp/k1.pub" >/dev/null 2>"$tmp/err"
check "an unsigned bundle is refused under --require-signer" '[ $? -eq 1 ] && grep -q "not signed" "$tmp/err" && ! "$E" list | grep -q test/'
# A signed manifest changed after signing: rename a model inside it (same
# length, so the tar stays well-formed) and fix the header checksum.
python3 - "$tmp/s.tar" "$tmp/s2.tar" <<'PY'
import sys
d = bytearray(open(sys.argv[1], "rb").read())
i = d.index(b"test/stories-GGUF:F32", 512)
d[i:i + 4] = b"TEST"
open(sys.argv[2], "wb").write(d)
PY
"$E" bundle import "$tmp/s2.tar" >/dev/null 2>"$tmp/err"
check "a manifest changed after signing is refused" '[ $? -eq 1 ] && grep -q "does not verify" "$tmp/err" && ! "$E" list | grep -q -i test/'

finish
