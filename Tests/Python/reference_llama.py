"""Independent float64 reference forward pass for a Llama-architecture GGUF model (e.g. SmolLM2).

usage:
  reference_llama.py MODEL.gguf IDS_JSON OUT.bin [--positions all|last] [--rope normal|neox]
      IDS_JSON is a file holding a JSON list of token ids, or the JSON text itself (starting with
      "["), or "-" for standard input. Writes float32 little-endian logits, row-major
      [positions, vocab]: every position of one causal forward pass (default), or only the last.
  reference_llama.py MODEL.gguf --tokenize TEXT_FILE [--ids-out IDS.json]
      Prints the number of tokens of the file (BPE tokenizer built from the GGUF vocab + merges)
      and optionally writes the ids as JSON.
  reference_llama.py MODEL.gguf --check [--text TEXT_FILE]
      Sanity checks, each with both RoPE layouts: greedy 20-token continuations of three
      prompts, log-prob of a natural sentence, mean NLL of the first 100 tokens of a passage
      (TEXT_FILE, else a built-in one). Takes about a minute on 2 cores.

Everything is computed in float64 from tensors dequantized by gguf.quants.dequantize.

RoPE: llama.cpp's converter permutes the Hugging Face q/k rows of LLAMA models so that in the GGUF
file RoPE rotates adjacent pairs (x[2i], x[2i+1]) with frequency base^(-2i/d) (GGML "normal" mode).
That is the default here; --rope neox rotates (x[i], x[i+d/2]) instead (HF rotate_half layout),
which is wrong for these files and only exists to show the difference.
"""
import argparse
import json
import sys

import numpy as np


# ----------------------------------------------------------------------------------------------
# GGUF reading


def _field_value(field):
    """The scalar or string value of a GGUFReader field."""
    from gguf import GGUFValueType
    part = field.parts[field.data[0]]
    if field.types[0] == GGUFValueType.STRING:
        return bytes(part).decode("utf-8")
    return part.tolist()[0]


def _field_strings(field):
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def _field_ints(field):
    return [int(field.parts[i][0]) for i in field.data]


class LlamaGGUF:
    def __init__(self, path, dtype=np.float64):
        from gguf import GGUFReader
        from gguf.quants import dequantize
        self.reader = r = GGUFReader(path)
        arch = _field_value(r.fields["general.architecture"])
        if arch != "llama":
            raise SystemExit(f"reference_llama: architecture {arch!r}, expected 'llama'")

        def meta(key, default=None):
            f = r.fields.get(f"llama.{key}")
            return default if f is None else _field_value(f)

        self.n_layer = int(meta("block_count"))
        self.n_embd = int(meta("embedding_length"))
        self.n_head = int(meta("attention.head_count"))
        self.n_head_kv = int(meta("attention.head_count_kv", self.n_head))
        self.head_dim = self.n_embd // self.n_head
        self.rope_dim = int(meta("rope.dimension_count", self.head_dim))
        self.rope_base = float(meta("rope.freq_base", 10000.0))
        self.eps = float(meta("attention.layer_norm_rms_epsilon", 1e-5))

        self.w = {}
        for t in r.tensors:
            # GGUF's ne order is innermost first: t.shape = [in, out] for a linear. The reader's
            # numpy data is outermost first ([out, bytes per row]) and dequantize returns
            # [out, in], the layout for y = x @ W.T.
            a = dequantize(t.data, t.tensor_type)
            expected = tuple(int(x) for x in reversed(t.shape))
            a = np.asarray(a).reshape(expected)
            self.w[t.name] = a.astype(dtype)
        emb = self.w["token_embd.weight"]
        self.vocab = emb.shape[0]
        assert emb.shape == (self.vocab, self.n_embd), emb.shape
        # Tied embeddings unless the file has its own output matrix.
        self.out = self.w.get("output.weight", emb)
        q = self.w["blk.0.attn_q.weight"]
        assert q.shape == (self.n_head * self.head_dim, self.n_embd), q.shape
        k = self.w["blk.0.attn_k.weight"]
        assert k.shape == (self.n_head_kv * self.head_dim, self.n_embd), k.shape
        self.dtype = dtype

    # ---------------------------------------------------------------------------------------

    def rms_norm(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def rope(self, x, positions, mode):
        """x: [T, heads, head_dim]; rotates the first rope_dim dims of each head."""
        d = self.rope_dim
        half = d // 2
        inv_freq = self.rope_base ** (-np.arange(half, dtype=np.float64) * 2.0 / d)  # [half]
        ang = positions.astype(np.float64)[:, None] * inv_freq[None, :]  # [T, half]
        cos = np.cos(ang)[:, None, :]
        sin = np.sin(ang)[:, None, :]
        out = x.copy()
        if mode == "normal":  # adjacent pairs (x[2i], x[2i+1])
            x0 = x[..., 0:d:2]
            x1 = x[..., 1:d:2]
            out[..., 0:d:2] = x0 * cos - x1 * sin
            out[..., 1:d:2] = x0 * sin + x1 * cos
        elif mode == "neox":  # pairs (x[i], x[i + d/2])
            x0 = x[..., :half]
            x1 = x[..., half:d]
            out[..., :half] = x0 * cos - x1 * sin
            out[..., half:d] = x0 * sin + x1 * cos
        else:
            raise ValueError(mode)
        return out

    def forward(self, ids, rope="normal", positions="all"):
        """Logits [T, vocab] (or [1, vocab] for positions='last') for one causal pass over ids."""
        ids = np.asarray(ids, dtype=np.int64)
        T = len(ids)
        if T == 0:
            raise SystemExit("reference_llama: no token ids")
        if ids.min() < 0 or ids.max() >= self.vocab:
            raise SystemExit(f"reference_llama: token id out of range 0..{self.vocab - 1}")
        H, KV, D = self.n_head, self.n_head_kv, self.head_dim
        group = H // KV
        pos = np.arange(T)
        mask = np.triu(np.full((T, T), -np.inf), k=1)  # [query, key]: key > query is hidden
        scale = 1.0 / np.sqrt(D)

        h = self.w["token_embd.weight"][ids]  # [T, E]
        for l in range(self.n_layer):
            p = f"blk.{l}."
            x = self.rms_norm(h, self.w[p + "attn_norm.weight"])
            q = (x @ self.w[p + "attn_q.weight"].T).reshape(T, H, D)
            k = (x @ self.w[p + "attn_k.weight"].T).reshape(T, KV, D)
            v = (x @ self.w[p + "attn_v.weight"].T).reshape(T, KV, D)
            q = self.rope(q, pos, rope)
            k = self.rope(k, pos, rope)
            attn = np.empty((T, H, D), dtype=h.dtype)
            for hh in range(H):
                kvh = hh // group
                s = (q[:, hh, :] @ k[:, kvh, :].T) * scale + mask  # [T, T]
                s = s - s.max(axis=-1, keepdims=True)
                e = np.exp(s)
                a = e / e.sum(axis=-1, keepdims=True)
                attn[:, hh, :] = a @ v[:, kvh, :]
            h = h + attn.reshape(T, H * D) @ self.w[p + "attn_output.weight"].T

            x = self.rms_norm(h, self.w[p + "ffn_norm.weight"])
            g = x @ self.w[p + "ffn_gate.weight"].T
            u = x @ self.w[p + "ffn_up.weight"].T
            silu = g / (1.0 + np.exp(-g))
            h = h + (silu * u) @ self.w[p + "ffn_down.weight"].T

        if positions == "last":
            h = h[-1:]
        h = self.rms_norm(h, self.w["output_norm.weight"])
        return h @ self.out.T

    # ---------------------------------------------------------------------------------------

    def tokenizer(self):
        return build_tokenizer(self.reader)


def build_tokenizer(reader):
    """A Hugging Face `tokenizers` byte-level BPE tokenizer from the GGUF vocab and merges."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    f = reader.fields
    tokens = _field_strings(f["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in _field_strings(f["tokenizer.ggml.merges"])]
    types = _field_ints(f["tokenizer.ggml.token_type"]) if "tokenizer.ggml.token_type" in f else []
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    # Control tokens (type 3, e.g. <|im_start|>) are matched whole, never split.
    special = [AddedToken(tokens[i], special=True, normalized=False)
               for i, ty in enumerate(types) if ty == 3]
    if special:
        tok.add_special_tokens(special)
    return tok


# ----------------------------------------------------------------------------------------------


def log_softmax(logits):
    m = logits.max(axis=-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))


def sequence_nll(model, ids, rope="normal"):
    """Per-token NLL of ids[1:] given the prefix (natural log)."""
    lp = log_softmax(model.forward(ids[:-1], rope=rope))
    return -lp[np.arange(len(ids) - 1), ids[1:]]


def greedy(model, ids, n, rope="normal"):
    ids = list(ids)
    for _ in range(n):
        ids.append(int(np.argmax(model.forward(ids, rope=rope, positions="last")[0])))
    return ids


DEFAULT_PASSAGE = (
    "The history of the printing press begins in the middle of the fifteenth century, when "
    "Johannes Gutenberg, a goldsmith from the German city of Mainz, combined several existing "
    "technologies into a single practical system. Movable metal type, an oil-based ink and a "
    "wooden press adapted from those used to make wine allowed him to produce books far more "
    "quickly than scribes could copy them by hand. Within a few decades, printing shops had "
    "spread to most of the major cities of Europe, and the price of books fell sharply. Ideas "
    "now travelled faster than ever before, and many historians see the press as one of the "
    "forces behind the Reformation and the scientific revolution."
)


def check(model, text_path):
    tok = model.tokenizer()
    prompts = [
        "The capital of France is",
        "Once upon a time, there was a little girl who",
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    ]
    for prompt in prompts:
        ids = tok.encode(prompt).ids
        print(f"prompt {prompt!r} -> ids {ids}")
        for rope in ("normal", "neox"):
            out = greedy(model, ids, 20, rope=rope)
            print(f"  greedy 20 tokens, rope={rope}: {tok.decode(out[len(ids):])!r}")

    sentence = "The quick brown fox jumps over the lazy dog, and the farmer watches from the porch."
    sids = tok.encode(sentence).ids
    for rope in ("normal", "neox"):
        nll = sequence_nll(model, sids, rope=rope)
        print(f"sentence ({len(sids)} tokens) rope={rope}: total log-prob {-nll.sum():.3f}, "
              f"mean NLL {nll.mean():.4f}")

    if text_path:
        with open(text_path, encoding="utf-8") as fh:
            text = fh.read()
        source = text_path
    else:
        text, source = DEFAULT_PASSAGE, "built-in passage"
    pids = tok.encode(text).ids[:100]
    if len(pids) < 100:
        print(f"note: passage has only {len(pids)} tokens")
    for rope in ("normal", "neox"):
        nll = sequence_nll(model, pids, rope=rope)
        print(f"passage ({source}, first {len(pids)} tokens) rope={rope}: mean NLL {nll.mean():.4f} "
              f"nats, perplexity {np.exp(nll.mean()):.2f}")


def read_ids(arg):
    if arg == "-":
        text = sys.stdin.read()
    elif arg.lstrip().startswith("["):
        text = arg
    else:
        with open(arg, encoding="utf-8") as fh:
            text = fh.read()
    ids = json.loads(text)
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise SystemExit("reference_llama: IDS_JSON must be a JSON list of ints")
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("ids", nargs="?")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--positions", choices=["all", "last"], default="all")
    ap.add_argument("--rope", choices=["normal", "neox"], default="normal")
    ap.add_argument("--tokenize", metavar="TEXT_FILE")
    ap.add_argument("--ids-out", metavar="IDS_JSON")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--text", metavar="TEXT_FILE")
    a = ap.parse_intermixed_args()

    if a.tokenize:
        from gguf import GGUFReader
        tok = build_tokenizer(GGUFReader(a.model))
        with open(a.tokenize, encoding="utf-8") as fh:
            ids = tok.encode(fh.read()).ids
        print(len(ids))
        if a.ids_out:
            with open(a.ids_out, "w") as fh:
                json.dump(ids, fh)
        return

    model = LlamaGGUF(a.model)
    if a.check:
        check(model, a.text)
        return
    if a.ids is None or a.out is None:
        ap.error("IDS_JSON and OUT.bin are required")
    logits = model.forward(read_ids(a.ids), rope=a.rope, positions=a.positions)
    np.ascontiguousarray(logits, dtype="<f4").tofile(a.out)


if __name__ == "__main__":
    main()
