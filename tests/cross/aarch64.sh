#!/usr/bin/env bash
# aarch64.sh - checks ember's NEON dot-product kernels (src/quant/arch/arm/)
# against their scalar twins on an emulated aarch64 CPU.
#
# It cross-compiles the part of ember that tests/unit/test_quant.c needs
# (src/core, src/gguf, src/quant) and test_quant.c itself for aarch64,
# statically, with the project's warnings as errors, and runs the result
# under qemu-user.  On aarch64 the dispatcher installs the NEON kernels, and
# test_quant compares em_vec_dot (so the NEON kernel) with
# em_vec_dot_generic for every weight type, on synthetic rows and, when
# EMBER_TEST_DATA is set, on the real tiny-256 model files.
#
# Two builds cover both code paths of the kernels:
#   neon           ARMv8.0 baseline (int8 products by widening multiplies);
#                  runs the whole of test_quant
#   neon-dotprod   -march=armv8.2-a+dotprod (SDOT); runs the synthetic tests
#                  only: it differs from the baseline in one helper, and the
#                  real-file part costs minutes under emulation
# EMBER_CROSS_QUICK=1 runs the baseline without the real files too.
#
# Needs aarch64-linux-gnu-gcc and qemu-aarch64 (Debian: gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross, qemu-user); exits 77 (skip) when they are missing.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
skip_msg="SKIP: no aarch64 cross compiler / qemu-user installed"

cc=${EMBER_CROSS_CC:-aarch64-linux-gnu-gcc}
ar=${EMBER_CROSS_AR:-aarch64-linux-gnu-ar}
qemu=""
for q in qemu-aarch64 qemu-aarch64-static; do
  if command -v "$q" >/dev/null 2>&1; then qemu=$q; break; fi
done
if ! command -v "$cc" >/dev/null 2>&1 || ! command -v "$ar" >/dev/null 2>&1 || [ -z "$qemu" ]; then
  echo "$skip_msg"
  exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ember-aarch64.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The compiler alone is not enough: static linking needs the aarch64 libc
# (libc6-dev-arm64-cross).  A two-line program tells.
printf 'int main(void) { return 0; }\n' >"$work/probe.c"
if ! "$cc" -static "$work/probe.c" -o "$work/probe" >"$work/probe.log" 2>&1; then
  echo "$skip_msg (the cross compiler cannot link a static program:" \
    "is libc6-dev-arm64-cross installed?)"
  exit 77
fi

# The project's own warning set (CMakeLists.txt), as errors.
cflags=(-std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Wshadow -Wno-unused-parameter -Werror
  -I"$root/include" -I"$root/src" -I"$root/tests/unit")

mapfile -t sources < <(cd "$root" && find src/core src/gguf src/quant -name '*.c' | sort)

# build NAME [EXTRA CFLAGS...]: objects into an archive, so that only what
# test_quant uses is linked, then the test binary $work/NAME/test_quant.
build() {
  local name=$1
  shift
  local dir="$work/$name"
  mkdir -p "$dir/obj"
  local objs=()
  for src in "${sources[@]}"; do
    local obj="$dir/obj/${src//\//_}.o"
    "$cc" "${cflags[@]}" "$@" -c "$root/$src" -o "$obj"
    objs+=("$obj")
  done
  "$ar" rcs "$dir/libember.a" "${objs[@]}"
  "$cc" "${cflags[@]}" "$@" "$root/tests/unit/test_quant.c" "$dir/libember.a" \
    -static -lm -lpthread -o "$dir/test_quant"
}

passed=0
failed=0

# run NAME EXPECTED_ISA WITH_DATA: runs one build's test_quant under qemu
# and checks that the dispatcher really picked the NEON kernels, since a
# generic-vs-generic comparison would pass without testing anything.
run() {
  local name=$1 isa=$2 with_data=$3
  local log="$work/$name.log" rc=0 start end
  local unset_args=(-u EMBER_CPU)
  [ "$with_data" = 1 ] || unset_args+=(-u EMBER_TEST_DATA)
  start=$(date +%s)
  env "${unset_args[@]}" QEMU_CPU=max "$qemu" "$work/$name/test_quant" >"$log" 2>&1 || rc=$?
  end=$(date +%s)
  local summary
  summary=$(tail -n 1 "$log")
  # Without the data, test_quant runs its synthetic checks and then exits
  # 77 for the real-file part it could not run: that is this run's pass.
  if [ "$with_data" = 0 ] && [ "$rc" -eq 77 ]; then rc=0; fi
  if [ "$rc" -ne 0 ]; then
    cat "$log"
    echo "FAIL $name: test_quant exited $rc ($summary)"
    failed=$((failed + 1))
  elif ! grep -q "em_vec_dot kernels: $isa\$" "$log"; then
    cat "$log"
    echo "FAIL $name: the dispatcher did not select the '$isa' kernels"
    failed=$((failed + 1))
  else
    local what="synthetic rows"
    grep -q "^SKIP: EMBER_TEST_DATA" "$log" || what="synthetic rows and real model files"
    echo "PASS $name: $summary ($what, $((end - start)) s under $qemu)"
    passed=$((passed + 1))
  fi
}

with_data=1
if [ -z "${EMBER_TEST_DATA:-}" ] || [ "${EMBER_CROSS_QUICK:-0}" = 1 ]; then with_data=0; fi
[ -n "${EMBER_TEST_DATA:-}" ] || echo "note: EMBER_TEST_DATA is not set; the real model files are not checked"

echo "building test_quant for aarch64 with $cc"
build neon -march=armv8-a
build neon-dotprod -march=armv8.2-a+dotprod
run neon neon "$with_data"
run neon-dotprod neon-dotprod 0

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
