/// Which linear layers of a model to quantize.
///
/// The patterns are Swift regular expressions that a layer's name must contain a match of. Given
/// by a user, they are matched with a time bound once per model (``resolved(for:limit:)``), which
/// also records the answers, so that the many later `selects` calls do not match again.
public struct LayerSelection: @unchecked Sendable {
    /// Only layers whose name matches (nil: all linear layers).
    public var include: Regex<AnyRegexOutput>?
    /// Layers whose name matches are left as they are (nil: the default skip).
    public var skip: Regex<AnyRegexOutput>?
    /// Names already matched by `resolved`: whether `include` and `skip` match each.
    private var known: [String: (include: Bool, skip: Bool)] = [:]

    public init(include: Regex<AnyRegexOutput>? = nil, skip: Regex<AnyRegexOutput>? = nil) {
        self.include = include
        self.skip = skip
    }

    /// This selection with both patterns matched against `names` under ``BoundedMatching``'s
    /// bound, the answers kept for `selects`.
    ///
    /// - Throws: ``PatternTimeout`` (its `which` is `include` or `skip`) when a pattern runs longer
    ///   than `limit` seconds against one name.
    public func resolved(for names: [String], limit: Double = BoundedMatching.defaultLimit) throws(PatternTimeout) -> LayerSelection {
        func run(_ regex: Regex<AnyRegexOutput>?, _ which: String) throws(PatternTimeout) -> [Bool]? {
            guard let regex else { return nil }
            do {
                return try BoundedMatching.matches(regex, in: names, limit: limit)
            } catch {
                var timeout = error
                timeout.which = which
                throw timeout
            }
        }
        let included = try run(include, "include")
        let skipped = try run(skip, "skip")
        var copy = self
        for (i, name) in names.enumerated() {
            copy.known[name] = (included?[i] ?? true, skipped?[i] ?? false)
        }
        return copy
    }

    /// The heads are skipped by default: the LM head, as the paper does, and a BERT pooler
    /// (`pooler.dense.weight`, the [CLS] head that mean-pooled sentence embeddings such as
    /// MiniLM's do not use). Embeddings are not linear layers.
    public static func isDefaultSkipped(_ name: String) -> Bool {
        name == "lm_head.weight" || name == "output.weight" || name.hasSuffix(".lm_head.weight")
            || name == "pooler.dense.weight" || name.hasSuffix(".pooler.dense.weight")
    }

    /// A linear layer without elements (a zero in its shape) holds nothing to quantize: it is left
    /// as it is, whatever its other dimension, so no work is ever proportional to that dimension.
    public func selects(_ tensor: ModelTensor) -> Bool {
        guard tensor.isLinear, tensor.info.elementCount > 0 else { return false }
        let answer = known[tensor.name]
        if let include, !(answer?.include ?? tensor.name.contains(include)) { return false }
        if let skip { return !(answer?.skip ?? tensor.name.contains(skip)) }
        return !Self.isDefaultSkipped(tensor.name)
    }
}

/// One layer to quantize: the tensor, its format, and the options it is quantized with. The
/// quantize pipeline (streaming, resumable, split) consumes only a list of these: `--format`
/// gives every selected layer the same job, a recipe one per layer; a layer without a job is
/// copied as stored.
public struct LayerJob: Sendable {
    public var tensor: ModelTensor
    public var format: any NumericFormat
    /// Group size, clustering, sample weighting, seed, storage dtype...
    public var options: QuantizationOptions

    public init(tensor: ModelTensor, format: any NumericFormat, options: QuantizationOptions) {
        self.tensor = tensor
        self.format = format
        self.options = options
    }

    /// The same job for every layer `selection` selects, in model order.
    public static func uniform(
        _ model: Model, format: any NumericFormat, options: QuantizationOptions, selection: LayerSelection
    ) -> [LayerJob] {
        model.tensors.filter(selection.selects).map { LayerJob(tensor: $0, format: format, options: options) }
    }
}

/// One quantized layer of a model, with its error.
public struct LayerResult: Sendable {
    public var name: String
    public var shape: [Int]
    public var format: String
    public var metrics: ErrorMetrics
    public var bitsPerWeight: Double
    public var seconds: Double
    /// any-b: the weighted k-means objective summed over all rows, and over the first 64.
    public var kmeansObjective: Double?
    public var kmeansObjectiveFirst64: Double?
    /// ‖XWᵀ − XŴᵀ‖/‖XWᵀ‖ on Gaussian activations, when asked for.
    public var outputRelativeError: Double?
    public var matrix: QuantizedMatrix?
    /// Why the layer is stored in F32 against the default rule (``QuantizedMatrix/storageFallback``).
    public var storageFallback: String?

    /// The result of quantizing `tensor` to `q`: its bits, k-means objectives and storage fallback
    /// come from `q`, which is kept only when `keepMatrix`.
    package init(
        _ q: QuantizedMatrix, of tensor: ModelTensor, format: String, metrics: ErrorMetrics, seconds: Double,
        outputRelativeError: Double?, keepMatrix: Bool
    ) {
        name = tensor.name
        shape = tensor.shape
        self.format = format
        self.metrics = metrics
        bitsPerWeight = q.bitsPerWeight
        self.seconds = seconds
        let objectives = q.rowObjectives
        kmeansObjective = objectives.isEmpty ? nil : objectives.reduce(0, +)
        kmeansObjectiveFirst64 = objectives.isEmpty ? nil : objectives.prefix(64).reduce(0, +)
        self.outputRelativeError = outputRelativeError
        matrix = keepMatrix ? q : nil
        storageFallback = q.storageFallback
    }
}

/// Quantizes the selected linear layers of a model.
public enum ModelQuantization {
    /// A tensor's own float dtype: F16 or BF16 when it is stored so (plain, ggml, or a quantized
    /// layer of a checkpoint), else F32 (F32, F64, ggml block types). Dequantized weights are held
    /// in it (a fake-quant file), and the default storage rule starts from it.
    public static func sourceDType(of tensor: ModelTensor) -> DType {
        switch tensor.info.encoding {
        case .plain(let d) where d == .f16 || d == .bf16: d
        case .ggml(.f16): .f16
        case .ggml(.bf16): .bf16
        case .quantized(let layout): layout.dtype
        default: .f32
        }
    }

    /// The dtype a tensor's LUTs, float scales and zeros are stored in under `options`: the one
    /// place that applies the rule — `options.storageDType` when set, else BF16 for a BF16 tensor
    /// and F16 for every other (``QuantizationOptions/defaultStorageDType(source:)``). A layer F16
    /// cannot hold falls back to F32 when quantized (``QuantizedMatrix/storageFallback``).
    public static func storageDType(of tensor: ModelTensor, options: QuantizationOptions) -> DType {
        options.storageDType(source: sourceDType(of: tensor))
    }

    /// The bits `tensor` ([out, in]) stores once quantized in `format` under `options`, without
    /// quantizing it (``Quantizer/storedBits(rows:cols:format:options:storage:)``).
    public static func storedBits(
        of tensor: ModelTensor, format: any NumericFormat, options: QuantizationOptions
    ) throws(QuantizationError) -> Int {
        precondition(tensor.shape.count == 2, "only matrices are quantized")
        return try Quantizer.storedBits(
            rows: tensor.shape[0], cols: tensor.shape[1], format: format, options: options,
            storage: storageDType(of: tensor, options: options))
    }

    /// The per-channel weights for `tensor` from a calibration file, or nil when not calibrating.
    public static func channelWeights(
        for tensor: ModelTensor, options: QuantizationOptions,
        calibration: CalibrationStats?
    ) throws -> [Float]? {
        guard case .calibration(let path, let statistic) = options.sampleWeighting else { return nil }
        guard let layer = calibration?.layer(forWeight: tensor.name) else {
            throw FileFormatError(file: path, kind: .badHeader, "no statistics for this layer", subject: tensor.name)
        }
        return layer.values(statistic)
    }

    /// Sizes and memory first: throws, before anything is decoded, when the layer's f32 weights
    /// and its outputs cannot be had (a size that overflows, or more than the memory budget).
    public static func checkFits(_ tensor: ModelTensor, format: any NumericFormat, options: QuantizationOptions) throws {
        let sizes = try Quantizer.OutputSizes(
            rows: tensor.shape[0], cols: tensor.shape[1], name: tensor.name,
            format: format, options: options)
        do throws(SizeError) {
            let bytes = try Sizes.sum(
                [try Sizes.product([sizes.elements, 4], "\(tensor.name): f32 weights"), sizes.outputBytes],
                "\(tensor.name): weights and outputs")
            try MemoryBudget.check(bytes, for: "quantizing \(tensor.name) \(Formatting.shape(tensor.shape)) to \(format.name)")
        } catch {
            throw QuantizationError.tooLarge(error)
        }
    }

    /// Quantizes one tensor of `model` and measures its error.
    public static func quantize(
        _ tensor: ModelTensor, of model: Model, format: any NumericFormat,
        options: QuantizationOptions, calibration: CalibrationStats? = nil,
        keepMatrix: Bool = true, outputErrorRows: Int = 0, progress: Progress? = nil
    ) throws -> LayerResult {
        precondition(tensor.shape.count == 2, "only matrices are quantized")
        try checkFits(tensor, format: format, options: options)
        let channels = try channelWeights(for: tensor, options: options, calibration: calibration)
        return try quantize(
            weights: try model.decode(tensor), of: tensor, format: format, options: options,
            channelWeights: channels, keepMatrix: keepMatrix, outputErrorRows: outputErrorRows,
            progress: progress)
    }

    /// Quantizes one job's layer of `model` and measures its error.
    public static func quantize(
        _ job: LayerJob, of model: Model, calibration: CalibrationStats? = nil,
        keepMatrix: Bool = true, progress: Progress? = nil
    ) throws -> LayerResult {
        try quantize(
            job.tensor, of: model, format: job.format, options: job.options, calibration: calibration,
            keepMatrix: keepMatrix, progress: progress)
    }

    /// Quantizes `weights` (the values of `tensor`, [out, in]) with per-channel k-means weights
    /// `channelWeights` when calibrating, and measures the error.
    public static func quantize(
        weights: [Float], of tensor: ModelTensor, format: any NumericFormat,
        options: QuantizationOptions, channelWeights channels: [Float]?,
        keepMatrix: Bool = true, outputErrorRows: Int = 0, progress: Progress? = nil
    ) throws -> LayerResult {
        let start = Clock.now
        let q = try Quantizer.quantize(
            weights, rows: tensor.shape[0], cols: tensor.shape[1], name: tensor.name,
            format: format, options: options, source: sourceDType(of: tensor),
            channelWeights: channels, progress: progress)
        let seconds = Clock.now - start
        let dequantized = q.dequantized()
        let metrics = ErrorMetrics(original: weights, approximation: dequantized)
        let outputError =
            outputErrorRows > 0
            ? ErrorMetrics.outputRelativeError(
                original: weights, approximation: dequantized, rows: q.rows, cols: q.cols,
                activations: ErrorMetrics.gaussianActivations(m: outputErrorRows, cols: q.cols))
            : nil
        return LayerResult(
            q, of: tensor, format: format.name, metrics: metrics, seconds: seconds,
            outputRelativeError: outputError, keepMatrix: keepMatrix)
    }
}
