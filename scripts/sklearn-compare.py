#!/usr/bin/env python3
"""Per-matrix any4 SQNR: ours (`any4 compare --json`) against the paper's method (scikit-learn).

usage: scripts/sklearn-compare.py MODEL [--layers REGEX] [--rows N] [--group-size 128]
           [--table-dtype f16|bf16|f32] [--cluster lloyd|exact] [--any4 BIN] [--ours JSON]
           [--jobs N] [--tolerance 0.05] [--json] [--plain-seeding]

The paper (Elhoushi & Johnson, any4) clusters each group-scaled row with
`sklearn.cluster.KMeans(n_clusters=16, init="k-means++", n_init="auto", random_state=0)` on
float32 values, sample weight = the group scale. This script reproduces that on exactly the values
we cluster:
  - group scaling as any4 does it (DESIGN.md step 1), in float32: s = store(max(mx − mn, 1e-6)/15),
    z = store(mn + 8s), low = z − 8s, x = (w − low)/s, sample weight s;
  - the learned centroids are stored as we store them: table = store(sorted(centres) − 8), each
    value coded to its nearest stored entry (ties to the lower one), dequantized table·s + z;
  - SQNR = 10·log10(Σw² / Σ(w − ŵ)²) over the matrix, in float64,
where store() rounds to the storage dtype (f16, bf16 or f32). Our SQNR comes from running
`any4 compare --format any4 --json` on the same tensors (or from --ours, such a JSON file).

--rows N takes only the first N rows of each matrix (written to a temporary safetensors file that
both sides read), for a quick check. --plain-seeding seeds scikit-learn with one candidate per
step (plain k-means++) instead of its greedy default (2 + ln k candidates), to see what the
seeding is worth. Exit status: 0 when every matrix is at least sklearn − tolerance dB, 1 when one
is below, 2 on bad input.
"""
import os

# One OpenMP thread per worker process: scikit-learn's k-means on a few hundred values is ~10×
# slower with a thread team than without (and the rows already run in parallel processes).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import math
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from multiprocessing import Pool

import numpy as np

K = 16
OFFSET = 8.0  # 2^(b−1) for b = 4


def fail(message):
    print(f"sklearn-compare: {message}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- safetensors (f32/f16/bf16)

def read_safetensors(path):
    """{name: (dtype, shape, float32 array loader)} for one .safetensors file."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            fail(f"{path}: too short for a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > 100 << 20:
            fail(f"{path}: header length {n} is implausible")
        header = json.loads(f.read(n))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        out[name] = (path, base, info)
    return out


def load_tensor(entry):
    path, base, info = entry
    dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
    count = int(np.prod(shape)) if shape else 1
    with open(path, "rb") as f:
        f.seek(base + start)
        buf = f.read(end - start)
    if dtype == "F32":
        a = np.frombuffer(buf, dtype="<f4", count=count)
    elif dtype == "F16":
        a = np.frombuffer(buf, dtype="<f2", count=count).astype(np.float32)
    elif dtype == "BF16":
        a = (np.frombuffer(buf, dtype="<u2", count=count).astype(np.uint32) << 16).view(np.float32)
    else:
        fail(f"{path}: tensor dtype {dtype} not supported here")
    return a.reshape(shape).astype(np.float32, copy=False)


def model_files(model):
    if os.path.isfile(model):
        return [model]
    index = os.path.join(model, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(model, x) for x in files]
    single = os.path.join(model, "model.safetensors")
    if os.path.exists(single):
        return [single]
    fail(f"{model}: no .safetensors file")


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------- storage rounding, scaling

def store(x, dtype):
    x = np.asarray(x, dtype=np.float32)
    if dtype == "f32":
        return x
    if dtype == "f16":
        with np.errstate(over="ignore"):
            return x.astype(np.float16).astype(np.float32)
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint32) << 16
    return rounded.astype(np.uint32).view(np.float32)


def scale_row(w, group, dtype):
    """Scaled values, sample weights, per-element scale and zero (all float32), as any4 does."""
    n = w.shape[0]
    x = np.empty(n, np.float32)
    s_el = np.empty(n, np.float32)
    z_el = np.empty(n, np.float32)
    f32 = np.float32
    for g0 in range(0, n, group):
        v = w[g0:g0 + group]
        mn, mx = v.min(), v.max()
        s = store(f32(max(f32(mx - mn), f32(1e-6)) / f32(15)), dtype)[()]
        if s == 0:
            s = f32(f32(1e-6) / f32(15))
        z = store(f32(mn + s * f32(OFFSET)), dtype)[()]
        low = f32(z - s * f32(OFFSET))
        x[g0:g0 + group] = (v - low) / s
        s_el[g0:g0 + group] = s
        z_el[g0:g0 + group] = z
    return x, s_el, z_el


def nearest(values, table):
    """Index of the nearest table entry (table ascending), ties to the lower index."""
    d = np.abs(values[:, None] - table[None, :])
    return np.argmin(d, axis=1)  # argmin takes the first (lowest) index on ties


def sklearn_rows(job):
    """(signal, noise) of the sklearn any4 reconstruction of the rows in job."""
    rows, group, dtype, plain = job
    from sklearn.cluster import KMeans, kmeans_plusplus
    signal = noise = 0.0
    for w in rows:
        x, s, z = scale_row(w, group, dtype)
        X = x.reshape(-1, 1)
        if plain:
            centres, _ = kmeans_plusplus(X, K, sample_weight=s, random_state=0, n_local_trials=1)
            km = KMeans(n_clusters=K, init=centres, n_init=1, random_state=0).fit(X, sample_weight=s)
        else:
            km = KMeans(n_clusters=K, init="k-means++", n_init="auto", random_state=0).fit(X, sample_weight=s)
        table = store(np.sort(km.cluster_centers_.reshape(-1).astype(np.float32)) - np.float32(OFFSET), dtype)
        codes = nearest(x - np.float32(OFFSET), table)
        deq = table[codes] * s + z
        wd = w.astype(np.float64)
        signal += float(np.dot(wd, wd))
        e = wd - deq.astype(np.float64)
        noise += float(np.dot(e, e))
    return signal, noise


_limits = None


def init_worker():
    global _limits
    try:
        from threadpoolctl import threadpool_limits
        _limits = threadpool_limits(1)  # kept: the limit lasts while the object lives
    except ImportError:
        pass


# ---------------------------------------------------------------- ours

def find_any4(explicit):
    if explicit:
        return explicit
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in [os.path.join(here, "..", ".build", "release", "any4"), shutil.which("any4")]:
        if candidate and os.path.exists(candidate):
            return candidate
    fail("no any4 binary: build it (swift build -c release) or pass --any4")


def run_ours(any4, model, args):
    help_text = subprocess.run([any4, "compare", "--help"], capture_output=True, text=True).stdout
    cmd = [any4, "compare", model, "--format", "any4", "--group-size", str(args.group_size), "--json"]
    if args.layers:
        cmd += ["--layers", args.layers]
    if args.cluster:
        cmd += ["--cluster", args.cluster]
    if "--table-dtype" in help_text:
        cmd += ["--table-dtype", args.table_dtype]
    elif args.table_dtype != "f32":
        print("sklearn-compare: this any4 has no --table-dtype (stores in the source dtype); "
              "compare with --table-dtype f32 on f32 models", file=sys.stderr)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}")
    return json.loads(r.stdout)


# ---------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--layers", default=None, help="regex passed to any4 compare --layers")
    p.add_argument("--rows", type=int, default=0, help="only the first N rows of each matrix")
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--table-dtype", choices=["f16", "bf16", "f32"], default=None,
                   help="storage dtype of LUT, scales and zeros (default: bf16 for bf16 models, else f16)")
    p.add_argument("--cluster", default=None, help="our clustering (default: the program's default)")
    p.add_argument("--any4", default=None, help="the any4 binary (default: .build/release/any4)")
    p.add_argument("--ours", default=None, help="use this `any4 compare --json` output instead of running it")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--tolerance", type=float, default=0.05)
    p.add_argument("--plain-seeding", action="store_true", help="sklearn with plain (1-candidate) k-means++")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    entries = {}
    for f in model_files(args.model):
        entries.update(read_safetensors(f))
    if args.table_dtype is None:
        dtypes = {e[2]["dtype"] for e in entries.values()}
        args.table_dtype = "bf16" if dtypes == {"BF16"} else "f16"

    tmp = None
    model = args.model
    try:
        if args.rows > 0:
            # Only 2-D tensors matter to compare's linear selection; keep their names.
            tmp = tempfile.mkdtemp(prefix="sklearn-compare-")
            cut = {}
            for name, e in entries.items():
                if len(e[2]["shape"]) == 2 and (args.layers is None or re.search(args.layers, name)):
                    cut[name] = load_tensor(e)[:args.rows]
            model = os.path.join(tmp, "rows.safetensors")
            write_safetensors(model, cut)
            entries = read_safetensors(model)
        if args.ours:
            with open(args.ours) as f:
                ours = json.load(f)
        else:
            ours = run_ours(find_any4(args.any4), model, args)

        # The any4 column: "any4", or "any4-exact" when compare labels the exact solver's runs.
        layers = []
        for L in ours["layers"]:
            keys = [k for k in L["results"] if k == "any4" or k.startswith("any4-")]
            if keys:
                layers.append((L["name"], L["results"][keys[0]]["sqnr_db"]))
        if not layers:
            fail("our JSON has no any4 results")
        jobs, owner = [], []
        for i, (name, _) in enumerate(layers):
            if name not in entries:
                fail(f"{name}: in our JSON but not in {args.model}")
            w = load_tensor(entries[name])
            if args.rows > 0:
                w = w[:args.rows]
            chunk = max(1, math.ceil(w.shape[0] / (4 * max(1, args.jobs))))
            for r0 in range(0, w.shape[0], chunk):
                jobs.append((w[r0:r0 + chunk], args.group_size, args.table_dtype, args.plain_seeding))
                owner.append(i)
        with Pool(args.jobs, initializer=init_worker) as pool:
            parts = pool.map(sklearn_rows, jobs)
        sums = [[0.0, 0.0] for _ in layers]
        for i, (s, n) in zip(owner, parts):
            sums[i][0] += s
            sums[i][1] += n
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    rows = []
    for (name, our_db), (s, n) in zip(layers, sums):
        ref_db = math.inf if n == 0 else 10 * math.log10(s / n)
        rows.append({"name": name, "ours_db": our_db, "sklearn_db": ref_db, "delta_db": our_db - ref_db})
    deltas = [r["delta_db"] for r in rows]
    summary = {
        "matrices": len(rows),
        "table_dtype": args.table_dtype,
        "group_size": args.group_size,
        "rows_per_matrix": args.rows or None,
        "mean_ours_db": sum(r["ours_db"] for r in rows) / len(rows),
        "mean_sklearn_db": sum(r["sklearn_db"] for r in rows) / len(rows),
        "min_delta_db": min(deltas),
        "mean_delta_db": sum(deltas) / len(deltas),
        "below_sklearn": sum(d < 0 for d in deltas),
        "below_tolerance": sum(d < -args.tolerance for d in deltas),
        "tolerance_db": args.tolerance,
        "sklearn_seeding": "plain k-means++" if args.plain_seeding else "greedy k-means++ (sklearn default)",
    }
    if args.json:
        print(json.dumps({"layers": rows, "summary": summary}, indent=1))
    else:
        width = max(len(r["name"]) for r in rows)
        print(f"{'matrix':<{width}}  {'ours dB':>8}  {'sklearn':>8}  {'delta':>7}")
        for r in rows:
            flag = "  BELOW" if r["delta_db"] < -args.tolerance else ""
            print(f"{r['name']:<{width}}  {r['ours_db']:8.3f}  {r['sklearn_db']:8.3f}  {r['delta_db']:+7.3f}{flag}")
        print(f"{len(rows)} matrices, {args.table_dtype} tables, group {args.group_size}"
              + (f", first {args.rows} rows" if args.rows else "")
              + f": mean ours {summary['mean_ours_db']:.3f} dB, sklearn {summary['mean_sklearn_db']:.3f} dB; "
              f"delta min {summary['min_delta_db']:+.3f}, mean {summary['mean_delta_db']:+.3f}; "
              f"below sklearn {summary['below_sklearn']}, by more than {args.tolerance} dB {summary['below_tolerance']}")
    sys.exit(1 if summary["below_tolerance"] else 0)


if __name__ == "__main__":
    main()
