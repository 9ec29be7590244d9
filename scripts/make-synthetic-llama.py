#!/usr/bin/env python3
"""Writes a synthetic Llama model as a Hugging Face folder: real shapes, made-up weights.

usage: scripts/make-synthetic-llama.py --size tiny|1b|8b OUT_DIR [--seed N] [--dtype bf16|f32|f16]
                                       [--max-shard-size BYTES] [--force] [--corpus FILE ...]
                                       [--vocab-tokens N] [--verify]
       scripts/make-synthetic-llama.py --sanity DIR [--prompt TEXT]

Sizes (config.json shaped exactly like the real model's):
  8b    Llama-3-8B:   hidden 4096, 32 layers, 32 heads, 8 kv heads, intermediate 14336, vocab 128256,
                      rope_theta 500000, untied lm_head, bf16 (8.03 G parameters, 16.06 GB)
  1b    Llama-3.2-1B: hidden 2048, 16 layers, 32 heads, 8 kv heads, head_dim 64, intermediate 8192,
                      vocab 128256, tied embeddings, rope_scaling llama3 (factor 32), bf16 (1.24 G, 2.47 GB)
  tiny  hidden 256, 2 layers, 4 heads, 2 kv heads, intermediate 512, vocab = the tokenizer's,
        untied, f32 (for tests)

The folder: config.json, generation_config.json, tokenizer.json, tokenizer_config.json,
special_tokens_map.json, and the weights in model-0000N-of-0000M.safetensors shards of at most
--max-shard-size bytes (default 5 GB = 5*10^9, header included) with model.safetensors.index.json,
or one model.safetensors when everything fits in one shard (as Hugging Face writes them).
Everything is written into OUT_DIR.partial-PID and renamed to OUT_DIR at the end; an existing
OUT_DIR is refused unless --force (then replaced only once the new one is complete).

Weights (deterministic for a seed and the tensor name; independent of the shard size):
  - every element is a Student-t(5) variate scaled to unit variance, drawn by inverse CDF from a
    table of its 65536 quantiles at (i + 1/2)/65536, indexed by 16 random bits (numpy's
    standard_t is ~15x slower than 16 random bits + a table lookup). The table stops at the
    quantile of 1 - 1/131072 (about 9 standard deviations); larger values come from the outlier
    channels.
  - projections [out, in] (q, k, v, o, gate, up, down, untied lm_head): std 1/sqrt(in) (keeps the
    residual stream bounded: each block adds about unit variance, ~10 rms after 32 layers), with
    max(2, min(8, in/512)) outlier INPUT channels (columns) multiplied by 10..50; the whole matrix
    is scaled so that its variance stays 1/in.
  - the lm_head (or the tied embedding) has std 2/sqrt(hidden), so logits have a std of ~2; the
    embedding, when untied, std 0.02.
  - rows of the embedding and lm_head past the tokenizer's tokens (vocab_size > tokenizer size:
    Llama 3's vocab is 128256) are 10x smaller, like untrained reserved tokens: greedy decoding
    stays on tokens the tokenizer can spell.
  - RMSNorm weights: 1 + 0.05 x the same heavy-tailed noise.
  bf16 is the top 16 bits of the f32 value rounded to nearest even.

Streaming: the safetensors header is computed from the shapes first; each tensor is then
generated in chunks of rows (about 4 M elements) and appended: memory stays at a few tens of MB
whatever the size.

Tokenizer: a byte-level BPE in Llama 3's style (the Llama 3 split regex + ByteLevel, ignore_merges,
<|begin_of_text|> added in front by a TemplateProcessing post-processor) trained with the
`tokenizers` package on the repository's own text (README.md, assets/calibration.txt, the files
of Sources/, in sorted order; --corpus replaces them), so it follows that text as it changes; to
--vocab-tokens (default 4096) tokens, 8 special tokens at the end. config.json's bos/eos ids are
the tokenizer's (not Llama 3's 128000/128001).

--verify: after writing, opens every shard with the `safetensors` package (safe_open) and checks
names, shapes, dtypes and the index; for f32 models also reads back every tensor.

--sanity DIR: an independent float64 numpy forward pass (Hugging Face Llama semantics: RMSNorm,
rotate-half RoPE with llama3 scaling, grouped-query causal attention, SwiGLU) of the prompt
(tokenized with `tokenizers`, BOS added) through a Llama folder, one layer in memory at a time;
prints the residual stream's rms after each layer and the last position's logit statistics
(mean, std, min, max, argmax, top 5). Exits 2 on a non-finite value. Reads 8b in a few minutes.

Never commit the output: generated models belong under /tmp or /work/synth.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time

import numpy as np

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                  "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|eot_id|>"]
BOS, EOS = SPECIAL_TOKENS[0], SPECIAL_TOKENS[1]

SIZES = {
    "8b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=14336, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
               tie_word_embeddings=False, rope_scaling=None, dtype="bf16"),
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
               intermediate_size=8192, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0,
               tie_word_embeddings=True,
               rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"},
               dtype="bf16"),
    "tiny": dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=512, vocab_size=None, max_position_embeddings=2048, rope_theta=500000.0,
                 tie_word_embeddings=False, rope_scaling=None, dtype="f32"),
}
DTYPES = {"bf16": ("BF16", 2, "bfloat16"), "f16": ("F16", 2, "float16"), "f32": ("F32", 4, "float32")}
CHUNK_ELEMENTS = 1 << 22

START = time.monotonic()


def log(message):
    print(f"[{time.monotonic() - START:7.1f}s] {message}", flush=True)


def fail(message):
    print(f"make-synthetic-llama: {message}", file=sys.stderr)
    sys.exit(2)


# ----------------------------------------------------------------------------------------------
# Heavy-tailed values


def student_t5_quantiles(count):
    """The quantiles of Student-t(5) at (i + 1/2)/count, scaled to unit variance, as float64.

    For nu = 5, F(t) = 1/2 + (theta + sin(theta) (cos(theta) + 2/3 cos^3(theta))) / pi with
    theta = atan(t / sqrt(5)); F is increasing in theta, inverted here by bisection.
    """
    p = (np.arange(count, dtype=np.float64) + 0.5) / count
    lo = np.full(count, -math.pi / 2)
    hi = np.full(count, math.pi / 2)
    for _ in range(64):
        mid = (lo + hi) / 2
        c = np.cos(mid)
        f = 0.5 + (mid + np.sin(mid) * (c + (2.0 / 3.0) * c ** 3)) / math.pi
        below = f < p
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    t = math.sqrt(5.0) * np.tan((lo + hi) / 2)
    return t / math.sqrt(5.0 / 3.0)


QUANTILES = student_t5_quantiles(65536)
QUANTILES /= QUANTILES.std()  # exactly unit variance for the discrete table


def bf16_bits(values):
    """float32 array -> uint16 bf16 bit patterns, rounded to nearest even (values are finite)."""
    u = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).copy()
    u += 0x7FFF + ((u >> 16) & 1)
    return (u >> 16).astype(np.uint16)


def encode(values, dtype):
    """float32 array -> the bytes-ready array of `dtype`."""
    if dtype == "bf16":
        return bf16_bits(values)
    if dtype == "f16":
        return values.astype(np.float16)
    return values.astype(np.float32)


def rng_for(seed, name):
    digest = hashlib.sha256(name.encode()).digest()
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, int.from_bytes(digest[:8], "little")])))


class TensorSpec:
    """One tensor: its name, shape and how its values are made."""

    def __init__(self, name, shape, kind, std=1.0, small_rows_from=None):
        self.name, self.shape, self.kind, self.std = name, tuple(shape), kind, std
        self.small_rows_from = small_rows_from  # rows >= this are 10x smaller (reserved tokens)

    @property
    def elements(self):
        return math.prod(self.shape)

    def chunks(self, seed, dtype):
        """Yields the tensor's values in `dtype`, a block of rows at a time, in order."""
        rng = rng_for(seed, self.name)
        if self.kind == "norm":
            noise = QUANTILES[rng.integers(0, 65536, self.elements)]
            yield encode((1.0 + 0.05 * noise).astype(np.float32), dtype)
            return
        rows, cols = self.shape
        outlier_cols = np.zeros(0, dtype=np.int64)
        factors = np.zeros(0)
        if self.kind == "linear":
            k = max(2, min(8, cols // 512))
            outlier_cols = np.sort(rng.choice(cols, size=k, replace=False))
            factors = rng.uniform(10.0, 50.0, size=k)
        scale = self.std * math.sqrt(cols / (cols - len(factors) + float(np.sum(factors ** 2))))
        table = (QUANTILES * scale).astype(np.float32)
        tables = {1.0: encode(table, dtype)}
        if self.small_rows_from is not None:
            tables[0.1] = encode((QUANTILES * scale * 0.1).astype(np.float32), dtype)
        rows_per_chunk = max(1, CHUNK_ELEMENTS // cols)
        for r0 in range(0, rows, rows_per_chunk):
            r1 = min(rows, r0 + rows_per_chunk)
            n = (r1 - r0) * cols
            index = rng.bit_generator.random_raw((n + 3) // 4).view(np.uint16)[:n].reshape(r1 - r0, cols)
            limit = self.small_rows_from
            if limit is None or r1 <= limit or r0 >= limit:
                factor = 0.1 if limit is not None and r0 >= limit else 1.0
                out = tables[factor].take(index)
            else:
                out = np.concatenate([tables[1.0].take(index[:limit - r0]), tables[0.1].take(index[limit - r0:])])
            if len(outlier_cols):
                big = table.take(index[:, outlier_cols]) * factors.astype(np.float32)
                out[:, outlier_cols] = encode(big.astype(np.float32), dtype)
            yield out


def tensor_specs(config, tokens):
    """The tensors of a Llama model in Hugging Face order: embedding, layers, final norm, lm_head."""
    h, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim", h // heads)
    tied = config["tie_word_embeddings"]
    reserved = tokens if tokens < vocab else None
    specs = [TensorSpec("model.embed_tokens.weight", (vocab, h), "embedding",
                        std=2.0 / math.sqrt(h) if tied else 0.02, small_rows_from=reserved)]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        specs += [
            TensorSpec(p + "input_layernorm.weight", (h,), "norm"),
            TensorSpec(p + "self_attn.q_proj.weight", (heads * head_dim, h), "linear", 1 / math.sqrt(h)),
            TensorSpec(p + "self_attn.k_proj.weight", (kv * head_dim, h), "linear", 1 / math.sqrt(h)),
            TensorSpec(p + "self_attn.v_proj.weight", (kv * head_dim, h), "linear", 1 / math.sqrt(h)),
            TensorSpec(p + "self_attn.o_proj.weight", (h, heads * head_dim), "linear", 1 / math.sqrt(heads * head_dim)),
            TensorSpec(p + "post_attention_layernorm.weight", (h,), "norm"),
            TensorSpec(p + "mlp.gate_proj.weight", (inter, h), "linear", 1 / math.sqrt(h)),
            TensorSpec(p + "mlp.up_proj.weight", (inter, h), "linear", 1 / math.sqrt(h)),
            TensorSpec(p + "mlp.down_proj.weight", (h, inter), "linear", 1 / math.sqrt(inter)),
        ]
    specs.append(TensorSpec("model.norm.weight", (h,), "norm"))
    if not tied:
        specs.append(TensorSpec("lm_head.weight", (vocab, h), "linear", 2.0 / math.sqrt(h), small_rows_from=reserved))
    return specs


# ----------------------------------------------------------------------------------------------
# Safetensors, streamed


def header_bytes(specs, dtype):
    """The safetensors header (8-byte length + JSON padded with spaces to a multiple of 8)."""
    name, size, _ = DTYPES[dtype]
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for s in specs:
        header[s.name] = {"dtype": name, "shape": list(s.shape), "data_offsets": [offset, offset + s.elements * size]}
        offset += s.elements * size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def plan_shards(specs, dtype, max_bytes):
    """Tensors in order, cut into shards whose files (header included) stay within max_bytes; a
    tensor larger than that gets a shard of its own."""
    size = DTYPES[dtype][1]
    shards, current = [], []
    for s in specs:
        if current and len(header_bytes(current + [s], dtype)) + sum(t.elements for t in current + [s]) * size > max_bytes:
            shards.append(current)
            current = []
        current.append(s)
    shards.append(current)
    return shards


def write_shards(folder, shards, dtype, seed):
    size = DTYPES[dtype][1]
    total_bytes = sum(s.elements for shard in shards for s in shard) * size
    names = (["model.safetensors"] if len(shards) == 1 else
             [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
    written, last_log, count = 0, time.monotonic(), sum(len(s) for s in shards)
    done = 0
    for file_name, shard in zip(names, shards):
        with open(os.path.join(folder, file_name), "wb") as f:
            f.write(header_bytes(shard, dtype))
            for spec in shard:
                for block in spec.chunks(seed, dtype):
                    f.write(np.ascontiguousarray(block).data)
                    written += block.nbytes
                done += 1
                now = time.monotonic()
                if now - last_log >= 1.0 or done == count:
                    rate = written / max(now - START, 1e-9) / 1e6
                    log(f"{file_name}: {spec.name} {list(spec.shape)} — tensor {done}/{count}, "
                        f"{written / 1e9:.2f}/{total_bytes / 1e9:.2f} GB ({rate:.0f} MB/s)")
                    last_log = now
        log(f"wrote {file_name} ({os.path.getsize(os.path.join(folder, file_name)) / 1e9:.3f} GB)")
    if len(shards) > 1:
        index = {"metadata": {"total_size": total_bytes},
                 "weight_map": {s.name: n for n, shard in zip(names, shards) for s in shard}}
        index["weight_map"] = dict(sorted(index["weight_map"].items()))
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
            f.write("\n")
    return names, total_bytes


# ----------------------------------------------------------------------------------------------
# Tokenizer


def default_corpus(root):
    files = [os.path.join(root, "README.md"), os.path.join(root, "assets", "calibration.txt")]
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, "Sources")):
        dirnames.sort()
        files += [os.path.join(dirpath, n) for n in sorted(filenames) if n.endswith((".swift", ".md", ".c", ".h"))]
    return [f for f in files if os.path.isfile(f)]


def train_tokenizer(corpus, total_tokens):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    texts = []
    for path in corpus:
        with open(path, encoding="utf-8", errors="replace") as f:
            texts.append(f.read())
    tokenizer = Tokenizer(models.BPE(ignore_merges=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=total_tokens - len(SPECIAL_TOKENS), min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    bos = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B:1", special_tokens=[(BOS, bos)])])
    return tokenizer


def write_tokenizer(folder, tokenizer, max_length):
    tokenizer.save(os.path.join(folder, "tokenizer.json"))
    added = {str(tokenizer.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                             "single_word": False, "special": True} for t in SPECIAL_TOKENS}
    config = {"added_tokens_decoder": added, "bos_token": BOS, "clean_up_tokenization_spaces": True,
              "eos_token": EOS, "model_input_names": ["input_ids", "attention_mask"],
              "model_max_length": max_length, "tokenizer_class": "PreTrainedTokenizerFast"}
    write_json(folder, "tokenizer_config.json", config)
    write_json(folder, "special_tokens_map.json", {"bos_token": BOS, "eos_token": EOS})


def write_json(folder, name, value):
    with open(os.path.join(folder, name), "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


# ----------------------------------------------------------------------------------------------


def model_config(size, dtype, tokens, bos, eos):
    s = dict(SIZES[size])
    s.pop("dtype")
    vocab = s.pop("vocab_size") or tokens
    config = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
              "bos_token_id": bos, "eos_token_id": eos, "hidden_act": "silu", "initializer_range": 0.02,
              "mlp_bias": False, "model_type": "llama", "pretraining_tp": 1, "rms_norm_eps": 1e-05,
              "torch_dtype": DTYPES[dtype][2], "transformers_version": "4.45.0", "use_cache": True,
              "vocab_size": vocab}
    config.update(s)
    return dict(sorted(config.items()))


def verify(folder, names, specs, dtype):
    from safetensors import safe_open

    expected = {s.name: s for s in specs}
    seen = set()
    for name in names:
        with safe_open(os.path.join(folder, name), framework="numpy") as f:
            for key in f.keys():
                if key not in expected or key in seen:
                    fail(f"verify: {name} holds an unexpected or repeated tensor {key}")
                seen.add(key)
                piece = f.get_slice(key)
                if tuple(piece.get_shape()) != expected[key].shape or piece.get_dtype() != DTYPES[dtype][0]:
                    fail(f"verify: {name}: {key} is {piece.get_dtype()} {piece.get_shape()}")
                if dtype == "f32":
                    values = f.get_tensor(key)
                    if not np.all(np.isfinite(values)):
                        fail(f"verify: {name}: {key} has non-finite values")
    if seen != set(expected):
        fail(f"verify: missing tensors {sorted(set(expected) - seen)[:5]}")
    if len(names) > 1:
        with open(os.path.join(folder, "model.safetensors.index.json")) as f:
            index = json.load(f)
        for key, shard in index["weight_map"].items():
            with safe_open(os.path.join(folder, shard), framework="numpy") as f:
                if key not in f.keys():
                    fail(f"verify: the index puts {key} in {shard}, which lacks it")
    log(f"verified {len(seen)} tensors in {len(names)} file(s) with safetensors.safe_open")


# ----------------------------------------------------------------------------------------------
# Sanity check: a reference forward pass


class SafeTensorsFolder:
    """The tensors of a Hugging Face folder (one model.safetensors or an index of shards), memory-mapped."""

    def __init__(self, folder):
        index = os.path.join(folder, "model.safetensors.index.json")
        files = (sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index)
                 else ["model.safetensors"])
        self.where = {}
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                length = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(length))
            data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + length)
            for key, info in header.items():
                if key != "__metadata__":
                    self.where[key] = (data, info)

    def __contains__(self, name):
        return name in self.where

    def get(self, name, rows=None):
        """The tensor (or some of its rows) as float64."""
        data, info = self.where[name]
        begin, end = info["data_offsets"]
        kind = {"BF16": np.uint16, "F16": np.float16, "F32": np.float32}[info["dtype"]]
        values = data[begin:end].view(kind).reshape(info["shape"])
        if rows is not None:
            values = values[rows]
        if info["dtype"] == "BF16":
            return (values.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        return values.astype(np.float64)


def rope_inverse_frequencies(config, dims):
    theta = config.get("rope_theta", 10000.0)
    inv = 1.0 / theta ** (np.arange(0, dims, 2, dtype=np.float64) / dims)
    scaling = config.get("rope_scaling")
    if scaling and scaling.get("rope_type", scaling.get("type")) == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        original = scaling["original_max_position_embeddings"]
        wavelength = 2 * math.pi / inv
        scaled = np.where(wavelength > original / low, inv / factor, inv)
        smooth = (original / wavelength - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelength < original / high) & ~(wavelength > original / low)
        inv = np.where(medium, smoothed, scaled)
    elif scaling:
        fail(f"--sanity: rope_scaling {scaling} is not handled")
    return inv


def sanity(folder, prompt):
    from tokenizers import Tokenizer

    config = json.load(open(os.path.join(folder, "config.json")))
    ids = Tokenizer.from_file(os.path.join(folder, "tokenizer.json")).encode(prompt).ids
    weights = SafeTensorsFolder(folder)
    h, heads, kv = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]
    d = config.get("head_dim", h // heads)
    eps = config.get("rms_norm_eps", 1e-5)
    n = len(ids)
    log(f"sanity: {folder}: {n} prompt tokens {ids}")

    def norm(x, name):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weights.get(name)

    angles = np.outer(np.arange(n), rope_inverse_frequencies(config, d))
    cos, sin = np.cos(np.concatenate([angles, angles], 1)), np.sin(np.concatenate([angles, angles], 1))

    def rope(x):  # [n, heads, d]
        rotated = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
        return x * cos[:, None, :] + rotated * sin[:, None, :]

    x = weights.get("model.embed_tokens.weight", rows=np.array(ids))
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = norm(x, p + "input_layernorm.weight")
        q = rope((a @ weights.get(p + "self_attn.q_proj.weight").T).reshape(n, heads, d))
        k = rope((a @ weights.get(p + "self_attn.k_proj.weight").T).reshape(n, kv, d))
        v = (a @ weights.get(p + "self_attn.v_proj.weight").T).reshape(n, kv, d)
        out = np.empty((n, heads, d))
        for head in range(heads):
            g = head // (heads // kv)
            scores = q[:, head] @ k[:, g].T / math.sqrt(d) + mask
            scores = np.exp(scores - scores.max(1, keepdims=True))
            out[:, head] = (scores / scores.sum(1, keepdims=True)) @ v[:, g]
        x = x + out.reshape(n, heads * d) @ weights.get(p + "self_attn.o_proj.weight").T
        m = norm(x, p + "post_attention_layernorm.weight")
        gate = m @ weights.get(p + "mlp.gate_proj.weight").T
        up = m @ weights.get(p + "mlp.up_proj.weight").T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ weights.get(p + "mlp.down_proj.weight").T
        log(f"sanity: layer {i}: residual rms {np.sqrt(np.mean(x * x)):.4g}, max |x| {np.abs(x).max():.4g}")
        if not np.all(np.isfinite(x)):
            fail(f"--sanity: non-finite residual after layer {i}")
    last = norm(x[-1:], "model.norm.weight")[0]
    head = "lm_head.weight" if "lm_head.weight" in weights else "model.embed_tokens.weight"
    vocab = config["vocab_size"]
    logits = np.concatenate([weights.get(head, rows=slice(r, min(vocab, r + 16384))) @ last
                             for r in range(0, vocab, 16384)])
    if not np.all(np.isfinite(logits)):
        fail("--sanity: non-finite logits")
    top = np.argsort(-logits)[:5]
    stats = {"prompt_tokens": n, "logit_mean": float(logits.mean()), "logit_std": float(logits.std()),
             "logit_min": float(logits.min()), "logit_max": float(logits.max()), "argmax": int(top[0]),
             "top5": [[int(t), round(float(logits[t]), 4)] for t in top]}
    print(json.dumps(stats), flush=True)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--sanity":
        sanity_parser = argparse.ArgumentParser(usage="make-synthetic-llama.py --sanity DIR [--prompt TEXT]")
        sanity_parser.add_argument("--sanity", required=True, metavar="DIR")
        sanity_parser.add_argument("--prompt", default="The capital of France is")
        sanity_args = sanity_parser.parse_args()
        try:
            sanity(sanity_args.sanity, sanity_args.prompt)
        except (OSError, KeyError, ValueError) as error:
            fail(f"--sanity {sanity_args.sanity}: {type(error).__name__}: {error}")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--size", required=True, choices=sorted(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=sorted(DTYPES))
    parser.add_argument("--max-shard-size", type=int, default=5 * 10 ** 9)
    parser.add_argument("--vocab-tokens", type=int, default=4096)
    parser.add_argument("--corpus", nargs="+")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--verify", action="store_true")
    args = parser.parse_args()

    out = os.path.abspath(args.out_dir.rstrip("/"))
    if os.path.exists(out) and not args.force:
        fail(f"{out} exists (use --force to replace it)")
    if args.seed < 0:
        fail("--seed must be >= 0")
    if args.max_shard_size < 1 << 20:
        fail("--max-shard-size must be at least 1 MiB")
    if not 256 + len(SPECIAL_TOKENS) < args.vocab_tokens <= 128256:
        fail(f"--vocab-tokens must be in {256 + len(SPECIAL_TOKENS) + 1}...128256")
    dtype = args.dtype or SIZES[args.size]["dtype"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    corpus = args.corpus or default_corpus(root)
    for path in corpus:
        if not os.path.isfile(path):
            fail(f"corpus file {path} does not exist")

    try:
        import tokenizers  # noqa: F401
    except ImportError:
        fail("the Python package `tokenizers` is missing (pip install tokenizers)")

    partial = f"{out}.partial-{os.getpid()}"
    try:
        os.makedirs(partial)
    except OSError as error:
        fail(f"cannot create {partial}: {error.strerror}")
    try:
        tokenizer = train_tokenizer(corpus, args.vocab_tokens)
        tokens = tokenizer.get_vocab_size()
        log(f"tokenizer: byte-level BPE, {tokens} tokens, trained on {len(corpus)} files")
        config = model_config(args.size, dtype, tokens, tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS))
        if config["vocab_size"] < tokens:
            fail(f"vocab_size {config['vocab_size']} is smaller than the tokenizer's {tokens} tokens")
        write_tokenizer(partial, tokenizer, config["max_position_embeddings"])
        write_json(partial, "config.json", config)
        write_json(partial, "generation_config.json", {"bos_token_id": config["bos_token_id"], "do_sample": False,
                                                       "eos_token_id": config["eos_token_id"],
                                                       "transformers_version": "4.45.0"})
        specs = tensor_specs(config, tokens)
        params = sum(s.elements for s in specs)
        shards = plan_shards(specs, dtype, args.max_shard_size)
        log(f"{args.size}: {params / 1e9:.3f} G parameters, {dtype}, {len(specs)} tensors in {len(shards)} file(s), "
            f"seed {args.seed}")
        names, total = write_shards(partial, shards, dtype, args.seed)
        if args.verify:
            verify(partial, names, specs, dtype)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(partial, out)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        fail(f"{error.filename or partial}: {error.strerror}")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log(f"done: {out} ({total / 1e9:.3f} GB of weights, {params} parameters) in {time.monotonic() - START:.1f} s")


if __name__ == "__main__":
    main()
