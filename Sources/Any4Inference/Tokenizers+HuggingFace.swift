import Any4Core

extension Tokenizers {
    /// A Hugging Face tokenizer.json: a byte-level BPE or a WordPiece model.
    static func load(tokenizerJSON path: String) throws -> any TextTokenizer {
        let json = try readJSONFile(path)
        let reader = TokenizerJSON(json: json, file: path)
        guard let model = json["model"], model.members != nil else {
            throw FileFormatError(file: path, kind: .badHeader, "no \"model\" object", subject: "model")
        }
        let type =
            model["type"]?.string
            ?? (model["merges"] != nil ? "BPE" : model["continuing_subword_prefix"] != nil ? "WordPiece" : "(none)")
        let added = try reader.addedTokens()
        let (prefix, suffix) = try reader.framing(json["post_processor"], key: "post_processor")
        let folder = parentDirectory(path)
        let config = fileExists(folder + "/tokenizer_config.json") ? try readJSONFile(folder + "/tokenizer_config.json") : nil

        switch type {
        case "BPE":
            var definition = ByteLevelBPETokenizer.Definition(
                file: path, vocabulary: try reader.vocabulary(model), merges: try reader.merges(model), mergesKey: "model.merges")
            definition.addedTokens = added
            definition.preTokenizer = try reader.byteLevelPreTokenizer(json["pre_tokenizer"])
            definition.nfc = try reader.isNFC(json["normalizer"], key: "normalizer")
            definition.ignoreMerges = model["ignore_merges"]?.bool ?? false
            definition.unknownToken = model["unk_token"]?.string
            for key in ["continuing_subword_prefix", "end_of_word_suffix"] where !(model[key]?.string ?? "").isEmpty {
                throw FileFormatError(file: path, kind: .unsupported, "BPE with a \(key) is not supported", subject: "model.\(key)")
            }
            if model["byte_fallback"]?.bool == true {
                throw FileFormatError(file: path, kind: .unsupported, "BPE with byte_fallback is not supported", subject: "model.byte_fallback")
            }
            definition.prefix = prefix
            definition.suffix = suffix
            var tokenizer = try ByteLevelBPETokenizer(definition)
            let modelConfig = fileExists(folder + "/config.json") ? try readJSONFile(folder + "/config.json") : nil
            let size = tokenizer.vocabularySize
            tokenizer.bosID =
                namedToken(config, "bos_token", tokenizer.id(of:))
                ?? configuredID(modelConfig, "bos_token_id", below: size) ?? prefix.first
            tokenizer.eosID = namedToken(config, "eos_token", tokenizer.id(of:)) ?? configuredID(modelConfig, "eos_token_id", below: size)
            return tokenizer

        case "WordPiece":
            var definition = WordPieceTokenizer.Definition(file: path, vocabulary: try reader.vocabulary(model))
            definition.addedTokens = added
            definition.unknownToken = model["unk_token"]?.string ?? "[UNK]"
            definition.continuingPrefix = model["continuing_subword_prefix"]?.string ?? "##"
            definition.maxInputCharsPerWord = model["max_input_chars_per_word"]?.int ?? 100
            definition.normalizer = try reader.bertNormalizer(json["normalizer"])
            try reader.checkBertPreTokenizer(json["pre_tokenizer"])
            definition.cleanup = json["decoder"]?["cleanup"]?.bool ?? true
            definition.prefix = prefix
            definition.suffix = suffix
            var tokenizer = try WordPieceTokenizer(definition)
            tokenizer.bosID = prefix.first ?? namedToken(config, "cls_token", tokenizer.id(of:)) ?? tokenizer.id(of: "[CLS]")
            tokenizer.eosID = suffix.last ?? namedToken(config, "sep_token", tokenizer.id(of:)) ?? tokenizer.id(of: "[SEP]")
            return tokenizer

        default:
            throw FileFormatError(
                file: path, kind: .unsupported,
                "model type \"\(type)\" is not supported (BPE with ByteLevel, and WordPiece are)", subject: "model.type")
        }
    }

    /// A BERT vocab.txt (one token a line, the line number its id) with the options of
    /// tokenizer_config.json beside it: do_lower_case (default true), strip_accents (default: as
    /// do_lower_case), tokenize_chinese_chars (default true) and the special token names.
    static func loadVocabTxt(_ path: String) throws -> any TextTokenizer {
        let store = try ByteStore(mapping: path)
        guard let text = String(validating: store.bytes, as: UTF8.self) else {
            throw FileFormatError(file: path, kind: .badHeader, "vocab.txt is not valid UTF-8")
        }
        // Split on the byte: as Characters, "\r\n" is one and would not split at its "\n".
        var lines = text.utf8.split(separator: 0x0A, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        if lines.last == "" { lines.removeLast() }
        guard !lines.isEmpty else { throw FileFormatError(file: path, kind: .badHeader, "vocab.txt is empty") }

        let configPath = parentDirectory(path) + "/tokenizer_config.json"
        let config = fileExists(configPath) ? try readJSONFile(configPath) : nil
        func name(_ key: String, _ defaultValue: String) -> String {
            config?[key]?.string ?? config?[key]?["content"]?.string ?? defaultValue
        }
        let lowercase = config?["do_lower_case"]?.bool ?? true
        var definition = WordPieceTokenizer.Definition(file: path, vocabulary: lines.enumerated().map { ($1, $0) })
        definition.normalizer = BertNormalizer(
            handleChineseChars: config?["tokenize_chinese_chars"]?.bool ?? true,
            stripAccents: config?["strip_accents"]?.bool ?? lowercase, lowercase: lowercase)
        definition.unknownToken = name("unk_token", "[UNK]")
        definition.cleanup = config?["clean_up_tokenization_spaces"]?.bool ?? true
        let specials = [
            name("pad_token", "[PAD]"), definition.unknownToken, name("cls_token", "[CLS]"),
            name("sep_token", "[SEP]"), name("mask_token", "[MASK]")
        ]
        var ids: [ExactString: Int] = [:]
        for (id, line) in lines.enumerated() where ids[ExactString(line)] == nil { ids[ExactString(line)] = id }
        for special in specials {
            if let id = ids[ExactString(special)] { definition.addedTokens.append(AddedToken(content: special, id: id, special: true)) }
        }
        let cls = ids[ExactString(name("cls_token", "[CLS]"))], sep = ids[ExactString(name("sep_token", "[SEP]"))]
        definition.prefix = cls.map { [$0] } ?? []
        definition.suffix = sep.map { [$0] } ?? []
        definition.bosID = cls
        definition.eosID = sep
        return try WordPieceTokenizer(definition)
    }

    /// The id of the token tokenizer_config.json names under `key` (`"<s>"` or `{"content": "<s>"}`).
    private static func namedToken(_ config: JSONValue?, _ key: String, _ lookUp: (String) -> Int?) -> Int? {
        guard let name = config?[key]?.string ?? config?[key]?["content"]?.string else { return nil }
        return lookUp(name)
    }

    /// An id config.json gives as a number (the first, if a list), if it is below `size`.
    private static func configuredID(_ config: JSONValue?, _ key: String, below size: Int) -> Int? {
        guard let value = config?[key], let id = value.int ?? value.array?.first?.int, (0..<size).contains(id) else { return nil }
        return id
    }
}

/// Reads the parts of a tokenizer.json, each error naming the file and the key.
private struct TokenizerJSON {
    let json: JSONValue
    let file: String

    func fail(_ message: String, _ key: String) -> FileFormatError {
        FileFormatError(file: file, kind: .badHeader, message, subject: key)
    }

    func unsupported(_ message: String, _ key: String) -> FileFormatError {
        FileFormatError(file: file, kind: .unsupported, message, subject: key)
    }

    func vocabulary(_ model: JSONValue) throws -> [(piece: String, id: Int)] {
        guard let members = model["vocab"]?.members else { throw fail("not an object of token ids", "model.vocab") }
        return try members.map { piece, value in
            guard let id = value.int, id >= 0, id < Int(Int32.max) else { throw fail("not a token id", "model.vocab[\"\(piece)\"]") }
            return (piece, id)
        }
    }

    /// `["a b", ...]` or `[["a", "b"], ...]`.
    func merges(_ model: JSONValue) throws -> [(left: String, right: String)] {
        guard let items = model["merges"]?.array else { throw fail("not an array", "model.merges") }
        return try items.enumerated().map { index, item in
            if let pair = item.array, pair.count == 2, let left = pair[0].string, let right = pair[1].string {
                return (left, right)
            }
            if let text = item.string {
                let parts = text.utf8.split(separator: 0x20, omittingEmptySubsequences: false)
                if parts.count == 2 { return (String(decoding: parts[0], as: UTF8.self), String(decoding: parts[1], as: UTF8.self)) }
            }
            throw fail("not \"left right\" or [left, right]", "model.merges[\(index)]")
        }
    }

    func addedTokens() throws -> [AddedToken] {
        guard let items = json["added_tokens"], items != .null else { return [] }
        guard let array = items.array else { throw fail("not an array", "added_tokens") }
        return try array.enumerated().map { index, item in
            guard let id = item["id"]?.int, id >= 0, id < Int(Int32.max), let content = item["content"]?.string else {
                throw fail("needs an \"id\" and a \"content\"", "added_tokens[\(index)]")
            }
            let special = item["special"]?.bool ?? false
            return AddedToken(
                content: content, id: id, special: special,
                leftStrip: item["lstrip"]?.bool ?? false, rightStrip: item["rstrip"]?.bool ?? false,
                singleWord: item["single_word"]?.bool ?? false, normalized: item["normalized"]?.bool ?? !special)
        }
    }

    /// The ids added before and after the text, from TemplateProcessing (single), Bert/Roberta
    /// processing or a Sequence of processors; ByteLevel adds none.
    func framing(_ processor: JSONValue?, key: String) throws -> (prefix: [Int], suffix: [Int]) {
        guard let processor, processor != .null else { return ([], []) }
        let type = processor["type"]?.string ?? "(none)"
        switch type {
        case "ByteLevel":
            return ([], [])
        case "TemplateProcessing":
            guard let items = processor["single"]?.array else { throw fail("no \"single\" template", key + ".single") }
            var prefix: [Int] = [], suffix: [Int] = []
            var seenSequence = false
            for (index, item) in items.enumerated() {
                if item["Sequence"] != nil {
                    seenSequence = true
                    continue
                }
                guard let name = item["SpecialToken"]?["id"]?.string,
                    let ids = processor["special_tokens"]?[name]?["ids"]?.array?.compactMap(\.int)
                else {
                    throw fail("neither a Sequence nor a SpecialToken listed in special_tokens", "\(key).single[\(index)]")
                }
                if seenSequence { suffix += ids } else { prefix += ids }
            }
            return (prefix, suffix)
        case "BertProcessing", "RobertaProcessing":
            guard let cls = processor["cls"]?.array?.last?.int, let sep = processor["sep"]?.array?.last?.int else {
                throw fail("needs \"cls\" and \"sep\" as [token, id]", key)
            }
            return ([cls], [sep])
        case "Sequence":
            guard let processors = processor["processors"]?.array else { throw fail("no \"processors\" array", key + ".processors") }
            var prefix: [Int] = [], suffix: [Int] = []
            for (index, inner) in processors.enumerated() {
                let (p, s) = try framing(inner, key: "\(key).processors[\(index)]")
                prefix = p + prefix
                suffix += s
            }
            return (prefix, suffix)
        default:
            throw unsupported("post-processor \"\(type)\" is not supported", key + ".type")
        }
    }

    /// The pre-tokenizer of a byte-level BPE: ByteLevel, alone or last in a Sequence after Split
    /// (by a known pattern, Isolated) and Digits.
    func byteLevelPreTokenizer(_ value: JSONValue?) throws -> PreTokenizer {
        guard let value, value != .null else {
            throw unsupported("a BPE without a ByteLevel pre-tokenizer is not supported", "pre_tokenizer")
        }
        var steps: [PreTokenizer.Step] = []
        func add(_ item: JSONValue, _ key: String) throws {
            let type = item["type"]?.string ?? "(none)"
            switch type {
            case "Sequence":
                guard let items = item["pretokenizers"]?.array else { throw fail("no \"pretokenizers\" array", key + ".pretokenizers") }
                for (index, inner) in items.enumerated() { try add(inner, "\(key).pretokenizers[\(index)]") }
            case "ByteLevel":
                steps.append(
                    .byteLevel(
                        addPrefixSpace: item["add_prefix_space"]?.bool ?? true,
                        useRegex: item["use_regex"]?.bool ?? true))
            case "Digits":
                steps.append(.digits(individual: item["individual_digits"]?.bool ?? false))
            case "Split":
                guard let regex = item["pattern"]?["Regex"]?.string else {
                    throw unsupported("only Split by a Regex pattern is supported", key + ".pattern")
                }
                guard let pattern = SplitPattern(regex: regex) else {
                    throw unsupported("Split pattern \(regex) is not one of the known ones (GPT-2, Llama 3, Qwen2)", key + ".pattern")
                }
                let behavior = item["behavior"]?.string ?? "Isolated"
                guard behavior == "Isolated", item["invert"]?.bool != true else {
                    throw unsupported("only the Isolated, non-inverted Split is supported (got \(behavior))", key + ".behavior")
                }
                steps.append(.split(pattern))
            default:
                throw unsupported("pre-tokenizer \"\(type)\" is not supported with BPE", key + ".type")
            }
        }
        try add(value, "pre_tokenizer")
        guard case .byteLevel = steps.last, steps.filter({ if case .byteLevel = $0 { true } else { false } }).count == 1 else {
            throw unsupported("a BPE pre-tokenizer must end with its one ByteLevel step", "pre_tokenizer")
        }
        return PreTokenizer(steps: steps)
    }

    /// Whether the normalizer is NFC (null: none; a Sequence of at most NFC).
    func isNFC(_ value: JSONValue?, key: String) throws -> Bool {
        guard let value, value != .null else { return false }
        switch value["type"]?.string {
        case "NFC": return true
        case "Sequence":
            guard let items = value["normalizers"]?.array else { throw fail("no \"normalizers\" array", key + ".normalizers") }
            return try items.indices.contains { try isNFC(items[$0], key: "\(key).normalizers[\($0)]") }
        case let type:
            throw unsupported("normalizer \"\(type ?? "(none)")\" is not supported with BPE (NFC is)", key + ".type")
        }
    }

    func bertNormalizer(_ value: JSONValue?) throws -> BertNormalizer? {
        guard let value, value != .null else { return nil }
        guard value["type"]?.string == "BertNormalizer" else {
            throw unsupported("normalizer \"\(value["type"]?.string ?? "(none)")\" is not supported with WordPiece", "normalizer.type")
        }
        let lowercase = value["lowercase"]?.bool ?? true
        return BertNormalizer(
            cleanText: value["clean_text"]?.bool ?? true,
            handleChineseChars: value["handle_chinese_chars"]?.bool ?? true,
            stripAccents: value["strip_accents"]?.bool ?? lowercase, lowercase: lowercase)
    }

    func checkBertPreTokenizer(_ value: JSONValue?) throws {
        let type = value?["type"]?.string
        guard type == "BertPreTokenizer" else {
            throw unsupported(
                "pre-tokenizer \"\(type ?? "(none)")\" is not supported with WordPiece (BertPreTokenizer is)",
                "pre_tokenizer.type")
        }
    }
}
