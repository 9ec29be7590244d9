"""Writes safetensors files with the PyPI `safetensors` package, for the Swift reader to check.

usage: safetensors_fixtures.py write OUTDIR
    OUTDIR/all_dtypes.safetensors    one tensor per dtype (F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL),
                                     floats with NaN, ±inf, -0, subnormals; plus a scalar and an empty tensor
    OUTDIR/expected.json             per tensor: dtype, shape, and the raw bytes in hex, as Python holds them
usage: safetensors_fixtures.py read FILE
    prints JSON {name: {"dtype", "shape", "hex"}, "__metadata__": {...}} read by safetensors.safe_open,
    so the Swift writer's output is judged by the reference reader.
"""
import json
import sys

import numpy as np
from safetensors import safe_open, serialize_file, TensorSpec

NP = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
      "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
SPEC = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
        "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def arrays():
    rng = np.random.default_rng(1234)
    specials = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, -1.0, 65504.0, 6e-8, 1e-40, 3.4e38]
    out = {}
    for name in ["F64", "F32", "F16"]:
        dt = NP[name]
        with np.errstate(over="ignore"):
            vals = np.concatenate([np.array(specials, dtype=np.float64), rng.standard_normal(37) * 3]).astype(dt)
        out["t_" + name] = (name, [4, 12], vals.tobytes())
    bf = np.concatenate([np.array(specials, dtype=np.float32), rng.standard_normal(37).astype(np.float32)])
    bits = (bf.view(np.uint32) >> 16).astype(np.uint16)  # truncate to bf16 bit patterns
    out["t_BF16"] = ("BF16", [3, 16], bits.tobytes())
    for name in ["I64", "I32", "I16", "I8", "U8"]:
        info = np.iinfo(NP[name])
        vals = rng.integers(info.min, info.max, size=30, dtype=NP[name], endpoint=True)
        vals[0], vals[1] = info.min, info.max
        out["t_" + name] = (name, [5, 6], vals.tobytes())
    out["t_BOOL"] = ("BOOL", [7], np.array([1, 0, 1, 1, 0, 0, 1], dtype=np.uint8).tobytes())
    out["scalar"] = ("F32", [], np.array([2.5], dtype=np.float32).tobytes())
    out["empty"] = ("F16", [0, 3], b"")
    return out


def write(outdir):
    tensors = arrays()
    keep = []
    specs = {}
    for name, (dtype, shape, raw) in tensors.items():
        buf = np.frombuffer(raw, dtype=np.uint8).copy() if raw else np.zeros(1, dtype=np.uint8)
        keep.append(buf)
        specs[name] = TensorSpec(dtype=SPEC[dtype], shape=shape, data_ptr=buf.ctypes.data, data_len=len(raw))
    serialize_file(specs, f"{outdir}/all_dtypes.safetensors", metadata={"made_by": "safetensors-py", "note": "üñí"})
    expected = {name: {"dtype": d, "shape": s, "hex": r.hex()} for name, (d, s, r) in tensors.items()}
    with open(f"{outdir}/expected.json", "w") as f:
        json.dump(expected, f)


def read(path):
    out = {}
    with safe_open(path, "numpy") as f:
        out["__metadata__"] = f.metadata() or {}
        for name in f.keys():
            sl = f.get_slice(name)
            dtype = sl.get_dtype()
            shape = sl.get_shape()
            if dtype == "BF16":
                raise SystemExit("bf16 read not supported by the numpy backend")
            arr = f.get_tensor(name)
            out[name] = {"dtype": dtype, "shape": list(shape), "hex": np.ascontiguousarray(arr).tobytes().hex()}
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        read(sys.argv[2])
