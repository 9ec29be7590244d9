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
    private var _comparisons: [String: [LayerResult]] = [:]

    public init() {}

    public var job: QuantizeJob? { lock.withLock { _job } }
    public func result(for tensor: String) -> LayerResult? { lock.withLock { _results[tensor] } }
    public var results: [String: LayerResult] { lock.withLock { _results } }
    public func comparison(for tensor: String) -> [LayerResult]? { lock.withLock { _comparisons[tensor] } }
    public var isBusy: Bool { lock.withLock { _job.map { !$0.done } ?? false } }

    /// Starts `work` on a worker thread as the one current job (unless one is running); `work`
    /// reports rows to the progress it is given and stores its results under the lock itself.
    private func start(tensor: String, total: Int, label: String, _ work: @escaping @Sendable (Any4Core.Progress) throws -> Void) {
        let progress = Any4Core.Progress(total: total, label: label)
        let started: Bool = lock.withLock {
            if _job.map({ !$0.done }) ?? false { return false }
            _job = QuantizeJob(tensor: tensor, label: label, progress: progress)
            return true
        }
        guard started else { return }
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
        }
    }

    /// Quantizes `tensor` in the background (one job at a time).
    public func quantize(_ tensor: ModelTensor, of model: Model, format: String, options: QuantizationOptions) {
        start(tensor: tensor.name, total: tensor.shape[0], label: "quantizing \(tensor.name) to \(format)") { [self] progress in
            let result = try ModelQuantization.quantize(
                tensor, of: model, format: FormatRegistry.named(format), options: options,
                outputErrorRows: 8, progress: progress)
            lock.withLock { _results[tensor.name] = result }
        }
    }

    /// Quantizes `tensor` in every 4-bit format for the comparison table.
    public func compare(_ tensor: ModelTensor, of model: Model, options: QuantizationOptions) {
        let formats = FormatRegistry.fourBit
        start(tensor: tensor.name, total: tensor.shape[0] * formats.count, label: "comparing formats on \(tensor.name)") { [self] progress in
            var rows: [LayerResult] = []
            for f in formats {
                var r = try ModelQuantization.quantize(
                    tensor, of: model, format: f, options: options,
                    keepMatrix: false, outputErrorRows: 8, progress: progress)
                r.format = f.name
                rows.append(r)
            }
            lock.withLock { _comparisons[tensor.name] = rows }
        }
    }

    /// Quantizes every linear layer the CLI would (the LM head skipped) in the background.
    public func quantizeAll(_ model: Model, format: String, options: QuantizationOptions) {
        let layers = model.tensors.filter(LayerSelection().selects)
        start(
            tensor: "", total: layers.reduce(0) { $0 + $1.shape[0] },
            label: "quantizing all \(layers.count) layers to \(format)"
        ) { [self] progress in
            let numeric = try FormatRegistry.named(format)
            for layer in layers {
                if progress.isCancelled { throw QuantizationError.cancelled }
                let result = try ModelQuantization.quantize(
                    layer, of: model, format: numeric, options: options,
                    outputErrorRows: 8, progress: progress)
                lock.withLock { _results[layer.name] = result }
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
        while isBusy {
            if Clock.now >= deadline { return false }
            Thread.sleep(forTimeInterval: 0.005)
        }
        return true
    }
}
