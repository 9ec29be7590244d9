"""Tokenizer files for the Swift tokenizer tests, written by the PyPI `tokenizers` and `gguf` packages.

usage: tokenizer_fixtures.py OUTDIR GROUP...
  bpe     OUTDIR/bpe-gpt2, bpe-llama3, bpe-qwen2: folders with a tokenizer.json trained by
          tokenizers.trainers.BpeTrainer on a few sentences, and a one-tensor model.safetensors so that
          each opens as a model. bpe-gpt2: GPT-2's ByteLevel pre-tokenizer with add_prefix_space,
          "<s> $A </s>", merges as "a b" strings. bpe-llama3: Llama 3's Split + ByteLevel, ignore_merges,
          "<|begin_of_text|> $A". bpe-qwen2: Qwen2's Split + ByteLevel after an NFC normalizer. The last
          two write merges as [a, b] pairs.
  errors  OUTDIR/no-tokenizer.gguf  one tensor and no tokenizer.ggml.* metadata
          OUTDIR/unknown-pre.gguf   a "gpt2" tokenizer with tokenizer.ggml.pre "mystery"
          OUTDIR/bad-merge.gguf     a "gpt2" tokenizer whose merge "a c" names a token not in the vocabulary
  bert=VOCAB_TXT
          OUTDIR/bert.gguf          that BERT vocabulary as llama.cpp's converter stores it
                                    (tokenizer.ggml.model "bert", "▁" before word starts, "##" dropped)
"""
import json
import os
import struct
import sys

import numpy as np
import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenize_reference import LLAMA3, QWEN2  # noqa: E402

CORPUS = [
    "The quick brown fox jumps over the lazy dog. Don't panic; it's only 3.14159 — or 12,345 dogs!",
    "Il était une fois un café naïf à Montréal; ÉCOLE, Ångström, déjà vu.",
    "def f(x):\n    return x**2  # comment\n\nprint(f(12))\n",
    '{"key": [1, 2, 3], "other": null}\n\tint main(void) { return 0; }',
    "日本語のテキスト、中文字符，한국어 텍스트. Emoji: 😀👍🏽👨‍👩‍👧 🇫🇷",
    "I'll say we're here, you've seen it, they'd know. HTTPS://EXAMPLE.COM/a?b=c&d=e",
] * 4


def safetensors(path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [1, 2], "data_offsets": [0, 8]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.0, 2.0))


def train(outdir, name, pre, special, template, normalizer=None, ignore_merges=False):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, min_frequency=2, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, tok.token_to_id(t)) for t in special if t in template])
    folder = f"{outdir}/{name}"
    os.makedirs(folder, exist_ok=True)
    tok.save(f"{folder}/tokenizer.json")
    safetensors(f"{folder}/model.safetensors")
    return folder


def write_gguf(path, metadata):
    w = gguf.GGUFWriter(path, arch="llama")
    for key, value in metadata:
        if isinstance(value, list):
            w.add_array(key, value)
        elif isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        else:
            w.add_string(key, value)
    w.add_tensor("token_embd.weight", np.zeros((2, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(outdir, groups):
    if "bpe" in groups:
        write_bpe(outdir)
    if "errors" in groups:
        write_errors(outdir)
    for group in groups:
        if group.startswith("bert="):
            write_bert(outdir, group[5:])


def write_bpe(outdir):
    no_regex = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    folder = train(outdir, "bpe-gpt2", pre_tokenizers.ByteLevel(add_prefix_space=True), ["<s>", "</s>", "<pad>"],
                   "<s> $A </s>")
    # GPT-2's tokenizer.json writes its merges as "left right" strings (the package writes pairs).
    with open(f"{folder}/tokenizer.json", encoding="utf-8") as f:
        spec = json.load(f)
    spec["model"]["merges"] = [" ".join(m) for m in spec["model"]["merges"]]
    with open(f"{folder}/tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False)
    train(outdir, "bpe-llama3", pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3), "isolated"), no_regex]),
          ["<|begin_of_text|>", "<|end_of_text|>"], "<|begin_of_text|> $A", ignore_merges=True)
    train(outdir, "bpe-qwen2", pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2), "isolated"), no_regex]),
          ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "$A", normalizer=normalizers.NFC())


def write_errors(outdir):
    write_gguf(f"{outdir}/no-tokenizer.gguf", [("general.name", "no tokenizer")])
    tiny = [("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.tokens", ["a", "b", "ab"])]
    write_gguf(f"{outdir}/unknown-pre.gguf", tiny + [("tokenizer.ggml.merges", ["a b"]), ("tokenizer.ggml.pre", "mystery")])
    write_gguf(f"{outdir}/bad-merge.gguf", tiny + [("tokenizer.ggml.merges", ["a b", "a c"]), ("tokenizer.ggml.pre", "gpt2")])


def write_bert(outdir, vocab_txt):
    with open(vocab_txt, encoding="utf-8") as f:
        vocab = [line.rstrip("\n") for line in f]

    def phantom(token):
        if token.startswith("[") and token.endswith("]"):
            return token
        return token[2:] if token.startswith("##") else "\u2581" + token

    types = [3 if t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") else 1 for t in vocab]
    write_gguf(f"{outdir}/bert.gguf", [
        ("tokenizer.ggml.model", "bert"),
        ("tokenizer.ggml.tokens", [phantom(t) for t in vocab]),
        ("tokenizer.ggml.token_type", types),
        ("tokenizer.ggml.unknown_token_id", vocab.index("[UNK]")),
        ("tokenizer.ggml.cls_token_id", vocab.index("[CLS]")),
        ("tokenizer.ggml.seperator_token_id", vocab.index("[SEP]")),
        ("tokenizer.ggml.padding_token_id", vocab.index("[PAD]")),
    ])


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2:])
