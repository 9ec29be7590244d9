"""Independent float64 reference for sentence-transformers BERT embeddings (e.g. all-MiniLM-L6-v2).

usage:
  reference_bert.py MODEL_DIR IDS_JSON OUT.bin
      IDS_JSON: a file holding a JSON list of token-id lists (each already with [CLS] ... [SEP]),
      or that JSON text itself (starting with "["), or "-" for standard input. Trailing
      [PAD] ids (config pad_token_id, 0) are dropped: that equals masking them out of attention
      and pooling, since padding sits on the right and positions start at 0.
  reference_bert.py MODEL_DIR --tokenize TEXTS_JSON OUT.bin
      TEXTS_JSON: a JSON list of strings (file, literal text or "-"), tokenized with
      tokenizers.Tokenizer.from_file(MODEL_DIR/tokenizer.json) (truncated to 256 tokens, like
      sentence-transformers' max_seq_length for this model).
  reference_bert.py MODEL_DIR --check
      Prints cosine similarities of a few sentence pairs.

Writes float32 little-endian [sentences, hidden] embeddings: BERT embeddings (word + position +
token type 0, LayerNorm), post-LN encoder layers (self-attention, exact erf GELU), mean pooling
over the tokens, L2 normalization. Each sentence is run on its own (no padding, no mask needed);
everything is float64.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

MAX_SEQ_LENGTH = 256


class Bert:
    def __init__(self, model_dir):
        from safetensors.numpy import load_file
        with open(os.path.join(model_dir, "config.json")) as fh:
            cfg = json.load(fh)
        raw = load_file(os.path.join(model_dir, "model.safetensors"))
        # Some exports prefix every name with "bert."; strip it so one naming serves both.
        self.w = {}
        for k, v in raw.items():
            if k.startswith("bert."):
                k = k[len("bert."):]
            self.w[k] = v.astype(np.float64)
        self.hidden = int(cfg["hidden_size"])
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.max_pos = int(cfg.get("max_position_embeddings", 512))
        act = cfg.get("hidden_act", "gelu")
        if act != "gelu":
            raise SystemExit(f"reference_bert: hidden_act {act!r} not supported (exact gelu only)")
        self.vocab = self.w["embeddings.word_embeddings.weight"].shape[0]
        self.pad_id = int(cfg.get("pad_token_id", 0))

    def layer_norm(self, x, prefix):
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[prefix + ".weight"] + self.w[prefix + ".bias"]

    def linear(self, x, prefix):
        return x @ self.w[prefix + ".weight"].T + self.w[prefix + ".bias"]

    @staticmethod
    def gelu(x):
        """Exact GELU, x * Phi(x), with erf from scipy when present, else math.erf."""
        try:
            from scipy.special import erf
        except ImportError:
            erf = np.vectorize(math.erf, otypes=[np.float64])
        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))

    def token_states(self, ids):
        """Last hidden states [T, hidden] for one unpadded sequence."""
        ids = np.asarray(ids, dtype=np.int64)
        T = len(ids)
        if T == 0 or T > self.max_pos:
            raise SystemExit(f"reference_bert: sequence length {T} not in 1..{self.max_pos}")
        if ids.min() < 0 or ids.max() >= self.vocab:
            raise SystemExit(f"reference_bert: token id out of range 0..{self.vocab - 1}")
        H = self.heads
        D = self.hidden // H
        x = (self.w["embeddings.word_embeddings.weight"][ids]
             + self.w["embeddings.position_embeddings.weight"][:T]
             + self.w["embeddings.token_type_embeddings.weight"][0])
        x = self.layer_norm(x, "embeddings.LayerNorm")
        for l in range(self.layers):
            p = f"encoder.layer.{l}."
            q = self.linear(x, p + "attention.self.query").reshape(T, H, D).transpose(1, 0, 2)
            k = self.linear(x, p + "attention.self.key").reshape(T, H, D).transpose(1, 0, 2)
            v = self.linear(x, p + "attention.self.value").reshape(T, H, D).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(D)  # [H, T, T], no mask: all tokens real
            s = s - s.max(axis=-1, keepdims=True)
            e = np.exp(s)
            a = e / e.sum(axis=-1, keepdims=True)
            ctx = (a @ v).transpose(1, 0, 2).reshape(T, self.hidden)
            x = self.layer_norm(self.linear(ctx, p + "attention.output.dense") + x,
                                p + "attention.output.LayerNorm")
            inter = self.gelu(self.linear(x, p + "intermediate.dense"))
            x = self.layer_norm(self.linear(inter, p + "output.dense") + x, p + "output.LayerNorm")
        return x

    def embed(self, ids):
        ids = list(ids)
        while ids and ids[-1] == self.pad_id:
            ids.pop()
        pooled = self.token_states(ids).mean(axis=0)
        return pooled / max(np.linalg.norm(pooled), 1e-12)


def tokenize(model_dir, texts):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()  # this tokenizer.json pads to 128 by default
    tok.enable_truncation(MAX_SEQ_LENGTH)
    return [e.ids for e in tok.encode_batch(texts)]


def read_json(arg):
    if arg == "-":
        return json.loads(sys.stdin.read())
    if arg.lstrip().startswith("["):
        return json.loads(arg)
    with open(arg, encoding="utf-8") as fh:
        return json.load(fh)


def check(model_dir):
    model = Bert(model_dir)
    pairs = [
        ("A man is playing a guitar.", "Someone plays the guitar."),
        ("The cat sits on the mat.", "A cat is sitting on a rug."),
        ("A man is playing a guitar.", "The stock market fell sharply on Monday."),
        ("How do I bake bread at home?", "Quantum computers use qubits instead of bits."),
    ]
    for a, b in pairs:
        ea, eb = (model.embed(ids) for ids in tokenize(model_dir, [a, b]))
        print(f"cos {float(ea @ eb):.4f}  {a!r} / {b!r}")
    # The sentence-transformers usage docs print, for all-MiniLM-L6-v2, the similarities
    # 0.6660 (0-1), 0.1046 (0-2) and 0.1411 (1-2) for these three sentences.
    doc = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    e = np.stack([model.embed(ids) for ids in tokenize(model_dir, doc)])
    s = e @ e.T
    print(f"sbert docs example: {s[0, 1]:.4f} {s[0, 2]:.4f} {s[1, 2]:.4f} "
          f"(published for all-MiniLM-L6-v2: 0.6660 0.1046 0.1411)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("input", nargs="?", help="IDS_JSON (or TEXTS_JSON with --tokenize)")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--tokenize", action="store_true", help="input is a JSON list of strings")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_intermixed_args()
    if a.check:
        check(a.model_dir)
        return
    if a.input is None or a.out is None:
        ap.error("IDS_JSON (or TEXTS_JSON) and OUT.bin are required")
    data = read_json(a.input)
    if a.tokenize:
        if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
            raise SystemExit("reference_bert: --tokenize expects a JSON list of strings")
        seqs = tokenize(a.model_dir, data)
    else:
        if not isinstance(data, list) or not all(
                isinstance(s, list) and all(isinstance(i, int) for i in s) for s in data):
            raise SystemExit("reference_bert: IDS_JSON must be a JSON list of lists of ints")
        seqs = data
    model = Bert(a.model_dir)
    out = np.stack([model.embed(s) for s in seqs]) if seqs else np.zeros((0, model.hidden))
    np.ascontiguousarray(out, dtype="<f4").tofile(a.out)


if __name__ == "__main__":
    main()
