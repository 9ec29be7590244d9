import Any4Core

/// What calibration and in-place quantization need from a forward pass: the embedding, the blocks
/// one at a time over a whole sequence, and the linear layers of each block.
public protocol TransformerEngine: AnyObject, Sendable {
    var model: Model { get }
    var options: EngineOptions { get set }
    var blockCount: Int { get }
    /// Every linear layer the forward pass uses (a tied LM head included).
    var linears: [Linear] { get }
    func linears(ofBlock i: Int) -> [Linear]
    /// Hidden states [m, hidden] of one sequence after the embedding layer.
    func embed(_ tokens: [Int]) throws -> [Float]
    /// Block i over a whole sequence of m positions starting at 0.
    func runBlock(_ i: Int, hidden: inout [Float], m: Int)
}

extension LlamaEngine: TransformerEngine {
    public var blockCount: Int { config.layers }
    public func runBlock(_ i: Int, hidden: inout [Float], m: Int) { runBlock(i, &hidden, m: m, p0: 0, cache: nil) }
}

extension BertEngine: TransformerEngine {
    public var blockCount: Int { layers }
    public func runBlock(_ i: Int, hidden: inout [Float], m: Int) { runBlock(i, &hidden, m: m) }
}

// MARK: - Layer swap

extension TransformerEngine {
    /// The linear layer whose weight is `name` (nil: none).
    public func linear(named name: String) -> Linear? { linears.first { $0.name == name } }

    /// Runs the engine with `q` in place of the weight `name` until ``restoreWeight(name:)``
    /// (a probe: quantize one layer, measure, put it back).
    ///
    /// - Throws: ``QuantizationError/badOption(_:)`` when no linear layer has that weight or the
    ///   shapes differ.
    public func replaceWeight(name: String, with q: QuantizedMatrix) throws(QuantizationError) {
        guard let linear = linear(named: name) else { throw .badOption("\(name): no linear layer of the engine uses this weight") }
        guard linear.rows == q.rows, linear.cols == q.cols else {
            throw .badOption("\(name): the replacement is [\(q.rows), \(q.cols)], the layer [\(linear.rows), \(linear.cols)]")
        }
        linear.replaceTemporarily(with: q)
    }

    /// Puts back the weights ``replaceWeight(name:with:)`` displaced (nothing if none were).
    public func restoreWeight(name: String) { linear(named: name)?.restoreOriginal() }
}

/// Opens the engine for a model's architecture: a Llama-family decoder or a BERT encoder.
public enum Engines {
    public static func load(_ model: Model, options: EngineOptions = EngineOptions(), progress: Progress? = nil) throws -> any TransformerEngine {
        let arch = model.config.architecture
        if arch == "bert" { return try BertEngine(model: model, options: options, progress: progress) }
        if let arch, LlamaEngine.architectures.contains(arch) { return try LlamaEngine(model: model, options: options, progress: progress) }
        throw FileFormatError(
            file: model.path, kind: .unsupported,
            "architecture \"\(arch ?? "none")\" is not one the engine runs (\((LlamaEngine.architectures + ["bert"]).joined(separator: ", ")))")
    }
}

/// Calibration and in-place quantization of a running model.
public enum EngineQuantization {
    /// The model tensor behind a linear layer, when selection applies to it.
    static func tensor(of linear: Linear, in engine: any TransformerEngine, selection: LayerSelection) -> ModelTensor? {
        guard let t = engine.model.tensor(named: linear.name), selection.selects(t) else { return nil }
        return t
    }

    /// Per-input-channel statistics of every linear layer's input over `sequences` (each run as one
    /// sequence through the model as it is now).
    public static func calibrate(_ engine: any TransformerEngine, sequences: [[Int]], progress: Progress? = nil) throws -> CalibrationStats {
        let linears = engine.linears
        for l in linears { l.record(true) }
        defer { for l in linears { l.record(false) } }
        progress?.reset(total: sequences.count * engine.blockCount, label: "calibrating")
        for tokens in sequences {
            var h = try engine.embed(tokens)
            for i in 0..<engine.blockCount {
                if progress?.isCancelled == true { throw QuantizationError.cancelled }
                engine.runBlock(i, hidden: &h, m: tokens.count)
                progress?.advance()
            }
        }
        var stats = CalibrationStats()
        for l in linears where l.sums != nil && l.sums!.rows > 0 {
            stats.layers[CalibrationStats.key(forWeight: l.name)] = l.sums!.layer
        }
        stats.metadata["tokens"] = String(sequences.reduce(0) { $0 + $1.count })
        return stats
    }

    /// Quantizes the selected linear layers of `engine` in place. With `calibration`, any-b's k-means
    /// weighs by its statistic (the options' sample weighting must be `.calibration`).
    public static func quantize(
        _ engine: any TransformerEngine, format: any NumericFormat, options: QuantizationOptions,
        selection: LayerSelection = LayerSelection(), calibration: CalibrationStats? = nil,
        progress: Progress? = nil
    ) throws -> [LayerResult] {
        let chosen = engine.linears.compactMap { l in tensor(of: l, in: engine, selection: selection).map { (l, $0) } }
        // Counted in weights (each layer's rows forwarded as rows × columns), as `quantize` counts
        // a checkpoint's: the ETA then holds across layers of different widths.
        progress?.reset(total: chosen.reduce(0) { $0 + $1.0.rows * $1.0.cols }, label: "quantizing \(format.name)")
        return try chosen.map { linear, tensor in
            try quantize(linear, tensor: tensor, format: format, options: options, calibration: calibration, progress: progress)
        }
    }

    static func quantize(
        _ linear: Linear, tensor: ModelTensor, format: any NumericFormat, options: QuantizationOptions,
        calibration: CalibrationStats?, keepMatrix: Bool = false, progress: Progress?
    ) throws -> LayerResult {
        progress?.setLabel("quantizing \(format.name) \(linear.name)")
        let channels = try ModelQuantization.channelWeights(for: tensor, options: options, calibration: calibration)
        // The quantizer counts rows; `progress` counts weights.
        let rows = max(1, linear.rows)
        let layerProgress = progress.map { Progress(total: rows, parent: $0, forwarding: linear.cols) }
        // One layer's f32 at a time: decoded from its storage, quantized, then dropped.
        let result = try ModelQuantization.quantize(
            weights: linear.decodedWeights(), of: tensor, format: format, options: options,
            channelWeights: channels, progress: layerProgress)
        linear.replace(with: result.matrix!)
        var out = result
        if !keepMatrix { out.matrix = nil }
        return out
    }

    /// Sequential calibration as the any4 authors do it: block i's statistics are taken on the model
    /// whose blocks 0..<i are already quantized, then block i is quantized with them. `statistic`
    /// weighs k-means; `source` names the prompt in the results' sample weighting. Returns the layer
    /// results (with their matrices when `keepMatrices`) and the statistics each block saw.
    public static func quantizeSequentially(
        _ engine: any TransformerEngine, sequences: [[Int]], format: any NumericFormat,
        options: QuantizationOptions, statistic: CalibrationStatistic,
        selection: LayerSelection = LayerSelection(), source: String = "sequential",
        keepMatrices: Bool = false,
        progress: Progress? = nil
    ) throws -> (results: [LayerResult], stats: CalibrationStats) {
        let jobs = engine.linears.compactMap { l in
            tensor(of: l, in: engine, selection: selection).map { LayerJob(tensor: $0, format: format, options: options) }
        }
        var results: [LayerResult] = []
        let stats = try quantizeSequentially(
            engine, sequences: sequences, jobs: jobs, statistic: statistic, source: source, progress: progress
        ) { result, _ in
            var r = result
            if !keepMatrices { r.matrix = nil }
            results.append(r)
        }
        return (results, stats)
    }

    /// Sequential calibration over `jobs` (a linear layer of a block without a job stays as it is;
    /// layers outside blocks are not quantized): each result is handed to `onLayer` as soon as its
    /// layer is quantized (the matrix is then also the engine's). `throughBlock` stops after that
    /// block (a split run's part needs only the blocks up to its last; the statistics of every
    /// block it does are those of the full run). The jobs' sample weighting becomes
    /// `calib:source:statistic`.
    public static func quantizeSequentially(
        _ engine: any TransformerEngine, sequences: [[Int]], jobs: [LayerJob], statistic: CalibrationStatistic,
        source: String = "sequential", throughBlock: Int? = nil, progress: Progress? = nil,
        onLayer: (LayerResult, LayerJob) throws -> Void
    ) throws -> CalibrationStats {
        var byName: [String: LayerJob] = [:]
        for var job in jobs {
            job.options.sampleWeighting = .calibration(path: source, statistic: statistic)
            byName[job.tensor.name] = job
        }
        let last = min(engine.blockCount - 1, throughBlock ?? (engine.blockCount - 1))
        var hidden = last >= 0 ? try sequences.map { try engine.embed($0) } : []
        let total = (0..<(last + 1)).reduce(0) { sum, i in
            sum + engine.linears(ofBlock: i).filter { byName[$0.name] != nil }.reduce(0) { $0 + $1.rows * $1.cols }
        }
        progress?.reset(total: total, label: "calibrating and quantizing")
        var stats = CalibrationStats()
        for i in 0..<(last + 1) {
            let linears = engine.linears(ofBlock: i)
            for l in linears { l.record(true) }
            for (s, tokens) in sequences.enumerated() {
                if progress?.isCancelled == true { throw QuantizationError.cancelled }
                var h = hidden[s]
                engine.runBlock(i, hidden: &h, m: tokens.count)
            }
            for l in linears {
                if let sums = l.sums { stats.layers[CalibrationStats.key(forWeight: l.name)] = sums.layer }
                l.record(false)
            }
            for l in linears {
                guard let job = byName[l.name] else { continue }
                let result = try quantize(
                    l, tensor: job.tensor, format: job.format, options: job.options, calibration: stats,
                    keepMatrix: true, progress: progress)
                try onLayer(result, job)
            }
            // The next block sees this block's output with its weights quantized.
            if i < last {
                for (s, tokens) in sequences.enumerated() { engine.runBlock(i, hidden: &hidden[s], m: tokens.count) }
            }
        }
        stats.metadata["tokens"] = String(sequences.reduce(0) { $0 + $1.count })
        stats.metadata["sequential"] = "1"
        return stats
    }
}
