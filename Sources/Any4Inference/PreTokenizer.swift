/// Splits text into the words a byte-level BPE model merges within, the way a tokenizer.json
/// `pre_tokenizer` (or a GGUF `tokenizer.ggml.pre`) says.
///
/// Steps run in order, each refining the pieces of the one before, as the Hugging Face
/// `Sequence` pre-tokenizer does; `byteLevel` must come last (it hands out the words).
package struct PreTokenizer: Sendable {
    package enum Step: Sendable, Equatable {
        /// A `Split` by one of the known patterns, each match its own piece ("Isolated").
        case split(SplitPattern)
        /// `Digits`: numbers apart from the rest, each digit alone when `individual`.
        case digits(individual: Bool)
        /// `ByteLevel`: a space before each piece that lacks one when `addPrefixSpace`; the GPT-2
        /// pattern within each piece when `useRegex`.
        case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    }

    let steps: [Step]

    package init(steps: [Step]) { self.steps = steps }

    /// Calls `body` with the UTF-8 bytes of each word of `bytes` (valid UTF-8), in order.
    package func forEachWord(in bytes: [UInt8], _ body: (ArraySlice<UInt8>) -> Void) {
        let text = ScalarText(bytes)
        var pieces = text.count == 0 ? [] : [0..<text.count]
        var next: [Range<Int>] = []
        for step in steps {
            next.removeAll(keepingCapacity: true)
            switch step {
            case .split(let pattern):
                for piece in pieces { pattern.split(text, piece, into: &next) }
            case .digits(let individual):
                for piece in pieces { Self.splitDigits(text, piece, individual: individual, into: &next) }
            case .byteLevel(let addPrefixSpace, let useRegex):
                for piece in pieces {
                    if addPrefixSpace, text.scalars[piece.lowerBound] != 0x20 {
                        let prefixed = [UInt8(0x20)] + bytes[text.offsets[piece.lowerBound]..<text.offsets[piece.upperBound]]
                        let inner = ScalarText(prefixed)
                        Self.emit(inner, 0..<inner.count, regex: useRegex, body)
                    } else {
                        Self.emit(text, piece, regex: useRegex, body)
                    }
                }
                return
            }
            swap(&pieces, &next)
        }
        for piece in pieces { body(bytes[text.offsets[piece.lowerBound]..<text.offsets[piece.upperBound]]) }
    }

    private static func emit(_ text: ScalarText, _ piece: Range<Int>, regex: Bool, _ body: (ArraySlice<UInt8>) -> Void) {
        guard regex else {
            body(text.bytes[text.offsets[piece.lowerBound]..<text.offsets[piece.upperBound]])
            return
        }
        var words: [Range<Int>] = []
        SplitPattern.gpt2.split(text, piece, into: &words)
        for word in words { body(text.bytes[text.offsets[word.lowerBound]..<text.offsets[word.upperBound]]) }
    }

    private static func splitDigits(_ text: ScalarText, _ piece: Range<Int>, individual: Bool, into out: inout [Range<Int>]) {
        var i = piece.lowerBound
        while i < piece.upperBound {
            let start = i
            let isNumber = text.classes[i] & ScalarClass.number != 0
            if isNumber && individual {
                i += 1
            } else {
                while i < piece.upperBound, (text.classes[i] & ScalarClass.number != 0) == isNumber { i += 1 }
            }
            out.append(start..<i)
        }
    }
}

// MARK: - Split patterns

/// The split regexes of byte-level BPE tokenizers, as hand-written scanners over scalar classes.
///
/// Each scanner reproduces the regex's leftmost-first alternation with backtracking: at every
/// position the first alternative that can match wins, greedily. All three patterns match every
/// scalar, so their matches tile the text.
package enum SplitPattern: Sendable, Equatable {
    /// GPT-2 (also the `ByteLevel` pre-tokenizer's own pattern).
    case gpt2
    /// Llama 3: case-insensitive contractions, one non-letter glued before letters, numbers in
    /// threes, newlines kept with the punctuation or whitespace before them.
    case llama3
    /// Qwen2: Llama 3's pattern with numbers one digit at a time.
    case qwen2

    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Regex =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Regex =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The pattern whose regex is `regex`, if it is one of the known ones.
    init?(regex: String) {
        switch regex {
        case Self.gpt2Regex: self = .gpt2
        case Self.llama3Regex: self = .llama3
        case Self.qwen2Regex: self = .qwen2
        default: return nil
        }
    }

    /// Appends the matches of the pattern in `range` (taken as a whole string) to `out`.
    func split(_ text: ScalarText, _ range: Range<Int>, into out: inout [Range<Int>]) {
        let end = range.upperBound
        let classes = text.classes
        func has(_ i: Int, _ bits: UInt8) -> Bool { i < end && classes[i] & bits != 0 }
        func isOther(_ i: Int) -> Bool { i < end && classes[i] & (ScalarClass.letter | ScalarClass.number | ScalarClass.whitespace) == 0 }
        func run(from i: Int, while bits: UInt8) -> Int {
            var j = i
            while j < end, classes[j] & bits != 0 { j += 1 }
            return j
        }
        func runOfOthers(from i: Int) -> Int {
            var j = i
            while isOther(j) { j += 1 }
            return j
        }
        /// `\s+(?!\S)|\s+` from `i`, a whitespace scalar.
        func whitespace(from i: Int) -> Int {
            let j = run(from: i, while: ScalarClass.whitespace)
            return j == end || j - i == 1 ? j : j - 1
        }

        var i = range.lowerBound
        while i < end {
            let start = i
            let c = classes[i]
            if let length = contraction(text, at: i, end: end, ignoringCase: self != .gpt2) {
                i += length
            } else if self == .gpt2 {
                if c & ScalarClass.letter != 0 {
                    i = run(from: i, while: ScalarClass.letter)
                } else if c & ScalarClass.number != 0 {
                    i = run(from: i, while: ScalarClass.number)
                } else if c & ScalarClass.space != 0 && has(i + 1, ScalarClass.letter) {
                    i = run(from: i + 1, while: ScalarClass.letter)
                } else if c & ScalarClass.space != 0 && has(i + 1, ScalarClass.number) {
                    i = run(from: i + 1, while: ScalarClass.number)
                } else if c & ScalarClass.space != 0 && isOther(i + 1) {
                    i = runOfOthers(from: i + 1)
                } else if isOther(i) {
                    i = runOfOthers(from: i)
                } else {
                    i = whitespace(from: i)
                }
            } else {
                if c & ScalarClass.letter != 0 {
                    i = run(from: i, while: ScalarClass.letter)
                } else if c & (ScalarClass.number | ScalarClass.newline) == 0 && has(i + 1, ScalarClass.letter) {
                    i = run(from: i + 1, while: ScalarClass.letter)
                } else if c & ScalarClass.number != 0 {
                    i = self == .qwen2 ? i + 1 : min(run(from: i, while: ScalarClass.number), i + 3)
                } else if isOther(i) || (c & ScalarClass.space != 0 && isOther(i + 1)) {
                    i = run(from: runOfOthers(from: i + 1), while: ScalarClass.newline)
                } else {
                    // \s*[\r\n]+ ends after the last newline of the whitespace run.
                    let j = run(from: i, while: ScalarClass.whitespace)
                    if let last = (i..<j).last(where: { classes[$0] & ScalarClass.newline != 0 }) {
                        i = last + 1
                    } else {
                        i = whitespace(from: i)
                    }
                }
            }
            out.append(start..<i)
        }
    }

    /// The length of `'s|'t|'re|'ve|'m|'ll|'d` at `i`, if one starts there.
    private func contraction(_ text: ScalarText, at i: Int, end: Int, ignoringCase: Bool) -> Int? {
        guard text.scalars[i] == 0x27, i + 1 < end else { return nil }
        func letter(_ k: Int) -> UInt32 {
            guard k < end else { return 0 }
            let s = text.scalars[k]
            guard ignoringCase else { return s }
            if s == 0x17F { return 0x73 }  // ſ folds to s
            return (0x41...0x5A).contains(s) ? s + 0x20 : s
        }
        switch letter(i + 1) {
        case 0x73, 0x74, 0x6D, 0x64: return 2  // s t m d
        case 0x72, 0x76: return letter(i + 2) == 0x65 ? 3 : nil  // re ve
        case 0x6C: return letter(i + 2) == 0x6C ? 3 : nil  // ll
        default: return nil
        }
    }
}

// MARK: - Scalars and their classes

/// The character classes the split patterns test, as bits of one byte per scalar.
enum ScalarClass {
    /// `\p{L}`: general category L*.
    static let letter: UInt8 = 1
    /// `\p{N}`: general category N*.
    static let number: UInt8 = 2
    /// `\s`: the White_Space property.
    static let whitespace: UInt8 = 4
    /// `[\r\n]`.
    static let newline: UInt8 = 8
    /// U+0020 itself (the ` ?` of the patterns).
    static let space: UInt8 = 16

    private static let ascii: [UInt8] = (0..<128).map { classify(UInt32($0)) }

    static func of(_ scalar: UInt32) -> UInt8 {
        scalar < 128 ? ascii[Int(scalar)] : classify(scalar)
    }

    private static func classify(_ value: UInt32) -> UInt8 {
        guard let scalar = Unicode.Scalar(value) else { return 0 }
        var bits: UInt8 = 0
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: bits |= letter
        case .decimalNumber, .letterNumber, .otherNumber: bits |= number
        default: break
        }
        if scalar.properties.isWhitespace { bits |= whitespace }
        if value == 0x0A || value == 0x0D { bits |= newline }
        if value == 0x20 { bits |= space }
        return bits
    }
}

/// UTF-8 text as scalars, with the class and byte offset of each.
struct ScalarText {
    let bytes: [UInt8]
    private(set) var scalars: [UInt32] = []
    private(set) var classes: [UInt8] = []
    /// The UTF-8 offset of each scalar in `bytes`, then `bytes.count`.
    private(set) var offsets: [Int] = []

    var count: Int { scalars.count }

    /// Decodes `bytes`, which should be valid UTF-8 (a byte that is not is taken as U+FFFD).
    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        scalars.reserveCapacity(bytes.count)
        classes.reserveCapacity(bytes.count)
        offsets.reserveCapacity(bytes.count + 1)
        var i = 0
        while i < bytes.count {
            let (scalar, length) = decodeUTF8(bytes, at: i)
            scalars.append(scalar)
            classes.append(ScalarClass.of(scalar))
            offsets.append(i)
            i += length
        }
        offsets.append(bytes.count)
    }
}

/// The scalar at `i` in UTF-8 `bytes` and its length; U+FFFD and 1 for a byte that starts no
/// valid sequence.
func decodeUTF8(_ bytes: [UInt8], at i: Int) -> (scalar: UInt32, length: Int) {
    let b0 = UInt32(bytes[i])
    if b0 < 0x80 { return (b0, 1) }
    func continuation(_ k: Int) -> UInt32? {
        guard i + k < bytes.count, bytes[i + k] & 0xC0 == 0x80 else { return nil }
        return UInt32(bytes[i + k] & 0x3F)
    }
    if b0 >= 0xC2, b0 < 0xE0, let b1 = continuation(1) {
        return ((b0 & 0x1F) << 6 | b1, 2)
    }
    if b0 >= 0xE0, b0 < 0xF0, let b1 = continuation(1), let b2 = continuation(2) {
        let value = (b0 & 0x0F) << 12 | b1 << 6 | b2
        if value >= 0x800, !(0xD800...0xDFFF).contains(value) { return (value, 3) }
    }
    if b0 >= 0xF0, b0 < 0xF5, let b1 = continuation(1), let b2 = continuation(2), let b3 = continuation(3) {
        let value = (b0 & 0x07) << 18 | b1 << 12 | b2 << 6 | b3
        if value >= 0x10000, value <= 0x10FFFF { return (value, 4) }
    }
    return (0xFFFD, 1)
}

/// Appends the UTF-8 encoding of `scalar` to `out`.
func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
    switch scalar {
    case ..<0x80:
        out.append(UInt8(scalar))
    case ..<0x800:
        out.append(UInt8(0xC0 | scalar >> 6))
        out.append(UInt8(0x80 | scalar & 0x3F))
    case ..<0x10000:
        out.append(UInt8(0xE0 | scalar >> 12))
        out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
        out.append(UInt8(0x80 | scalar & 0x3F))
    default:
        out.append(UInt8(0xF0 | scalar >> 18))
        out.append(UInt8(0x80 | scalar >> 12 & 0x3F))
        out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
        out.append(UInt8(0x80 | scalar & 0x3F))
    }
}
