#!/usr/bin/env python3
"""any4 beside llama.cpp, interleaved in one run on an idle machine (issue #19).

Per round, in this order (every tool at --threads, 2 by default):
  model  llama-bench tg64/pp128 on SmolLM2 as stored (Q4_1) and requantized to Q4_0 (llama-quantize,
         cached), beside `any4 run --warmup --json` as stored and quantized to any4 at load: prefill
         from a 128-token prompt, and decode of 64 tokens from a one-token prompt (llama-bench's
         tg64 generates from an empty context, so both sides attend over 0-64 positions); each side
         --bench-reps times (3), its figure the mean of the runs' tokens/s (llama-bench's avg_ts);
  matmul ggml's MUL_MAT at 4096x14336 (OUT x IN, test-backend-ops' perf case m=4096 k=14336) for
         q4_0, q4_K, iq4_nl, f16 at batch 1 and 8 (bench/llama-cpp/ggml-mulmat.c: test-backend-ops'
         construction with the thread count and weight cycling of `any4 bench`; plain buffers as
         test-backend-ops, and the CPU repacking buffers that llama-bench's model loading uses),
         beside `any4 bench --format any4` at the same shape and batches.
Then ratios per round and their median with the spread (min..max) over rounds:
  decode       any4 decode (any4 weights) / llama.cpp tg64 on Q4_0       (target >= 1.4)
  prefill      any4 prefill 128 (any4) / llama.cpp pp128 on Q4_0         (target >= 1.2)
  matmul b1/b8 any4 bench time / llama.cpp's fastest 4-bit MUL_MAT time   (target <= 0.8 / 0.6)
and the same for the as-stored Q4_1 pair. --json FILE writes every raw figure and the ratios.

Before each round it waits until the 1-minute load average is below --max-load (0.5), unless
--no-wait. Needs: cmake (apt-get install -y cmake) for the first build; `swift build -c release`.

  bench/llama-cpp/side-by-side.py --rounds 5 --json /tmp/side-by-side.json
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    """Runs cmd; returns stdout; exits naming the command when it fails."""
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        log(f"side-by-side: {' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stderr[-2000:]}")
        sys.exit(1)
    return r.stdout


def last_json(text):
    """The last line of text that parses as JSON."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") or line.startswith("["):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        sys.exit(f"side-by-side: no JSON in output:\n{text[-2000:]}")


def wait_idle(max_load, timeout):
    t0 = time.time()
    while True:
        load = os.getloadavg()[0]
        if load < max_load:
            return load
        if timeout and time.time() - t0 > timeout:
            log(f"side-by-side: load {load:.2f} still >= {max_load} after {timeout} s; going on (figures noisy)")
            return load
        log(f"side-by-side: waiting for an idle machine (1-min load {load:.2f} >= {max_load})")
        time.sleep(15)


def build_tools(jobs):
    out = run(["bash", str(HERE / "build.sh")], env={**os.environ, "JOBS": str(jobs)})
    bin_dir = Path(out.strip().splitlines()[-1])
    return bin_dir


def requantize_q4_0(bin_dir, model, cache):
    out = cache / (model.stem.replace("Q4_1", "") .rstrip(".") + ".requant-Q4_0.gguf")
    if not out.exists():
        tmp = out.with_suffix(".part")
        run([str(bin_dir / "llama-quantize"), "--allow-requantize", str(model), str(tmp), "Q4_0", "2"])
        tmp.rename(out)
    return out


def llama_bench(bin_dir, model, threads, n_prompt, n_gen, reps):
    out = run([str(bin_dir / "llama-bench"), "-m", str(model), "-t", str(threads), "-p", str(n_prompt),
               "-n", str(n_gen), "-r", str(reps), "-o", "json"])
    rows = json.loads(out)
    res = {}
    for r in rows:
        key = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
        res[key] = r["avg_ts"]
    return res


def any4_run(any4, model, threads, n_prompt, n_gen, fmt, extra, reps):
    """`any4 run`s measured as llama-bench measures: prefill from a n_prompt-token prompt (pp128),
    and decode of n_gen tokens from an empty context (tg64 starts at position 0; here after a
    one-token prompt), so that neither side's decode attends over the other's prompt; `reps` of
    each (llama-bench's -r), reported as the mean of the runs' tokens/s (llama-bench's avg_ts)."""
    def once(prompt_tokens, n):
        cmd = [str(any4), "run", str(model), "-p", "The quick brown fox jumps over the lazy dog.",
               "--prompt-tokens", str(prompt_tokens), "-n", str(n), "--ignore-eos", "--warmup", "--json",
               "--threads", str(threads)] + (["--format", fmt] if fmt else []) + extra
        return last_json(run(cmd))
    ps, ds = [], []
    for _ in range(reps):
        ps.append(once(n_prompt, 1))
        ds.append(once(1, n_gen))
    probes = [d["probe_gbps"] for d in ds if d.get("probe_gbps")]
    return {"prefill": statistics.mean(p["prefill_tokens_per_s"] for p in ps),
            "decode": statistics.mean(d["decode_tokens_per_s"] for d in ds),
            "prefill_runs": [p["prefill_tokens_per_s"] for p in ps], "decode_runs": [d["decode_tokens_per_s"] for d in ds],
            "bytes_per_token": ds[-1].get("bytes_per_token"), "probe_gbps": statistics.mean(probes) if probes else None,
            "prefill_path": ps[-1].get("prefill_path"), "simd": ps[-1].get("simd")}


def ggml_mulmat(tool, typ, batch, threads, repack, runs):
    cmd = [str(tool), typ, "4096", "14336", str(batch), "--threads", str(threads), "--runs", str(runs)]
    return last_json(run(cmd + (["--repack"] if repack else [])))


def any4_bench(any4, batches, threads, runs):
    j = last_json(run([str(any4), "bench", "--shape", "4096x14336", "--batch", ",".join(map(str, batches)),
                       "--format", "any4", "--no-baseline", "--threads", str(threads), "--runs", str(runs),
                       "--json"]))
    return {r["batch"]: r["median_us"] for r in j["results"] if r["format"] == "any4"}, j.get("probe_gbps")


def spread(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--any4", default=str(REPO / ".build/release/any4"))
    models = os.environ.get("ANY4_MODELS", str(REPO / ".models"))
    ap.add_argument("--model", default=str(Path(models) / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--cache", default=os.environ.get("ANY4_LLAMA_CPP_CACHE", str(Path.home() / ".cache/any4-llama.cpp")))
    ap.add_argument("--max-load", type=float, default=0.5, help="wait before each round until the 1-min load is below this")
    ap.add_argument("--wait-timeout", type=float, default=1800, help="seconds to wait for idle before going on anyway (0: forever)")
    ap.add_argument("--no-wait", action="store_true", help="do not wait for an idle machine")
    ap.add_argument("--skip-model", action="store_true", help="only the MUL_MAT part")
    ap.add_argument("--skip-matmul", action="store_true", help="only the SmolLM2 part")
    ap.add_argument("--types", default="q4_0,q4_K,iq4_nl,f16")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--bench-reps", type=int, default=3, help="repetitions per round of llama-bench (-r) and of each any4 run (their mean tokens/s)")
    ap.add_argument("--runs", type=int, default=20, help="timed MUL_MAT runs per case per round")
    ap.add_argument("--any4-run-args", default="", help="extra arguments for the any4 run lines (e.g. '--kernel exact')")
    ap.add_argument("--jobs", type=int, default=2, help="build jobs for the first llama.cpp build")
    ap.add_argument("--json", help="write all figures here")
    a = ap.parse_args()

    any4 = Path(a.any4)
    if not any4.exists():
        sys.exit(f"side-by-side: {any4} is missing (swift build -c release)")
    model = Path(a.model)
    if not a.skip_model and not model.exists():
        sys.exit(f"side-by-side: {model}: no such model (ANY4_MODELS or --model)")
    bin_dir = build_tools(a.jobs)
    mulmat = bin_dir / "ggml-mulmat"
    cache = Path(a.cache)
    q4_0 = requantize_q4_0(bin_dir, model, cache) if not a.skip_model else None
    types = a.types.split(",")
    batches = [int(b) for b in a.batches.split(",")]
    extra = a.any4_run_args.split()
    four_bit = [t for t in types if t not in ("f16", "f32", "bf16")]

    rounds = []
    for i in range(a.rounds):
        load = None if a.no_wait else wait_idle(a.max_load, a.wait_timeout)
        r = {"round": i + 1, "load_before": load if load is not None else os.getloadavg()[0]}
        if not a.skip_model:
            r["llama_q4_1"] = llama_bench(bin_dir, model, a.threads, 128, 64, a.bench_reps)
            r["any4_stored"] = any4_run(any4, model, a.threads, 128, 64, None, extra, a.bench_reps)
            r["llama_q4_0"] = llama_bench(bin_dir, q4_0, a.threads, 128, 64, a.bench_reps)
            r["any4_any4"] = any4_run(any4, model, a.threads, 128, 64, "any4", extra, a.bench_reps)
        if not a.skip_matmul:
            mm = {}
            for t in types:
                for repack in (False, True):
                    if repack and t in ("f16", "f32"):
                        continue
                    for b in batches:
                        j = ggml_mulmat(mulmat, t, b, a.threads, repack, a.runs)
                        mm[f"{t}{'+repack' if repack else ''}/b{b}"] = j["median_us"]
            r["ggml_mulmat_us"] = mm
            r["any4_bench_us"], r["any4_bench_probe_gbps"] = any4_bench(any4, batches, a.threads, a.runs)
        ratios = {}
        if not a.skip_model:
            ratios["decode_any4_vs_q4_0"] = r["any4_any4"]["decode"] / r["llama_q4_0"]["tg64"]
            ratios["prefill_any4_vs_q4_0"] = r["any4_any4"]["prefill"] / r["llama_q4_0"]["pp128"]
            ratios["decode_stored_vs_q4_1"] = r["any4_stored"]["decode"] / r["llama_q4_1"]["tg64"]
            ratios["prefill_stored_vs_q4_1"] = r["any4_stored"]["prefill"] / r["llama_q4_1"]["pp128"]
            bpt, probe = r["any4_any4"]["bytes_per_token"], r["any4_any4"]["probe_gbps"]
            if bpt and probe:
                ratios["any4_decode_share_of_floor"] = r["any4_any4"]["decode"] * bpt / (probe * 1e9)
        if not a.skip_matmul:
            for b in batches:
                best_key = min((k for k in r["ggml_mulmat_us"] if k.endswith(f"/b{b}") and k.split("+")[0].split("/")[0] in four_bit),
                               key=lambda k: r["ggml_mulmat_us"][k])
                ratios[f"matmul_b{b}_any4_vs_best4bit"] = r["any4_bench_us"][b] / r["ggml_mulmat_us"][best_key]
                ratios[f"matmul_b{b}_best4bit"] = best_key
                plain = min((k for k in r["ggml_mulmat_us"] if k.endswith(f"/b{b}") and "+repack" not in k
                             and k.split("/")[0] in four_bit), key=lambda k: r["ggml_mulmat_us"][k])
                ratios[f"matmul_b{b}_any4_vs_best4bit_plain"] = r["any4_bench_us"][b] / r["ggml_mulmat_us"][plain]
        r["ratios"] = ratios
        rounds.append(r)
        print(f"round {i + 1}/{a.rounds} (load {r['load_before']:.2f}): " +
              " · ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in ratios.items()), flush=True)
        if not a.skip_model:
            print(f"  llama.cpp Q4_0 tg64 {r['llama_q4_0']['tg64']:.1f} pp128 {r['llama_q4_0']['pp128']:.1f} · "
                  f"Q4_1 tg64 {r['llama_q4_1']['tg64']:.1f} pp128 {r['llama_q4_1']['pp128']:.1f} · "
                  f"any4 any4 decode {r['any4_any4']['decode']:.1f} prefill {r['any4_any4']['prefill']:.1f} · "
                  f"any4 as stored decode {r['any4_stored']['decode']:.1f} prefill {r['any4_stored']['prefill']:.1f} tokens/s", flush=True)
        if not a.skip_matmul:
            print("  MUL_MAT 4096x14336 µs: " + " ".join(f"{k} {v:.0f}" for k, v in r["ggml_mulmat_us"].items()) +
                  " · any4 " + " ".join(f"b{b} {v:.0f}" for b, v in r["any4_bench_us"].items()), flush=True)

    keys = [k for k, v in rounds[0]["ratios"].items() if isinstance(v, float)]
    summary = {k: spread([r["ratios"].get(k) for r in rounds]) for k in keys}
    targets = {"decode_any4_vs_q4_0": ">= 1.4", "prefill_any4_vs_q4_0": ">= 1.2", "any4_decode_share_of_floor": ">= 0.8",
               "matmul_b1_any4_vs_best4bit": "<= 0.8", "matmul_b8_any4_vs_best4bit": "<= 0.6"}
    print(f"median over {len(rounds)} rounds (min..max):")
    for k, s in summary.items():
        t = f"   (target {targets[k]})" if k in targets else ""
        print(f"  {k:40s} {s['median']:.3f}  ({s['min']:.3f}..{s['max']:.3f}){t}")
    if a.json:
        doc = {"llama_cpp_python_version": bin_dir.parent.parent.name, "threads": a.threads, "rounds": rounds,
               "summary": summary, "targets": targets, "model": str(model), "q4_0": str(q4_0) if q4_0 else None}
        tmp = a.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, a.json)


if __name__ == "__main__":
    main()
