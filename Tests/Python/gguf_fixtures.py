"""Writes GGUF files with the PyPI `gguf` package (GGUFWriter and gguf.quants), for the Swift reader.

usage: gguf_fixtures.py OUTDIR
    OUTDIR/blocks.gguf       one tensor per supported type, 3 rows each: F32 F16 BF16 Q8_0 Q4_0 Q4_1
                             Q5_0 Q5_1 MXFP4 (quantized from random floats by gguf.quants.quantize) and
                             Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL (random block bytes with finite f16 scales,
                             since gguf-py has no quantizer for them)
    OUTDIR/<name>.f32        gguf.quants.dequantize of each tensor, little-endian float32, row-major
    OUTDIR/metadata.json     every metadata key, typed: {"key": [type_name, value]}
    OUTDIR/tensors.json      {"name": {"type", "shape" (outermost first), "offset"}}
"""
import json
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

QUANTIZED = [T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.MXFP4]
RANDOM_BLOCKS = {
    # type: byte offsets of f16 fields inside a block that must hold finite scales
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208], T.IQ4_NL: [0],
}


def main(outdir):
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(f"{outdir}/blocks.gguf", arch="llama")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.15625)
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float64("test.f64", 2.718281828459045)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo, wörld ✓")
    w.add_array("test.strings", ["a", "bc", "", "日本"])
    w.add_array("test.ints", [1, -2, 3])
    w.add_array("test.nested", [[1, 2], [3]])
    w.add_block_count(1)

    rows = 3
    for qtype in [T.F32, T.F16, T.BF16] + QUANTIZED + list(RANDOM_BLOCKS):
        block, size = GGML_QUANT_SIZES[qtype]
        cols = 256 if block == 256 else 64
        name = f"t_{qtype.name}"
        if qtype == T.F32:
            data = rng.standard_normal((rows, cols)).astype(np.float32)
            w.add_tensor(name, data)
        elif qtype == T.F16:
            w.add_tensor(name, rng.standard_normal((rows, cols)).astype(np.float16))
        elif qtype in (T.BF16,) or qtype in QUANTIZED:
            floats = (rng.standard_normal((rows, cols)) * rng.uniform(0.01, 4)).astype(np.float32)
            floats[0, 5] = 0.0
            raw = gguf.quants.quantize(floats, qtype)
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        else:
            nblocks = rows * cols // block
            raw = rng.integers(0, 256, size=(nblocks, size), dtype=np.uint8)
            for off in RANDOM_BLOCKS[qtype]:
                scales = (rng.standard_normal(nblocks) * 0.05).astype(np.float16).view(np.uint8).reshape(nblocks, 2)
                raw[:, off:off + 2] = scales
            raw = raw.reshape(rows, cols // block * size)
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    reader = gguf.GGUFReader(f"{outdir}/blocks.gguf")
    tensors = {}
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        values.tofile(f"{outdir}/{t.name}.f32")
        tensors[t.name] = {"type": t.tensor_type.name, "shape": [int(x) for x in reversed(t.shape)],
                           "offset": int(t.data_offset)}
    meta = {}
    for field in reader.fields.values():
        if field.name.startswith("GGUF."):
            continue
        kind = field.types[0].name
        if kind == "ARRAY":
            value = field.contents()
        else:
            value = field.contents()
        meta[field.name] = [kind, value]
    with open(f"{outdir}/metadata.json", "w") as f:
        json.dump(meta, f, ensure_ascii=False)
    with open(f"{outdir}/tensors.json", "w") as f:
        json.dump(tensors, f)


if __name__ == "__main__":
    main(sys.argv[1])
