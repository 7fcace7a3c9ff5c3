#!/usr/bin/env bash
# run.sh BUILD_DIR - builds a seed corpus for every libFuzzer target in
# BUILD_DIR (fuzz_*), then runs each for $FUZZ_SECONDS seconds (default 60).
#
# Each target fuzz_X keeps its corpus in BUILD_DIR/corpus/fuzz_X, which
# persists between runs so that coverage accumulates.  Seeds:
#   fuzz_gguf  small real GGUF files from $EMBER_TEST_DATA (stories260K and
#              the vocabulary files under 2 MB) plus the sound and broken
#              files written by the gguf_seeds tool;
#   fuzz_model those of fuzz_gguf, plus the small test models of the
#              other families ($EMBER_TEST_DATA/models/arch, under 2 MB);
#   fuzz_jinja the templates in tests/fuzz/seeds_jinja/, the built-in
#              templates (printed by BUILD_DIR/render_template --builtin)
#              and the real chat templates under $EMBER_TEST_DATA/templates;
#   fuzz_X     the files in tests/fuzz/seeds_X/ when that folder exists,
#              otherwise none (libFuzzer starts from an empty input).
# Crashing inputs are kept under BUILD_DIR/crashes/fuzz_X/.  The script
# exits 1 when any target crashed (or failed to run), 2 on a usage error.
#
# Environment: FUZZ_SECONDS (per target), FUZZ_MAX_LEN (overrides the
# per-target input size limit), FUZZ_JOBS (targets fuzzed at once, one
# process each; default 2, or 1 on a one-core machine).  Every target
# still gets its full FUZZ_SECONDS: two at a time on two cores halves the
# wall time of the whole run, not the fuzzing each target gets.  Each
# target's output goes to BUILD_DIR/logs/fuzz_X.log and is printed, in
# target order, once every target has finished.
set -u

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 BUILD_DIR   (a build configured with -DEMBER_FUZZ=ON)" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
seconds=${FUZZ_SECONDS:-60}
data=${EMBER_TEST_DATA:-}

shopt -s nullglob
targets=()
for f in "$build"/fuzz_*; do
    [ -f "$f" ] && [ -x "$f" ] && targets+=("$f")
done
if [ ${#targets[@]} -eq 0 ]; then
    echo "run.sh: no fuzz_* programs in $build (configure with -DEMBER_FUZZ=ON and build)" >&2
    exit 1
fi

# Copies the seeds of one target into its corpus folder.
seed_gguf() {
    local corpus=$1 models=${2:-}
    if [ -n "$data" ] && [ -d "$data" ]; then
        [ -f "$data/models/stories260K.gguf" ] && cp -f "$data/models/stories260K.gguf" "$corpus/"
        if [ -d "$data/tokenizers/llama.cpp-vocab" ]; then
            find "$data/tokenizers/llama.cpp-vocab" -maxdepth 1 -name '*.gguf' -size -2097152c \
                -exec cp -f {} "$corpus/" \;
        fi
        if [ -n "$models" ] && [ -d "$data/models/arch" ]; then
            find "$data/models/arch" -maxdepth 1 -name '*.gguf' -size -2097152c -exec cp -f {} "$corpus/" \;
        fi
    else
        echo "run.sh: EMBER_TEST_DATA not set: fuzz_gguf starts without real files" >&2
    fi
    if [ -x "$build/gguf_seeds" ]; then
        "$build/gguf_seeds" "$corpus" || echo "run.sh: gguf_seeds failed" >&2
    else
        echo "run.sh: $build/gguf_seeds not built: no generated seeds" >&2
    fi
}

# fuzz_jinja: its own small templates, the built-in templates (their
# sources as render_template prints them) and the real chat templates of
# the test data (not copied into the repository).
seed_jinja() {
    local corpus=$1 name
    seed_other fuzz_jinja "$corpus"
    if [ -x "$build/render_template" ]; then
        for name in chatml llama2 llama3 gemma mistral; do
            "$build/render_template" --builtin "$name" >"$corpus/builtin-$name.jinja" ||
                echo "run.sh: render_template --builtin $name failed" >&2
        done
    else
        echo "run.sh: $build/render_template not built: no built-in templates as seeds" >&2
    fi
    if [ -n "$data" ] && [ -d "$data/templates" ]; then
        find "$data/templates" -maxdepth 1 -name '*.jinja' -exec cp -f {} "$corpus/" \;
    fi
}

seed_other() {
    local name=$1 corpus=$2
    local seeds="$here/seeds_${name#fuzz_}"
    if [ -d "$seeds" ]; then
        find "$seeds" -maxdepth 1 -type f -exec cp -f {} "$corpus/" \;
    fi
}

jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1
[ "$jobs" -le 2 ] || jobs=2
logs="$build/logs"
mkdir -p "$logs"

# Seeds every corpus first (quick), then fuzzes up to $jobs targets at once.
running=0
for t in "${targets[@]}"; do
    name=$(basename "$t")
    corpus="$build/corpus/$name"
    crashes="$build/crashes/$name"
    mkdir -p "$corpus" "$crashes"
    case $name in
    fuzz_gguf | fuzz_model)
        seed_gguf "$corpus" "$([ "$name" = fuzz_model ] && echo models)"
        # Whole real files (up to 2 MB) must fit, or libFuzzer would cut
        # every seed short and never reach the tensor table.
        max_len=${FUZZ_MAX_LEN:-2097152}
        ;;
    fuzz_jinja)
        seed_jinja "$corpus"
        max_len=${FUZZ_MAX_LEN:-65536}
        ;;
    *)
        seed_other "$name" "$corpus"
        max_len=${FUZZ_MAX_LEN:-65536}
        ;;
    esac
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
    echo "== $name: ${seconds}s, corpus $(find "$corpus" -type f | wc -l) files, max_len $max_len (started)"
    rm -f "$logs/$name.rc"
    (
        "$t" -max_total_time="$seconds" -max_len="$max_len" -timeout=20 -rss_limit_mb=2048 \
            -print_final_stats=1 -artifact_prefix="$crashes/" "$corpus" >"$logs/$name.log" 2>&1
        echo $? >"$logs/$name.rc"
    ) &
    running=$((running + 1))
done
wait

failed=()
for t in "${targets[@]}"; do
    name=$(basename "$t")
    echo "== $name: output"
    cat "$logs/$name.log"
    rc=$(cat "$logs/$name.rc" 2>/dev/null || echo missing)
    if [ "$rc" != 0 ]; then
        echo "== $name: FAILED (exit $rc); inputs in $build/crashes/$name/" >&2
        failed+=("$name")
    else
        echo "== $name: ok"
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "run.sh: crashes found in: ${failed[*]}" >&2
    exit 1
fi
echo "run.sh: every target ran ${seconds}s without a crash"
