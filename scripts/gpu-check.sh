#!/usr/bin/env bash
# The GPU check of issue 7, for a machine with an NVIDIA GPU (it needs no Swift there).
#
# Here:   swift build -c release --static-swift-stdlib
#         mkdir -p gpu && cp .build/release/any4 gpu/ && cp scripts/gpu-check.sh gpu/
#         (plus, beside it, any library `ldd gpu/any4` shows missing on a bare Ubuntu:
#          libncursesw.so.6, libopenblas.so.0 …)
# There:  LD_LIBRARY_PATH=$PWD/gpu gpu/gpu-check.sh [OUT]     (pip install nvidia-cuda-nvrtc-cu12
#         nvidia-cublas-cu12 when no CUDA toolkit is installed)
#
# Writes OUT/info.json, OUT/correctness.json (every 4-bit format against the f64 product, m = 1…16,
# rel_error must be ≤ 1e-3) and OUT/bench.json (4096x4096, 14336x4096, 4096x14336 at m = 1 and 8 for
# any4, int4, our bf16 kernel and cuBLAS bf16), and prints the lines that matter.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
any4="${ANY4:-$here/any4}"
out="${1:-gpu-results}"
mkdir -p "$out"

"$any4" info
"$any4" info --json > "$out/info.json"

"$any4" bench --device gpu --shape 4096x4096 1000x1300 --batch 1,3,8,16 --format any4,int4,nf4,bf16 \
    --runs 5 --json > "$out/correctness.json"
"$any4" bench --device gpu --shape 4096x4096 14336x4096 4096x14336 --batch 1,8 --format any4,int4,bf16,blas \
    --runs 50 --json > "$out/bench.json"

if command -v python3 > /dev/null; then
    python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
c = json.load(open(f"{out}/correctness.json"))
bad = [r for r in c["results"] if r.get("unavailable") or not r["rel_error"] <= 1e-3]
print(f"correctness: {len(c['results']) - len(bad)}/{len(c['results'])} rows within 1e-3")
for r in bad: print("  FAIL", r)
b = json.load(open(f"{out}/bench.json"))
probe = b.get("gpu_probe_gbps") or float("nan")
print(f"device copy probe {probe:.0f} GB/s")
for r in b["results"]:
    if r.get("unavailable"): print(r["format"], r["shape"], r["batch"], "unavailable:", r["unavailable"]); continue
    vs = r.get("vs_cublas")
    print(f"{r['format']:6} {r['shape'][0]}x{r['shape'][1]:<6} m={r['batch']:<3} {r['median_us']:8.1f} µs "
          f"{r['gbps']:7.0f} GB/s ({100 * r['gbps'] / probe:3.0f}% of copy)  vs cuBLAS {vs if vs is None else round(vs, 2)}x")
PY
fi
