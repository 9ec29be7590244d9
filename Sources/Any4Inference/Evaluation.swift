import Any4Core

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Perplexity the way llama.cpp's perplexity tool computes it, so the two tools' figures compare:
/// the text's tokens are cut into non-overlapping windows of `ctx` tokens (a short tail is
/// dropped); the first token of each window becomes BOS when the model adds one; each window runs
/// from an empty cache and its logits at positions ctx/2 ..< ctx−1 score the next token, so every
/// scored token sees at least ctx/2 tokens of context.
public struct Perplexity: Sendable {
    public var ppl: Double
    /// Mean negative log-likelihood per scored token (nats).
    public var nll: Double
    /// Scored tokens.
    public var tokens: Int
    public var chunks: Int
    public var seconds: Double

    /// The number of whole windows `tokens` text tokens make, and the least it needs.
    public static func chunkCount(tokens: Int, ctx: Int) -> Int { tokens / ctx }

    /// - Parameter onChunk: called after each window with (windows done, running perplexity).
    public static func measure(
        _ engine: LlamaEngine, tokens: [Int], ctx: Int, bos: Int?, progress: Progress? = nil,
        onChunk: (Int, Double) -> Void = { _, _ in }
    ) throws -> Perplexity {
        guard ctx >= 8 else { throw InferenceError.tooShort(tokens: ctx, needed: 8) }
        guard ctx <= engine.config.contextLength else {
            throw InferenceError.contextOverflow(needed: ctx, capacity: engine.config.contextLength)
        }
        return try measure(engine, windows: ScoringWindows(tokens: tokens, ctx: ctx, bos: bos), progress: progress, onChunk: onChunk)
    }

    /// Perplexity over `windows` (the same windows ``Divergence`` compares on).
    public static func measure(
        _ engine: LlamaEngine, windows: ScoringWindows, progress: Progress? = nil, onChunk: (Int, Double) -> Void = { _, _ in }
    ) throws -> Perplexity {
        let started = Clock.now
        let vocab = engine.config.vocab
        var nllSum = 0.0, scored = 0
        try windows.run(engine, progress: progress, label: "perplexity", onWindow: { onChunk($0, exp(nllSum / Double(scored))) }) {
            logits, next, _ in
            nllSum += negativeLogLikelihood(logits, vocab, next)
            scored += 1
        }
        let nll = nllSum / Double(scored)
        return Perplexity(ppl: exp(nll), nll: nll, tokens: scored, chunks: windows.count, seconds: Clock.now - started)
    }

    /// −log softmax(logits)[target], computed in f64.
    package static func negativeLogLikelihood(_ logits: UnsafePointer<Float>, _ n: Int, _ target: Int) -> Double {
        var mx = -Double.infinity
        for i in 0..<n { mx = max(mx, Double(logits[i])) }
        var sum = 0.0
        for i in 0..<n { sum += exp(Double(logits[i]) - mx) }
        return log(sum) + mx - Double(logits[target])
    }
}

/// Greedy generation with the prefill and decode phases timed apart.
public struct Generation: Sendable {
    public var tokens: [Int]
    public var promptTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    /// Tokens per second of the prompt pass.
    public var prefillRate: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    /// Tokens per second of the decode steps (the first generated token comes from the prefill).
    public var decodeRate: Double { decodeSeconds > 0 && tokens.count > 1 ? Double(tokens.count - 1) / decodeSeconds : 0 }

    /// Generates up to `count` tokens after `prompt`, stopping after `stop` tokens; `onToken` sees
    /// each one as it comes and may return false to stop.
    /// - Parameter warmup: run the prompt and one decode step once, untimed, first (as benchmark
    ///   tools do: the first pass pays page faults and library start-up).
    public static func greedy(
        _ engine: LlamaEngine, prompt: [Int], count: Int, stop: Set<Int> = [], warmup: Bool = false,
        onToken: (Int) -> Bool = { _ in true }
    ) throws -> Generation {
        guard !prompt.isEmpty else { throw InferenceError.tooShort(tokens: 0, needed: 1) }
        let (needed, overflow) = prompt.count.addingReportingOverflow(count)
        guard count >= 0, !overflow, needed <= engine.config.contextLength else {
            throw InferenceError.contextOverflow(needed: overflow ? Int.max : needed, capacity: engine.config.contextLength)
        }
        let cache = try engine.makeCache(capacity: needed)
        engine.prepareForDecode()
        if warmup {
            let first = try engine.forward(prompt, cache: cache, logits: .last)
            _ = try engine.forward([argmax(first)], cache: cache, logits: .last)
            cache.reset()
        }
        var t0 = Clock.now
        var logits = try engine.forward(prompt, cache: cache, logits: .last)
        let prefill = Clock.now - t0
        var out: [Int] = []
        t0 = Clock.now
        while out.count < count {
            let next = argmax(logits)
            out.append(next)
            if stop.contains(next) || !onToken(next) || out.count == count { break }
            logits = try engine.forward([next], cache: cache, logits: .last)
        }
        return Generation(tokens: out, promptTokens: prompt.count, prefillSeconds: prefill, decodeSeconds: Clock.now - t0)
    }

    package static func argmax(_ v: [Float]) -> Int {
        var best = 0
        for i in 1..<v.count where v[i] > v[best] { best = i }
        return best
    }
}

/// How far quantization moves sentence embeddings: cosine between the f32 and the quantized
/// embedding of each sentence.
public struct EmbeddingComparison: Sendable {
    public var cosines: [Double]
    public var mean: Double { cosines.isEmpty ? 0 : cosines.reduce(0, +) / Double(cosines.count) }
    public var worst: (index: Int, cosine: Double)? {
        cosines.enumerated().min { $0.element < $1.element }.map { ($0.offset, $0.element) }
    }

    public static func embeddings(_ engine: BertEngine, _ sentences: [[Int]], progress: Progress? = nil) throws -> [[Float]] {
        try sentences.map { tokens in
            if progress?.isCancelled == true { throw QuantizationError.cancelled }
            defer { progress?.advance() }
            return try engine.sentenceEmbedding(tokens)
        }
    }

    public init(reference: [[Float]], quantized: [[Float]]) {
        cosines = zip(reference, quantized).map { cosineSimilarity($0, $1) }
    }
}
