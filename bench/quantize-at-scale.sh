#!/usr/bin/env bash
# The figures of issue #16 (quantize any size): a benchmark, not a test (~25 minutes on 2 cores with
# the 8B; run it on a quiet machine).
#
#   bench/quantize-at-scale.sh [--synth DIR] [--work DIR] [--out FILE.jsonl] [--no-8b]
#
# 1. `quantize --format any4` on DIR/llama-8b: peak anonymous RSS and wall time (targets 3 GiB, 450 s).
# 2. On DIR/llama-1b: the unsplit run, then `--shard 0/3`, `1/3`, `2/3` one after another (each timed:
#    the parts should be within 15 % of each other) and `any4 merge`; sha256 of every tensor of the
#    merged folder against the unsplit one (bench/tensor-sha256.py).
# 3. kill -9 at ~50 %: a 1B run with --max-shard-size 200MB (7 shards) is killed once half of its
#    shards are complete, then rerun: how many shards it reused, and its tensors against a reference.
# Outputs go under WORK (default /tmp/quantize-at-scale; removed at the end). One JSON object per step
# goes to FILE (default /tmp/quantize-at-scale.jsonl) and a summary to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
synth=/work/synth; work=/tmp/quantize-at-scale; out=/tmp/quantize-at-scale.jsonl; big=1
while [ $# -gt 0 ]; do
    case "$1" in
        --synth) synth=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --no-8b) big=0; shift ;;
        *) echo "usage: $0 [--synth DIR] [--work DIR] [--out FILE] [--no-8b]" >&2; exit 2 ;;
    esac
done
any4=${ANY4:-$PWD/.build/release/any4}
[ -x "$any4" ] || { echo "build first: swift build -c release" >&2; exit 2; }
rm -rf "$work"; mkdir -p "$work"
: > "$out"
# The runs must not split themselves when this script runs inside a Slurm array or an indexed job.
unset SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_COUNT SLURM_ARRAY_TASK_MIN JOB_COMPLETION_INDEX

# step NAME -- CMD...: runs CMD under the sampler, appends one JSON line, prints a summary.
step() {
    local name=$1; shift 2
    local rss; rss=$(mktemp)
    echo "== $name: $*" >&2
    # The previous step's output is still being written back: let it land before the clock starts,
    # so that the first split part does not pay for the unsplit run's writes.
    sync
    set +e
    python3 scripts/peak-rss-anon.py --interval-ms 20 --json-out "$rss" -- "$@" > "$work/last.out" 2> "$work/last.err"
    set -e
    python3 - "$name" "$rss" >> "$out" <<'PY'
import json, sys
name, rss = sys.argv[1:3]
o = json.load(open(rss)); o.pop("command", None)
print(json.dumps({"step": name, **o}))
PY
    tail -1 "$out" | python3 -c 'import json,sys; o=json.loads(sys.stdin.read()); print("   rc %s  %.1f s  peak RssAnon %.2f GiB" % (o["rc"], o["wall_s"], o["peak_rss_anon_bytes"]/2**30))' >&2
    rm -f "$rss"
}

if [ "$big" = 1 ]; then
    [ -d "$synth/llama-8b" ] || { echo "missing $synth/llama-8b: scripts/make-synthetic-llama.py --size 8b" >&2; exit 2; }
    step "quantize any4 (8b)" -- "$any4" quantize "$synth/llama-8b" --format any4 --out "$work/8b-any4"
    rm -rf "$work/8b-any4"
fi

src=$synth/llama-1b
[ -d "$src" ] || { echo "missing $src: scripts/make-synthetic-llama.py --size 1b" >&2; exit 2; }
step "quantize any4 (1b, unsplit)" -- "$any4" quantize "$src" --format any4 --out "$work/1b-whole"
for i in 0 1 2; do
    step "quantize any4 (1b, --shard $i/3)" -- "$any4" quantize "$src" --format any4 --out "$work/1b-split" --shard "$i/3"
done
step "merge (1b)" -- "$any4" merge "$work/1b-split.partial"
python3 bench/tensor-sha256.py "$work/1b-whole" "$work/1b-split" | tee -a "$out" >&2
python3 - "$out" >&2 <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{"step"')]
parts = [r["wall_s"] for r in rows if "--shard" in r["step"]]
if parts:
    print("   parts: %s s, spread %.1f %% of the mean" % (", ".join("%.1f" % p for p in parts), 100 * (max(parts) - min(parts)) / (sum(parts) / len(parts))))
PY
rm -rf "$work/1b-split"

# kill -9 at ~50 %, then resume.
"$any4" quantize "$src" --format any4 --max-shard-size 200MB --out "$work/1b-ref" > /dev/null 2>&1
"$any4" quantize "$src" --format any4 --max-shard-size 200MB --out "$work/1b-kill" > /dev/null 2> "$work/kill.err" &
pid=$!
total=""
while kill -0 "$pid" 2> /dev/null; do
    total=$(grep -o 'wrote shard 1/[0-9]*' "$work/kill.err" | head -1 | cut -d/ -f2 || true)
    done_count=$(ls "$work/1b-kill.partial" 2> /dev/null | grep -c '^model-.*safetensors$' || true)
    if [ -n "$total" ] && [ "$done_count" -ge $(( (total + 1) / 2 )) ]; then kill -9 "$pid"; break; fi
    sleep 0.2
done
wait "$pid" 2> /dev/null || true
echo "== killed with $done_count of $total shards complete" >&2
step "quantize any4 (1b, resumed after kill -9)" -- "$any4" quantize "$src" --format any4 --max-shard-size 200MB --out "$work/1b-kill"
reused=$(grep -c 'reusing shard' "$work/last.err" || true)
echo "   reused $reused shards" >&2
echo "{\"kill9\": {\"complete_at_kill\": $done_count, \"shards\": ${total:-0}, \"reused\": $reused}}" >> "$out"
python3 bench/tensor-sha256.py "$work/1b-ref" "$work/1b-kill" | tee -a "$out" >&2
rm -rf "$work"
