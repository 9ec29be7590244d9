#!/usr/bin/env python3
"""Independent figures for `any4 diff A B` on two safetensors models (files or folders of
shards): per tensor present in both with one shape, float64 sums of a² and (b − a)², max |b − a|,
from the files read with `safetensors` (numpy). Prints one JSON object:
{"tensors": {name: {"signal": S, "noise": N, "max_abs": M, "elements": E}}, "only_a": [...], "only_b": [...]}
"""
import glob
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file


def load(path):
    files = sorted(glob.glob(os.path.join(path, "*.safetensors"))) if os.path.isdir(path) else [path]
    tensors = {}
    for f in files:
        tensors.update(load_file(f))
    return tensors


def main():
    a, b = load(sys.argv[1]), load(sys.argv[2])
    out = {"tensors": {}, "only_a": sorted(set(a) - set(b)), "only_b": sorted(set(b) - set(a))}
    for name in sorted(set(a) & set(b)):
        x, y = a[name].astype(np.float64), b[name].astype(np.float64)
        if x.shape != y.shape:
            continue
        d = y - x
        out["tensors"][name] = {
            "signal": float(np.sum(x * x)),
            "noise": float(np.sum(d * d)),
            "max_abs": float(np.max(np.abs(d))) if d.size else 0.0,
            "elements": int(d.size),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
