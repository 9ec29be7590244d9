"""Reads an any4 checkpoint with the PyPI `safetensors` and `gguf` packages, for the Swift tests.

usage:
  checkpoint_check.py folder DIR
      Reads model.safetensors.index.json and every shard it names with safetensors (numpy), every
      tensor fully. Prints JSON: {"index": <the index>, "shards": {file: {"size": bytes,
      "metadata": {...}, "tensors": {name: [dtype, shape]}}}}.
  checkpoint_check.py gguf OUT SOURCE
      Reads OUT and SOURCE with gguf.GGUFReader, every tensor's data. Prints JSON:
      {"tensors": {name: [type name, shape outermost first, n_bytes]},
       "missing_kv": [source keys absent from OUT], "changed_kv": [source keys whose type or value differ],
       "changed_tensors": [source tensors in OUT whose type, shape or bytes differ],
       "kv": {"any4.version": ..., "any4.layers": ..., "any4.format": ...},
       "sizes": {"out": bytes, "source": bytes}}
"""
import json
import os
import sys


def folder(path):
    from safetensors.numpy import load_file
    from safetensors import safe_open

    with open(os.path.join(path, "model.safetensors.index.json"), encoding="utf-8") as f:
        index = json.load(f)
    shards = {}
    for name in sorted(set(index["weight_map"].values())):
        file = os.path.join(path, name)
        with safe_open(file, framework="numpy") as f:
            metadata = f.metadata() or {}
        tensors = {}
        # load_file reads every tensor; numpy has no bfloat16, so dtypes come from the header.
        with open(file, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        for key, info in header.items():
            if key == "__metadata__":
                continue
            tensors[key] = [info["dtype"], info["shape"]]
        try:
            loaded = load_file(file)
            assert set(loaded) == set(tensors), (file, sorted(set(loaded) ^ set(tensors)))
        except TypeError:
            pass  # bf16 with an old numpy: the header was still parsed by safetensors above
        with safe_open(file, framework="numpy") as f:
            for key in f.keys():
                if tensors[key][0] != "BF16":
                    array = f.get_tensor(key)
                    assert list(array.shape) == tensors[key][1], key
        shards[name] = {"size": os.path.getsize(file), "metadata": metadata, "tensors": tensors}
    print(json.dumps({"index": index, "shards": shards}))


def field_value(field):
    return [int(t) for t in field.types], [field.parts[i].tobytes().hex() for i in field.data]


def gguf_check(out, source):
    from gguf import GGUFReader

    a = GGUFReader(out)
    b = GGUFReader(source)
    missing, changed = [], []
    for key, field in b.fields.items():
        if key.startswith("GGUF."):
            continue
        if key not in a.fields:
            missing.append(key)
        elif field_value(a.fields[key]) != field_value(field):
            changed.append(key)
    tensors = {}
    for t in a.tensors:
        data = t.data  # read every tensor
        assert data.nbytes == t.n_bytes or t.tensor_type.name in ("F32", "F16", "BF16", "I8"), t.name
        tensors[t.name] = [t.tensor_type.name, [int(x) for x in reversed(t.shape.tolist())], int(t.n_bytes)]
    source_tensors = {t.name: t for t in b.tensors}
    out_tensors = {t.name: t for t in a.tensors}
    changed_tensors = []
    for name, t in source_tensors.items():
        if name in out_tensors:
            o = out_tensors[name]
            if (o.tensor_type != t.tensor_type or list(o.shape) != list(t.shape)
                    or o.data.tobytes() != t.data.tobytes()):
                changed_tensors.append(name)
    kv = {}
    for key in ("any4.version", "any4.layers", "any4.format", "any4.fake_quant"):
        if key in a.fields:
            f = a.fields[key]
            kv[key] = bytes(f.parts[f.data[0]]).decode("utf-8")
    print(json.dumps({
        "tensors": tensors, "missing_kv": missing, "changed_kv": changed, "changed_tensors": changed_tensors,
        "kv": kv, "sizes": {"out": os.path.getsize(out), "source": os.path.getsize(source)},
        "source_tensors": {n: [t.tensor_type.name, int(t.n_bytes)] for n, t in source_tensors.items()},
    }))


if __name__ == "__main__":
    if sys.argv[1] == "folder":
        folder(sys.argv[2])
    elif sys.argv[1] == "gguf":
        gguf_check(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
