import Any4Core

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A BERT encoder (all-MiniLM-L6-v2 and kin): learned positions and token types, post-LayerNorm
/// blocks with GELU, and the sentence-transformers embedding — mean pooling over the tokens, then
/// L2 normalisation.
public final class BertEngine: @unchecked Sendable {
    public let model: Model
    public var options: EngineOptions
    public let hidden: Int
    public let heads: Int
    public let layers: Int
    public let intermediate: Int
    public let vocab: Int
    /// Longest input in tokens (learned positions).
    public let maxPositions: Int
    let eps: Float

    struct Block {
        var q, k, v, o: Linear
        var attnNorm: (weight: [Float], bias: [Float])
        var up, down: Linear
        var outNorm: (weight: [Float], bias: [Float])
        var linears: [Linear] { [q, k, v, o, up, down] }
    }

    /// The embeddings as stored: rows are decoded per token.
    let words: WeightStorage
    let positions: WeightStorage
    let tokenTypes: WeightStorage
    let embeddingNorm: (weight: [Float], bias: [Float])
    let blocks: [Block]

    public var linears: [Linear] { blocks.flatMap(\.linears) }
    public func linears(ofBlock i: Int) -> [Linear] { blocks[i].linears }

    /// Loads the model's weights as stored (matrices read in place, vectors in f32). `progress`
    /// counts the elements loaded and checked, and cancels the load.
    public init(model: Model, options: EngineOptions = EngineOptions(), progress: Progress? = nil) throws {
        self.model = model
        self.options = options
        let c = model.config
        guard c.architecture == "bert" else {
            throw FileFormatError(
                file: model.path, kind: .unsupported,
                "architecture \"\(c.architecture ?? "none")\" is not an encoder this tool runs (bert)")
        }
        let gguf = model.format == .gguf
        /// The name a fact has in this model's configuration.
        func key(_ hf: String, _ gg: String) -> String { gguf ? "bert.\(gg)" : hf }
        let source = gguf ? "GGUF metadata" : "config.json"
        func fail(_ message: String) -> FileFormatError {
            FileFormatError(file: model.path, kind: .badHeader, "\(source): \(message)")
        }
        func need(_ value: Int?, _ what: String, _ name: String) throws -> Int {
            guard let value, value > 0 else {
                throw FileFormatError(
                    file: model.path, kind: .badHeader,
                    "the model configuration lacks a positive \(what) (\(name)\(value.map { " is \($0)" } ?? ""))")
            }
            return value
        }
        let (hiddenKey, headsKey) = (key("hidden_size", "embedding_length"), key("num_attention_heads", "attention.head_count"))
        hidden = try need(c.hiddenSize, "hidden size", hiddenKey)
        heads = try need(c.heads, "head count", headsKey)
        layers = try need(c.layers, "layer count", key("num_hidden_layers", "block_count"))
        intermediate = try need(c.intermediateSize, "intermediate size", key("intermediate_size", "feed_forward_length"))
        guard hidden % heads == 0 else {
            throw fail("\(hiddenKey) \(hidden) is not a multiple of \(headsKey) \(heads)")
        }
        // Each layer needs sixteen tensors of its own: a count beyond the file's is a lie.
        guard layers <= model.tensors.count else {
            throw fail("\(key("num_hidden_layers", "block_count")) \(layers) is more layers than the model's \(model.tensors.count) tensors hold")
        }
        let epsilon = c.normEpsilon ?? 1e-12
        guard epsilon.isFinite, epsilon >= 0 else {
            throw fail("\(key("layer_norm_eps", "attention.layer_norm_epsilon")) \(epsilon) is not a non-negative number")
        }
        eps = Float(epsilon)
        let w = WeightLoader(model: model, progress: progress, threads: options.workers, packBlocks: options.packBlocks)
        let names = gguf ? Self.ggufNames : Self.hfNames(prefix: w.has("bert.embeddings.word_embeddings.weight") ? "bert." : "")
        guard let wordTensor = model.tensor(named: names.words), wordTensor.shape.count == 2 else {
            throw FileFormatError(file: model.path, kind: .badShape, "no word embedding matrix", subject: names.words)
        }
        vocab = wordTensor.shape[0]
        if let declared = c.vocabSize, declared != vocab {
            throw fail("\(key("vocab_size", "vocab_size")) \(declared) but \(names.words) has \(vocab) rows")
        }
        maxPositions = model.tensor(named: names.positions)?.shape.first ?? 512
        let types = model.tensor(named: names.tokenTypes)?.shape.first ?? 1
        guard maxPositions >= 1, types >= 1 else {
            throw FileFormatError(
                file: model.path, kind: .badShape,
                "\(maxPositions) positions and \(types) token types; the encoder needs at least one of each",
                subject: maxPositions >= 1 ? names.tokenTypes : names.positions)
        }
        let d = hidden
        // Every tensor's shape against the configuration, and what loading allocates against the
        // memory, before anything is decoded.
        var plan: [WeightLoader.Planned] = [
            .init(names.words, [vocab, d]), .init(names.positions, [maxPositions, d]), .init(names.tokenTypes, [types, d]),
            .init(names.embeddingNorm + ".weight", [d]), .init(names.embeddingNorm + ".bias", [d])
        ]
        for i in 0..<layers {
            func n(_ key: String) -> String { names.block(i, key) }
            for (key, rows, cols) in [("q", d, d), ("k", d, d), ("v", d, d), ("o", d, d), ("up", intermediate, d), ("down", d, intermediate)] {
                plan += [.init(n(key) + ".weight", [rows, cols]), .init(n(key) + ".bias", [rows], optional: true)]
            }
            for key in ["attn_norm", "out_norm"] { plan += [.init(n(key) + ".weight", [d]), .init(n(key) + ".bias", [d])] }
        }
        try w.check(plan, for: "the encoder")
        words = try w.storage(names.words, rows: vocab, cols: d)
        positions = try w.storage(names.positions, rows: maxPositions, cols: d)
        tokenTypes = try w.storage(names.tokenTypes, rows: types, cols: d)
        embeddingNorm = (try w.values(names.embeddingNorm + ".weight", shape: [d]), try w.values(names.embeddingNorm + ".bias", shape: [d]))
        var blocks: [Block] = []
        for i in 0..<layers {
            func n(_ key: String) -> String { names.block(i, key) }
            func lin(_ key: String, _ rows: Int, _ cols: Int) throws -> Linear {
                try w.linear(n(key) + ".weight", rows: rows, cols: cols, bias: n(key) + ".bias")
            }
            func norm(_ key: String) throws -> (weight: [Float], bias: [Float]) {
                (try w.values(n(key) + ".weight", shape: [d]), try w.values(n(key) + ".bias", shape: [d]))
            }
            blocks.append(
                Block(
                    q: try lin("q", d, d), k: try lin("k", d, d), v: try lin("v", d, d), o: try lin("o", d, d),
                    attnNorm: try norm("attn_norm"), up: try lin("up", intermediate, d),
                    down: try lin("down", d, intermediate), outNorm: try norm("out_norm")))
        }
        self.blocks = blocks
    }

    /// Hidden states [m, hidden] after the embedding layer.
    public func embed(_ tokens: [Int]) throws -> [Float] {
        guard tokens.count <= maxPositions else {
            throw InferenceError.contextOverflow(needed: tokens.count, capacity: maxPositions)
        }
        let d = hidden
        for id in tokens where id < 0 || id >= vocab { throw InferenceError.tokenOutOfRange(id: id, vocab: vocab) }
        var h = [Float](repeating: 0, count: tokens.count * d)
        var row = [Float](repeating: 0, count: 2 * d)
        row.withUnsafeMutableBufferPointer { row in
            let word = row.baseAddress!, position = row.baseAddress! + d
            tokenTypes.fillRows(0..<1, into: position)
            let type = Array(UnsafeBufferPointer(start: position, count: d))
            for (t, id) in tokens.enumerated() {
                words.fillRows(id..<(id + 1), into: word)
                positions.fillRows(t..<(t + 1), into: position)
                for i in 0..<d { h[t * d + i] = word[i] + position[i] + type[i] }
            }
        }
        Ops.layerNorm(&h, m: tokens.count, weight: embeddingNorm.weight, bias: embeddingNorm.bias, eps: eps)
        return h
    }

    /// Block i on h [m, hidden] (full attention within the sequence).
    public func runBlock(_ i: Int, _ h: inout [Float], m: Int) {
        let b = blocks[i], hd = hidden / heads
        let qkv = Linear.forward([b.q, b.k, b.v], h, m: m, options: options)
        let q = qkv[0], k = qkv[1], v = qkv[2]
        let attended = k.withUnsafeBufferPointer { keys in
            v.withUnsafeBufferPointer { values in
                Ops.attention(
                    q: q, m: m, keys: keys.baseAddress!, values: values.baseAddress!, n: m, heads: heads,
                    kvHeads: heads, headDim: hd, causalFrom: nil, threads: options.workers)
            }
        }
        Ops.add(&h, b.o.forward(attended, m: m, options: options))
        Ops.layerNorm(&h, m: m, weight: b.attnNorm.weight, bias: b.attnNorm.bias, eps: eps)
        var x = b.up.forward(h, m: m, options: options)
        Ops.gelu(&x)
        Ops.add(&h, b.down.forward(x, m: m, options: options))
        Ops.layerNorm(&h, m: m, weight: b.outNorm.weight, bias: b.outNorm.bias, eps: eps)
    }

    /// The last hidden states [m, hidden] of one sequence.
    public func encode(_ tokens: [Int]) throws -> [Float] {
        var h = try embed(tokens)
        for i in 0..<layers { runBlock(i, &h, m: tokens.count) }
        return h
    }

    /// The sentence embedding of one tokenised sentence: mean over tokens, L2-normalised.
    public func sentenceEmbedding(_ tokens: [Int]) throws -> [Float] {
        guard !tokens.isEmpty else { throw InferenceError.tooShort(tokens: 0, needed: 1) }
        return Self.pool(try encode(tokens), m: tokens.count, width: hidden)
    }

    static func pool(_ h: [Float], m: Int, width d: Int) -> [Float] {
        var mean = [Double](repeating: 0, count: d)
        for t in 0..<m { for i in 0..<d { mean[i] += Double(h[t * d + i]) } }
        let norm = mean.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return mean.map { Float(norm > 0 ? $0 / norm : 0) }
    }

    struct Names: Sendable {
        var words, positions, tokenTypes, embeddingNorm: String
        var block: @Sendable (Int, String) -> String
    }

    static func hfNames(prefix p: String) -> Names {
        Names(
            words: p + "embeddings.word_embeddings.weight", positions: p + "embeddings.position_embeddings.weight",
            tokenTypes: p + "embeddings.token_type_embeddings.weight", embeddingNorm: p + "embeddings.LayerNorm"
        ) { i, key in
            let map = [
                "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                "o": "attention.output.dense", "attn_norm": "attention.output.LayerNorm", "up": "intermediate.dense",
                "down": "output.dense", "out_norm": "output.LayerNorm"
            ]
            return p + "encoder.layer.\(i)." + map[key]!
        }
    }

    static let ggufNames = Names(
        words: "token_embd.weight", positions: "position_embd.weight", tokenTypes: "token_types.weight",
        embeddingNorm: "token_embd_norm"
    ) { i, key in
        let map = [
            "q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output", "attn_norm": "attn_output_norm",
            "up": "ffn_up", "down": "ffn_down", "out_norm": "layer_output_norm"
        ]
        return "blk.\(i)." + map[key]!
    }
}

/// Cosine similarity of two vectors.
public func cosineSimilarity(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var dot = 0.0, na = 0.0, nb = 0.0
    for i in 0..<a.count {
        dot += Double(a[i]) * Double(b[i])
        na += Double(a[i]) * Double(a[i])
        nb += Double(b[i]) * Double(b[i])
    }
    return na > 0 && nb > 0 ? dot / (na * nb).squareRoot() : 0
}
