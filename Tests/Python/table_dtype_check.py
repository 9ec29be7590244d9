"""Dequantizes an any4 checkpoint's layers from their stored parts, independently of any4, and
measures each against the source weights: the storage-dtype test's reference.

usage: table_dtype_check.py CHECKPOINT.safetensors SOURCE.safetensors
    Parses both files' headers and raw bytes itself (F32, F16, BF16, U8). For each layer in the
    checkpoint's `any4.layers`, prints in a JSON object keyed by the weight name:
    {"dtype": declared dtype, "parts": {suffix: stored dtype}, "sqnr_db": SQNR of the dequantized
    layer against the source weight (float64 sums), "bits": stored bits of all its parts}.
    Formats: any-b (X.lut), int-b (centred integers) and nf4 (the NormalFloat table, absmax scale).
"""
import json
import math
import sys

import numpy as np

NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
       -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
       0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
       0.7229568362236023, 1.0]


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    base = 8 + n
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        raw = data[base + start:base + end]
        dtype = info["dtype"]
        if dtype == "F32":
            a = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        elif dtype == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(np.float64)
        elif dtype == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        elif dtype == "U8":
            a = np.frombuffer(raw, dtype=np.uint8)
        else:
            raise SystemExit(f"{name}: dtype {dtype} not handled")
        tensors[name] = (dtype, info["shape"], a.reshape(info["shape"]), end - start)
    return metadata, tensors


def main(checkpoint, source):
    metadata, parts = load(checkpoint)
    _, weights = load(source)
    layers = json.loads(metadata["any4.layers"])
    out = {}
    for name, layer in layers.items():
        base = name[: -len(".weight")]
        rows, cols = layer["shape"]
        bits, fmt, group = layer["bits"], layer["format"], layer["group_size"]
        packed = parts[base + ".qweight"][2]
        if layer.get("code_packing") == "dense":
            # A little-endian bit stream of `bits`-bit codes per row.
            stream = np.unpackbits(packed.astype(np.uint8), axis=1, bitorder="little")[:, : cols * bits]
            weights_of_bits = (1 << np.arange(bits)).astype(np.int64)
            codes = stream.reshape(rows, cols, bits).astype(np.int64) @ weights_of_bits
        else:
            codes = np.empty((rows, packed.shape[1] * 2), dtype=np.int64)
            codes[:, 0::2] = packed & 15
            codes[:, 1::2] = packed >> 4
            codes = codes[:, :cols]
        groups = -(-cols // group)
        scales = np.repeat(parts[base + ".scales"][2], group, axis=1)[:, :cols]
        if fmt.startswith("any"):
            lut = parts[base + ".lut"][2]
            table = np.take_along_axis(lut, codes, axis=1)
        elif fmt.startswith("int"):
            table = codes - (1 << (bits - 1))
        elif fmt == "nf4":
            table = np.array(NF4)[codes]
        else:
            raise SystemExit(f"{name}: format {fmt} not handled")
        value = table * scales
        if base + ".zeros" in parts:
            value = value + np.repeat(parts[base + ".zeros"][2], group, axis=1)[:, :cols]
        # The dequantized weight as the quantizer computes it: float32 arithmetic, in that order.
        value32 = (table.astype(np.float32) * scales.astype(np.float32))
        if base + ".zeros" in parts:
            value32 = value32 + np.repeat(parts[base + ".zeros"][2], group, axis=1)[:, :cols].astype(np.float32)
        w = weights[name][2].astype(np.float64)
        noise = float(((w - value32.astype(np.float64)) ** 2).sum())
        signal = float((w ** 2).sum())
        names = [s for s in (".qweight", ".lut", ".scales", ".zeros") if base + s in parts]
        out[name] = {
            "dtype": layer["dtype"],
            "parts": {s: parts[base + s][0] for s in names},
            "sqnr_db": 10 * math.log10(signal / noise),
            "sqnr_db_f64": 10 * math.log10(signal / float(((w - value) ** 2).sum())),
            "groups": groups,
            "bits": sum(parts[base + s][3] for s in names) * 8,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
