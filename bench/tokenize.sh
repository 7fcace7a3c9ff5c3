#!/bin/bash
# tokenize.sh OLD_EMBER NEW_EMBER [RUNS] - whole-process tokenizer timings on
# War and Peace, alternating old and new, median of RUNS per vocabulary.
old=$1 new=$2 runs=${3:-5}
V=${EMBER_TEST_DATA:-$(dirname "$0")/../../shared}/tokenizers/llama.cpp-vocab
W=${EMBER_TEST_DATA:-$(dirname "$0")/../../shared}/text/war-and-peace.txt
for voc in gpt-2 falcon starcoder gpt-neox bert-bge llama-spm; do
  for i in $(seq $runs); do
    for b in old new; do
      bin=$old; [ $b = new ] && bin=$new
      s=$(date +%s%N); $bin tokenize -m $V/ggml-vocab-$voc.gguf -f $W --ids --no-bos >/dev/null; e=$(date +%s%N)
      echo "$voc $b $(( (e - s) / 1000000 ))"
    done
  done
done | sort -k1,2 -k3n | awk '{k=$1" "$2; v[k]=v[k]" "$3; c[k]++} END {for (k in v) {n=split(v[k],a," "); print k, "median_ms", a[int((n+1)/2)], "runs", v[k]}}' | sort
