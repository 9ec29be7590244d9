"""Prints facts about a real model file, read by the reference Python packages, as JSON.

usage: real_model_facts.py safetensors FILE NAME...   header (name -> dtype, shape) via safe_open, and
                                                      for each NAME its values as float32 bit patterns
usage: real_model_facts.py gguf FILE NAME...          tensors (name -> type, shape outermost first) via
                                                      GGUFReader, and for each NAME its first two rows
                                                      dequantized by gguf.quants.dequantize
"""
import json
import sys

import numpy as np


def bits(a):
    return [int(x) for x in np.ascontiguousarray(a, dtype=np.float32).reshape(-1).view(np.uint32)]


def safetensors_facts(path, names):
    from safetensors import safe_open
    out = {"tensors": {}, "values": {}}
    with safe_open(path, "numpy") as f:
        for k in f.keys():
            sl = f.get_slice(k)
            out["tensors"][k] = {"dtype": sl.get_dtype(), "shape": list(sl.get_shape())}
        for n in names:
            out["values"][n] = bits(f.get_tensor(n).astype(np.float32))
    print(json.dumps(out))


def gguf_facts(path, names):
    import gguf
    r = gguf.GGUFReader(path)
    out = {"tensors": {}, "values": {}, "version": int(r.fields["GGUF.version"].parts[-1][0])}
    for t in r.tensors:
        out["tensors"][t.name] = {"type": t.tensor_type.name, "shape": [int(x) for x in reversed(t.shape)]}
        if t.name in names:
            data = t.data if len(t.shape) == 1 else t.data[:2]
            values = gguf.quants.dequantize(data, t.tensor_type)
            out["values"][t.name] = bits(values)
    print(json.dumps(out))


if __name__ == "__main__":
    kind, path, *names = sys.argv[1:]
    (safetensors_facts if kind == "safetensors" else gguf_facts)(path, names)
