import Any4Core

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The token windows perplexity scores (see ``Perplexity``): `tokens` cut into whole windows of
/// `ctx` tokens, the first token of each replaced by `bos` when the model adds one, and in each
/// window the logits at positions `firstScored ..< ctx − 1` predicting the next token.
public struct ScoringWindows: Sendable, Equatable {
    /// The text tokens of the windows, `count × ctx` of them (BOS not substituted).
    public let tokens: [Int]
    public let ctx: Int
    public let bos: Int?
    /// The first scored position of each window (perplexity: ctx/2).
    public let firstScored: Int

    public var count: Int { tokens.count / ctx }
    public var scoredPerWindow: Int { ctx - 1 - firstScored }
    public var scoredTokens: Int { count * scoredPerWindow }

    /// The windows `tokens` make: at most `limit` of them (0: all), a short tail dropped.
    /// - Parameter firstScored: nil: ctx/2, as perplexity; 0 scores every position but the last
    ///   (for a short probe prompt).
    public init(tokens: [Int], ctx: Int, bos: Int?, firstScored: Int? = nil, limit: Int = 0) throws {
        guard ctx >= 8 else { throw InferenceError.tooShort(tokens: ctx, needed: 8) }
        var windows = tokens.count / ctx
        guard windows >= 1 else { throw InferenceError.tooShort(tokens: tokens.count, needed: ctx) }
        if limit > 0 { windows = min(windows, limit) }
        let first = firstScored ?? ctx / 2
        guard first >= 0 && first < ctx - 1 else { throw InferenceError.tooShort(tokens: ctx, needed: first + 2) }
        self.tokens = Array(tokens.prefix(windows * ctx))
        self.ctx = ctx
        self.bos = bos
        self.firstScored = first
    }

    /// Window `c` as the engine runs it (BOS first when the model adds one).
    public func window(_ c: Int) -> [Int] {
        var w = Array(tokens[(c * ctx)..<((c + 1) * ctx)])
        if let bos { w[0] = bos }
        return w
    }

    /// Runs every window through `engine` (each from an empty cache) and hands each scored
    /// position's logits, its next token and its index among the scored tokens to `body`.
    func run(
        _ engine: LlamaEngine, progress: Progress?, label: String, onWindow: (Int) throws -> Void = { _ in },
        _ body: (UnsafePointer<Float>, Int, Int) throws -> Void
    ) throws {
        guard ctx <= engine.config.contextLength else {
            throw InferenceError.contextOverflow(needed: ctx, capacity: engine.config.contextLength)
        }
        let cache = try engine.makeCache(capacity: ctx)
        let vocab = engine.config.vocab
        progress?.reset(total: count, label: label)
        for c in 0..<count {
            if progress?.isCancelled == true { throw QuantizationError.cancelled }
            let w = window(c)
            cache.reset()
            let logits = try engine.forward(w, cache: cache, logits: .from(firstScored))
            try logits.withUnsafeBufferPointer { buffer in
                for j in firstScored..<(ctx - 1) {
                    try body(buffer.baseAddress! + (j - firstScored) * vocab, w[j + 1], c * scoredPerWindow + j - firstScored)
                }
            }
            progress?.advance()
            try onWindow(c + 1)
        }
    }
}

/// A model and its windows do not match a reference's (status 2 in the CLI, naming what differs).
public struct DivergenceMismatch: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The next-token distributions of a reference (usually unquantized) model over ``ScoringWindows``,
/// in memory or in a file, in a compact form whose KL divergence stays within 1e-3 of the
/// full-precision one (in practice within 1e-5; the tests measure it).
///
/// Each scored position keeps its log-probabilities over the whole vocabulary as 16-bit codes:
/// `code = round((max logit − logit) · 2048)`, capped at 65535, so a log-probability is known to
/// ±2⁻¹² nats relative to the most likely token and is floored 32 nats below it (a token 32 nats
/// less likely than the top one weighs under e⁻³² in any sum). The codes do not depend on the
/// normalisation, so encoding a model's logits needs no exponential. Beside them: the exact
/// negative log-likelihood of the next token (f64, for the reference's perplexity) and the exact
/// arg-max (for top-1 agreement). 2·vocab + 12 bytes per scored token: 98 KB for SmolLM2's 49152.
///
/// ``Divergence/measure(_:against:progress:onWindow:)`` encodes the other model's logits the same
/// way, so identical models give a divergence of exactly 0.
public final class DivergenceReference: @unchecked Sendable {
    /// Nats per code step.
    public static let logStep = 1.0 / 2048
    public static let maxCode = 65535
    public static let magic: [UInt8] = Array("any4-kld".utf8)
    public static let version: UInt32 = 1

    public let windows: ScoringWindows
    public let vocab: Int
    /// What made the reference: architecture, hidden, layers (checked against the compared model),
    /// and the model's path and weights (shown only).
    public let model: ModelIdentity
    public let source: String
    private enum Storage {
        case memory([UInt8])
        case mapped(ByteStore)
    }
    private let storage: Storage
    private let recordsOffset: Int

    /// The model fields a reference checks.
    public struct ModelIdentity: Sendable, Equatable {
        public var architecture: String
        public var hidden: Int
        public var layers: Int
        public var vocab: Int
        public var path: String
        public var weights: String

        public init(_ engine: LlamaEngine, weights: String = "as stored") {
            architecture = engine.config.architecture
            hidden = engine.config.hidden
            layers = engine.config.layers
            vocab = engine.config.vocab
            path = engine.model.path
            self.weights = weights
        }

        init(architecture: String, hidden: Int, layers: Int, vocab: Int, path: String, weights: String) {
            self.architecture = architecture
            self.hidden = hidden
            self.layers = layers
            self.vocab = vocab
            self.path = path
            self.weights = weights
        }

        var shape: String { "\(architecture), \(layers) layers of \(hidden), vocabulary of \(vocab)" }
    }

    /// Bytes per scored token.
    public static func recordBytes(vocab: Int) -> Int { 12 + 2 * vocab }
    public var recordBytes: Int { Self.recordBytes(vocab: vocab) }
    /// Scored tokens.
    public var count: Int { windows.scoredTokens }

    /// The size of the reference of `model` for these windows (file or memory), or nil when it
    /// overflows.
    public static func byteCount(model: ModelIdentity, windows: ScoringWindows) -> Int? {
        let header = headerBytes(header(windows: windows, model: model))
        let (tokenBytes, o1) = windows.tokens.count.multipliedReportingOverflow(by: 4)
        let (records, o2) = windows.scoredTokens.multipliedReportingOverflow(by: recordBytes(vocab: model.vocab))
        let (a, o3) = header.count.addingReportingOverflow(tokenBytes)
        let (b, o4) = a.addingReportingOverflow(records)
        return o1 || o2 || o3 || o4 ? nil : b
    }

    private init(windows: ScoringWindows, vocab: Int, model: ModelIdentity, source: String, storage: Storage, recordsOffset: Int) {
        self.windows = windows
        self.vocab = vocab
        self.model = model
        self.source = source
        self.storage = storage
        self.recordsOffset = recordsOffset
    }

    // MARK: Computing

    /// The reference distributions of `engine` over `windows`, in memory (``byteCount(model:windows:)``
    /// bytes). Cheap to compare against repeatedly.
    /// - Parameter weights: how the engine's weights are held, for the record ("as stored", a format).
    public static func compute(
        _ engine: LlamaEngine, windows: ScoringWindows, weights: String = "as stored", progress: Progress? = nil
    ) throws -> DivergenceReference {
        let vocab = engine.config.vocab
        let identity = ModelIdentity(engine, weights: weights)
        guard let total = byteCount(model: identity, windows: windows) else {
            throw SizeError("the divergence reference", .overflow(terms: [windows.scoredTokens, recordBytes(vocab: vocab)], operation: "×"))
        }
        var bytes = prefixBytes(windows: windows, model: identity)
        precondition(total == bytes.count + windows.scoredTokens * recordBytes(vocab: vocab))
        let recordsOffset = bytes.count
        let record = recordBytes(vocab: vocab)
        bytes.append(contentsOf: repeatElement(0, count: total - bytes.count))
        try bytes.withUnsafeMutableBytes { out in
            try windows.run(engine, progress: progress, label: "reference distributions") { logits, next, t in
                encode(logits, vocab: vocab, next: next, into: out.baseAddress! + recordsOffset + t * record)
            }
        }
        return DivergenceReference(
            windows: windows, vocab: vocab, model: identity, source: "memory", storage: .memory(bytes), recordsOffset: recordsOffset)
    }

    /// Computes the reference of `engine` over `windows` straight into the file `path` (temporary
    /// file and rename; one record in memory at a time). Returns the file's size.
    @discardableResult
    public static func save(
        _ engine: LlamaEngine, windows: ScoringWindows, to path: String, weights: String = "as stored", progress: Progress? = nil
    ) throws -> Int {
        let vocab = engine.config.vocab
        let identity = ModelIdentity(engine, weights: weights)
        guard let total = byteCount(model: identity, windows: windows) else {
            throw SizeError("the divergence reference", .overflow(terms: [windows.scoredTokens, recordBytes(vocab: vocab)], operation: "×"))
        }
        let writer = try AtomicFileWriter(path: path, progress: progress)
        do {
            try writer.write(prefixBytes(windows: windows, model: identity))
            var record = [UInt8](repeating: 0, count: recordBytes(vocab: vocab))
            let perWindow = windows.scoredPerWindow
            var chunk: [UInt8] = []
            chunk.reserveCapacity(perWindow * record.count)
            try windows.run(
                engine, progress: progress, label: "reference distributions",
                onWindow: { _ in
                    try writer.write(chunk)
                    chunk.removeAll(keepingCapacity: true)
                }
            ) { logits, next, _ in
                record.withUnsafeMutableBytes { encode(logits, vocab: vocab, next: next, into: $0.baseAddress!) }
                chunk.append(contentsOf: record)
            }
            try writer.commit()
        } catch {
            writer.abandon()
            throw error
        }
        return total
    }

    /// Writes an in-memory (or mapped) reference to `path` (temporary file and rename).
    public func write(to path: String, progress: Progress? = nil) throws {
        let writer = try AtomicFileWriter(path: path, progress: progress)
        do {
            try withBytes { try writer.write($0) }
            try writer.commit()
        } catch {
            writer.abandon()
            throw error
        }
    }

    /// One record: nll of `next` (f64), arg-max (u32), then the vocabulary's codes (u16), little-endian.
    static func encode(_ logits: UnsafePointer<Float>, vocab: Int, next: Int, into out: UnsafeMutableRawPointer) {
        let nll = Perplexity.negativeLogLikelihood(logits, vocab, next)
        out.storeBytes(of: nll.bitPattern.littleEndian, toByteOffset: 0, as: UInt64.self)
        out.storeBytes(of: UInt32(argmax(logits, vocab)).littleEndian, toByteOffset: 8, as: UInt32.self)
        let codes = (out + 12).assumingMemoryBound(to: UInt16.self)
        let mx = maximum(logits, vocab)
        for i in 0..<vocab { codes[i] = code(mx, logits[i]).littleEndian }
    }

    @inline(__always) static func code(_ mx: Float, _ logit: Float) -> UInt16 {
        let d = (mx - logit) * 2048
        // NaN and anything past the floor take the last code.
        return d < 65534.5 ? UInt16(d.rounded()) : 65535
    }

    @inline(__always) static func maximum(_ v: UnsafePointer<Float>, _ n: Int) -> Float {
        var mx = -Float.infinity
        for i in 0..<n where v[i] > mx { mx = v[i] }
        return mx
    }

    static func argmax(_ v: UnsafePointer<Float>, _ n: Int) -> Int {
        var best = 0
        for i in 1..<n where v[i] > v[best] { best = i }
        return best
    }

    // MARK: The file

    private static func header(windows: ScoringWindows, model m: ModelIdentity) -> JSONValue {
        JSONValue.object([
            ("vocab", JSONValue(m.vocab)), ("ctx", JSONValue(windows.ctx)), ("first_scored", JSONValue(windows.firstScored)),
            ("windows", JSONValue(windows.count)), ("bos", windows.bos.map { JSONValue($0) } ?? .null),
            ("log_step", JSONValue(logStep)), ("architecture", .string(m.architecture)), ("hidden", JSONValue(m.hidden)),
            ("layers", JSONValue(m.layers)), ("model", .string(m.path)), ("weights", .string(m.weights))
        ])
    }

    /// magic, version, header length, header JSON padded with spaces to a multiple of 8.
    private static func headerBytes(_ header: JSONValue) -> [UInt8] {
        var json = Array(header.serialized.utf8)
        while (16 + json.count) % 8 != 0 { json.append(0x20) }
        var out = magic
        withUnsafeBytes(of: version.littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(json.count).littleEndian) { out.append(contentsOf: $0) }
        return out + json
    }

    /// Header and the windows' tokens (u32 each).
    private static func prefixBytes(windows: ScoringWindows, model: ModelIdentity) -> [UInt8] {
        var out = headerBytes(header(windows: windows, model: model))
        out.reserveCapacity(out.count + 4 * windows.tokens.count)
        for t in windows.tokens { withUnsafeBytes(of: UInt32(truncatingIfNeeded: t).littleEndian) { out.append(contentsOf: $0) } }
        return out
    }

    /// Whether the file at `path` starts with the reference magic (false for folders, short or
    /// unreadable files).
    public static func isReferenceFile(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return false }
        var head = [UInt8](repeating: 0, count: magic.count)
        let n = head.withUnsafeMutableBytes { read(fd, $0.baseAddress, magic.count) }
        return n == magic.count && head == magic
    }

    /// Maps a reference file: its header, tokens and size are checked (a truncated file names
    /// the record and the byte where it ends); records are read when compared.
    public static func load(_ path: String) throws -> DivergenceReference {
        let store = try ByteStore(mapping: path)
        let b = store.bytes
        func fail(_ kind: FileFormatError.Kind, _ message: String, _ offset: Int? = nil) -> FileFormatError {
            FileFormatError(file: path, kind: kind, message, offset: offset)
        }
        guard b.count >= 16 else { throw fail(.truncated, "\(b.count) bytes: shorter than the 16-byte header of a divergence reference", b.count) }
        guard Array(b[0..<8]) == magic else { throw fail(.badMagic, "not a divergence reference (no \"any4-kld\" magic)", 0) }
        let version = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        guard version == Self.version else {
            throw fail(.unsupported, "divergence reference version \(version); this any4 reads version \(Self.version)", 8)
        }
        let length = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
        guard length <= b.count - 16 else {
            throw fail(.truncated, "the header declares \(length) bytes of JSON but the file ends at byte \(b.count)", b.count)
        }
        let json = try JSONParser.parse(UnsafeRawBufferPointer(rebasing: b[16..<(16 + length)]), file: path, baseOffset: 16)
        func int(_ key: String, _ range: ClosedRange<Int>) throws -> Int {
            guard let v = json[key]?.int, range.contains(v) else {
                throw fail(.badHeader, "header field \"\(key)\" is missing or not an integer in \(range.lowerBound)...\(range.upperBound)", 16)
            }
            return v
        }
        func string(_ key: String) throws -> String {
            guard let v = json[key]?.string else { throw fail(.badHeader, "header field \"\(key)\" is missing or not a string", 16) }
            return v
        }
        guard json["log_step"]?.double == logStep else {
            throw fail(.unsupported, "header field \"log_step\" is \(json["log_step"]?.serialized ?? "missing"); this any4 writes \(logStep)", 16)
        }
        let vocab = try int("vocab", 1...(1 << 24)), ctx = try int("ctx", 8...(1 << 20))
        let first = try int("first_scored", 0...(ctx - 2)), count = try int("windows", 1...(1 << 30))
        var bos: Int? = nil
        if let v = json["bos"], v != .null {
            guard let id = v.int, (0..<vocab).contains(id) else {
                throw fail(.badHeader, "header field \"bos\" is not a token id below \(vocab)", 16)
            }
            bos = id
        }
        let identity = ModelIdentity(
            architecture: try string("architecture"), hidden: try int("hidden", 0...(1 << 24)), layers: try int("layers", 0...(1 << 16)),
            vocab: vocab, path: try string("model"), weights: try string("weights"))
        // Token ids, then records: sizes checked before anything is read.
        let tokensOffset = 16 + length
        let (tokenCount, o1) = count.multipliedReportingOverflow(by: ctx)
        let (tokenBytes, o2) = tokenCount.multipliedReportingOverflow(by: 4)
        let scored = count * (ctx - 1 - first)
        let record = recordBytes(vocab: vocab)
        let (recordsBytes, o3) = scored.multipliedReportingOverflow(by: record)
        let recordsOffset = tokensOffset + tokenBytes
        let (expected, o4) = recordsOffset.addingReportingOverflow(recordsBytes)
        guard !(o1 || o2 || o3 || o4) else { throw fail(.tooLarge, "\(count) windows of \(ctx) over \(vocab) tokens overflow", 16) }
        if b.count < expected {
            if b.count < recordsOffset {
                throw fail(.truncated, "the file ends at byte \(b.count) inside the window tokens (which end at byte \(recordsOffset))", b.count)
            }
            let whole = (b.count - recordsOffset) / record
            throw fail(
                .truncated,
                "the file ends at byte \(b.count) inside record \(whole) of \(scored) (window \(whole / (ctx - 1 - first)), "
                    + "record bytes \(recordsOffset + whole * record)..<\(recordsOffset + (whole + 1) * record)); expected \(expected) bytes",
                b.count)
        }
        guard b.count == expected else {
            throw fail(.badShape, "\(b.count - expected) bytes after the last record (expected \(expected) bytes)", expected)
        }
        var tokens = [Int](repeating: 0, count: tokenCount)
        for i in 0..<tokenCount {
            let t = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: tokensOffset + 4 * i, as: UInt32.self)))
            guard t < vocab else { throw fail(.badShape, "window token \(i) is \(t), outside the vocabulary of \(vocab)", tokensOffset + 4 * i) }
            tokens[i] = t
        }
        let windows = try ScoringWindows(tokens: tokens, ctx: ctx, bos: bos, firstScored: first)
        return DivergenceReference(
            windows: windows, vocab: vocab, model: identity, source: path, storage: .mapped(store), recordsOffset: recordsOffset)
    }

    private func withBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        switch storage {
        case .memory(let bytes): try bytes.withUnsafeBytes(body)
        case .mapped(let store): try body(store.bytes)
        }
    }

    /// The bytes of the whole reference.
    public var byteCount: Int { withBytes { $0.count } }

    /// The reference's negative log-likelihood of the next token at scored position `t`.
    public func nll(_ t: Int) -> Double {
        withBytes { Double(bitPattern: UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: recordsOffset + t * recordBytes, as: UInt64.self))) }
    }

    /// The reference's most likely next token at scored position `t`.
    public func top(_ t: Int) -> Int {
        withBytes { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: recordsOffset + t * recordBytes + 8, as: UInt32.self))) }
    }

    /// The reference's log-probabilities at scored position `t` as stored (±2⁻¹² nats, floored at
    /// −32 relative to the top token, renormalised).
    public func logProbabilities(_ t: Int) -> [Double] {
        withBytes { b in
            let codes = b.baseAddress! + recordsOffset + t * recordBytes + 12
            var out = [Double](repeating: 0, count: vocab)
            var sum = 0.0
            for i in 0..<vocab {
                out[i] = -Double(UInt16(littleEndian: codes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) * Self.logStep
                sum += exp(out[i])
            }
            let z = log(sum)
            for i in 0..<vocab { out[i] -= z }
            return out
        }
    }

    /// exp(−code · logStep) for every code.
    static let weights: [Double] = (0...maxCode).map { exp(-Double($0) * logStep) }

    /// KL(reference ‖ model) at scored position `t`, both distributions at the stored precision.
    func divergence(_ t: Int, logits q: UnsafePointer<Float>) -> Double {
        let mq = Self.maximum(q, vocab)
        return withBytes { b in
            Self.weights.withUnsafeBufferPointer { w in
                let codes = b.baseAddress! + recordsOffset + t * recordBytes + 12
                var sp = 0.0, sq = 0.0, a = 0.0
                for i in 0..<vocab {
                    let cp = Int(UInt16(littleEndian: codes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                    let cq = Int(Self.code(mq, q[i]))
                    let wp = w[cp]
                    sp += wp
                    sq += w[cq]
                    a += wp * Double(cp - cq)
                }
                // Σ p̂ (log p̂ − log q̂) with p̂ = w[cp]/sp, q̂ = w[cq]/sq.
                return -Self.logStep * a / sp - log(sp) + log(sq)
            }
        }
    }

    /// Status 2 material: the first way `engine` and `windows` differ from what the reference was
    /// made with (nil: they match).
    public func mismatch(engine: LlamaEngine, windows other: ScoringWindows?) -> DivergenceMismatch? {
        let here = ModelIdentity(engine)
        let what = source == "memory" ? "the reference" : "\(source)"
        if here.vocab != model.vocab || here.architecture != model.architecture || here.hidden != model.hidden || here.layers != model.layers {
            return DivergenceMismatch(
                "\(what) was made by a model of another shape (\(model.shape)); \(engine.model.path) is \(here.shape)")
        }
        guard let other else { return nil }
        if other.ctx != windows.ctx { return DivergenceMismatch("\(what) has windows of \(windows.ctx) tokens; --ctx is \(other.ctx)") }
        if other.firstScored != windows.firstScored {
            return DivergenceMismatch("\(what) scores from position \(windows.firstScored); these windows from \(other.firstScored)")
        }
        if other.bos != windows.bos {
            return DivergenceMismatch(
                "\(what) starts windows with BOS \(windows.bos.map(String.init) ?? "none"); this tokenizer with \(other.bos.map(String.init) ?? "none")"
            )
        }
        if other.count != windows.count {
            return DivergenceMismatch("\(what) has \(windows.count) windows of \(windows.ctx); the text and --chunks give \(other.count)")
        }
        if let i = other.tokens.indices.first(where: { other.tokens[$0] != windows.tokens[$0] }) {
            return DivergenceMismatch(
                "\(what) was made on another text: window \(i / windows.ctx), position \(i % windows.ctx) holds token \(windows.tokens[i]) there and \(other.tokens[i]) here"
            )
        }
        return nil
    }
}

/// How far a model's next-token distributions are from a reference's over the same windows, as
/// llama.cpp's perplexity tool reports it: KL(P_reference ‖ Q_model) per scored token (mean ±
/// standard error, percentiles), how often the two agree on the most likely token, and both
/// perplexities.
public struct Divergence: Sendable {
    /// KL divergence per scored token (nats).
    public var kl: [Double]
    public var tokens: Int { kl.count }
    public var meanKL: Double
    public var klStandardError: Double
    public var percentiles: Percentiles
    /// The fraction of scored tokens whose most likely next token is the reference's.
    public var top1Agreement: Double
    public var top1StandardError: Double
    public var referencePPL: Double
    public var ppl: Double
    /// Mean of ln q(next) − … per token: ln(ppl / reference ppl), with its standard error.
    public var lnPPLRatio: Double
    public var lnPPLRatioStandardError: Double
    /// Mean and root-mean-square of q(next) − p(next), the probability of the text's next token.
    public var meanDeltaP: Double
    public var rmsDeltaP: Double
    public var seconds: Double

    public struct Percentiles: Sendable {
        public var min, median, p90, p95, p99, p999, max: Double
    }

    /// The statistics of per-token figures: KL, the reference's and the model's negative
    /// log-likelihood of the next token, and whether their top tokens agree.
    public init(kl: [Double], referenceNLL: [Double], nll: [Double], sameTop: [Bool], seconds: Double = 0) {
        precondition(!kl.isEmpty && kl.count == referenceNLL.count && kl.count == nll.count && kl.count == sameTop.count)
        let n = Double(kl.count)
        func meanAndError(_ v: [Double]) -> (Double, Double) {
            let m = v.reduce(0, +) / n
            guard v.count > 1 else { return (m, 0) }
            let variance = v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / (n - 1)
            return (m, (variance / n).squareRoot())
        }
        self.kl = kl
        (meanKL, klStandardError) = meanAndError(kl)
        let sorted = kl.sorted()
        func q(_ p: Double) -> Double { Self.quantile(sorted, p) }
        percentiles = Percentiles(
            min: sorted[0], median: q(0.5), p90: q(0.9), p95: q(0.95), p99: q(0.99), p999: q(0.999), max: sorted[sorted.count - 1])
        let same = Double(sameTop.filter { $0 }.count) / n
        top1Agreement = same
        top1StandardError = kl.count > 1 ? (same * (1 - same) / (n - 1)).squareRoot() : 0
        let rnll = referenceNLL.reduce(0, +) / n, qnll = nll.reduce(0, +) / n
        referencePPL = exp(rnll)
        ppl = exp(qnll)
        (lnPPLRatio, lnPPLRatioStandardError) = meanAndError(zip(nll, referenceNLL).map { $0 - $1 })
        let dp = zip(nll, referenceNLL).map { exp(-$0) - exp(-$1) }
        meanDeltaP = dp.reduce(0, +) / n
        rmsDeltaP = (dp.reduce(0) { $0 + $1 * $1 } / n).squareRoot()
        self.seconds = seconds
    }

    /// The `p` quantile of sorted values, linearly interpolated between order statistics (numpy's
    /// default).
    public static func quantile(_ sorted: [Double], _ p: Double) -> Double {
        let h = p * Double(sorted.count - 1)
        let lo = Int(h.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
        return sorted[lo] + (h - Double(lo)) * (sorted[hi] - sorted[lo])
    }

    /// Runs `engine` over the reference's windows and compares. The engine must match the
    /// reference's shape (else ``DivergenceMismatch``). Costs one forward pass per window and no
    /// exponential per vocabulary entry, so it can be called repeatedly (per layer of a plan).
    /// - Parameter onWindow: after each window, (windows done, running mean KL).
    public static func measure(
        _ engine: LlamaEngine, against reference: DivergenceReference, progress: Progress? = nil,
        onWindow: (Int, Double) -> Void = { _, _ in }
    ) throws -> Divergence {
        if let m = reference.mismatch(engine: engine, windows: nil) { throw m }
        let started = Clock.now
        let n = reference.count, vocab = reference.vocab
        var kl = [Double](repeating: 0, count: n), nll = kl, refNLL = kl
        var same = [Bool](repeating: false, count: n)
        var done = 0
        try reference.windows.run(
            engine, progress: progress, label: "divergence",
            onWindow: { w in onWindow(w, kl[0..<done].reduce(0, +) / Double(max(done, 1))) }
        ) { logits, next, t in
            kl[t] = reference.divergence(t, logits: logits)
            nll[t] = Perplexity.negativeLogLikelihood(logits, vocab, next)
            refNLL[t] = reference.nll(t)
            same[t] = DivergenceReference.argmax(logits, vocab) == reference.top(t)
            done = t + 1
        }
        return Divergence(kl: kl, referenceNLL: refNLL, nll: nll, sameTop: same, seconds: Clock.now - started)
    }

    /// KL(softmax(p) ‖ softmax(q)) of two logit vectors in full (f64) precision: the figure the
    /// compact reference approximates.
    public static func exactKL(_ p: UnsafePointer<Float>, _ q: UnsafePointer<Float>, count n: Int) -> Double {
        func logNormalizer(_ v: UnsafePointer<Float>) -> Double {
            var mx = -Double.infinity
            for i in 0..<n { mx = max(mx, Double(v[i])) }
            var s = 0.0
            for i in 0..<n { s += exp(Double(v[i]) - mx) }
            return mx + log(s)
        }
        let zp = logNormalizer(p), zq = logNormalizer(q)
        var kl = 0.0
        for i in 0..<n {
            let lp = Double(p[i]) - zp, lq = Double(q[i]) - zq
            kl += exp(lp) * (lp - lq)
        }
        return kl
    }
}
