import Any4Core
import Any4GPU
import Any4Kernels
import Dispatch
import Foundation

/// Runs the lookup kernel on one layer continuously on a background thread and keeps the recent
/// latencies, with a dense f32 run now and then for the ratio.
public final class KernelRunner: @unchecked Sendable {
    private let lock = NSLock()
    private var target: (name: String, packed: PackedLinear, dense: DenseLinear, deq: [Float])?
    private var latencies: [Double] = []
    private var denseLatency: Double?
    private var error: Double?
    private var batch = 1
    private var paused = false
    private var started = false
    private var message: String?
    private var probe: Double?
    private var totalError: Double?
    private var bitsPerWeight: Double?
    // The GPU row: the same layer on the GPU lookup kernel (bf16 activations), when there is a GPU.
    private var gpuLayer: GPULookupLinear?
    private var gpuLatencies: [Double] = []
    private var gpuNote: String?
    private var gpuName: String?
    /// Asked to stop (the UI is leaving), and whether the runner's thread is still in its loop.
    private var stopRequested = false
    private var looping = false

    public init() {}

    /// Stops the runner's thread and waits up to `timeout` seconds for it to leave its loop
    /// (one kernel run); false if it is still running then. The runner cannot be restarted.
    @discardableResult
    public func stop(timeout: Double) -> Bool {
        lock.withLock { stopRequested = true }
        let deadline = Clock.now + timeout
        while lock.withLock({ looping }) {
            if Clock.now >= deadline { return false }
            Thread.sleep(forTimeInterval: 0.005)
        }
        return true
    }

    public struct Snapshot: Sendable {
        public var layer: String?
        public var latencies: [Double]
        public var denseMedian: Double?
        public var relError: Double?
        public var streamedBytes: Int
        public var message: String?
        /// Single-thread triad bandwidth, measured once when the runner starts.
        public var probeGBps: Double?
        /// Output error against the f32 product of the original weights (quantization + kernel).
        public var totalError: Double?
        /// Stored bits per weight of the layer the kernel runs.
        public var bitsPerWeight: Double?
        /// The GPU's name and the lookup kernel's recent latencies there (empty without a GPU).
        public var gpuName: String?
        public var gpuLatencies: [Double] = []
        public var gpuStreamedBytes = 0
        /// Why there is no GPU row (no GPU, a failed launch, …).
        public var gpuNote: String?
    }

    /// The runner's figures, copied under the lock into arrays of the caller's own (`map` makes new
    /// buffers): the runner goes on appending to its arrays in place, and a snapshot sharing their
    /// storage would hand one buffer between threads through its reference count alone, which
    /// Thread Sanitizer cannot see (it reported the UI's read of the count racing the runner's append).
    public func snapshot() -> Snapshot {
        lock.withLock {
            Snapshot(
                layer: target?.name, latencies: latencies.map { $0 }, denseMedian: denseLatency, relError: error,
                streamedBytes: target?.packed.streamedBytes(.fast) ?? 0, message: message, probeGBps: probe,
                totalError: totalError, bitsPerWeight: bitsPerWeight, gpuName: gpuName, gpuLatencies: gpuLatencies.map { $0 },
                gpuStreamedBytes: gpuLayer?.streamedBytes ?? 0, gpuNote: gpuNote)
        }
    }

    /// A layer to switch to, prepared on the runner's thread (packing and decoding a large layer
    /// must not stall the UI).
    private var pending: Request?

    /// A layer to prepare: its name, the key of its form (format, or the stored layer), the
    /// quantized matrix (made on the runner's thread: a stored layer's codes are unpacked there)
    /// and its original weights.
    private typealias Request = (
        name: String, key: String, matrix: @Sendable () throws -> QuantizedMatrix, original: @Sendable () throws -> [Float]
    )

    /// Points the runner at a quantized layer (or clears it). `original` decodes the layer's
    /// weights; it runs on the runner's thread.
    public func set(
        layer name: String, matrix: QuantizedMatrix?, original: @escaping @Sendable () throws -> [Float],
        batch: Int, paused: Bool
    ) {
        set(
            name, key: matrix.map { name + "|" + $0.formatName }, bitsPerWeight: matrix?.bitsPerWeight,
            matrix: { [matrix] in matrix! }, original: original, batch: batch, paused: paused)
    }

    /// Points the runner at `tensor` as `model` stores it (a quantized layer of a checkpoint): the
    /// kernel runs the stored codes, tables and scales, unpacked on the runner's thread.
    public func set(stored tensor: ModelTensor, of model: Model, batch: Int, paused: Bool) {
        guard let layout = tensor.info.encoding.quantizedLayout else {
            set(layer: tensor.name, matrix: nil, original: { [] }, batch: batch, paused: paused)
            return
        }
        set(
            tensor.name, key: tensor.name + "|stored " + layout.description, bitsPerWeight: layout.bitsPerElement,
            matrix: { try model.quantizedMatrix(tensor)! }, original: { try model.decode(tensor) }, batch: batch, paused: paused)
    }

    private func set(
        _ name: String, key: String?, bitsPerWeight bits: Double?, matrix: @escaping @Sendable () throws -> QuantizedMatrix,
        original: @escaping @Sendable () throws -> [Float], batch: Int, paused: Bool
    ) {
        lock.lock()
        defer { lock.unlock() }
        self.batch = batch
        self.paused = paused
        guard let key else {
            target = nil
            pending = nil
            targetKey = ""
            message = "quantize this layer first (tab 2, Enter)"
            return
        }
        // A new layer, or the same layer quantized to another format.
        if targetKey != key {
            targetKey = key
            target = nil
            gpuLayer = nil
            gpuLatencies = []
            pending = (name, key, matrix, original)
            latencies = []
            denseLatency = nil
            error = nil
            totalError = nil
            bitsPerWeight = bits
            message = "preparing \(name)…"
        }
        if !started && !stopRequested {
            started = true
            looping = true
            let thread = Thread { [weak self] in self?.loop() }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    private var targetKey = ""

    /// Builds a pending target outside the lock.
    private func preparePending() {
        guard
            let request = lock.withLock({ () -> Request? in
                defer { pending = nil }
                return pending
            })
        else { return }
        do {
            let matrix = try request.matrix()
            let packed = try PackedLinear(matrix)
            let dense = DenseLinear(try request.original(), rows: matrix.rows, cols: matrix.cols, storage: .f32)
            let prepared = (request.name, packed, dense, matrix.dequantized())
            var gpu: GPULookupLinear?
            var note: String?
            if let backend = GPUBackend.shared {
                do { gpu = try GPULookupLinear(GPULookupLayout(matrix), on: backend) } catch { note = "GPU: \(error)" }
            }
            lock.withLock {
                // Only if no newer request arrived meanwhile.
                if pending == nil && targetKey == request.key {
                    target = prepared
                    message = nil
                    gpuLayer = gpu
                    if let note { gpuNote = note }
                }
            }
        } catch {
            lock.withLock { message = "\(error)" }
        }
    }

    private func loop() {
        defer { lock.withLock { looping = false } }
        let measured = BandwidthProbe.triadGBps(threads: 1, elements: 8 << 20, repeats: 3)
        lock.withLock { probe = measured }
        switch GPUBackend.load() {
        case .available(let backend): lock.withLock { gpuName = backend.device.name }
        case .unavailable(let why): lock.withLock { gpuNote = "GPU: none (\(why))" }
        }
        var iteration = 0
        while !lock.withLock({ stopRequested }) {
            preparePending()
            lock.lock()
            let current = target, m = batch, isPaused = paused
            lock.unlock()
            guard let current, !isPaused else {
                Thread.sleep(forTimeInterval: 0.05)
                continue
            }
            var rng = SplitMix64(seed: UInt64(iteration))
            let x = (0..<(m * current.packed.cols)).map { _ in Float(rng.nextGaussian()) }
            let t0 = Clock.now
            let y = current.packed.forward(x, m: m, path: .fast, threads: 1)
            let seconds = Clock.now - t0
            var dense: Double?
            var relError: Double?
            var total: Double?
            if iteration % 16 == 0 {
                let t1 = Clock.now
                let yDense = current.dense.forward(x, m: m, threads: 1)
                dense = Clock.now - t1
                total = relativeError(y, yDense.map(Double.init))
                let rows = min(current.packed.rows, 64)
                let ref = referenceProduct(Array(current.deq.prefix(rows * current.packed.cols)), rows: rows, cols: current.packed.cols, x: x, m: m)
                var got = [Float]()
                for k in 0..<m { got += y[(k * current.packed.rows)..<(k * current.packed.rows + rows)] }
                relError = relativeError(got, ref)
            }
            let gpuSeconds = iteration % 4 == 0 ? timeOnGPU(x, m: m) : nil
            lock.lock()
            if let gpuSeconds, target?.name == current.name && batch == m {
                gpuLatencies.append(gpuSeconds)
                if gpuLatencies.count > 200 { gpuLatencies.removeFirst(gpuLatencies.count - 200) }
            }
            if target?.name == current.name && batch == m {
                latencies.append(seconds)
                if latencies.count > 200 { latencies.removeFirst(latencies.count - 200) }
                if let dense { denseLatency = dense }
                if let relError { error = relError }
                if let total { totalError = total }
            } else {
                latencies = []
                denseLatency = nil
                gpuLatencies = []
            }
            lock.unlock()
            iteration += 1
            Thread.sleep(forTimeInterval: 0.002)
        }
    }
}

extension KernelRunner {
    /// One launch of the layer's GPU lookup kernel (device time), or nil without one; a failure
    /// drops the GPU row and says why.
    fileprivate func timeOnGPU(_ x: [Float], m: Int) -> Double? {
        guard let layer = lock.withLock({ gpuLayer }) else { return nil }
        guard m <= GPUGeometry.maxBatch else {
            lock.withLock { gpuNote = "GPU: the kernel takes batches up to \(GPUGeometry.maxBatch)" }
            return nil
        }
        do {
            let type = GPUActivationType.bf16
            let xd = try layer.backend.upload(type.pack(x, m: m, cols: layer.cols, paddedCols: layer.paddedCols))
            let yd = try layer.backend.allocate(bytes: m * layer.rows * 4)
            let seconds = try layer.backend.time(1) { (_: Int) throws(GPUError) in try layer.launch(x: xd, y: yd, m: m, type: type) }[0]
            lock.withLock { gpuNote = nil }
            return seconds
        } catch {
            lock.withLock {
                gpuNote = "GPU: \(error)"
                gpuLayer = nil
            }
            return nil
        }
    }
}
