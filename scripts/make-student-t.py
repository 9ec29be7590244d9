#!/usr/bin/env python3
"""Writes the Student-t(5) × 0.02 test matrices the quantization speed figures use.

usage: scripts/make-student-t.py OUT.safetensors [OUTxIN ...]   (default: 4096x4096 14336x4096)

Each matrix is numpy default_rng(0).standard_t(5, size=(out, in)) * 0.02 as float32, named
layers.N.bench.weight so that `any4 compare` and `any4 quantize` treat it as a linear layer.
"""
import sys

import numpy as np
from safetensors.numpy import save_file

out = sys.argv[1]
shapes = sys.argv[2:] or ["4096x4096", "14336x4096"]
tensors = {}
for i, s in enumerate(shapes):
    rows, cols = (int(x) for x in s.split("x"))
    tensors[f"layers.{i}.bench.weight"] = (np.random.default_rng(0).standard_t(5, size=(rows, cols)) * 0.02).astype(np.float32)
save_file(tensors, out)
