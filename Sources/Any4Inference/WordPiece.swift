import Any4Core

/// WordPiece, as BERT tokenizes.
///
/// Encoding: added tokens ([CLS], [MASK], …) are cut out of the raw text; the rest goes through
/// the ``BertNormalizer``, is split on whitespace and punctuation, and each word becomes its
/// longest vocabulary prefix, then the longest "##" continuation, and so on; a word with a rest
/// that no entry matches, or longer than `maxInputCharsPerWord` scalars, becomes [UNK] as a whole.
struct WordPieceTokenizer: TextTokenizer {
    struct Definition {
        /// The file the definition comes from, for errors.
        var file: String
        /// Vocabulary strings with their ids, continuations spelled with `continuingPrefix`.
        var vocabulary: [(piece: String, id: Int)]
        /// The strings as the file stores them, by id, when they differ from `vocabulary` (GGUF).
        var storedPieces: [String]?
        var addedTokens: [AddedToken] = []
        var unknownToken = "[UNK]"
        var continuingPrefix = "##"
        var maxInputCharsPerWord = 100
        /// nil: the text is not normalized.
        var normalizer: BertNormalizer? = BertNormalizer()
        var prefix: [Int] = []
        var suffix: [Int] = []
        var bosID: Int?
        var eosID: Int?
        /// The decoder glues ".", ",", "?", "!" to the word before (tokenizer.json decoder `cleanup`).
        var cleanup = true
    }

    let vocabularySize: Int
    var bosID: Int?
    var eosID: Int?
    private let pieces: [String]
    private let storedPieces: [String]
    private let isSpecial: [Bool]
    private let tokenIDs: [ExactString: Int32]
    private let unknownID: Int
    private let continuingPrefix: String
    private let maxInputCharsPerWord: Int
    private let normalizer: BertNormalizer?
    private let addedTokens: AddedTokenMatcher
    private let normalizedAddedTokens: AddedTokenMatcher
    private let prefix: [Int]
    private let suffix: [Int]
    private let cleanup: Bool

    init(_ definition: Definition) throws {
        let file = definition.file
        let size = try checkedVocabularySize(definition.vocabulary.map(\.id) + definition.addedTokens.map(\.id), file: file)
        for id in definition.prefix + definition.suffix + [definition.bosID, definition.eosID].compactMap(\.self)
        where !(0..<size).contains(id) {
            throw FileFormatError(file: file, kind: .badHeader, "special token id \(id) is outside the vocabulary (0..<\(size))")
        }
        var pieces = [String](repeating: "", count: size)
        var ids: [ExactString: Int32] = [:]
        ids.reserveCapacity(definition.vocabulary.count)
        for (piece, id) in definition.vocabulary {
            pieces[id] = piece
            if ids[ExactString(piece)] == nil { ids[ExactString(piece)] = Int32(id) }
        }
        var isSpecial = [Bool](repeating: false, count: size)
        for token in definition.addedTokens {
            if pieces[token.id].isEmpty { pieces[token.id] = token.content }
            if ids[ExactString(token.content)] == nil { ids[ExactString(token.content)] = Int32(token.id) }
            if token.special { isSpecial[token.id] = true }
        }
        guard let unknown = ids[ExactString(definition.unknownToken)] else {
            throw FileFormatError(
                file: file, kind: .badHeader,
                "the unknown token \"\(definition.unknownToken)\" is not in the vocabulary")
        }
        vocabularySize = size
        self.pieces = pieces
        storedPieces = definition.storedPieces ?? pieces
        self.isSpecial = isSpecial
        tokenIDs = ids
        unknownID = Int(unknown)
        continuingPrefix = definition.continuingPrefix
        maxInputCharsPerWord = definition.maxInputCharsPerWord
        let normalizer = definition.normalizer
        self.normalizer = normalizer
        (addedTokens, normalizedAddedTokens) = AddedTokenMatcher.split(
            definition.addedTokens,
            normalize: normalizer.map { n in
                { scalarString(n.normalize(Array($0.unicodeScalars.map(\.value)))) }
            })
        prefix = definition.prefix
        suffix = definition.suffix
        bosID = definition.bosID
        eosID = definition.eosID
        cleanup = definition.cleanup
    }

    /// The id of a vocabulary entry or added token.
    func id(of piece: String) -> Int? { tokenIDs[ExactString(piece)].map(Int.init) }

    // MARK: - TextTokenizer

    func encode(_ text: String, addSpecialTokens: Bool) -> [Int] {
        var out = addSpecialTokens ? prefix : []
        AddedTokenMatcher.encode(
            Array(text.utf8), raw: addedTokens, normalized: normalizedAddedTokens,
            normalize: { bytes in
                guard let normalizer else { return bytes }
                var normalized: [UInt8] = []
                for scalar in normalizer.normalize(ScalarText(bytes).scalars) { appendUTF8(scalar, to: &normalized) }
                return normalized
            }, into: &out
        ) { text, out in
            encodeWords(ScalarText(text).scalars, into: &out)
        }
        return out + (addSpecialTokens ? suffix : [])
    }

    /// Pieces joined by spaces, continuations glued to the piece before, as the Hugging Face
    /// WordPiece decoder does (a first piece keeps its "##").
    func decode(_ ids: [Int], skipSpecial: Bool) -> String {
        var out = ""
        var first = true
        for id in ids where id >= 0 && id < vocabularySize && !(skipSpecial && isSpecial[id]) {
            var token = pieces[id]
            if !first {
                if token.utf8.starts(with: continuingPrefix.utf8) {
                    token = String(decoding: token.utf8.dropFirst(continuingPrefix.utf8.count), as: UTF8.self)
                } else {
                    token = " " + token
                }
            }
            if cleanup { token = Self.cleanUp(token) }
            out += token
            first = false
        }
        return out
    }

    func bytes(of id: Int) -> [UInt8] {
        id >= 0 && id < vocabularySize ? Array(pieces[id].utf8) : []
    }

    func piece(_ id: Int) -> String {
        id >= 0 && id < vocabularySize ? storedPieces[id] : ""
    }

    // MARK: - Words

    /// Splits normalized text on whitespace (dropped) and punctuation (kept, one scalar a word).
    private func encodeWords(_ scalars: [UInt32], into out: inout [Int]) {
        var start = 0
        for (i, scalar) in scalars.enumerated() {
            let whitespace = isBertWhitespace(scalar)
            guard whitespace || isBertPunctuation(scalar) else { continue }
            if start < i { encodeWord(scalars[start..<i], into: &out) }
            if !whitespace { encodeWord(scalars[i...i], into: &out) }
            start = i + 1
        }
        if start < scalars.count { encodeWord(scalars[start...], into: &out) }
    }

    /// Greedy longest match from the left.
    private func encodeWord(_ word: ArraySlice<UInt32>, into out: inout [Int]) {
        guard word.count <= maxInputCharsPerWord else {
            out.append(unknownID)
            return
        }
        var ids: [Int] = []
        var start = word.startIndex
        while start < word.endIndex {
            var end = word.endIndex
            var found: Int32?
            while start < end {
                var candidate = scalarString(word[start..<end])
                if start > word.startIndex { candidate = continuingPrefix + candidate }
                if let id = tokenIDs[ExactString(candidate)] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let found else {
                out.append(unknownID)
                return
            }
            ids.append(Int(found))
            start = end
        }
        out += ids
    }

    private static let cleanUps: [(String, String)] = [
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
        (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")
    ]

    private static func cleanUp(_ token: String) -> String {
        guard token.utf8.first == 0x20 else { return token }
        var bytes = Array(token.utf8)
        for (from, to) in cleanUps { bytes = replacing(Array(from.utf8), with: Array(to.utf8), in: bytes) }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func replacing(_ pattern: [UInt8], with replacement: [UInt8], in bytes: [UInt8]) -> [UInt8] {
        guard bytes.count >= pattern.count else { return bytes }
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            if i + pattern.count <= bytes.count, bytes[i..<(i + pattern.count)].elementsEqual(pattern) {
                out += replacement
                i += pattern.count
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }
}

/// BERT's normalizer: clean the text (drop NUL, U+FFFD and control characters, make every
/// whitespace a space), put spaces around CJK ideographs, strip accents (NFD, then drop the
/// nonspacing marks), lowercase — in that order, as the Hugging Face `BertNormalizer` does.
package struct BertNormalizer: Sendable, Equatable {
    var cleanText = true
    var handleChineseChars = true
    var stripAccents = true
    var lowercase = true

    package init(cleanText: Bool = true, handleChineseChars: Bool = true, stripAccents: Bool = true, lowercase: Bool = true) {
        self.cleanText = cleanText
        self.handleChineseChars = handleChineseChars
        self.stripAccents = stripAccents
        self.lowercase = lowercase
    }

    package func normalize(_ scalars: [UInt32]) -> [UInt32] {
        var text: [UInt32] = []
        text.reserveCapacity(scalars.count)
        for scalar in scalars {
            if cleanText {
                if scalar == 0 || scalar == 0xFFFD || isBertControl(scalar) { continue }
                if isBertWhitespace(scalar) {
                    text.append(0x20)
                    continue
                }
            }
            if handleChineseChars && Self.isCJK(scalar) {
                text += [0x20, scalar, 0x20]
            } else {
                text.append(scalar)
            }
        }
        if stripAccents, text.contains(where: { $0 >= 0xC0 }) {
            text = UnicodeNormalization.nfd(text).filter {
                $0 < 0x300 || Unicode.Scalar($0)?.properties.generalCategory != .nonspacingMark
            }
        }
        if lowercase {
            var lowered: [UInt32] = []
            lowered.reserveCapacity(text.count)
            for scalar in text {
                if scalar < 0x80 {
                    lowered.append((0x41...0x5A).contains(scalar) ? scalar + 0x20 : scalar)
                } else if let s = Unicode.Scalar(scalar) {
                    lowered += s.properties.lowercaseMapping.unicodeScalars.map(\.value)
                }
            }
            text = lowered
        }
        return text
    }

    /// The CJK Unified Ideographs blocks and their extensions A–F, and the compatibility ideographs.
    static func isCJK(_ scalar: UInt32) -> Bool {
        switch scalar {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B81F, 0x2B920...0x2CEAF,
            0xF900...0xFAFF, 0x2F800...0x2FA1F:
            true
        default: false
        }
    }
}

/// Tab, newline, carriage return and the White_Space property.
func isBertWhitespace(_ scalar: UInt32) -> Bool {
    ScalarClass.of(scalar) & ScalarClass.whitespace != 0
}

/// Cc, Cf, Co and Cs, except tab, newline and carriage return.
func isBertControl(_ scalar: UInt32) -> Bool {
    if scalar == 0x09 || scalar == 0x0A || scalar == 0x0D { return false }
    guard let s = Unicode.Scalar(scalar) else { return true }
    switch s.properties.generalCategory {
    case .control, .format, .privateUse, .surrogate: return true
    default: return false
    }
}

/// ASCII symbols and punctuation (33–47, 58–64, 91–96, 123–126) and the P* categories.
func isBertPunctuation(_ scalar: UInt32) -> Bool {
    switch scalar {
    case 33...47, 58...64, 91...96, 123...126: return true
    case ..<128: return false
    default:
        switch Unicode.Scalar(scalar)?.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
            .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default: return false
        }
    }
}

/// The string of UTF-32 scalars (valid ones; others are skipped).
package func scalarString(_ scalars: some Sequence<UInt32>) -> String {
    var bytes: [UInt8] = []
    for scalar in scalars where Unicode.Scalar(scalar) != nil { appendUTF8(scalar, to: &bytes) }
    return String(decoding: bytes, as: UTF8.self)
}
