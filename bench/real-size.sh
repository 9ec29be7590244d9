#!/usr/bin/env bash
# The real-size figures of issue #15, on synthetic Llama-shaped models (scripts/make-synthetic-llama.py)
# and SmolLM2: quantize -> ppl -> run, each under scripts/peak-rss-anon.py (peak anonymous RSS, wall
# time). A benchmark, not a test: it takes ~40 minutes with the 8B on 2 cores.
#
#   bench/real-size.sh [--sizes "1b 8b"] [--synth DIR] [--out FILE.jsonl]
#
# Models: DIR/llama-1b and DIR/llama-8b (made by `scripts/make-synthetic-llama.py --size 1b|8b`),
# .models/SmolLM2-135M-Instruct.Q4_1.gguf and .models/eval/eval.txt (scripts/fetch-eval-data.sh).
# Checkpoints are written to DIR/llama-SIZE-any4 (replaced). One JSON object per step goes to
# FILE (default /tmp/real-size.jsonl): {"step", "model", "peak_rss_anon_bytes", "wall_s", "rc", ...,
# "result": the command's own --json output}.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes="1b 8b"; synth=/work/synth; out=/tmp/real-size.jsonl
while [ $# -gt 0 ]; do
    case "$1" in
        --sizes) sizes=$2; shift 2 ;;
        --synth) synth=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "usage: $0 [--sizes \"1b 8b\"] [--synth DIR] [--out FILE]" >&2; exit 2 ;;
    esac
done
any4=.build/release/any4
[ -x "$any4" ] || { echo "build first: swift build -c release" >&2; exit 2; }
text=.models/eval/eval.txt
[ -f "$text" ] || scripts/fetch-eval-data.sh >&2
smol=.models/SmolLM2-135M-Instruct.Q4_1.gguf
: > "$out"

# step NAME MODEL -- CMD...: runs CMD under the sampler, appends one JSON line.
step() {
    local name=$1 model=$2; shift 3
    local rss; rss=$(mktemp); local res; res=$(mktemp)
    echo "== $name: $*" >&2
    set +e
    python3 scripts/peak-rss-anon.py --interval-ms 20 --json-out "$rss" -- "$@" > "$res"
    set -e
    python3 - "$name" "$model" "$rss" "$res" >> "$out" <<'PY'
import json, sys
name, model, rss, res = sys.argv[1:5]
o = json.load(open(rss))
o.pop("command", None)
text = open(res).read().strip()
try:
    o["result"] = json.loads(text.splitlines()[-1]) if text else None
except Exception:
    o["result"] = text[-500:]
print(json.dumps({"step": name, "model": model, **o}))
PY
    tail -1 "$out" | python3 -c 'import json,sys; o=json.loads(sys.stdin.read()); print("   rc %s  %.1f s  peak RssAnon %.2f GiB" % (o["rc"], o["wall_s"], o["peak_rss_anon_bytes"]/2**30))' >&2
    rm -f "$rss" "$res"
}

for s in $sizes; do
    src=$synth/llama-$s; ck=$synth/llama-$s-any4
    [ -d "$src" ] || { echo "missing $src: scripts/make-synthetic-llama.py --size $s $src" >&2; exit 2; }
    rm -rf "$ck"
    step "quantize any4 ($s)" "$src" -- $any4 quantize "$src" --format any4 --out "$ck" --json
    step "ppl any4 checkpoint ($s)" "$ck" -- $any4 ppl "$ck" --text $text --ctx 512 --chunks 2 --json
    step "ppl --format any4 on the original ($s)" "$src" -- $any4 ppl "$src" --text $text --ctx 512 --chunks 2 --format any4 --json
    step "run any4 checkpoint ($s)" "$ck" -- $any4 run "$ck" -p "The quick brown fox" -n 16 --warmup --json
done
step "ppl as stored (SmolLM2)" "$smol" -- $any4 ppl $smol --text $text --ctx 512 --json
step "run as stored (SmolLM2)" "$smol" -- $any4 run $smol -p "The quick brown fox" -n 64 --warmup --json
step "run any4 (SmolLM2)" "$smol" -- $any4 run $smol -p "The quick brown fox" -n 64 --warmup --format any4 --json
echo "results: $out" >&2
