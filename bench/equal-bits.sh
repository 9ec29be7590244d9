#!/usr/bin/env bash
# Perplexity and KL divergence of uniform formats at EQUAL bits per weight (every stored bit
# counted: codes, LUTs, scales, zeros, at the default 16-bit table dtype).
#
# For each any4 group size in --levels, any4's bits per weight on MODEL's quantized layers is
# computed from their shapes (4 + 16·16/in + 32·⌈in/g⌉/in per row, as QuantizedMatrix counts it);
# nf4 (one 16-bit scale per group) and int4 (16-bit scale and zero) then get the even group size
# whose bits per weight is nearest it (groups need not divide the widths). Every run is measured
# against the unquantized model's next-token distributions on the same windows (`ppl
# --save-logits` once, then `ppl --kl-divergence`): perplexity, mean KL, its p99 and top-1
# agreement. The reported bits per weight are checked against the target (±0.05).
#
# With --plans "4.0 nf4:g64 any4:g128", `any4 plan` rows follow on the same windows: the model's
# sensitivity table is measured once (`plan --budget B1 --probe-seconds P`, then `--from` for the
# other budgets), each recipe applied by `quantize --recipe` (a .gguf for a GGUF model, so "keep"
# stays at its blocks' bits, else a folder), and the checkpoint measured as above; its bits per
# weight is the plan's (over the planned layers, every stored bit). A budget may be a number or a
# candidate (nf4:g64: that candidate's uniform bits). Uniform rows of any3/any2 (dense codes):
# --uniform "any3:g128 any2:g64" (format:gN, bits per weight as quantize reports it).
#
# usage: bench/equal-bits.sh [--model GGUF|DIR] [--text FILE] [--ctx N] [--chunks N]
#            [--levels "64 128 256"] [--variants "any4-cal-exact any4-cal any4 nf4 int4"]
#            [--plans "4.0 nf4:g64"] [--probe-seconds 150] [--uniform "any3:g128"]
#            [--out FILE.jsonl] [--any4 PATH]
# Defaults: .models/SmolLM2-135M-Instruct.Q4_1.gguf, .models/eval/eval.txt, ctx 512, all windows
# (0), levels "128", every variant. Variants: any4-cal-exact (--calibrate --cluster exact),
# any4-cal (--calibrate), any4 (k-means weighted by group scale), any4-exact, nf4, int4.
# Prints a table; --out appends one JSON object per run. Each run is minutes on 2 cores
# (quantizing with --calibrate, then 53 windows of 512 tokens).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="$root/.models/SmolLM2-135M-Instruct.Q4_1.gguf"
text="$root/.models/eval/eval.txt"
ctx=512
chunks=0
levels="128"
variants="any4-cal-exact any4-cal any4 nf4 int4"
out=""
plans=""
probe_seconds=150
uniform=""
any4="$root/.build/release/any4"
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --text) text="$2"; shift 2 ;;
        --ctx) ctx="$2"; shift 2 ;;
        --chunks) chunks="$2"; shift 2 ;;
        --levels) levels="$2"; shift 2 ;;
        --variants) variants="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --plans) plans="$2"; shift 2 ;;
        --probe-seconds) probe_seconds="$2"; shift 2 ;;
        --uniform) uniform="$2"; shift 2 ;;
        --any4) any4="$2"; shift 2 ;;
        *) echo "equal-bits.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -x "$any4" ] || { echo "equal-bits.sh: $any4 not built (swift build -c release)" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$any4" inspect "$model" --json > "$work/inspect.json"
# The group sizes of each level: any4's, and the nf4/int4 ones of nearest bits per weight.
python3 - "$work/inspect.json" $levels > "$work/plan.txt" <<'EOF'
import json, math, sys
info = json.load(open(sys.argv[1]))
skip = lambda n: n in ("lm_head.weight", "output.weight") or n.endswith(".lm_head.weight")
shapes = [t["shape"] for t in info["tensors"] if t["role"] == "linear" and not skip(t["name"]) and t["params"] > 0]
params = sum(r * c for r, c in shapes)
def bpw(per_group, g, table=0):
    bits = sum(r * (4 * c + table + per_group * math.ceil(c / g)) for r, c in shapes)
    return bits / params
for level in map(int, sys.argv[2:]):
    target = bpw(32, level, 16 * 16)
    nf4 = min(range(2, 4097, 2), key=lambda g: (abs(bpw(16, g) - target), -g))
    int4 = min(range(2, 4097, 2), key=lambda g: (abs(bpw(32, g) - target), -g))
    print(level, f"{target:.4f}", nf4, f"{bpw(16, nf4):.4f}", int4, f"{bpw(32, int4):.4f}")
EOF

echo "reference: $model as stored, ctx $ctx, chunks $chunks" >&2
"$any4" ppl "$model" --text "$text" --ctx "$ctx" --chunks "$chunks" --save-logits "$work/base.kld" --json > "$work/base.json"
base_ppl=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['ppl'])" "$work/base.json")

printf '%-16s %6s %8s %10s %10s %9s %8s %s\n' variant group bpw ppl "mean KL" "KL p99" top1 target
printf '%-16s %6s %8s %10.4f %10s %9s %8s %s\n' "as stored" - - "$base_ppl" 0 0 1 -
while read -r level target nf4 nf4bits int4 int4bits; do
    for v in $variants; do
        case "$v" in
            any4-cal-exact) args=(--format any4 --group-size "$level" --calibrate --cluster exact) ;;
            any4-cal) args=(--format any4 --group-size "$level" --calibrate) ;;
            any4-exact) args=(--format any4 --group-size "$level" --cluster exact) ;;
            any4) args=(--format any4 --group-size "$level") ;;
            nf4) args=(--format nf4 --group-size "$nf4") ;;
            int4) args=(--format int4 --group-size "$int4") ;;
            *) echo "equal-bits.sh: unknown variant $v" >&2; exit 2 ;;
        esac
        "$any4" ppl "$model" --text "$text" --ctx "$ctx" --chunks "$chunks" --kl-divergence "$work/base.kld" --json "${args[@]}" \
            > "$work/run.json"
        python3 - "$work/run.json" "$v" "$target" "$out" "${args[*]}" <<'EOF'
import json, re, sys
run = json.load(open(sys.argv[1]))
variant, target, out, args = sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
bits = float(re.search(r"([0-9.]+) bits/weight", run["weights"]).group(1))
group = re.search(r"--group-size (\d+)", args).group(1)
kl = run["kl_divergence"]
flag = "" if abs(bits - target) <= 0.05 else "  NOT within 0.05 of the target"
print(f"{variant:16s} {group:>6s} {bits:8.3f} {run['ppl']:10.4f} {kl['mean']:10.6f} {kl['p99']:9.5f} {kl['top1_agreement']:8.4f} {target:.3f}{flag}")
if out:
    with open(out, "a") as f:
        f.write(json.dumps({"variant": variant, "args": args, "group_size": int(group), "bits_per_weight": bits,
                            "target_bits_per_weight": target, "ppl": run["ppl"], "kl_mean": kl["mean"],
                            "kl_stderr": kl["stderr"], "kl_p99": kl["p99"], "top1_agreement": kl["top1_agreement"],
                            "reference_ppl": kl["reference_ppl"], "tokens": run["tokens"], "chunks": run["chunks"],
                            "ctx": run["ctx"], "weights": run["weights"]}) + "\n")
EOF
    done
done < "$work/plan.txt"

# One row from a `ppl --kl-divergence --json` result: VARIANT GROUP BPW TARGET ARGS.
row() {
    python3 - "$work/run.json" "$1" "$2" "$3" "$4" "$out" "$5" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))
variant, group, bits, target, out, args = sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
kl = run["kl_divergence"]
print(f"{variant:16s} {group:>6s} {bits:8.3f} {run['ppl']:10.4f} {kl['mean']:10.6f} {kl['p99']:9.5f} {kl['top1_agreement']:8.4f} {target}")
if out:
    with open(out, "a") as f:
        f.write(json.dumps({"variant": variant, "args": args, "bits_per_weight": bits, "ppl": run["ppl"], "kl_mean": kl["mean"],
                            "kl_stderr": kl["stderr"], "kl_p99": kl["p99"], "top1_agreement": kl["top1_agreement"],
                            "reference_ppl": kl["reference_ppl"], "tokens": run["tokens"], "chunks": run["chunks"],
                            "ctx": run["ctx"], "weights": run["weights"]}) + "\n")
EOF
}

for spec in $uniform; do
    fmt="${spec%%:*}"; group="${spec#*:g}"; [ "$group" = "$spec" ] && group=128
    "$any4" ppl "$model" --text "$text" --ctx "$ctx" --chunks "$chunks" --kl-divergence "$work/base.kld" --json \
        --format "$fmt" --group-size "$group" > "$work/run.json"
    bits=$(python3 -c "import json,re,sys; print(re.search(r'([0-9.]+) bits/weight', json.load(open(sys.argv[1]))['weights']).group(1))" "$work/run.json")
    row "$fmt" "$group" "$bits" - "--format $fmt --group-size $group"
done

first=""
case "$model" in *.gguf) ext=".gguf" ;; *) ext="" ;; esac
for budget in $plans; do
    recipe="$work/plan-${budget//:/-}.json"
    if [ -z "$first" ]; then
        echo "plan: measuring the sensitivity table of $model (probes at most $probe_seconds s)" >&2
        "$any4" plan "$model" --budget "$budget" --probe-seconds "$probe_seconds" --out "$recipe" --json > "$work/plan.json"
        first="$recipe"
    else
        "$any4" plan "$model" --from "$first" --budget "$budget" --out "$recipe" --json > "$work/plan.json"
    fi
    bits=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['bitsPerWeight'])" "$work/plan.json")
    rm -rf "$work/plan-ckpt$ext"
    "$any4" quantize "$model" --recipe "$recipe" --out "$work/plan-ckpt$ext" > /dev/null
    "$any4" ppl "$work/plan-ckpt$ext" --text "$text" --ctx "$ctx" --chunks "$chunks" --kl-divergence "$work/base.kld" --json \
        > "$work/run.json"
    row "plan@$budget" - "$bits" - "plan --budget $budget"
    if [ -n "$out" ]; then cp "$recipe" "$(dirname "$out")/$(basename "$recipe")"; fi
done
