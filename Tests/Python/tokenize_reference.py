"""Reference token ids from the PyPI `tokenizers` package, for the Swift tokenizers to match.

usage: tokenize_reference.py encode TEXTS SOURCE...
           TEXTS   a JSON file with an array of strings ("-" for stdin)
           SOURCE  a tokenizer.json (loaded with Tokenizer.from_file, padding and truncation off), or a
                   .gguf file whose tokenizer.ggml.* metadata is rebuilt as a Hugging Face tokenizer
                   (see from_gguf: the way the model's own tokenizer.json is set up)
       prints, one object per SOURCE in a list:
              {"plain": [[id]], "special": [[id]],            encode(text, add_special_tokens=False / True)
               "decoded": [str], "decoded_skip": [str]}     decode(special ids, skip_special_tokens=False / True)

       tokenize_reference.py pretokenize TEXTS
       prints {"gpt2" | "smollm" | "llama3" | "qwen2": [[piece]]}, each text's pre_tokenize_str pieces
       (byte-level spelling) under the pre-tokenizer each of those models' tokenizer.json declares

       tokenize_reference.py normalize TEXTS
       prints {"bert": [str], "nfc": [str], "nfd": [str]}: BertNormalizer(lowercase=True) (strip_accents
       following lowercase, as in bert-base-uncased) and unicodedata's NFC and NFD of each text, and
       {"scalars": [int], "scalar_bert": [str]}: BertNormalizer of each scalar below U+20000 on its own,
       for the scalars already assigned in Unicode 3.2 (unicodedata.ucd_3_2_0) — the categories of
       later ones depend on the Unicode version each implementation was built with
"""
import json
import sys
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def pre_tokenizer(name):
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    no_regex = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if name in ("default", "gpt2"):
        return byte_level
    if name == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if name in ("llama3", "llama-bpe"):
        return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3), "isolated"), no_regex])
    if name == "qwen2":
        return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2), "isolated"), no_regex])
    raise SystemExit(f"unknown pre-tokenizer {name}")


def gguf_metadata(path):
    """The key/value metadata of a GGUF file (v2/v3).

    gguf.GGUFReader builds numpy views for every array element and tensor, which takes ~5 s on
    SmolLM2's 49k tokens and 49k merges; the header is simple enough to read here in ~0.1 s.
    """
    import mmap
    import struct

    scalars = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    pos = 0

    def read(fmt):
        nonlocal pos
        (value,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return value

    def string():
        nonlocal pos
        length = read("<Q")
        pos += length
        return data[pos - length:pos].decode("utf-8")

    def value(kind):
        if kind == 8:
            return string()
        if kind == 9:
            inner, count = read("<I"), read("<Q")
            return [value(inner) for _ in range(count)]
        return read(scalars[kind])

    if read("<I") != 0x46554747 or read("<I") not in (2, 3):
        raise SystemExit(f"{path}: not a GGUF v2/v3 file")
    read("<Q")  # tensor count
    metadata = {}
    for _ in range(read("<Q")):
        key = string()
        metadata[key] = value(read("<I"))
    return metadata


def from_gguf(path):
    """A byte-level BPE tokenizer from GGUF metadata, set up as SmolLM2's tokenizer.json is."""
    meta = gguf_metadata(path)
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise SystemExit(f"{path}: tokenizer.ggml.model {model!r} is not gpt2")
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta.get("tokenizer.ggml.token_type", [1] * len(tokens))
    vocab = {}
    for i, token in enumerate(tokens):
        vocab.setdefault(token, i)
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    pre = meta.get("tokenizer.ggml.pre", "default")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=pre in ("llama3", "llama-bpe")))
    tok.pre_tokenizer = pre_tokenizer(pre)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, t in enumerate(types) if t == 3])
    tok.add_tokens([AddedToken(tokens[i], normalized=False) for i, t in enumerate(types) if t == 4])
    bos = meta.get("tokenizer.ggml.bos_token_id")
    if meta.get("tokenizer.ggml.add_bos_token", False) and bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]} $A", special_tokens=[(tokens[bos], bos)])
    return tok


def load(source):
    if source.endswith(".gguf"):
        return from_gguf(source)
    tok = Tokenizer.from_file(source)
    tok.no_padding()
    tok.no_truncation()
    return tok


def read_texts(path):
    return json.load(sys.stdin if path == "-" else open(path, encoding="utf-8"))


def main(argv):
    if len(argv) >= 3 and argv[0] == "encode":
        texts = read_texts(argv[1])
        out = []
        for source in argv[2:]:
            tok = load(source)
            special = [tok.encode(t, add_special_tokens=True).ids for t in texts]
            out.append({"plain": [tok.encode(t, add_special_tokens=False).ids for t in texts], "special": special,
                        "decoded": [tok.decode(ids, skip_special_tokens=False) for ids in special],
                        "decoded_skip": [tok.decode(ids, skip_special_tokens=True) for ids in special]})
    elif len(argv) == 2 and argv[0] == "pretokenize":
        texts = read_texts(argv[1])
        out = {name: [[piece for piece, _ in pre_tokenizer(name).pre_tokenize_str(t)] for t in texts]
               for name in ("gpt2", "smollm", "llama3", "qwen2")}
    elif len(argv) == 2 and argv[0] == "normalize":
        texts = read_texts(argv[1])
        bert = normalizers.BertNormalizer(lowercase=True)
        scalars = [c for c in range(0x20000)
                   if not 0xD800 <= c < 0xE000 and unicodedata.ucd_3_2_0.category(chr(c)) != "Cn"]
        out = {"bert": [bert.normalize_str(t) for t in texts],
               "nfc": [unicodedata.normalize("NFC", t) for t in texts],
               "nfd": [unicodedata.normalize("NFD", t) for t in texts],
               "scalars": scalars, "scalar_bert": [bert.normalize_str(chr(c)) for c in scalars]}
    else:
        raise SystemExit(__doc__)
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main(sys.argv[1:])
