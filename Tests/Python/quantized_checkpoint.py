"""Any4 checkpoints through the PyPI `safetensors` and `gguf` packages, for the Swift reader's tests.

usage: quantized_checkpoint.py gguf SRC.safetensors OUT.gguf
           Writes OUT.gguf with gguf.GGUFWriter: every tensor of SRC with the same name and shape
           (U8 as ggml I8, F32/F16/BF16 as themselves) and every __metadata__ entry as a STRING key,
           as the contract for GGUF any4 checkpoints has it.
       quantized_checkpoint.py read PATH
           Prints JSON {"metadata": {...}, "tensors": {name: {"shape" (outermost first), "dtype",
           "hex"}}} for a .safetensors file (safetensors.deserialize and safe_open) or a .gguf file
           (gguf.GGUFReader; dtype is the ggml type name). Every stored tensor is listed.
"""
import json
import sys

import numpy as np


def to_gguf(src, out):
    import gguf
    from safetensors import deserialize, safe_open

    with safe_open(src, "numpy") as f:
        metadata = f.metadata() or {}
    with open(src, "rb") as f:
        tensors = deserialize(f.read())
    w = gguf.GGUFWriter(out, arch="llama")
    for key, value in sorted(metadata.items()):
        w.add_string(key, value)
    T = gguf.GGMLQuantizationType
    for name, spec in tensors:
        shape, dtype, data = spec["shape"], spec["dtype"], bytes(spec["data"])
        if dtype == "U8":
            w.add_tensor(name, np.frombuffer(data, dtype=np.int8).reshape(shape), raw_dtype=T.I8)
        elif dtype == "F32":
            w.add_tensor(name, np.frombuffer(data, dtype=np.float32).reshape(shape))
        elif dtype == "F16":
            w.add_tensor(name, np.frombuffer(data, dtype=np.float16).reshape(shape))
        elif dtype == "BF16":
            raw = np.frombuffer(data, dtype=np.uint8).reshape(shape[:-1] + [shape[-1] * 2])
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=T.BF16)
        else:
            raise SystemExit(f"{name}: dtype {dtype} not handled")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read(path):
    out = {"metadata": {}, "tensors": {}}
    if path.endswith(".gguf"):
        import gguf

        reader = gguf.GGUFReader(path)
        for field in reader.fields.values():
            if field.name.startswith("any4."):
                out["metadata"][field.name] = bytes(field.parts[field.data[0]]).decode("utf-8")
        for t in reader.tensors:
            out["tensors"][t.name] = {
                "shape": [int(x) for x in reversed(t.shape)],
                "dtype": t.tensor_type.name,
                "hex": t.data.tobytes().hex(),
            }
    else:
        from safetensors import deserialize, safe_open

        with safe_open(path, "numpy") as f:
            out["metadata"] = f.metadata() or {}
        with open(path, "rb") as f:
            for name, spec in deserialize(f.read()):
                out["tensors"][name] = {"shape": list(spec["shape"]), "dtype": spec["dtype"], "hex": bytes(spec["data"]).hex()}
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "gguf":
        to_gguf(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "read":
        read(sys.argv[2])
    else:
        raise SystemExit(__doc__)
