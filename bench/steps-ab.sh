#!/bin/sh
# Generation speed of two builds, in alternating pairs (A, B, A, B, ...):
#   bench/steps-ab.sh BUILD_A BUILD_B [PAIRS]
# BUILD_A/B are build folders holding `ember`.  Each run is
# `ember bench -p 0 -n $N -r $R --mmap 0 -t $T` on one model; a line per
# pair gives both speeds (t/s) and their ratio A/B, then the median ratio
# per type.  Environment: TYPES (default: Q4_0 Q5_K_M Q6_K Q4_K_M Q8_0
# F16), MODELS (a path with TYPE in place of the type, default
# /tmp/ember-bench/llama-1b-TYPE.gguf), ISA (the EMBER_CPU set, default
# avx2; "native" for the machine's best), N (32), R (3), T (2).
# On a loaded machine only the ratios of pairs mean anything.
A=${1:?usage: steps-ab.sh BUILD_A BUILD_B [PAIRS]}; B=${2:?usage: steps-ab.sh BUILD_A BUILD_B [PAIRS]}
PAIRS=${3:-2}
TYPES=${TYPES:-Q4_0 Q5_K_M Q6_K Q4_K_M Q8_0 F16}
MODELS=${MODELS:-/tmp/ember-bench/llama-1b-TYPE.gguf}
ISA=${ISA-avx2}; [ "$ISA" = native ] && ISA=""
N=${N:-32}; R=${R:-3}; T=${T:-2}
tg() { # build model -> t/s of the tg test
    EMBER_CPU=$ISA "$1/ember" bench -m "$2" -p 0 -n "$N" -r "$R" --mmap 0 -t "$T" 2>/dev/null |
        awk -F'|' -v t="tg$N" '$6 ~ t { split($7, v, " "); print v[1] }'
}
echo "A=$A B=$B isa=${ISA:-native} threads=$T tg$N x$R, $PAIRS pairs per type"
for ty in $TYPES; do
    m=$(echo "$MODELS" | sed "s/TYPE/$ty/")
    i=0; ratios=""
    while [ $i -lt "$PAIRS" ]; do
        a=$(tg "$A" "$m"); b=$(tg "$B" "$m")
        r=$(awk -v a="$a" -v b="$b" 'BEGIN { if (a > 0 && b > 0) printf "%.3f", a / b; else print "nan" }')
        echo "$ty pair $((i + 1)): A $a  B $b  A/B $r"
        ratios="$ratios $r"; i=$((i + 1))
    done
    echo "$ratios" | tr ' ' '\n' | grep -v '^$' | sort -n |
        awk -v ty="$ty" '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s median A/B %.3f over %d pairs\n", ty, m, NR }'
done
