/// A token found in the text as a whole before pre-tokenization and never split: tokenizer.json
/// `added_tokens`, GGUF control (type 3) and user-defined (type 4) tokens.
struct AddedToken: Sendable {
    var content: String
    var id: Int
    /// Skipped by `decode(_:skipSpecial: true)`.
    var special: Bool
    /// The match takes the whitespace before it (`lstrip`) or after it (`rstrip`) along.
    var leftStrip = false
    var rightStrip = false
    /// Only matched when no letter, digit or `_` touches it on either side.
    var singleWord = false
    /// Matched in the normalized text rather than the raw text.
    var normalized = false
}

/// Finds added tokens in UTF-8 text: the leftmost match, and the longest token at that position.
struct AddedTokenMatcher: Sendable {
    enum Segment: Equatable {
        case text(Range<Int>)
        case token(Int)
    }

    private struct Entry: Sendable {
        var bytes: [UInt8]
        var token: AddedToken
    }

    private let entries: [Entry]
    /// For each first byte, the entries starting with it, longest first.
    private let byFirstByte: [[Int]]

    /// Matchers for the added tokens found in the raw text and for those flagged `normalized`,
    /// found after `normalize` (their content normalized the same way). Without a normalizer
    /// every token is matched in the raw text.
    static func split(_ tokens: [AddedToken], normalize: ((String) -> String)?) -> (raw: AddedTokenMatcher, normalized: AddedTokenMatcher) {
        guard let normalize else { return (AddedTokenMatcher(tokens), AddedTokenMatcher([])) }
        let normalized = tokens.filter(\.normalized).map { token in
            var token = token
            token.content = normalize(token.content)
            return token
        }
        return (AddedTokenMatcher(tokens.filter { !$0.normalized }), AddedTokenMatcher(normalized))
    }

    /// The loop every tokenizer's `encode` runs: the added tokens found in the raw text; the text
    /// between them normalized; the tokens flagged `normalized` found in that; `words` for the text
    /// that is left (UTF-8). Token ids and word ids go to `out` in text order.
    static func encode(
        _ bytes: [UInt8], raw: AddedTokenMatcher, normalized: AddedTokenMatcher,
        normalize: ([UInt8]) -> [UInt8], into out: inout [Int], words: ([UInt8], inout [Int]) -> Void
    ) {
        for segment in raw.split(bytes) {
            switch segment {
            case .token(let id):
                out.append(id)
            case .text(let range):
                let part = normalize(Array(bytes[range]))
                for inner in normalized.split(part) {
                    switch inner {
                    case .token(let id): out.append(id)
                    case .text(let range): words(Array(part[range]), &out)
                    }
                }
            }
        }
    }

    init(_ tokens: [AddedToken]) {
        let entries = tokens.map { Entry(bytes: Array($0.content.utf8), token: $0) }.filter { !$0.bytes.isEmpty }
        var table = [[Int]](repeating: [], count: 256)
        for (index, entry) in entries.enumerated() { table[Int(entry.bytes[0])].append(index) }
        for b in 0..<256 { table[b].sort { entries[$0].bytes.count > entries[$1].bytes.count } }
        self.entries = entries
        byFirstByte = table
    }

    var isEmpty: Bool { entries.isEmpty }

    /// `bytes` cut into runs of text and the added tokens between them, in order.
    func split(_ bytes: [UInt8]) -> [Segment] {
        guard !entries.isEmpty else { return bytes.isEmpty ? [] : [.text(0..<bytes.count)] }
        var segments: [Segment] = []
        var textStart = 0
        var i = 0
        while i < bytes.count {
            guard let entry = match(bytes, at: i) else {
                i += 1
                continue
            }
            var start = i, end = i + entry.bytes.count
            if entry.token.leftStrip {
                while start > textStart, let previous = scalarStart(bytes, before: start),
                    isWhitespace(decodeUTF8(bytes, at: previous).scalar)
                { start = previous }
            }
            if entry.token.rightStrip {
                while end < bytes.count {
                    let (scalar, length) = decodeUTF8(bytes, at: end)
                    guard isWhitespace(scalar) else { break }
                    end += length
                }
            }
            if start > textStart { segments.append(.text(textStart..<start)) }
            segments.append(.token(entry.token.id))
            textStart = end
            i = end
        }
        if textStart < bytes.count { segments.append(.text(textStart..<bytes.count)) }
        return segments
    }

    private func match(_ bytes: [UInt8], at i: Int) -> Entry? {
        for index in byFirstByte[Int(bytes[i])] {
            let entry = entries[index]
            let end = i + entry.bytes.count
            guard end <= bytes.count else { continue }
            var equal = true
            for k in 1..<entry.bytes.count where bytes[i + k] != entry.bytes[k] {
                equal = false
                break
            }
            guard equal else { continue }
            if entry.token.singleWord {
                if let previous = scalarStart(bytes, before: i), isWordScalar(decodeUTF8(bytes, at: previous).scalar) { continue }
                if end < bytes.count, isWordScalar(decodeUTF8(bytes, at: end).scalar) { continue }
            }
            return entry
        }
        return nil
    }

    private func isWhitespace(_ scalar: UInt32) -> Bool { ScalarClass.of(scalar) & ScalarClass.whitespace != 0 }

    private func isWordScalar(_ scalar: UInt32) -> Bool {
        scalar == 0x5F || ScalarClass.of(scalar) & (ScalarClass.letter | ScalarClass.number) != 0
    }

    /// The offset of the scalar that ends at `i`, if any.
    private func scalarStart(_ bytes: [UInt8], before i: Int) -> Int? {
        guard i > 0 else { return nil }
        var k = i - 1
        while k > 0, i - k < 4, bytes[k] & 0xC0 == 0x80 { k -= 1 }
        return k
    }
}
