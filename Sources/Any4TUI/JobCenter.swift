import Any4Core
import Any4Kernels
import Dispatch
import Foundation

/// Background work of the UI: quantizing a layer, comparing formats, running the kernel live.
/// Workers write under a lock; the UI reads snapshots each frame and never waits on a job.
public final class JobCenter: @unchecked Sendable {
    private let lock = NSLock()

    public struct QuantizeJob: Sendable {
        public var tensor: String
        public var label: String
        public var progress: Any4Core.Progress
        public var done = false { didSet { if done && finishedAt == nil { finishedAt = Clock.now } } }
        public var error: String?
        public var finishedAt: Double?
    }

    private var _job: QuantizeJob?
    private var _results: [String: LayerResult] = [:]
    /// Each result's version: a layer quantized again gets a new one (the evaluator measures it again).
    private var _versions: [String: Int] = [:]
    private var _version = 0
    private var _comparisons: [String: [LayerResult]] = [:]

    /// Measures what the quantized layers cost the whole model after each job (nil: the engine
    /// does not run this model; ``evaluationNote`` says why).
    public let evaluator: ModelEvaluator?
    public let evaluationNote: String?

    public init(evaluator: ModelEvaluator? = nil, evaluationNote: String? = nil) {
        self.evaluator = evaluator
        self.evaluationNote = evaluationNote
    }

    public var job: QuantizeJob? { lock.withLock { _job } }
    public func result(for tensor: String) -> LayerResult? { lock.withLock { _results[tensor] } }
    public var results: [String: LayerResult] { lock.withLock { _results } }
    public func comparison(for tensor: String) -> [LayerResult]? { lock.withLock { _comparisons[tensor] } }
    public var isBusy: Bool { lock.withLock { _job.map { !$0.done } ?? false } }

    /// The model-level cost of each layer measured alone (for the Model tab's sort).
    public var modelCosts: [String: Double] { evaluator?.costs ?? [:] }

    /// Stores a layer's result (under the lock) with a new version.
    private func storeLocked(_ result: LayerResult, for name: String) {
        _results[name] = result
        _version += 1
        _versions[name] = _version
    }

    /// The quantized layers as the evaluator takes them.
    private var evaluationLayers: [String: ModelEvaluator.Layer] {
        lock.withLock {
            var out: [String: ModelEvaluator.Layer] = [:]
            for (name, r) in _results {
                if let m = r.matrix { out[name] = ModelEvaluator.Layer(matrix: m, format: r.format, version: _versions[name] ?? 0) }
            }
            return out
        }
    }

    /// Starts `work` on a worker thread as the one current job (unless one is running); `work`
    /// reports rows to the progress it is given and stores its results under the lock itself.
    package func start(tensor: String, total: Int, label: String, _ work: @escaping @Sendable (Any4Core.Progress) throws -> Void) {
        let progress = Any4Core.Progress(total: total, label: label)
        let started: Bool = lock.withLock {
            if _job.map({ !$0.done }) ?? false { return false }
            _job = QuantizeJob(tensor: tensor, label: label, progress: progress)
            return true
        }
        guard started else { return }
        // The model's evaluation gives way to the job, and measures what it changed after it.
        evaluator?.hold()
        DispatchQueue.global(qos: .userInitiated).async { [self] in
            do {
                try work(progress)
                lock.withLock { _job?.done = true }
            } catch {
                lock.withLock {
                    _job?.done = true
                    _job?.error = "\(error)"
                }
            }
            evaluator?.update(evaluationLayers)
        }
    }

    /// Quantizes `tensor` in the background (one job at a time).
    public func quantize(_ tensor: ModelTensor, of model: Model, format: String, options: QuantizationOptions) {
        start(tensor: tensor.name, total: 3 * tensor.shape[0], label: "quantizing \(tensor.name) to \(format)") { [self] progress in
            let result = try LayerWork.quantize(tensor, of: model, format: FormatRegistry.named(format), options: options, progress: progress)
            lock.withLock { storeLocked(result, for: tensor.name) }
        }
    }

    /// Quantizes `tensor` in every 4-bit format for the comparison table: the layer is decoded
    /// once, and the label names the format that runs (each format's rows are counted twice,
    /// quantizing then measuring, so the bar moves through the whole of it).
    public func compare(_ tensor: ModelTensor, of model: Model, options: QuantizationOptions) {
        let formats = FormatRegistry.fourBit
        let rows = tensor.shape[0]
        let label = "comparing formats on \(tensor.name)"
        // The format first: a narrow status line cuts the layer's name, not what runs.
        start(tensor: tensor.name, total: rows * (1 + 2 * formats.count), label: label) { [self] progress in
            progress.setLabel("decoding \(tensor.name) for the comparison")
            let weights = try LayerWork.decode(tensor, of: model, progress: progress)
            var results: [LayerResult] = []
            for (i, f) in formats.enumerated() {
                progress.setLabel("comparing \(f.name) (\(i + 1)/\(formats.count)) on \(tensor.name)")
                var r = try LayerWork.quantize(
                    weights: weights, of: tensor, format: f, options: options, keepMatrix: false, progress: progress)
                r.format = f.name
                results.append(r)
            }
            lock.withLock { _comparisons[tensor.name] = results }
        }
    }

    /// Quantizes every linear layer the CLI would (the LM head skipped) in the background.
    public func quantizeAll(_ model: Model, format: String, options: QuantizationOptions) {
        let layers = model.tensors.filter(LayerSelection().selects)
        guard let numeric = try? FormatRegistry.named(format) else { return }
        quantizeAll(model, layers: layers.map { ($0, numeric, options) }, label: "quantizing all \(layers.count) layers to \(format)")
    }

    /// Quantizes each of `layers` to its own format and options (a recipe's mix) in the background.
    public func quantizeAll(_ model: Model, layers: [(ModelTensor, any NumericFormat, QuantizationOptions)], label: String) {
        start(tensor: "", total: 3 * layers.reduce(0) { $0 + $1.0.shape[0] }, label: label) { [self] progress in
            for (i, (layer, format, options)) in layers.enumerated() {
                if progress.isCancelled { throw QuantizationError.cancelled }
                progress.setLabel("\(label): \(i + 1)/\(layers.count) \(format.name) \(layer.name)")
                let result = try LayerWork.quantize(layer, of: model, format: format, options: options, progress: progress)
                lock.withLock { storeLocked(result, for: layer.name) }
            }
        }
    }

    private var saved: [String: String] = [:]

    /// Quantized layers not yet written to a checkpoint.
    public var unsavedCount: Int { lock.withLock { _results.filter { saved[$0.key] != $0.value.format }.count } }

    /// Writes every quantized layer, each with the format, group size and table settings it was
    /// quantized with (a checkpoint may mix them), as an any4 checkpoint; other layers as they are.
    /// The container follows `path` (``QuantizedCheckpoint/container(for:source:)``).
    public func write(_ model: Model, to path: String) throws -> Int {
        let chosen = lock.withLock { _results.filter { $0.value.matrix != nil } }
        var matrices: [String: QuantizedMatrix] = [:]
        for (name, r) in chosen { matrices[name] = r.matrix }
        try QuantizedCheckpoint.write(model: model, quantized: matrices, fakeQuant: false, to: path)
        lock.withLock { for (name, r) in chosen { saved[name] = r.format } }
        return chosen.count
    }

    public func cancel() {
        lock.withLock { _job?.progress.cancel() }
    }

    /// Cancels the running job and waits up to `timeout` seconds for its worker to stop; false if
    /// it is still running then. The UI calls it before it leaves, so that the process does not
    /// exit (and tear down its globals) under a worker that is still quantizing.
    @discardableResult
    public func cancelAndWait(timeout: Double) -> Bool {
        cancel()
        let deadline = Clock.now + timeout
        let evaluationStopped = evaluator?.close(timeout: timeout) ?? true
        while isBusy || !evaluationStopped {
            if Clock.now >= deadline { return false }
            Thread.sleep(forTimeInterval: 0.005)
        }
        return true
    }
}

/// One layer's quantization as the UI runs it, with progress all the way: decoding, quantizing
/// and measuring each advance by the layer's rows (on an 8B-sized layer the decoding and the
/// measuring took seconds with the bar standing still). The figures are
/// ``ModelQuantization``'s: the same quantizer, and the same sums in the same order.
enum LayerWork {
    /// Rows decoded or measured per step (about a million weights).
    static func block(cols: Int) -> Int { max(1, (1 << 20) / max(cols, 1)) }

    /// The layer's weights as f32, a block of rows at a time.
    static func decode(_ tensor: ModelTensor, of model: Model, progress: Any4Core.Progress) throws -> [Float] {
        let rows = tensor.info.rowCount, cols = tensor.info.rowLength
        guard tensor.shape.count == 2, rows > 0 else { return try model.decode(tensor) }
        var out: [Float] = []
        out.reserveCapacity(rows * cols)
        for r0 in stride(from: 0, to: rows, by: block(cols: cols)) {
            if progress.isCancelled { throw QuantizationError.cancelled }
            let r1 = min(rows, r0 + block(cols: cols))
            out += try model.decodeRows(tensor, rows: r0..<r1)
            progress.advance(by: r1 - r0)
        }
        return out
    }

    /// Decodes, quantizes and measures one layer (output error on 8 Gaussian rows).
    static func quantize(
        _ tensor: ModelTensor, of model: Model, format: any NumericFormat, options: QuantizationOptions,
        progress: Any4Core.Progress
    ) throws -> LayerResult {
        // Sizes and memory first, as the core does: nothing is decoded for a layer that cannot be had.
        try ModelQuantization.checkFits(tensor, format: format, options: options)
        let weights = try decode(tensor, of: model, progress: progress)
        return try quantize(weights: weights, of: tensor, format: format, options: options, keepMatrix: true, progress: progress)
    }

    /// Quantizes `weights` (advancing `progress` by the rows) and measures the error a block of
    /// rows at a time (advancing it by the rows again): SQNR, MSE, max error and the output error
    /// on `outputErrorRows` Gaussian rows, equal to ``ModelQuantization``'s figures.
    static func quantize(
        weights: [Float], of tensor: ModelTensor, format: any NumericFormat, options: QuantizationOptions,
        keepMatrix: Bool, outputErrorRows: Int = 8, progress: Any4Core.Progress
    ) throws -> LayerResult {
        let start = Clock.now
        let q = try Quantizer.quantize(
            weights, rows: tensor.shape[0], cols: tensor.shape[1], name: tensor.name,
            format: format, options: options, source: ModelQuantization.sourceDType(of: tensor),
            channelWeights: try ModelQuantization.channelWeights(for: tensor, options: options, calibration: nil),
            progress: progress)
        let seconds = Clock.now - start
        let rows = q.rows, cols = q.cols, m = outputErrorRows
        let x = m > 0 ? ErrorMetrics.gaussianActivations(m: m, cols: cols) : []
        // ErrorMetrics' sums (in element order) and outputRelativeError's (per row, then in row order).
        var signal = 0.0, noise = 0.0, worst = 0.0
        var num = [Double](repeating: 0, count: rows), den = num
        let step = block(cols: cols)
        var approximation = [Float](repeating: 0, count: min(step, rows) * cols)
        measuring: for r0 in stride(from: 0, to: rows, by: step) {
            if progress.isCancelled { throw QuantizationError.cancelled }
            let r1 = min(rows, r0 + step)
            approximation.withUnsafeMutableBufferPointer { q.dequantize(rows: r0..<r1, into: $0.baseAddress!) }
            let base = r0 * cols
            for i in 0..<((r1 - r0) * cols) {
                let w = Double(weights[base + i])
                let d = w - Double(approximation[i])
                signal += w * w
                noise += d * d
                if !(abs(d) <= worst) { worst = abs(d) }
                if worst.isNaN { break measuring }
            }
            if m > 0 {
                num.withUnsafeMutableBufferPointer { numOut in
                    den.withUnsafeMutableBufferPointer { denOut in
                        weights.withUnsafeBufferPointer { original in
                            approximation.withUnsafeBufferPointer { approx in
                                x.withUnsafeBufferPointer { x in
                                    let shared = UncheckedPointers(num: numOut, den: denOut, original: original, approx: approx, x: x)
                                    DispatchQueue.concurrentPerform(iterations: r1 - r0) { k in
                                        let r = r0 + k
                                        var n = 0.0, d = 0.0
                                        for i in 0..<m {
                                            var y = 0.0, e = 0.0
                                            for c in 0..<cols {
                                                let xv = Double(shared.x[i * cols + c])
                                                let w = shared.original[r * cols + c]
                                                y += xv * Double(w)
                                                e += xv * Double(w - shared.approx[k * cols + c])
                                            }
                                            n += e * e
                                            d += y * y
                                        }
                                        shared.num[r] = n
                                        shared.den[r] = d
                                    }
                                }
                            }
                        }
                    }
                }
            }
            progress.advance(by: r1 - r0)
        }
        var metrics = ErrorMetrics(original: [], approximation: [])
        if worst.isNaN {
            signal = .nan
            noise = .nan
        }
        metrics.mse = weights.isEmpty ? 0 : noise / Double(weights.count)
        metrics.sqnrDB = ErrorMetrics.sqnrDB(signal: signal, noise: noise)
        metrics.maxAbsError = worst
        var outputError: Double?
        if m > 0 {
            let total = num.reduce(0, +), y = den.reduce(0, +)
            outputError = y > 0 ? (total / y).squareRoot() : (total > 0 ? .infinity : 0)
        }
        return LayerResult(
            q, of: tensor, format: format.name, metrics: metrics, seconds: seconds,
            outputRelativeError: outputError, keepMatrix: keepMatrix)
    }
}

/// Buffers the measuring workers share: each writes only its own rows' slots.
private struct UncheckedPointers: @unchecked Sendable {
    let num: UnsafeMutableBufferPointer<Double>
    let den: UnsafeMutableBufferPointer<Double>
    let original: UnsafeBufferPointer<Float>
    let approx: UnsafeBufferPointer<Float>
    let x: UnsafeBufferPointer<Float>
}
