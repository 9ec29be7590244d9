#!/usr/bin/env python3
"""sha256 of every tensor's bytes in safetensors checkpoints (a folder's shards, or one file), read
straight from the files (8-byte header length, JSON header, data offsets).

    bench/tensor-sha256.py A [B]

With one path: prints `sha256  name` per tensor. With two: compares them and prints one JSON line
{"tensors": N, "identical": bool, "differ": [...], "only_a": [...], "only_b": [...]}; exit 1 when
they differ."""
import glob, hashlib, json, os, struct, sys


def tensors(path):
    files = [path] if os.path.isfile(path) else sorted(glob.glob(os.path.join(path, "*.safetensors")))
    out = {}
    for f in files:
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
            base = 8 + n
            for name, v in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0] if kv[0] != "__metadata__" else -1):
                if name == "__metadata__":
                    continue
                s, e = v["data_offsets"]
                fh.seek(base + s)
                h = hashlib.sha256()
                left = e - s
                while left > 0:
                    chunk = fh.read(min(left, 64 << 20))
                    if not chunk:
                        raise SystemExit(f"{f}: {name} truncated")
                    h.update(chunk)
                    left -= len(chunk)
                if name in out:
                    raise SystemExit(f"{name} twice")
                out[name] = h.hexdigest()
    return out


if __name__ == "__main__":
    if len(sys.argv) == 2:
        for name, h in sorted(tensors(sys.argv[1]).items()):
            print(h, name)
    elif len(sys.argv) == 3:
        a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
        differ = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
        res = {"tensors": len(a), "identical": a == b, "differ": differ[:20],
               "only_a": sorted(a.keys() - b.keys())[:20], "only_b": sorted(b.keys() - a.keys())[:20]}
        print(json.dumps(res))
        sys.exit(0 if a == b else 1)
    else:
        raise SystemExit(__doc__)
