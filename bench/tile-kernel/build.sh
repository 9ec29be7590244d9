#!/bin/bash
# Builds kbc (kb.c) against this checkout's kernels, plus the AVX-512 kernel before the tile kernel
# (commit d1f4157) with renamed symbols as the "old" path. Needs clang and gcc (OpenMP).
# Usage: bench/tile-kernel/build.sh && bench/tile-kernel/kbc ROWS COLS M [G] [RUNS] [REPS] [ZEROS]
set -e
cd "$(dirname "$0")"
SRC=$(git rev-parse --show-toplevel)/Sources/CAny4Kernels
OUT=${TMPDIR:-/tmp}/any4-tile-kernel-obj
rm -rf "$OUT"; mkdir -p "$OUT"
for f in "$SRC"/*.c; do clang -O2 $KCFLAGS -I"$SRC"/include -I"$SRC" -c "$f" -o "$OUT"/$(basename "$f" .c).o & done
git show d1f4157:Sources/CAny4Kernels/lut_gemm_avx512.c > "$OUT"/old_avx512.c
clang -O2 -I"$SRC"/include -I"$SRC" -Dany4_lut_fast_avx512=old_any4_lut_fast_avx512 \
    -Dany4_fast_activations_avx512=old_any4_fast_activations_avx512 -Dany4_lut_tiles_avx512=old_unused_tiles \
    -Dany4_fast_tiles_x_avx512=old_unused_tiles_x -c "$OUT"/old_avx512.c -o "$OUT"/old.o &
wait
gcc -O2 -fopenmp -I"$SRC"/include kb.c "$OUT"/*.o -o kbc -lm
