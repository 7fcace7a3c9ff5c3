#!/usr/bin/env bash
# f16-abba.sh A B [K NW NA ROUNDS [LDO]] - two versions of the AVX-512 F16
# panel kernel (src/quant/arch/x86/gemm_float_avx512.c) in one program,
# called in turn A B B A round after round (bench/f16-abba.c): the median
# and range of the rounds' speed ratios B/A, each build's GFLOP/s (thread
# CPU time), and whether their outputs differ by a bit.  On a shared
# machine this resolves kernel changes of 1-3%, which alternating runs of
# two builds do not.
#
# A and B are each a file (a copy of gemm_float_avx512.c) or a git
# revision (its gemm_float_avx512.c); both compile against this tree's
# headers.  Defaults: K=2048 NW=2048 NA=128 ROUNDS=15, LDO=NW (output row
# stride in floats).  Environment: CC (default gcc), CFLAGS (added; e.g.
# -DEM_FP_KC=128 to try a build constant), CHRT=1 to run at real-time
# priority (chrt -f 10) for runs under a minute, COPIES=N to give the
# calls N copies of the weights in turn (N x NW x K x 2 bytes of 48 MB or
# more read each call's weights from memory, as the engine does; with
# one copy a chunk's weights stay in the L3 cache).
#
# example: bench/f16-abba.sh main src/quant/arch/x86/gemm_float_avx512.c 2048 288 128 21 2048
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 A B [K NW NA ROUNDS [LDO]]" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KERNEL=src/quant/arch/x86/gemm_float_avx512.c
CC=${CC:-gcc}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
source_of() { # A-or-B name -> writes $TMP/name.c
    if [ -f "$1" ]; then
        cp "$1" "$TMP/$2.c"
    else
        git -C "$ROOT" show "$1:$KERNEL" >"$TMP/$2.c" || { echo "f16-abba: no file or revision $1" >&2; exit 2; }
    fi
}
source_of "$1" a
source_of "$2" b
for v in a b; do
    # shellcheck disable=SC2086
    "$CC" -std=c11 -O3 -DNDEBUG -D_GNU_SOURCE -I"$ROOT/src" -I"$ROOT/include" ${CFLAGS:-} \
        -Dem_gemm_f16_panels_avx512=abba_${v}_f16 -Dem_gemm_bf16_panels_avx512=abba_${v}_bf16 \
        -Dem_gemm_f32_panels_avx512=abba_${v}_f32 -c "$TMP/$v.c" -o "$TMP/$v.o"
done
"$CC" -std=c11 -O2 "$ROOT/bench/f16-abba.c" "$TMP/a.o" "$TMP/b.o" -o "$TMP/f16-abba"
shift 2
set -- "${1:-2048}" "${2:-2048}" "${3:-128}" "${4:-15}" ${5:+"$5"}
if [ "${CHRT:-0}" = 1 ]; then
    chrt -f 10 "$TMP/f16-abba" "$@"
else
    "$TMP/f16-abba" "$@"
fi
