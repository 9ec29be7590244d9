import Any4Core
import Any4Inference
import Foundation
import TestSupport
import XCTest

/// Our tokenizers against the PyPI `tokenizers` package (Tests/Python/tokenize_reference.py): the
/// same ids for every text, with and without special tokens, and the same decoded text.
final class TokenizerTests: XCTestCase {
    static let texts: [String] = [
        "",
        "Hello world",
        "Hello, World! HELLO world. hElLo",
        "café naïve Ångström ÉCOLE déjà vu",
        "Ça coûte 5 € — «très» cher",
        "日本語のテキスト",
        "中文分词测试，你好世界！",
        "한국어 텍스트입니다",
        "Привет, мир! Ёлка й",
        "Γειά σου Κόσμε ΣΑΣ ά",
        "مرحبا بالعالم",
        "नमस्ते दुनिया",
        "emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 ❤️ 🫠",
        "def f(x):\n    return x**2  # comment",
        "{\"key\": [1, 2.5, null], \"nested\": {\"a\": \"b\"}}",
        "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}",
        "12345",
        "3.14159",
        "1,000,000 and 1.000.000",
        "Phone: +1 (555) 123-4567",
        "a  b   c",
        "\n\n\n",
        "  leading",
        "trailing   ",
        " ",
        "\t tab\tand\r\nCRLF\r\n",
        "line1\nline2\n\n  indented\n",
        "don't I'll it's we're they've she'd I'm",
        "DON'T I'LL IT'S WE'RE 'S 'tis ''quoted''",
        "https://example.com/path?query=1&b=2#frag",
        "user@example.org",
        "<|im_start|>user\nhi<|im_end|>",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|><|endoftext|>text<|im_end|>",
        "[CLS] x [SEP]",
        "hello [MASK] world [PAD][UNK]",
        "[cls] lower case is not special",
        "<s> framed </s> <pad>",
        String(repeating: "a", count: 120),
        "supercalifragilisticexpialidocious" + String(repeating: "x", count: 80),
        "mixedCASEWordsAndCamelCase snake_case kebab-case",
        "...!!!???,,, ;;; ---",
        "$100 & 50% off #hashtag @mention",
        "\u{00A0}non-breaking\u{2003}em space\u{3000}ideographic",
        "zero\u{200B}width\u{200D}joiner\u{FEFF}bom",
        "control\u{0007}bell\u{007F}del replacement\u{FFFD}char",
        "combining e\u{0301} vs é; A\u{030A} vs Å; ﬁ ligature; 가 vs \u{1100}\u{1161}",
        "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
        "math ∑ ∫ √ ≤ ≥ ≠ ∞ π",
        "Ǆ ǅ ǆ İstanbul ß ẞ",
        "١٢٣ ٤٥٦ (Arabic digits) ½ ¾ ² Ⅻ",
        "tab\tseparated\tvalues\n1\t2\t3"
    ]

    // MARK: - Real models

    /// BOS leads a perplexity window only where the model's framing starts with it: not for
    /// SmolLM2 (add_bos_token false), [CLS] for BERT.
    func testLeadingBOSFollowsTheModelsFraming() throws {
        let smol = try Tokenizers.load(for: try Model.open(try TestPaths.requireModel(TestPaths.smolLM2)))
        XCTAssertEqual(smol.bosID, 1)
        XCTAssertNil(smol.leadingBOS)
        let minilm = try Tokenizers.load(for: try Model.open(try TestPaths.requireModel(TestPaths.miniLM)))
        XCTAssertEqual(minilm.leadingBOS, 101)
    }

    func testSmolLM2MatchesHuggingFace() throws {
        let path = try TestPaths.requireModel(TestPaths.smolLM2)
        let model = try Model.open(path)
        let start = DispatchTime.now()
        let tokenizer = try Tokenizers.load(for: model)
        let loadSeconds = seconds(since: start)
        XCTAssertEqual(tokenizer.vocabularySize, 49152)
        XCTAssertEqual(tokenizer.bosID, 1)
        XCTAssertEqual(tokenizer.eosID, 2)
        XCTAssertEqual(tokenizer.piece(1), "<|im_start|>")
        XCTAssertEqual(tokenizer.encode("<|im_start|>user\nhi<|im_end|>", addSpecialTokens: true), [1, 4093, 198, 6004, 2])

        let long = try Self.longText()
        let texts = Self.texts + [long]
        let reference = try reference(path, texts)
        assertMatches(tokenizer, reference, texts, "SmolLM2", exactRoundTrip: true)

        let encodeStart = DispatchTime.now()
        let ids = tokenizer.encode(long, addSpecialTokens: false)
        let encodeSeconds = seconds(since: encodeStart)
        print(
            String(
                format: "SmolLM2 tokenizer: loaded in %.3f s; %d bytes -> %d tokens in %.3f s (%.1f MB/s)",
                loadSeconds, long.utf8.count, ids.count, encodeSeconds, Double(long.utf8.count) / encodeSeconds / 1e6))
    }

    func testMiniLMTokenizerJSONMatchesHuggingFace() throws {
        let folder = try TestPaths.requireModel(TestPaths.miniLM)
        let start = DispatchTime.now()
        let tokenizer = try Tokenizers.load(for: try Model.open(folder))
        let loadSeconds = seconds(since: start)
        XCTAssertEqual(tokenizer.vocabularySize, 30522)
        XCTAssertEqual(tokenizer.bosID, 101)
        XCTAssertEqual(tokenizer.eosID, 102)
        XCTAssertEqual(tokenizer.encode("[CLS] x [SEP]", addSpecialTokens: true), [101, 101, 1060, 102, 102])
        XCTAssertEqual(tokenizer.encode(String(repeating: "a", count: 101), addSpecialTokens: false), [100], "over 100 chars: [UNK]")

        let long = try Self.longText()
        let texts = Self.texts + [long]
        assertMatches(tokenizer, try reference(folder + "/tokenizer.json", texts), texts, "MiniLM", exactRoundTrip: false)
        XCTAssertEqual(
            tokenizer.decode(tokenizer.encode("Hello, World! ÉCOLE", addSpecialTokens: true), skipSpecial: true),
            "hello, world! ecole")

        let encodeStart = DispatchTime.now()
        _ = tokenizer.encode(long, addSpecialTokens: false)
        let encodeSeconds = seconds(since: encodeStart)
        print(
            String(
                format: "MiniLM tokenizer.json: loaded in %.3f s; %d bytes in %.3f s (%.1f MB/s)",
                loadSeconds, long.utf8.count, encodeSeconds, Double(long.utf8.count) / encodeSeconds / 1e6))
    }

    /// vocab.txt with tokenizer_config.json (no tokenizer.json) and a llama.cpp-style BERT GGUF give
    /// the ids tokenizer.json gives.
    func testMiniLMVocabTxtAndBertGGUFMatchHuggingFace() throws {
        let folder = try TestPaths.requireModel(TestPaths.miniLM)
        let dir = try TestPaths.temporaryDirectory(for: self)
        let vocabFolder = dir + "/vocab-only"
        try FileManager.default.createDirectory(atPath: vocabFolder, withIntermediateDirectories: true)
        for file in ["vocab.txt", "tokenizer_config.json"] {
            try FileManager.default.copyItem(atPath: folder + "/" + file, toPath: vocabFolder + "/" + file)
        }
        try writeTinySafetensors(vocabFolder)
        try Python.run("tokenizer_fixtures.py", [dir, "bert=" + folder + "/vocab.txt"], modules: ["tokenizers", "gguf", "numpy"])
        let reference = try reference(folder + "/tokenizer.json", Self.texts)
        for (name, path) in [("vocab.txt", vocabFolder), ("bert.gguf", dir + "/bert.gguf")] {
            let tokenizer = try Tokenizers.load(for: try Model.open(path))
            XCTAssertEqual(tokenizer.bosID, 101, name)
            XCTAssertEqual(tokenizer.eosID, 102, name)
            assertMatches(tokenizer, reference, Self.texts, name, exactRoundTrip: false)
        }
        let gguf = try Tokenizers.load(for: try Model.open(dir + "/bert.gguf"))
        let hello = try XCTUnwrap(gguf.encode("hello", addSpecialTokens: false).first)
        XCTAssertEqual(gguf.piece(hello), "\u{2581}hello", "piece() shows the file's own spelling")
    }

    // MARK: - Hugging Face BPE folders

    /// Byte-level BPEs trained by the tokenizers package: GPT-2's ByteLevel (with add_prefix_space,
    /// "a b" merges), Llama 3's Split (ignore_merges) and Qwen2's Split after NFC ([a, b] merges).
    func testTrainedBPETokenizerJSONsMatchHuggingFace() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        try Python.run("tokenizer_fixtures.py", [dir, "bpe"], modules: ["tokenizers", "gguf", "numpy"])
        let names = ["bpe-gpt2", "bpe-llama3", "bpe-qwen2"]
        let references = try references(names.map { dir + "/" + $0 + "/tokenizer.json" }, Self.texts)
        for (name, reference) in zip(names, references) {
            let tokenizer = try Tokenizers.load(for: try Model.open(dir + "/" + name))
            XCTAssertTrue(tokenizer is ByteLevelBPETokenizer, name)
            // GPT-2's add_prefix_space and Qwen2's NFC change the text itself; decode is still held to theirs.
            assertMatches(tokenizer, reference, Self.texts, name, exactRoundTrip: name == "bpe-llama3")
        }
        let gpt2 = try Tokenizers.load(for: try Model.open(dir + "/bpe-gpt2"))
        XCTAssertEqual(gpt2.bosID, 0, "the <s> of the post-processor")
        let framed = gpt2.encode("hi", addSpecialTokens: true)
        XCTAssertEqual([framed.first, framed.last], [0, 1], "<s> … </s>")
    }

    /// The split scanners against the regexes, piece by piece.
    func testPreTokenizersMatchHuggingFace() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let texts =
            Self.texts + [
                "'s 'S 'ſ 'll 'LL 'Re", "a\u{0301}b \u{0301}x", "x\n\n  y \n z", "abc1234567 12 1", "\r\n\r\nend",
                " !? \n(hello) .hello 'hello", "\u{2028}u\u{2029}v\u{000B}w", "   ", "1 2  3   4"
            ]
        let path = dir + "/texts.json"
        try JSONValue.array(texts.map { .string($0) }).serialized.write(toFile: path, atomically: true, encoding: .utf8)
        let json = try JSONParser.parse(
            try Python.run("tokenize_reference.py", ["pretokenize", path], modules: ["tokenizers"]),
            file: "tokenize_reference.py")
        let configurations: [(String, [PreTokenizer.Step])] = [
            ("gpt2", [.byteLevel(addPrefixSpace: false, useRegex: true)]),
            ("smollm", [.digits(individual: true), .byteLevel(addPrefixSpace: false, useRegex: true)]),
            ("llama3", [.split(.llama3), .byteLevel(addPrefixSpace: false, useRegex: false)]),
            ("qwen2", [.split(.qwen2), .byteLevel(addPrefixSpace: false, useRegex: false)])
        ]
        for (name, steps) in configurations {
            let expected = try XCTUnwrap(json[name]?.array, name)
            for (text, pieces) in zip(texts, expected) {
                var ours: [String] = []
                PreTokenizer(steps: steps).forEachWord(in: Array(text.utf8)) { word in
                    ours.append(String(String.UnicodeScalarView(word.map { ByteLevel.scalar(of: $0) })))
                }
                XCTAssertEqual(ours, pieces.array?.compactMap(\.string), "\(name): \(text.debugDescription)")
            }
        }
    }

    // MARK: - Normalization

    /// Scalars whose general category changed between the Unicode versions of Swift's tables and of
    /// the Rust crates the tokenizers package uses: U+1734 (Mn until Unicode 14, then Mc: they strip
    /// it as an accent, we keep it) and U+1885, U+1886 (Lo until Unicode 9, then Mn: we strip them).
    static let unicodeVersionDifferences: Set<Int> = [0x1734, 0x1885, 0x1886]

    /// Our NFC / NFD against unicodedata on the texts and on every scalar below U+30000 (one string
    /// per 32K scalars); BERT's normalizer against the tokenizers package on the texts and on each
    /// scalar below U+20000 alone (those assigned by Unicode 3.2: later ones are categorized by the Unicode version
    /// each side was built with — U+07FD, for one, is a nonspacing mark to Swift and unassigned to it).
    func testNormalizersMatchPython() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        var texts = Self.texts
        for chunk in stride(from: 0, to: 0x30000, by: 0x8000) {
            texts.append(scalarString((UInt32(chunk)..<UInt32(chunk + 0x8000)).filter { !(0xD800...0xDFFF).contains($0) }))
        }
        let path = dir + "/texts.json"
        try JSONValue.array(texts.map { .string($0) }).serialized.write(toFile: path, atomically: true, encoding: .utf8)
        let json = try JSONParser.parse(
            try Python.run("tokenize_reference.py", ["normalize", path], modules: ["tokenizers"]),
            file: "tokenize_reference.py")
        let bert = BertNormalizer()
        for (index, text) in texts.enumerated() {
            let scalars = text.unicodeScalars.map(\.value)
            let isChunk = index >= Self.texts.count
            let label = isChunk ? "scalars from U+\(String((index - Self.texts.count) * 0x8000, radix: 16))" : text.debugDescription
            assertSameScalars(UnicodeNormalization.nfd(scalars), json["nfd"]?.array?[index].string, "NFD of \(label)")
            assertSameScalars(UnicodeNormalization.nfc(scalars), json["nfc"]?.array?[index].string, "NFC of \(label)")
            if !isChunk {
                assertSameScalars(bert.normalize(scalars), json["bert"]?.array?[index].string, "BertNormalizer of \(label)")
            }
        }
        let scalars = try XCTUnwrap(json["scalars"]?.array).compactMap(\.int)
        let normalized = try XCTUnwrap(json["scalar_bert"]?.array).compactMap(\.string)
        XCTAssertEqual(scalars.count, normalized.count)
        XCTAssertGreaterThan(scalars.count, 50_000)
        var differences: [String] = []
        for (scalar, expected) in zip(scalars, normalized) where !Self.unicodeVersionDifferences.contains(scalar) {
            let ours = bert.normalize([UInt32(scalar)])
            if ours != expected.unicodeScalars.map(\.value) {
                differences.append("U+\(String(scalar, radix: 16)) -> \(ours.map { String($0, radix: 16) }) vs \(expected.debugDescription)")
            }
        }
        XCTAssertEqual(differences.count, 0, "BertNormalizer differs on \(differences.count) scalars: \(differences.prefix(20))")
    }

    // MARK: - Decoding

    func testBytesAndDecodingOfPartialSequences() throws {
        let path = try TestPaths.requireModel(TestPaths.smolLM2)
        let tokenizer = try Tokenizers.load(for: try Model.open(path))
        // "😀" is four bytes; byte tokens carry them one at a time and only their sequence is text.
        let ids = tokenizer.encode("😀", addSpecialTokens: false)
        let bytes = ids.flatMap { tokenizer.bytes(of: $0) }
        XCTAssertEqual(bytes, Array("😀".utf8))
        let firstByte = try XCTUnwrap((0..<tokenizer.vocabularySize).first { tokenizer.bytes(of: $0) == [0xF0] })
        XCTAssertEqual(tokenizer.decode([firstByte], skipSpecial: false), "\u{FFFD}", "a lone lead byte")
        XCTAssertEqual(tokenizer.decode([firstByte] + tokenizer.encode("a", addSpecialTokens: false), skipSpecial: false), "\u{FFFD}a")
        XCTAssertEqual(tokenizer.bytes(of: 1), Array("<|im_start|>".utf8))
        XCTAssertEqual(tokenizer.decode([1, 2], skipSpecial: true), "")
        // Ids outside the vocabulary are ignored, never a crash.
        XCTAssertEqual(tokenizer.decode([-1, 1 << 40, tokenizer.vocabularySize], skipSpecial: false), "")
        XCTAssertEqual(tokenizer.bytes(of: -5), [])
        XCTAssertEqual(tokenizer.piece(tokenizer.vocabularySize), "")
        XCTAssertEqual(tokenizer.piece(216), "Ġ", "the vocabulary's own spelling of a space")
    }

    // MARK: - Errors

    func testFolderWithoutTokenizerFiles() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        try writeTinySafetensors(dir)
        let model = try Model.open(dir)
        XCTAssertThrowsError(try Tokenizers.load(for: model)) { error in
            let error = error as? FileFormatError
            XCTAssertEqual(error?.file, dir)
            XCTAssertTrue(error?.message.contains("tokenizer.json") == true, "\(String(describing: error))")
        }
        XCTAssertThrowsError(try Tokenizers.load(for: try Model.open(dir + "/model.safetensors")), "a lone file: the folder beside it")
    }

    func testGGUFTokenizerErrors() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        try Python.run("tokenizer_fixtures.py", [dir, "errors"], modules: ["tokenizers", "gguf", "numpy"])
        let cases: [(file: String, subject: String, text: String)] = [
            ("no-tokenizer.gguf", "tokenizer.ggml.tokens", "no tokenizer"),
            ("unknown-pre.gguf", "tokenizer.ggml.pre", "\"mystery\""),
            ("bad-merge.gguf", "tokenizer.ggml.merges[1] \"a c\"", "\"c\" is not in the vocabulary")
        ]
        for (file, subject, text) in cases {
            let model = try Model.open(dir + "/" + file)
            XCTAssertThrowsError(try Tokenizers.load(for: model), file) { error in
                guard let error = error as? FileFormatError else { return XCTFail("\(file): \(error)") }
                XCTAssertEqual(error.file, dir + "/" + file)
                XCTAssertEqual(error.subject, subject, file)
                XCTAssertTrue(error.message.contains(text), "\(file): \(error)")
            }
        }
    }

    func testMalformedTokenizerJSON() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let bpe = #""model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": MERGES}, "pre_tokenizer": {"type": "ByteLevel"}"#
        let cases: [(json: String, subject: String?, text: String)] = [
            (#"{"model": {"type": "BPE", "vocab": {"a": 0"#, nil, "invalid JSON"),
            (
                "{" + bpe.replacingOccurrences(of: "MERGES", with: #"["a b", "a c"]"#) + "}", "model.merges[1] \"a c\"",
                "\"c\" is not in the vocabulary"
            ),
            (
                "{" + bpe.replacingOccurrences(of: "MERGES", with: #"[["a", "b"], ["b", "a"]]"#) + "}", "model.merges[1] \"b a\"",
                "\"ba\" is not in the vocabulary"
            ),
            ("{" + bpe.replacingOccurrences(of: "MERGES", with: #"["a b c"]"#) + "}", "model.merges[0]", "left right"),
            (#"{"model": {"type": "BPE", "vocab": [1, 2], "merges": []}}"#, "model.vocab", "not an object"),
            (#"{"model": {"type": "Unigram", "vocab": []}}"#, "model.type", "Unigram"),
            (#"{"added_tokens": [{"id": 1}], "model": {"type": "WordPiece", "vocab": {}}}"#, "added_tokens[0]", "content"),
            (
                #"{"model": {"type": "WordPiece", "vocab": {"a": 0}}, "normalizer": null, "pre_tokenizer": {"type": "BertPreTokenizer"}}"#,
                nil, "[UNK]"
            ),
            (
                "{" + bpe.replacingOccurrences(of: "MERGES", with: "[]").replacingOccurrences(of: "ByteLevel", with: "Metaspace") + "}",
                "pre_tokenizer.type", "Metaspace"
            ),
            (
                #"{"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "a": 2000000000}}, "pre_tokenizer": {"type": "BertPreTokenizer"}}"#,
                nil, "leaves most ids unused"
            ),
            (#"{"model": {}}"#, "model.type", "(none)"),
            ("[]", "model", "no \"model\"")
        ]
        for (index, (json, subject, text)) in cases.enumerated() {
            let folder = dir + "/case\(index)"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try json.write(toFile: folder + "/tokenizer.json", atomically: true, encoding: .utf8)
            try writeTinySafetensors(folder)
            XCTAssertThrowsError(try Tokenizers.load(for: try Model.open(folder)), json) { error in
                guard let error = error as? FileFormatError else { return XCTFail("\(json): \(error)") }
                XCTAssertEqual(error.file, folder + "/tokenizer.json", json)
                if let subject { XCTAssertEqual(error.subject, subject, json) }
                XCTAssertTrue(error.description.contains(text), "\(json): \(error)")
            }
        }
    }

    // MARK: - Helpers

    private struct Reference {
        var plain: [[Int]]
        var special: [[Int]]
        var decoded: [String]
        var decodedSkip: [String]
    }

    /// What the tokenizers package makes of `texts` with the tokenizer `source` (tokenizer.json or .gguf).
    private func reference(_ source: String, _ texts: [String]) throws -> Reference {
        try references([source], texts)[0]
    }

    /// One Python run for several tokenizers.
    private func references(_ sources: [String], _ texts: [String]) throws -> [Reference] {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let path = dir + "/texts.json"
        try JSONValue.array(texts.map { .string($0) }).serialized.write(toFile: path, atomically: true, encoding: .utf8)
        let out = try Python.run("tokenize_reference.py", ["encode", path] + sources, modules: ["tokenizers"])
        return try XCTUnwrap(JSONParser.parse(out, file: "tokenize_reference.py output").array).map { json in
            func ids(_ key: String) throws -> [[Int]] {
                try XCTUnwrap(json[key]?.array).map { try XCTUnwrap($0.array).map { try XCTUnwrap($0.int) } }
            }
            func strings(_ key: String) throws -> [String] {
                try XCTUnwrap(json[key]?.array).map { try XCTUnwrap($0.string) }
            }
            return Reference(
                plain: try ids("plain"), special: try ids("special"),
                decoded: try strings("decoded"), decodedSkip: try strings("decoded_skip"))
        }
    }

    private func assertMatches(
        _ tokenizer: any TextTokenizer, _ reference: Reference, _ texts: [String], _ name: String,
        exactRoundTrip: Bool, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(reference.plain.count, texts.count, file: file, line: line)
        for (i, text) in texts.enumerated() where i < reference.plain.count {
            let label = "\(name): \(text.count > 80 ? "text #\(i) (\(text.utf8.count) bytes)" : text.debugDescription)"
            let plain = tokenizer.encode(text, addSpecialTokens: false)
            let special = tokenizer.encode(text, addSpecialTokens: true)
            assertSameIDs(plain, reference.plain[i], "\(label), no special tokens", file: file, line: line)
            assertSameIDs(special, reference.special[i], "\(label), special tokens", file: file, line: line)
            XCTAssertEqual(
                tokenizer.decode(reference.special[i], skipSpecial: false), reference.decoded[i], "\(label): decode",
                file: file, line: line)
            XCTAssertEqual(
                tokenizer.decode(reference.special[i], skipSpecial: true), reference.decodedSkip[i],
                "\(label): decode skipping special tokens", file: file, line: line)
            XCTAssertTrue(special.allSatisfy { (0..<tokenizer.vocabularySize).contains($0) }, label, file: file, line: line)
            if exactRoundTrip {
                XCTAssertEqual(tokenizer.decode(plain, skipSpecial: false), text, "\(label): round trip", file: file, line: line)
            }
        }
    }

    /// Equal ids, or a failure that shows where they part.
    private func assertSameIDs(_ ours: [Int], _ theirs: [Int], _ label: String, file: StaticString, line: UInt) {
        guard ours != theirs else { return }
        let first = (0..<min(ours.count, theirs.count)).first { ours[$0] != theirs[$0] } ?? min(ours.count, theirs.count)
        XCTFail(
            "\(label): \(ours.count) ids vs \(theirs.count), first difference at \(first): "
                + "ours \(Array(ours[first..<min(first + 8, ours.count)])), theirs \(Array(theirs[first..<min(first + 8, theirs.count)]))",
            file: file, line: line)
    }

    private func assertSameScalars(
        _ ours: [UInt32], _ theirs: String?, _ label: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        guard let theirs = theirs?.unicodeScalars.map(\.value) else { return XCTFail("\(label): no reference", file: file, line: line) }
        guard ours != theirs else { return }
        let first = (0..<min(ours.count, theirs.count)).first { ours[$0] != theirs[$0] } ?? min(ours.count, theirs.count)
        func hex(_ s: [UInt32]) -> String { s[first..<min(first + 6, s.count)].map { String($0, radix: 16) }.joined(separator: " ") }
        XCTFail("\(label): first difference at scalar \(first): ours \(hex(ours)), theirs \(hex(theirs))", file: file, line: line)
    }

    /// ~100 KB of real text: the README and the core's sources, then the test texts.
    static func longText() throws -> String {
        var text = try String(contentsOfFile: TestPaths.packageRoot + "/README.md", encoding: .utf8)
        let sources = TestPaths.packageRoot + "/Sources/Any4"
        let files = (FileManager.default.enumerator(atPath: sources)?.compactMap { $0 as? String } ?? [])
            .filter { $0.hasSuffix(".swift") && !$0.hasSuffix("UnicodeTables.swift") }.sorted()
        for file in files where text.utf8.count < 100_000 {
            text += try String(contentsOfFile: sources + "/" + file, encoding: .utf8)
        }
        return text + texts.joined(separator: "\n")
    }

    private func writeTinySafetensors(_ folder: String) throws {
        try SafeTensorsWriter.write([.init(name: "w", shape: [1, 2], floats: [1, 2])], to: folder + "/model.safetensors")
    }

    private func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }
}
