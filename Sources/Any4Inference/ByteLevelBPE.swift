import Any4Core

/// Byte-level BPE, as GPT-2 introduced it and Llama 3, Qwen2 and SmolLM use it.
///
/// Encoding: added tokens are cut out of the raw text first; the rest is normalized (NFC, for the
/// tokenizers that ask), split into words by the ``PreTokenizer``, and each word's UTF-8 bytes
/// start as one token each (the vocabulary spells byte `b` as the scalar ``ByteLevel/scalar(of:)``)
/// and are merged pair by pair, the lowest-ranked merge first, the leftmost on ties.
package struct ByteLevelBPETokenizer: TextTokenizer {
    /// What a tokenizer file says, before it is checked and indexed.
    struct Definition {
        /// The file the definition comes from, for errors.
        var file: String
        /// Vocabulary strings with their ids.
        var vocabulary: [(piece: String, id: Int)]
        /// Merge rules, highest priority first.
        var merges: [(left: String, right: String)]
        /// The key merges come from (`model.merges`, `tokenizer.ggml.merges`), for errors.
        var mergesKey: String
        var addedTokens: [AddedToken] = []
        var preTokenizer = PreTokenizer(steps: [.byteLevel(addPrefixSpace: false, useRegex: true)])
        var nfc = false
        /// A word that is a vocabulary entry as a whole is that token, unmerged (Llama 3).
        var ignoreMerges = false
        var unknownToken: String?
        /// Ids around the text when special tokens are added.
        var prefix: [Int] = []
        var suffix: [Int] = []
        var bosID: Int?
        var eosID: Int?
    }

    package let vocabularySize: Int
    package var bosID: Int?
    package var eosID: Int?
    private let pieces: [String]
    private let tokenIDs: [ExactString: Int32]
    private let isSpecial: [Bool]
    /// The token of each byte alone, -1 if the vocabulary lacks it.
    private let byteTokens: [Int32]
    /// (left << 32 | right) → (rank << 32 | merged).
    private let merges: [UInt64: UInt64]
    private let unknownID: Int32?
    private let wholeWords: [[UInt8]: Int32]?
    private let addedTokens: AddedTokenMatcher
    private let normalizedAddedTokens: AddedTokenMatcher
    private let nfc: Bool
    private let preTokenizer: PreTokenizer
    private let prefix: [Int]
    private let suffix: [Int]

    init(_ definition: Definition) throws {
        let file = definition.file
        let size = try checkedVocabularySize(definition.vocabulary.map(\.id) + definition.addedTokens.map(\.id), file: file)
        for id in definition.prefix + definition.suffix + [definition.bosID, definition.eosID].compactMap(\.self)
        where !(0..<size).contains(id) {
            throw FileFormatError(file: file, kind: .badHeader, "special token id \(id) is outside the vocabulary (0..<\(size))")
        }
        var pieces = [String](repeating: "", count: size)
        var filled = [Bool](repeating: false, count: size)
        var ids: [ExactString: Int32] = [:]
        ids.reserveCapacity(definition.vocabulary.count)
        for (piece, id) in definition.vocabulary {
            if !filled[id] {
                pieces[id] = piece
                filled[id] = true
            }
            let key = ExactString(piece)
            if ids[key] == nil { ids[key] = Int32(id) }
        }
        var isSpecial = [Bool](repeating: false, count: size)
        for token in definition.addedTokens {
            if !filled[token.id] {
                pieces[token.id] = token.content
                filled[token.id] = true
            }
            if token.special { isSpecial[token.id] = true }
        }
        self.pieces = pieces
        self.isSpecial = isSpecial
        vocabularySize = size

        byteTokens = (0..<256).map { ids[ExactString(String(Character(ByteLevel.scalar(of: UInt8($0)))))] ?? -1 }
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(definition.merges.count)
        for (rank, merge) in definition.merges.enumerated() {
            func fail(_ message: String) -> FileFormatError {
                FileFormatError(
                    file: file, kind: .badHeader, message,
                    subject: "\(definition.mergesKey)[\(rank)] \"\(merge.left) \(merge.right)\"")
            }
            guard let left = ids[ExactString(merge.left)] else { throw fail("\"\(merge.left)\" is not in the vocabulary") }
            guard let right = ids[ExactString(merge.right)] else { throw fail("\"\(merge.right)\" is not in the vocabulary") }
            guard let merged = ids[ExactString(merge.left + merge.right)] else {
                throw fail("the merged token \"\(merge.left + merge.right)\" is not in the vocabulary")
            }
            merges[Self.key(left, right)] = UInt64(rank) << 32 | UInt64(UInt32(merged))
        }
        self.merges = merges
        if let unknown = definition.unknownToken {
            guard let id = ids[ExactString(unknown)] else {
                throw FileFormatError(file: file, kind: .badHeader, "the unknown token \"\(unknown)\" is not in the vocabulary")
            }
            unknownID = id
        } else {
            unknownID = nil
        }
        for token in definition.addedTokens where ids[ExactString(token.content)] == nil {
            ids[ExactString(token.content)] = Int32(token.id)
        }
        tokenIDs = ids
        if definition.ignoreMerges {
            var words: [[UInt8]: Int32] = [:]
            for (piece, id) in definition.vocabulary {
                if let bytes = ByteLevel.decode(piece), words[bytes] == nil { words[bytes] = Int32(id) }
            }
            wholeWords = words
        } else {
            wholeWords = nil
        }
        (addedTokens, normalizedAddedTokens) = AddedTokenMatcher.split(
            definition.addedTokens,
            normalize: definition.nfc
                ? { String(decoding: Self.nfc(Array($0.utf8)), as: UTF8.self) } : nil)
        nfc = definition.nfc
        preTokenizer = definition.preTokenizer
        prefix = definition.prefix
        suffix = definition.suffix
        bosID = definition.bosID
        eosID = definition.eosID
    }

    /// The id of a vocabulary entry or added token.
    func id(of piece: String) -> Int? { tokenIDs[ExactString(piece)].map(Int.init) }

    // MARK: - TextTokenizer

    package func encode(_ text: String, addSpecialTokens: Bool) -> [Int] {
        var out = addSpecialTokens ? prefix : []
        var cache: [ExactString: [Int32]] = [:]
        AddedTokenMatcher.encode(
            Array(text.utf8), raw: addedTokens, normalized: normalizedAddedTokens,
            normalize: { nfc ? Self.nfc($0) : $0 }, into: &out
        ) { text, out in
            preTokenizer.forEachWord(in: text) { word in encodeWord(word, cache: &cache, into: &out) }
        }
        return out + (addSpecialTokens ? suffix : [])
    }

    package func decode(_ ids: [Int], skipSpecial: Bool) -> String {
        var bytes: [UInt8] = []
        for id in ids where id >= 0 && id < vocabularySize && !(skipSpecial && isSpecial[id]) {
            bytes += self.bytes(of: id)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The bytes of the token's scalars read through the byte-level alphabet; the piece's own UTF-8
    /// when a scalar is outside it (as added tokens such as "<|im_start|>" may be).
    package func bytes(of id: Int) -> [UInt8] {
        guard id >= 0, id < vocabularySize else { return [] }
        return ByteLevel.bytes(of: pieces[id])
    }

    package func piece(_ id: Int) -> String {
        id >= 0 && id < vocabularySize ? pieces[id] : ""
    }

    // MARK: - Merging

    private static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    private static func nfc(_ bytes: [UInt8]) -> [UInt8] {
        // ASCII is its own NFC.
        guard bytes.contains(where: { $0 >= 0x80 }) else { return bytes }
        let text = ScalarText(bytes)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        for scalar in UnicodeNormalization.nfc(text.scalars) { appendUTF8(scalar, to: &out) }
        return out
    }

    private func encodeWord(_ word: ArraySlice<UInt8>, cache: inout [ExactString: [Int32]], into out: inout [Int]) {
        let key = ExactString(String(decoding: word, as: UTF8.self))
        if let cached = cache[key] {
            for id in cached { out.append(Int(id)) }
            return
        }
        let ids: [Int32]
        if let wholeWords, let id = wholeWords[Array(word)] {
            ids = [id]
        } else {
            ids = merge(word)
        }
        cache[key] = ids
        for id in ids { out.append(Int(id)) }
    }

    /// The tokens of one word: its bytes' tokens merged by rank, through a linked list and a heap
    /// of candidate pairs (stale candidates are skipped when popped).
    private func merge(_ word: ArraySlice<UInt8>) -> [Int32] {
        var ids: [Int32] = []
        ids.reserveCapacity(word.count)
        for byte in word {
            let id = byteTokens[Int(byte)]
            if id >= 0 { ids.append(id) } else if let unknownID { ids.append(unknownID) }
        }
        let n = ids.count
        guard n > 1 else { return ids }
        var next = Array(1...n)
        var previous = Array(-1..<(n - 1))
        var heap = MinHeap()
        func consider(_ position: Int) {
            let following = next[position]
            guard following < n, let merge = merges[Self.key(ids[position], ids[following])] else { return }
            heap.push(merge & 0xFFFF_FFFF_0000_0000 | UInt64(position))
        }
        for position in 0..<(n - 1) { consider(position) }
        while let top = heap.pop() {
            let position = Int(top & 0xFFFF_FFFF)
            let following = next[position]
            guard ids[position] >= 0, following < n,
                let merge = merges[Self.key(ids[position], ids[following])],
                merge >> 32 == top >> 32
            else { continue }
            ids[position] = Int32(truncatingIfNeeded: merge)
            ids[following] = -1
            next[position] = next[following]
            if next[position] < n { previous[next[position]] = position }
            if previous[position] >= 0 { consider(previous[position]) }
            consider(position)
        }
        return ids.filter { $0 >= 0 }
    }
}

/// A binary min-heap of UInt64 keys.
private struct MinHeap {
    private var items: [UInt64] = []

    mutating func push(_ item: UInt64) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child] < items[parent] else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> UInt64? {
        guard let last = items.popLast() else { return nil }
        guard !items.isEmpty else { return last }
        let top = items[0]
        items[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < items.count, items[left] < items[smallest] { smallest = left }
            if right < items.count, items[right] < items[smallest] { smallest = right }
            guard smallest != parent else { break }
            items.swapAt(parent, smallest)
            parent = smallest
        }
        return top
    }
}

/// GPT-2's reversible byte ↔ scalar alphabet: printable Latin-1 bytes stand for themselves, the
/// other 68 bytes for U+0100 onwards, in byte order (so the space is "Ġ", U+0120).
package enum ByteLevel {
    private static let scalars: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var extra: UInt32 = 0x100
        for byte in 0..<256 {
            if (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte) {
                table[byte] = UInt32(byte)
            } else {
                table[byte] = extra
                extra += 1
            }
        }
        return table
    }()

    /// Byte of each scalar below U+0144, -1 for scalars outside the alphabet.
    private static let bytesOfScalars: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for byte in 0..<256 { table[Int(scalars[byte])] = Int16(byte) }
        return table
    }()

    package static func scalar(of byte: UInt8) -> Unicode.Scalar { Unicode.Scalar(scalars[Int(byte)])! }

    /// The bytes `piece` spells in the alphabet, or its own UTF-8 if a scalar is outside it.
    static func bytes(of piece: String) -> [UInt8] { decode(piece) ?? Array(piece.utf8) }

    /// The bytes `piece` spells, nil if a scalar is outside the alphabet.
    static func decode(_ piece: String) -> [UInt8]? {
        var out: [UInt8] = []
        for scalar in piece.unicodeScalars {
            let value = Int(scalar.value)
            guard value < bytesOfScalars.count, bytesOfScalars[value] >= 0 else { return nil }
            out.append(UInt8(bytesOfScalars[value]))
        }
        return out
    }
}

/// A string compared and hashed by its UTF-8 bytes. (`String` equality is canonical equivalence,
/// under which two distinct vocabulary entries could be one key.)
struct ExactString: Hashable, Sendable {
    let value: String

    init(_ value: String) { self.value = value }

    static func == (a: ExactString, b: ExactString) -> Bool { a.value.utf8.elementsEqual(b.value.utf8) }

    func hash(into hasher: inout Hasher) {
        var copy = value
        copy.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}
