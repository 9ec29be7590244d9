#!/bin/bash
# The brief's table: old (d1f4157's AVX-512 path) and new, interleaved, 3 repetitions; KB_THREADS (default 2).
cd "$(dirname "$0")"
for s in "576 576" "192 576" "1536 576" "576 1536" "4096 14336"; do
  for m in 16 64 128; do
    runs=100; [ "$s" = "4096 14336" ] && runs=8
    ./kbc $s $m 128 $runs 3
  done
done
