import Any4Core

/// The architecture facts a Llama-family forward pass needs, from GGUF metadata or `config.json`.
public struct LlamaConfig: Sendable, Equatable {
    public var architecture: String
    public var hidden: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var intermediate: Int
    public var vocab: Int
    public var contextLength: Int
    public var ropeTheta: Double
    public var ropeDims: Int
    public var normEps: Double
    public var tiedEmbeddings: Bool
    /// "linear" or "llama3" rope scaling, when the model uses one.
    public var ropeScaling: String?
}

/// A Llama-family decoder (Llama 2/3, Mistral, SmolLM, Qwen2 with q/k/v biases; tied or untied
/// output) running in f32 with a KV cache, from a GGUF file or a Hugging Face folder.
public final class LlamaEngine: @unchecked Sendable {
    public static let architectures = ["llama", "mistral", "qwen2"]

    public let model: Model
    public let config: LlamaConfig
    public var options: EngineOptions

    struct Block {
        var attnNorm: [Float]
        var q, k, v, o: Linear
        var ffnNorm: [Float]
        var gate, up, down: Linear
        var linears: [Linear] { [q, k, v, o, gate, up, down] }
    }

    /// The token embedding as stored: rows are decoded per token.
    let embedding: WeightStorage
    let blocks: [Block]
    let outputNorm: [Float]
    public let head: Linear
    let rope: Rope

    /// The quantizable linear layers, block by block (the head last).
    public var linears: [Linear] { blocks.flatMap(\.linears) + [head] }
    /// The linear layers of block `i`.
    public func linears(ofBlock i: Int) -> [Linear] { blocks[i].linears }

    /// Loads the model's weights as stored (matrices read in place, vectors in f32). `progress`
    /// counts the elements loaded and checked, and cancels the load.
    public init(model: Model, options: EngineOptions = EngineOptions(), progress: Progress? = nil) throws {
        self.model = model
        self.options = options
        let config = try Self.config(of: model)
        self.config = config
        let w = WeightLoader(model: model, progress: progress, threads: options.workers, packBlocks: options.packBlocks)
        let gguf = model.format == .gguf
        let names = gguf ? Self.ggufNames : Self.hfNames
        let (d, qDim, kvDim) = (config.hidden, config.heads * config.headDim, config.kvHeads * config.headDim)
        // Every tensor's shape against the configuration, and what loading allocates against the
        // memory, before anything is decoded.
        var plan: [WeightLoader.Planned] = [.init(names.embedding, [config.vocab, d]), .init(names.outputNorm, [d])]
        for i in 0..<config.layers {
            func n(_ key: String) -> String { names.block(i, key) }
            plan += [
                .init(n("attn_norm"), [d]), .init(n("q"), [qDim, d]), .init(n("k"), [kvDim, d]), .init(n("v"), [kvDim, d]),
                .init(n("q.bias"), [qDim], optional: true), .init(n("k.bias"), [kvDim], optional: true),
                .init(n("v.bias"), [kvDim], optional: true), .init(n("o"), [d, qDim]), .init(n("ffn_norm"), [d]),
                .init(n("gate"), [config.intermediate, d]), .init(n("up"), [config.intermediate, d]),
                .init(n("down"), [d, config.intermediate])
            ]
        }
        if !config.tiedEmbeddings { plan.append(.init(names.output, [config.vocab, d], optional: true)) }
        if gguf { plan.append(.init("rope_freqs.weight", [config.ropeDims / 2], optional: true)) }
        try w.check(plan, for: "the decoder")
        embedding = try w.storage(names.embedding, rows: config.vocab, cols: d)
        var blocks: [Block] = []
        for i in 0..<config.layers {
            func n(_ key: String) -> String { names.block(i, key) }
            blocks.append(
                Block(
                    attnNorm: try w.values(n("attn_norm"), shape: [d]),
                    q: try w.linear(n("q"), rows: qDim, cols: d, bias: n("q.bias")),
                    k: try w.linear(n("k"), rows: kvDim, cols: d, bias: n("k.bias")),
                    v: try w.linear(n("v"), rows: kvDim, cols: d, bias: n("v.bias")),
                    o: try w.linear(n("o"), rows: d, cols: qDim),
                    ffnNorm: try w.values(n("ffn_norm"), shape: [d]),
                    gate: try w.linear(n("gate"), rows: config.intermediate, cols: d),
                    up: try w.linear(n("up"), rows: config.intermediate, cols: d),
                    down: try w.linear(n("down"), rows: d, cols: config.intermediate)))
        }
        self.blocks = blocks
        outputNorm = try w.values(names.outputNorm, shape: [d])
        if !config.tiedEmbeddings, w.has(names.output) {
            head = try w.linear(names.output, rows: config.vocab, cols: d)
        } else {
            let t = try w.tensor(names.embedding)
            // Tied: a dense layer on the embedding's stored bytes.
            head = Linear(
                name: names.embedding, storage: embedding, rows: config.vocab, cols: d, bias: nil,
                formatName: t.info.encoding.description, bitsPerWeight: t.info.encoding.bitsPerElement)
        }
        // Rope: GGUF Llama files hold q/k permuted for adjacent pairs; HF files and GGUF Qwen2 use halves.
        let pairing: Rope.Pairing = gguf && config.architecture != "qwen2" ? .adjacent : .halves
        var factors: [Float]? = nil
        var positionScale = 1.0
        if gguf, w.has("rope_freqs.weight") {
            factors = try w.values("rope_freqs.weight", shape: [config.ropeDims / 2])
        } else if let scaling = Self.ropeScaling(of: model) {
            switch scaling.type {
            case "llama3":
                factors = Rope.llama3Factors(
                    dims: config.ropeDims, theta: config.ropeTheta, factor: scaling.factor,
                    low: scaling.low, high: scaling.high, original: scaling.original)
            case "linear": positionScale = scaling.factor
            default: break
            }
        }
        rope = Rope(
            pairing: pairing, dims: config.ropeDims, theta: config.ropeTheta, frequencyFactors: factors,
            positionScale: positionScale)
    }

    // MARK: Forward

    /// Called before each block of ``forward(_:cache:logits:)`` with the block's index: the
    /// progress of a long pass (an 8B model's takes seconds), which a throw stops (cancelled).
    public var blockObserver: ((Int) throws -> Void)?

    /// Rows of logits a forward pass returns.
    public enum LogitRows: Sendable {
        case none, last, all
        /// Rows from this index of the chunk to its end.
        case from(Int)
    }

    /// Runs `tokens` at positions cache.length ..< cache.length + count, appends their keys and
    /// values to the cache and returns the asked-for rows of logits ([rows, vocab]).
    public func forward(_ tokens: [Int], cache: KVCache, logits: LogitRows = .last) throws -> [Float] {
        precondition(!tokens.isEmpty)
        guard cache.length + tokens.count <= cache.capacity else {
            throw InferenceError.contextOverflow(needed: cache.length + tokens.count, capacity: cache.capacity)
        }
        var h = try embed(tokens)
        let m = tokens.count
        // The rotation angles of these positions, once for every block.
        let angles = rope.angles(p0: cache.length, m: m)
        for i in 0..<blocks.count {
            try blockObserver?(i)
            runBlock(i, &h, m: m, p0: cache.length, cache: cache, angles: angles)
        }
        cache.length += m
        let first: Int
        switch logits {
        case .none: return []
        case .last: first = m - 1
        case .all: first = 0
        case .from(let i): first = min(max(0, i), m)
        }
        return logitsOf(h, rows: first..<m)
    }

    /// The token embeddings [m, hidden].
    public func embed(_ tokens: [Int]) throws -> [Float] {
        let d = config.hidden
        for id in tokens where id < 0 || id >= config.vocab {
            throw InferenceError.tokenOutOfRange(id: id, vocab: config.vocab)
        }
        return [Float](unsafeUninitializedCapacity: tokens.count * d) { h, count in
            for (t, id) in tokens.enumerated() { embedding.fillRows(id..<(id + 1), into: h.baseAddress! + t * d) }
            count = tokens.count * d
        }
    }

    /// Final norm and LM head for rows `rows` of the hidden states h [m, hidden]. The head's
    /// decode-step copy serves decode steps only (m < 4): a prompt pass's last row uses the
    /// weights as held, even when it is the only row asked for. (The copy is made for it too: a
    /// Q8_0 head's copy holds the same weights, and the row then runs on it exactly, without
    /// decoding the whole head to f32 — a third of a 128-token SmolLM2 prefill.)
    public func logitsOf(_ h: [Float], rows: Range<Int>) -> [Float] {
        guard !rows.isEmpty else { return [] }
        let d = config.hidden
        var x = Array(h[(rows.lowerBound * d)..<(rows.upperBound * d)])
        Ops.rmsNorm(&x, m: rows.count, weight: outputNorm, eps: Float(config.normEps))
        let decodeStep = h.count / d < 4
        if rows.count < 4 { prepareForDecode() }
        return head.forward(x, m: rows.count, options: options, decodeStep: decodeStep)
    }

    /// Bytes a decode step at position `p` reads from memory: every linear layer's weights once
    /// (the head's decode-step copy when there is one), one embedding row, and the keys and values
    /// of positions 0...p of every layer. Norm vectors and activations are left out (kilobytes,
    /// cache-resident). The bandwidth-bound rate is a probe's bandwidth over this.
    public func decodeStepBytes(position p: Int) -> Int {
        let weights = linears.reduce(0) { $0 + $1.decodeStepBytes(path: options.kernel) }
        let row: Int
        switch embedding {
        case .dense(let t, _), .decoded(let t): row = t.info.byteCount / max(config.vocab, 1)
        default: row = config.hidden * 4
        }
        let kv = 2 * config.layers * (p + 1) * config.kvHeads * config.headDim * options.kvCache.bytes
        return weights + row + kv
    }

    /// Makes the LM head's decode-step copy the options ask for (otherwise made by the first step).
    public func prepareForDecode() {
        head.prepareDecodeCopy(options.decodeHead, threads: options.workers)
    }

    /// Block i on h [m, hidden] at positions p0 ..< p0 + m. With a cache, attends to the cached
    /// positions too and stores this chunk's keys and values; without, attends within the chunk.
    public func runBlock(_ i: Int, _ h: inout [Float], m: Int, p0: Int, cache: KVCache?) {
        runBlock(i, &h, m: m, p0: p0, cache: cache, angles: rope.angles(p0: p0, m: m))
    }

    /// ``runBlock(_:_:m:p0:cache:)`` with the rotation angles of positions p0 ..< p0 + m.
    func runBlock(_ i: Int, _ h: inout [Float], m: Int, p0: Int, cache: KVCache?, angles: Rope.Angles) {
        let b = blocks[i], c = config
        let eps = Float(c.normEps)
        var x = h
        Ops.rmsNorm(&x, m: m, weight: b.attnNorm, eps: eps, threads: options.workers)
        let qkv = Linear.forward([b.q, b.k, b.v], x, m: m, options: options)
        var q = qkv[0], k = qkv[1]
        let v = qkv[2]
        rope.apply(&q, m: m, heads: c.heads, headDim: c.headDim, angles: angles, threads: options.workers)
        rope.apply(&k, m: m, heads: c.kvHeads, headDim: c.headDim, angles: angles, threads: options.workers)
        let attended: [Float]
        if let cache {
            cache.store(layer: i, keys: k, values: v, at: p0, m: m)
            attended = cache.withLayer(i) { keys, values, f16 in
                attend(q, m: m, keys: keys, values: values, kvF16: f16, n: p0 + m, p0: p0)
            }
        } else {
            attended = k.withUnsafeBytes { keys in
                v.withUnsafeBytes { values in attend(q, m: m, keys: keys.baseAddress!, values: values.baseAddress!, kvF16: false, n: m, p0: 0) }
            }
        }
        Ops.add(&h, b.o.forward(attended, m: m, options: options))
        x = h
        Ops.rmsNorm(&x, m: m, weight: b.ffnNorm, eps: eps, threads: options.workers)
        let gateUp = Linear.forward([b.gate, b.up], x, m: m, options: options)
        var gate = gateUp[0]
        Ops.swiglu(&gate, gateUp[1], threads: options.workers)
        Ops.add(&h, b.down.forward(gate, m: m, options: options))
    }

    /// Causal attention of m queries at positions p0 ..< p0 + m over key/value rows 0 ..< n.
    private func attend(_ q: [Float], m: Int, keys: UnsafeRawPointer, values: UnsafeRawPointer, kvF16: Bool, n: Int, p0: Int) -> [Float] {
        Ops.attention(
            q: q, m: m, keys: keys, values: values, kvF16: kvF16, n: n, heads: config.heads,
            kvHeads: config.kvHeads, headDim: config.headDim, causalFrom: p0, threads: options.workers)
    }

    /// A cache for `capacity` positions (at most the model's context; default up to 2048), its
    /// keys and values in `options.kvCache`'s precision. Throws a ``SizeError`` when its size
    /// (layers × positions × key/value heads × head dimension × 4 or 2 bytes, keys and values)
    /// overflows or is more than the machine can give.
    public func makeCache(capacity: Int? = nil) throws(SizeError) -> KVCache {
        let positions = max(0, min(capacity ?? 2048, config.contextLength))
        let width = config.kvHeads * config.headDim
        let precision = options.kvCache
        let bytes = try Sizes.product(
            [2, config.layers, positions, width, precision.bytes],
            "KV cache (2 × layers × positions × key/value width × \(precision.bytes) bytes)")
        try MemoryBudget.check(
            bytes, for: "a \(precision.rawValue) KV cache of \(positions) positions for \(config.layers) layers of width \(width)")
        return KVCache(layers: config.layers, width: width, capacity: positions, precision: precision)
    }

    // MARK: Configuration and names

    struct Names: Sendable {
        var embedding: String
        var outputNorm: String
        var output: String
        var block: @Sendable (Int, String) -> String
    }

    static let ggufNames = Names(embedding: "token_embd.weight", outputNorm: "output_norm.weight", output: "output.weight") { i, key in
        let map = [
            "attn_norm": "attn_norm.weight", "q": "attn_q.weight", "k": "attn_k.weight", "v": "attn_v.weight",
            "q.bias": "attn_q.bias", "k.bias": "attn_k.bias", "v.bias": "attn_v.bias", "o": "attn_output.weight",
            "ffn_norm": "ffn_norm.weight", "gate": "ffn_gate.weight", "up": "ffn_up.weight", "down": "ffn_down.weight"
        ]
        return "blk.\(i)." + map[key]!
    }

    static let hfNames = Names(embedding: "model.embed_tokens.weight", outputNorm: "model.norm.weight", output: "lm_head.weight") { i, key in
        let map = [
            "attn_norm": "input_layernorm.weight", "q": "self_attn.q_proj.weight", "k": "self_attn.k_proj.weight",
            "v": "self_attn.v_proj.weight", "q.bias": "self_attn.q_proj.bias", "k.bias": "self_attn.k_proj.bias",
            "v.bias": "self_attn.v_proj.bias", "o": "self_attn.o_proj.weight", "ffn_norm": "post_attention_layernorm.weight",
            "gate": "mlp.gate_proj.weight", "up": "mlp.up_proj.weight", "down": "mlp.down_proj.weight"
        ]
        return "model.layers.\(i)." + map[key]!
    }

    /// The configuration, or a FileFormatError naming the missing, unsupported or inconsistent fact:
    /// the key, and both values where two disagree. Everything the forward pass indexes by is
    /// cross-checked here, before any tensor is decoded: the head dimension against the hidden
    /// size and heads, the rope dimensions (even, at most the head dimension), key/value heads
    /// dividing heads, the vocabulary against the embedding rows, the layer count against the
    /// tensors that could hold it, and the positive, finite numbers the math divides by.
    static func config(of model: Model) throws -> LlamaConfig {
        let c = model.config
        let gguf = model.gguf
        let source = gguf != nil ? "GGUF metadata" : "config.json"
        guard let arch = c.architecture else {
            throw FileFormatError(file: model.path, kind: .unsupported, "the \(source) names no architecture")
        }
        guard architectures.contains(arch) else {
            throw FileFormatError(
                file: model.path, kind: .unsupported,
                "architecture \"\(arch)\" is not one the decoder runs (\(architectures.joined(separator: ", ")))")
        }
        /// The name a fact has in this model's configuration.
        func key(_ hf: String, _ gg: String) -> String { gguf != nil ? "\(arch).\(gg)" : hf }
        func fail(_ message: String) -> FileFormatError {
            FileFormatError(file: model.path, kind: .badHeader, "\(source): \(message)")
        }
        func need(_ value: Int?, _ what: String, _ name: String) throws -> Int {
            guard let value, value > 0 else {
                throw FileFormatError(
                    file: model.path, kind: .badHeader,
                    "the \(source) lacks a positive \(what) (\(name)\(value.map { " is \($0)" } ?? ""))")
            }
            return value
        }
        let hfConfig = model.huggingFace?.config
        let (hiddenKey, headsKey) = (key("hidden_size", "embedding_length"), key("num_attention_heads", "attention.head_count"))
        let kvHeadsKey = key("num_key_value_heads", "attention.head_count_kv")
        let headDimKey = key("head_dim", "attention.key_length")
        let hidden = try need(c.hiddenSize, "hidden size", hiddenKey)
        let heads = try need(c.heads, "head count", headsKey)
        let kvHeads = try need(c.kvHeads, "key/value head count", kvHeadsKey)
        guard heads % kvHeads == 0 else {
            throw fail("\(headsKey) \(heads) is not a multiple of \(kvHeadsKey) \(kvHeads)")
        }
        let layers = try need(c.layers, "layer count", key("num_hidden_layers", "block_count"))
        // Each layer needs nine tensors of its own: a count beyond the file's is a lie, refused
        // before anything loops over it.
        guard layers <= model.tensors.count else {
            throw fail("\(key("num_hidden_layers", "block_count")) \(layers) is more layers than the model's \(model.tensors.count) tensors hold")
        }
        let intermediate = try need(c.intermediateSize, "feed-forward size", key("intermediate_size", "feed_forward_length"))
        // The head dimension: declared, else hidden / heads (which must then divide).
        let declaredHeadDim = gguf != nil ? gguf!.value(arch + ".attention.key_length")?.int : hfConfig?["head_dim"]?.int
        let headDim: Int
        if let declared = declaredHeadDim {
            headDim = try need(declared, "head dimension", headDimKey)
        } else {
            guard hidden % heads == 0 else {
                throw fail("\(hiddenKey) \(hidden) is not a multiple of \(headsKey) \(heads), and no \(headDimKey) gives the head dimension")
            }
            headDim = hidden / heads
        }
        if let g = gguf, let valueLength = g.value(arch + ".attention.value_length")?.int, valueLength != headDim {
            throw fail(
                "\(arch).attention.value_length \(valueLength) differs from the head dimension \(headDim) (\(headDimKey)); "
                    + "the engine takes keys and values of one width")
        }
        do throws(SizeError) {
            _ = try Sizes.product([heads, headDim], "\(headsKey) × head dimension")
        } catch {
            throw fail("\(error)")
        }
        // Rotary dimensions: GGUF rope.dimension_count, or config.json's partial_rotary_factor × the head dimension.
        var ropeDims = headDim
        var ropeKey = "the head dimension"
        if let g = gguf, let declared = g.value(arch + ".rope.dimension_count")?.int {
            (ropeDims, ropeKey) = (declared, "\(arch).rope.dimension_count")
        } else if gguf == nil, let factor = hfConfig?["partial_rotary_factor"]?.double {
            guard factor > 0, factor <= 1 else { throw fail("partial_rotary_factor \(factor) is outside (0, 1]") }
            (ropeDims, ropeKey) = (Int(Double(headDim) * factor), "partial_rotary_factor \(factor) × head dimension \(headDim)")
        }
        guard ropeDims >= 2, ropeDims % 2 == 0, ropeDims <= headDim else {
            throw fail(
                "rope dimensions \(ropeDims) (\(ropeKey)) must be even and in 2...\(headDim), the head dimension"
                    + (declaredHeadDim != nil ? " (\(headDimKey))" : " (\(hiddenKey) / \(headsKey))"))
        }
        // The vocabulary: declared, else the embedding's rows; both when both are there.
        let embeddingName = gguf != nil ? ggufNames.embedding : hfNames.embedding
        let embeddingRows = model.tensor(named: embeddingName)?.shape.first
        let vocabKey =
            gguf == nil ? "vocab_size" : (gguf!.value(arch + ".vocab_size") != nil ? "\(arch).vocab_size" : "the tokenizer.ggml.tokens count")
        let vocab = try need(c.vocabSize ?? embeddingRows, "vocabulary size", vocabKey)
        if let rows = embeddingRows, rows != vocab {
            throw fail("\(vocabKey) \(vocab) but \(embeddingName) has \(rows) rows")
        }
        let contextKey = key("max_position_embeddings", "context_length")
        if let context = c.contextLength { _ = try need(context, "context length", contextKey) }
        let theta = c.ropeTheta ?? 10000
        guard theta.isFinite, theta > 0 else { throw fail("\(key("rope_theta", "rope.freq_base")) \(theta) is not a positive number") }
        let eps = c.normEpsilon ?? 1e-5
        guard eps.isFinite, eps >= 0 else {
            throw fail("\(key("rms_norm_eps", "attention.layer_norm_rms_epsilon")) \(eps) is not a non-negative number")
        }
        let scaling = ropeScaling(of: model)
        if let s = scaling {
            let scalingKey = key("rope_scaling", "rope.scaling")
            guard s.factor.isFinite, s.factor > 0 else { throw fail("\(scalingKey) factor \(s.factor) is not a positive number") }
            if s.type == "llama3" {
                guard s.low > 0, s.high > s.low, s.high.isFinite, s.original.isFinite, s.original > 0 else {
                    throw fail(
                        "\(scalingKey): llama3 needs 0 < low_freq_factor < high_freq_factor and a positive "
                            + "original_max_position_embeddings, got \(s.low), \(s.high), \(s.original)")
                }
            }
        }
        let tied = c.tiedEmbeddings ?? (model.tensor(named: model.format == .gguf ? ggufNames.output : hfNames.output) == nil)
        return LlamaConfig(
            architecture: arch, hidden: hidden, layers: layers, heads: heads,
            kvHeads: kvHeads, headDim: headDim, intermediate: intermediate,
            vocab: vocab, contextLength: c.contextLength ?? 2048, ropeTheta: theta,
            ropeDims: ropeDims, normEps: eps, tiedEmbeddings: tied,
            ropeScaling: scaling?.type)
    }

    struct RopeScaling {
        var type: String
        var factor: Double
        var low = 1.0
        var high = 4.0
        var original = 8192.0
    }

    static func ropeScaling(of model: Model) -> RopeScaling? {
        if let g = model.gguf, let arch = g.architecture {
            guard let type = g.value(arch + ".rope.scaling.type")?.string, type != "none",
                let factor = g.value(arch + ".rope.scaling.factor")?.double
            else { return nil }
            return RopeScaling(type: type, factor: factor)
        }
        guard let s = model.huggingFace?.config?["rope_scaling"], let factor = s["factor"]?.double else { return nil }
        let type = s["rope_type"]?.string ?? s["type"]?.string ?? "linear"
        return RopeScaling(
            type: type, factor: factor, low: s["low_freq_factor"]?.double ?? 1,
            high: s["high_freq_factor"]?.double ?? 4,
            original: s["original_max_position_embeddings"]?.double ?? 8192)
    }
}

/// The precision of a KV cache's keys and values.
public enum KVPrecision: String, Sendable, CaseIterable {
    /// As computed.
    case f32
    /// Rounded to f16 as stored: attention reads half the bytes (the decode step's cache traffic).
    case f16

    /// Bytes per stored value.
    public var bytes: Int { self == .f32 ? 4 : 2 }
}

/// Keys and values of every layer for positions 0 ..< length, in f32 or f16.
public final class KVCache: @unchecked Sendable {
    public let capacity: Int
    public let width: Int
    public let precision: KVPrecision
    public internal(set) var length = 0
    /// Per layer, capacity × width values (f32), or f16 bit patterns; the other precision's arrays are empty.
    private var keys: [[Float]], values: [[Float]]
    private var keys16: [[UInt16]], values16: [[UInt16]]

    init(layers: Int, width: Int, capacity: Int, precision: KVPrecision = .f32) {
        self.capacity = capacity
        self.width = width
        self.precision = precision
        let n = capacity * width
        keys = precision == .f32 ? Array(repeating: [Float](repeating: 0, count: n), count: layers) : []
        values = keys
        keys16 = precision == .f16 ? Array(repeating: [UInt16](repeating: 0, count: n), count: layers) : []
        values16 = keys16
    }

    func store(layer: Int, keys k: [Float], values v: [Float], at p0: Int, m: Int) {
        let n = m * width, start = p0 * width
        switch precision {
        case .f32:
            keys[layer].withUnsafeMutableBufferPointer { dst in
                k.withUnsafeBufferPointer { (dst.baseAddress! + start).update(from: $0.baseAddress!, count: n) }
            }
            values[layer].withUnsafeMutableBufferPointer { dst in
                v.withUnsafeBufferPointer { (dst.baseAddress! + start).update(from: $0.baseAddress!, count: n) }
            }
        case .f16:
            keys16[layer].withUnsafeMutableBufferPointer { dst in for i in 0..<n { dst[start + i] = Float16(k[i]).bitPattern } }
            values16[layer].withUnsafeMutableBufferPointer { dst in for i in 0..<n { dst[start + i] = Float16(v[i]).bitPattern } }
        }
    }

    /// Runs `body` on layer `layer`'s keys and values (f32, or f16 when the flag is set).
    func withLayer<R>(_ layer: Int, _ body: (UnsafeRawPointer, UnsafeRawPointer, Bool) -> R) -> R {
        switch precision {
        case .f32:
            keys[layer].withUnsafeBytes { k in values[layer].withUnsafeBytes { v in body(k.baseAddress!, v.baseAddress!, false) } }
        case .f16:
            keys16[layer].withUnsafeBytes { k in values16[layer].withUnsafeBytes { v in body(k.baseAddress!, v.baseAddress!, true) } }
        }
    }

    /// Forgets every position (the memory is kept).
    public func reset() { length = 0 }
}

/// Input the engine refuses.
public enum InferenceError: Error, Equatable, CustomStringConvertible {
    case tokenOutOfRange(id: Int, vocab: Int)
    case contextOverflow(needed: Int, capacity: Int)
    case tooShort(tokens: Int, needed: Int)

    public var description: String {
        switch self {
        case .tokenOutOfRange(let id, let vocab): "token id \(id) is outside the vocabulary (0..<\(vocab))"
        case .contextOverflow(let needed, let capacity): "\(needed) positions do not fit the context of \(capacity)"
        case .tooShort(let tokens, let needed): "the text has \(tokens) tokens; at least \(needed) are needed"
        }
    }
}
