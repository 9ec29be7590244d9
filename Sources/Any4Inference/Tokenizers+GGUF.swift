import Any4Core

extension Tokenizers {
    /// The tokenizer in a GGUF file's `tokenizer.ggml.*` metadata: "gpt2" (byte-level BPE) or "bert" (WordPiece).
    static func load(gguf: GGUFFile) throws -> any TextTokenizer {
        let file = gguf.path
        func fail(_ kind: FileFormatError.Kind, _ message: String, key: String) -> FileFormatError {
            FileFormatError(file: file, kind: kind, message, subject: key)
        }
        guard let tokenValues = gguf.value("tokenizer.ggml.tokens") else {
            throw fail(.unsupported, "no tokenizer: the file has no tokenizer.ggml.tokens", key: "tokenizer.ggml.tokens")
        }
        guard let model = gguf.value("tokenizer.ggml.model")?.string else {
            throw fail(.badHeader, "missing or not a string", key: "tokenizer.ggml.model")
        }
        let tokens = try strings(tokenValues, key: "tokenizer.ggml.tokens", file: file)
        var types: [Int] = []
        if let typeValues = gguf.value("tokenizer.ggml.token_type") {
            guard let array = typeValues.array, array.count == tokens.count else {
                throw fail(.badHeader, "must be an array with one type per token (\(tokens.count))", key: "tokenizer.ggml.token_type")
            }
            types = try array.enumerated().map { index, value in
                guard let type = value.int else { throw fail(.badHeader, "not an integer", key: "tokenizer.ggml.token_type[\(index)]") }
                return type
            }
        }
        func tokenID(_ key: String) throws -> Int? {
            guard let value = gguf.value(key) else { return nil }
            guard let id = value.int, id >= 0, id < tokens.count else {
                throw fail(.badHeader, "\(value) is not a token id (0..<\(tokens.count))", key: key)
            }
            return id
        }
        func flag(_ key: String, default defaultValue: Bool) throws -> Bool {
            guard let value = gguf.value(key) else { return defaultValue }
            guard case .bool(let flag) = value else { throw fail(.badHeader, "not a BOOL", key: key) }
            return flag
        }

        switch model {
        case "gpt2":
            guard let mergeValues = gguf.value("tokenizer.ggml.merges") else {
                throw fail(.badHeader, "a \"gpt2\" tokenizer needs merges", key: "tokenizer.ggml.merges")
            }
            let merges = try strings(mergeValues, key: "tokenizer.ggml.merges", file: file).enumerated().map { index, merge in
                // "left right"; the left side is never empty, the right side takes the rest.
                let utf8 = merge.utf8
                guard let space = utf8.dropFirst().firstIndex(of: 0x20) else {
                    throw fail(.badHeader, "\"\(merge)\" is not two tokens separated by a space", key: "tokenizer.ggml.merges[\(index)]")
                }
                return (left: String(merge[..<space]), right: String(merge[merge.utf8.index(after: space)...]))
            }
            let pre = gguf.value("tokenizer.ggml.pre")?.string ?? "default"
            guard let (steps, nfc, ignoreMerges) = Self.ggufPreTokenizers[pre] else {
                throw fail(
                    .unsupported,
                    "pre-tokenizer \"\(pre)\" is not supported (known: \(Self.ggufPreTokenizers.keys.sorted().joined(separator: ", ")))",
                    key: "tokenizer.ggml.pre")
            }
            var definition = ByteLevelBPETokenizer.Definition(
                file: file, vocabulary: tokens.enumerated().map { ($1, $0) }, merges: merges, mergesKey: "tokenizer.ggml.merges")
            definition.preTokenizer = PreTokenizer(steps: steps)
            definition.nfc = nfc
            definition.ignoreMerges = ignoreMerges
            for (id, type) in types.enumerated() where type == 3 || type == 4 {
                definition.addedTokens.append(AddedToken(content: tokens[id], id: id, special: type == 3))
            }
            definition.bosID = try tokenID("tokenizer.ggml.bos_token_id")
            definition.eosID = try tokenID("tokenizer.ggml.eos_token_id")
            if try flag("tokenizer.ggml.add_bos_token", default: false), let bos = definition.bosID { definition.prefix = [bos] }
            if try flag("tokenizer.ggml.add_eos_token", default: false), let eos = definition.eosID { definition.suffix = [eos] }
            return try ByteLevelBPETokenizer(definition)

        case "bert":
            // llama.cpp's converter stores word starts with a leading "▁", continuations bare and
            // [BRACKETED] tokens as they are; undo that to the vocab.txt spelling.
            let vocabulary = tokens.enumerated().map { id, token -> (piece: String, id: Int) in
                if token.hasPrefix("[") && token.hasSuffix("]") { return (token, id) }
                if token.unicodeScalars.first == "\u{2581}" { return (String(token.unicodeScalars.dropFirst()), id) }
                return ("##" + token, id)
            }
            var definition = WordPieceTokenizer.Definition(file: file, vocabulary: vocabulary, storedPieces: tokens)
            for (id, type) in types.enumerated() where type == 3 || type == 4 {
                definition.addedTokens.append(AddedToken(content: tokens[id], id: id, special: type == 3))
            }
            if let unknown = try tokenID("tokenizer.ggml.unknown_token_id") { definition.unknownToken = vocabulary[unknown].piece }
            let cls = try tokenID("tokenizer.ggml.cls_token_id") ?? tokenID("tokenizer.ggml.bos_token_id")
            let sep = try tokenID("tokenizer.ggml.seperator_token_id") ?? tokenID("tokenizer.ggml.eos_token_id")
            definition.bosID = cls
            definition.eosID = sep
            if try flag("tokenizer.ggml.add_bos_token", default: true), let cls { definition.prefix = [cls] }
            if try flag("tokenizer.ggml.add_eos_token", default: true), let sep { definition.suffix = [sep] }
            return try WordPieceTokenizer(definition)

        case "llama":
            throw fail(
                .unsupported, "SentencePiece tokenizers (\"llama\") are not supported; byte-level BPE (\"gpt2\") and WordPiece (\"bert\") are",
                key: "tokenizer.ggml.model")
        default:
            throw fail(
                .unsupported, "tokenizer model \"\(model)\" is not supported; byte-level BPE (\"gpt2\") and WordPiece (\"bert\") are",
                key: "tokenizer.ggml.model")
        }
    }

    /// `tokenizer.ggml.pre` values: the pre-tokenizer, whether the text is NFC-normalized first,
    /// and whether a word found whole in the vocabulary skips merging — as the model's own
    /// tokenizer.json sets them.
    static let ggufPreTokenizers: [String: (steps: [PreTokenizer.Step], nfc: Bool, ignoreMerges: Bool)] = {
        let gpt2: [PreTokenizer.Step] = [.byteLevel(addPrefixSpace: false, useRegex: true)]
        let digits: [PreTokenizer.Step] = [.digits(individual: true), .byteLevel(addPrefixSpace: false, useRegex: true)]
        let llama3: [PreTokenizer.Step] = [.split(.llama3), .byteLevel(addPrefixSpace: false, useRegex: false)]
        let qwen2: [PreTokenizer.Step] = [.split(.qwen2), .byteLevel(addPrefixSpace: false, useRegex: false)]
        return [
            "default": (gpt2, false, false), "gpt2": (gpt2, false, false), "gpt-2": (gpt2, false, false),
            "smollm": (digits, false, false), "starcoder": (digits, false, false),
            "llama-bpe": (llama3, false, true), "llama3": (llama3, false, true),
            "qwen2": (qwen2, true, false)
        ]
    }()

    /// The strings of a GGUF string array.
    private static func strings(_ value: GGUFValue, key: String, file: String) throws -> [String] {
        guard let array = value.array else {
            throw FileFormatError(file: file, kind: .badHeader, "not an array", subject: key)
        }
        return try array.enumerated().map { index, item in
            guard let string = item.string else {
                throw FileFormatError(file: file, kind: .badHeader, "not a string", subject: "\(key)[\(index)]")
            }
            return string
        }
    }
}
