import Any4Core

/// Text to token ids and back, as a model's own tokenizer does it.
///
/// Ids outside `0..<vocabularySize` are never produced; given to `decode`, `bytes(of:)` or
/// `piece(_:)` they are ignored (nothing, or the empty string).
public protocol TextTokenizer: Sendable {
    var vocabularySize: Int { get }
    var bosID: Int? { get }
    var eosID: Int? { get }
    /// Token ids of `text`; with `addSpecialTokens` the model's own framing: BOS when the model adds one
    /// (GGUF tokenizer.ggml.add_bos_token / tokenizer.json post_processor), [CLS] … [SEP] for BERT.
    func encode(_ text: String, addSpecialTokens: Bool) -> [Int]
    /// The text of `ids` (byte-level BPE: bytes joined then decoded as UTF-8, invalid sequences replaced by U+FFFD;
    /// WordPiece: pieces joined with spaces, "##" continuations glued; special tokens skipped when `skipSpecial`).
    func decode(_ ids: [Int], skipSpecial: Bool) -> String
    /// The raw bytes id `id` stands for (byte-level BPE) — generation prints streams of these; WordPiece: UTF-8 of the piece.
    func bytes(of id: Int) -> [UInt8]
    /// The vocabulary string of `id` as the file stores it (for `any4 tokenize` display).
    func piece(_ id: Int) -> String
}

extension TextTokenizer {
    /// BOS when the model's framing starts with it (`encode(_, addSpecialTokens: true)` puts it
    /// first), else nil: what a perplexity window's first token becomes.
    public var leadingBOS: Int? {
        guard let bos = bosID, encode("", addSpecialTokens: true).first == bos else { return nil }
        return bos
    }
}

public enum Tokenizers {
    /// The tokenizer of a model: GGUF `tokenizer.ggml.*` metadata (model "gpt2" = byte-level BPE; "bert" = WordPiece if you can,
    /// others -> error), or a Hugging Face folder's tokenizer.json (BPE with ByteLevel, or WordPiece) / vocab.txt (WordPiece,
    /// with do_lower_case from tokenizer_config.json when present, default true).
    /// Throws a FileFormatError naming the file (or the model path) when there is no tokenizer or it is malformed.
    ///
    /// A lone `.safetensors` file takes the tokenizer files beside it, as it takes `config.json`.
    public static func load(for model: Model) throws -> any TextTokenizer {
        if let gguf = model.gguf { return try load(gguf: gguf) }
        if let folder = model.huggingFace { return try load(huggingFaceFolder: folder.path) }
        if model.format == .safetensors { return try load(huggingFaceFolder: parentDirectory(model.path)) }
        throw FileFormatError(file: model.path, kind: .unsupported, "a \(model.format.rawValue) model has no tokenizer")
    }

    /// The tokenizer of a Hugging Face folder: tokenizer.json, else vocab.txt (WordPiece).
    static func load(huggingFaceFolder path: String) throws -> any TextTokenizer {
        if fileExists(path + "/tokenizer.json") { return try load(tokenizerJSON: path + "/tokenizer.json") }
        if fileExists(path + "/vocab.txt") { return try loadVocabTxt(path + "/vocab.txt") }
        throw FileFormatError(file: path, kind: .io, "no tokenizer: the folder has neither tokenizer.json nor vocab.txt")
    }
}

/// One past the largest of `ids`, the token ids of a vocabulary and its added tokens. They must be
/// non-negative and fill most of that range: a file claiming id 2^31 would otherwise size tables for it.
func checkedVocabularySize(_ ids: [Int], file: String) throws -> Int {
    guard let largest = ids.max(), let smallest = ids.min() else {
        throw FileFormatError(file: file, kind: .badHeader, "the vocabulary is empty")
    }
    guard smallest >= 0 else { throw FileFormatError(file: file, kind: .badHeader, "token id \(smallest) is negative") }
    guard largest < 2 * ids.count + 1024 else {
        throw FileFormatError(
            file: file, kind: .badShape,
            "token id \(largest) leaves most ids unused (the file has \(ids.count) tokens)")
    }
    return largest + 1
}
