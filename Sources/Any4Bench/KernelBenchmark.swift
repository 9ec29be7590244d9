import Any4Core
import Any4GPU
import Any4Kernels

/// Times the lookup-GEMM kernels against dense baselines, the way `any4 bench` reports them.
///
/// Unless `hot`, each format's weights are copied until the copies exceed 4× the last-level cache
/// and successive runs cycle through them, so every run streams its weights from memory as a
/// real model's layers do. Latency is the median (and p10/p90) of `runs` timed calls after one
/// warm-up pass over the copies.
public enum KernelBenchmark {
    /// The dense rows bench measures besides the quantized formats (not quantization formats):
    /// f32, f16 and bf16 weights through the dense kernel, and the f32 product through BLAS.
    public static let denseFormats = ["f32", "f16", "bf16", "blas"]
    /// Rows bench measures on request only (not in the default list): `q8`, the int8 decode-head
    /// copy (``Q8Linear``: int8 weights with one f32 scale per 32 columns, int8 activations).
    public static let decodeFormats = ["q8"]

    public struct Configuration: Sendable {
        public var shapes: [(out: Int, in: Int)] = [(4096, 4096), (14336, 4096), (4096, 14336)]
        public var batches: [Int] = [1, 8, 32]
        /// The registry's benchmarked formats, then every dense row.
        public var formats: [String] = FormatRegistry.benchmarked.map(\.name) + KernelBenchmark.denseFormats
        public var path: KernelPath = .fast
        public var threads = 0
        public var runs = 20
        public var hot = false
        public var groupSize = 128
        /// Where to run: the CPU kernels, the GPU kernels (needs ``gpu``), or both.
        public var device: Device = .cpu
        /// The GPU backend for `.gpu` and `.all` (without one, `.all` runs the CPU rows only).
        public var gpu: GPUBackend?
        /// The activation type of the GPU lookup kernel and cuBLAS rows.
        public var gpuActivations: GPUActivationType = .bf16
        /// Per shape (same index as ``shapes``), the row counts of layers called together over one
        /// input, as a decode step calls q/k/v and gate/up (`PackedLinear.forward(layers...)`):
        /// the 4-bit formats then run one grouped call over the parts, quantized each on its own;
        /// the dense rows run the stacked matrix. Empty, or one part, for a single layer.
        public var parts: [[Int]] = []
        /// Measure the bandwidth probe again before each shape (``Result/probeGBps``), so each row's
        /// share is against the memory the machine gave at that time (a shared machine drifts).
        public var probeEachShape = false
        /// The bytes of copies each format cycles through when not hot; nil: 4× the last-level
        /// cache (at most 16 copies). A host whose cache is larger than the one the machine
        /// reports (a virtual machine) needs more to read every run from memory.
        public var cycleBytes: Int? = nil
        /// Rounds of `runs` timed calls per row, each with its own median (``Result/roundMedians``)
        /// and, with ``probeEachShape``, its own probe measured just before it: the spread of a
        /// row over time on a machine whose load drifts. The row's median and percentiles pool
        /// every round's calls.
        public var rounds = 1
        /// Measure dense f32 on every shape (the `vs f32` column) even when not asked for.
        public var baseline = true
        public init() {}

        /// The bytes of copies to cycle through.
        var cycleTarget: Int { cycleBytes ?? 4 * KernelBenchmark.lastLevelCacheBytes }
        /// The most copies of one format: 16 by default, enough for `cycleBytes` of the smallest
        /// layer when that is set.
        var maxCopies: Int { cycleBytes == nil ? 16 : 1 << 16 }

        /// The parts of shape `i` when it is a grouped call (two or more layers), else nil.
        public func groupedParts(_ i: Int) -> [Int]? {
            i < parts.count && parts[i].count > 1 ? parts[i] : nil
        }
    }

    public enum Device: String, Sendable, CaseIterable {
        case cpu, gpu, all
        var runsCPU: Bool { self != .gpu }
        var runsGPU: Bool { self != .cpu }
    }

    public struct Result: Sendable {
        public var format: String
        public var shape: (out: Int, in: Int)
        public var batch: Int
        public var threads: Int
        public var kernel: String
        public var medianMicroseconds: Double
        public var p10Microseconds: Double
        public var p90Microseconds: Double
        public var gflops: Double
        /// Weight bytes streamed per call / median time.
        public var gbps: Double
        /// Dense f32 median / this median (speed-up over f32), when f32 ran.
        public var vsF32: Double?
        /// ‖y − y_ref‖/‖y_ref‖ over the first rows, against the f64 product of the weights this
        /// format holds (dequantized for 4-bit formats).
        public var relError: Double
        /// Set when the format could not run (why).
        public var unavailable: String?
        /// "cpu" or "gpu".
        public var device = "cpu"
        /// GPU rows: cuBLAS median / this median on the same shape, batch and activation type.
        public var vsCuBLAS: Double? = nil
        /// The layers' row counts when the row is a grouped call (they add up to `shape.out`).
        public var parts: [Int]? = nil
        /// The probe measured just before this row's shape (``Configuration/probeEachShape``).
        public var probeGBps: Double? = nil
        /// With several rounds: each round's median, and the probe measured just before it.
        public var roundMedians: [(microseconds: Double, probeGBps: Double?)]? = nil

        /// OUTxIN, or A+B+CxIN for a grouped call.
        public var shapeLabel: String {
            (parts.map { $0.map(String.init).joined(separator: "+") } ?? String(shape.out)) + "x\(shape.in)"
        }

        /// A row for a format that could not run, saying why.
        static func unavailable(
            _ format: String, shape: (out: Int, in: Int), batch: Int, threads: Int, kernel: String,
            why: String, device: String = "cpu"
        ) -> Result {
            Result(
                format: format, shape: shape, batch: batch, threads: threads, kernel: kernel, medianMicroseconds: .nan,
                p10Microseconds: .nan, p90Microseconds: .nan, gflops: .nan, gbps: .nan, vsF32: nil, relError: .nan,
                unavailable: why, device: device)
        }
    }

    /// The last-level cache size in bytes (Linux sysfs), or 32 MiB if unknown.
    public static var lastLevelCacheBytes: Int {
        for index in [3, 2] {
            let path = "/sys/devices/system/cpu/cpu0/cache/index\(index)/size"
            if let store = try? ByteStore(mapping: path) {
                let text = String(decoding: store.bytes, as: UTF8.self).filter { !$0.isWhitespace }
                let value = Int(text.dropLast()) ?? 0
                if value > 0 { return text.hasSuffix("K") ? value << 10 : (text.hasSuffix("M") ? value << 20 : value) }
            }
        }
        return 32 << 20
    }

    /// A format's runnable form for one shape: `copies` independent copies and how to call one.
    struct Subject {
        var weightBytes: Int
        var copies: Int
        var run: (_ copy: Int, _ x: [Float], _ m: Int) -> [Float]
        var reference: (_ x: [Float], _ m: Int, _ rows: Int) -> [Double]
        /// The call the timed runs make, when it differs from `run` (a grouped call, timed without
        /// gathering its parts into one output).
        var timed: ((_ copy: Int, _ x: [Float], _ m: Int) -> Void)? = nil
    }

    /// The largest bench dimension (rows or columns): the kernels' limit.
    public static let maxDimension = PackedLinear.maxDimension

    /// The most memory the run holds at once, estimated from the configuration before anything is
    /// allocated, and the shape that needs it: that shape's f32 weights, plus the largest of its
    /// formats' runnable forms (the copies it cycles through, and what it keeps besides: the f32
    /// reference of a dense row, the codes, dequantized matrix, scales and packed copies of a 4-bit
    /// format), plus the activations and outputs of the largest batch. Shapes run one after the
    /// other, so the peak is the largest shape's. Throws when a size overflows.
    public static func estimatedPeak(_ config: Configuration) throws(SizeError) -> (bytes: Int, shape: (out: Int, in: Int)?) {
        let target = config.cycleTarget
        var peak = 0
        var peakShape: (out: Int, in: Int)?
        for shape in config.shapes {
            let what = "bench --shape \(shape.out)x\(shape.in)"
            func mul(_ factors: Int...) throws(SizeError) -> Int { try Sizes.product(factors, what) }
            func add(_ terms: Int...) throws(SizeError) -> Int { try Sizes.sum(terms, what) }
            func copies(_ bytes: Int) -> Int {
                config.hot || bytes == 0 ? 1 : max(1, min(config.maxCopies, Sizes.groupCount(width: target, size: bytes)))
            }
            let n = try mul(shape.out, shape.in)
            let f32 = try mul(n, 4)
            var subject = 0
            for format in Set(config.formats + ["f32"]) {
                let bytes: Int
                switch format {
                case "f32": bytes = try add(try mul(copies(f32), f32), f32)
                case "f16", "bf16":
                    let half = try mul(n, 2)
                    bytes = try add(try mul(copies(half), half), half, f32)
                case "blas": bytes = try mul(copies(f32), f32)
                case "q8":
                    let q8 = try add(n, try mul(Sizes.groupCount(width: shape.in, size: 32), shape.out, 4))
                    bytes = try add(try mul(copies(q8), q8), f32)
                default:
                    let block = (try? FormatRegistry.named(format))?.fixedBlockSize ?? max(config.groupSize, 1)
                    let groups = try mul(shape.out, Sizes.groupCount(width: shape.in, size: block))
                    // Packed: codes, f32 and f16 scales and zeros, per-row tables and factors.
                    let packed = try add(n / 2 + 64, try mul(groups, 12), try mul(shape.out, 16 * 5 + 16))
                    bytes = try add(n, f32, try mul(groups, 8), try mul(shape.out, 64), try mul(copies(packed), packed))
                }
                subject = max(subject, bytes)
            }
            let batch = config.batches.max() ?? 1
            let activations = try add(
                try mul(batch, shape.in, 4 * 3), try mul(batch, shape.out, 4 * 2),
                try mul(min(shape.out, 256), shape.in, 4), try mul(batch, min(shape.out, 256), 8))
            let total = try add(f32, subject, activations)
            if total > peak { (peak, peakShape) = (total, shape) }
        }
        return (peak, peakShape)
    }

    /// Throws a ``SizeError`` unless the machine can give the run's estimated peak memory.
    public static func checkMemory(_ config: Configuration) throws(SizeError) {
        let (bytes, shape) = try estimatedPeak(config)
        try MemoryBudget.check(
            bytes,
            for: "bench --shape \(shape.map { "\($0.out)x\($0.in)" } ?? "")"
                + " (its f32 weights, the copies cycled through and each format's packed form)")
    }

    /// Runs the whole configuration; `report` gets each result as it is measured. Refuses (with a
    /// ``SizeError``) a configuration whose estimated memory the machine cannot give, before any
    /// work; cancelling `progress` stops it between formats, copies and timed runs
    /// (`QuantizationError.cancelled`).
    public static func run(
        _ config: Configuration, progress: Progress? = nil,
        report: (Result) -> Void = { _ in }
    ) throws -> [Result] {
        try checkMemory(config)
        var results: [Result] = []
        if config.device.runsCPU { results += try runCPU(config, progress: progress, report: report) }
        if config.device.runsGPU, let gpu = config.gpu { results += try runGPU(config, on: gpu, progress: progress, report: report) }
        return results
    }

    /// The random Student-t weights every format of a shape starts from (cancelling `progress`
    /// stops a large shape's generation between rows).
    static func benchWeights(_ shape: (out: Int, in: Int), progress: Progress? = nil) throws -> [Float] {
        var rng = SplitMix64(seed: UInt64(shape.out * 31 + shape.in))
        var w = [Float]()
        w.reserveCapacity(shape.out * shape.in)
        for r in 0..<shape.out {
            if r % 64 == 0, progress?.isCancelled == true { throw QuantizationError.cancelled }
            for _ in 0..<shape.in { w.append(Float(rng.nextStudentT4() * 0.02)) }
        }
        return w
    }

    /// The activations of a batch (Gaussian).
    static func benchActivations(batch: Int, cols: Int) -> [Float] {
        var xr = SplitMix64(seed: UInt64(batch))
        return (0..<(batch * cols)).map { _ in Float(xr.nextGaussian()) }
    }

    static func runCPU(_ config: Configuration, progress: Progress?, report: (Result) -> Void) throws -> [Result] {
        let threads = config.threads > 0 ? config.threads : SystemInfo.processorCount
        let target = config.cycleTarget
        var results: [Result] = []
        for (index, shape) in config.shapes.enumerated() {
            let parts = config.groupedParts(index)
            let probe = config.probeEachShape ? BandwidthProbe.triadGBps(threads: threads) : nil
            if progress?.isCancelled == true { throw QuantizationError.cancelled }
            let w = try benchWeights(shape, progress: progress)
            var formats = config.formats
            if !formats.contains("f32") && config.baseline { formats.insert("f32", at: 0) }
            // f32 first so every other row has its ratio.
            formats.sort { ($0 == "f32" ? 0 : 1) < ($1 == "f32" ? 0 : 1) }
            var f32Median: [Int: Double] = [:]
            for format in formats {
                if progress?.isCancelled == true { throw QuantizationError.cancelled }
                progress?.setLabel("bench \(format) \(shape.out)x\(shape.in)")
                let subject: Subject
                do {
                    subject = try makeSubject(
                        format, w, shape, parts: parts, config: config, threads: threads, target: target, progress: progress)
                } catch QuantizationError.cancelled {
                    throw QuantizationError.cancelled
                } catch {
                    for batch in config.batches {
                        var r = Result.unavailable(
                            format, shape: shape, batch: batch, threads: threads,
                            kernel: config.path.rawValue, why: "\(error)")
                        r.parts = parts
                        r.probeGBps = probe
                        results.append(r)
                        report(r)
                    }
                    continue
                }
                for batch in config.batches {
                    if progress?.isCancelled == true { throw QuantizationError.cancelled }
                    let x = benchActivations(batch: batch, cols: shape.in)
                    // Correctness on the first rows against the f64 product.
                    let checkRows = min(shape.out, 256)
                    let y = subject.run(0, x, batch)
                    let ref = subject.reference(x, batch, checkRows)
                    var got = [Float](repeating: 0, count: batch * checkRows)
                    for k in 0..<batch { for r in 0..<checkRows { got[k * checkRows + r] = y[k * shape.out + r] } }
                    let error = relativeError(got, ref)
                    for c in 0..<subject.copies {  // warm-up
                        if progress?.isCancelled == true { throw QuantizationError.cancelled }
                        _ = subject.run(c, x, batch)
                    }
                    var times: [Double] = []
                    var rounds: [(microseconds: Double, probeGBps: Double?)] = []
                    for _ in 0..<max(config.rounds, 1) {
                        let roundProbe = config.rounds > 1 && config.probeEachShape ? BandwidthProbe.triadGBps(threads: threads) : nil
                        var round: [Double] = []
                        for i in 0..<max(config.runs, 1) {
                            if progress?.isCancelled == true { throw QuantizationError.cancelled }
                            let copy = config.hot ? 0 : i % subject.copies
                            let t0 = Clock.now
                            if let timed = subject.timed { timed(copy, x, batch) } else { _ = subject.run(copy, x, batch) }
                            round.append(Clock.now - t0)
                        }
                        times += round
                        round.sort()
                        rounds.append((round[round.count / 2] * 1e6, roundProbe))
                    }
                    times.sort()
                    let median = times[times.count / 2]
                    if format == "f32" { f32Median[batch] = median }
                    var r = Result(
                        format: format, shape: shape, batch: batch, threads: threads,
                        kernel: denseFormats.contains(format) ? "dense" : (decodeFormats.contains(format) ? format : config.path.rawValue),
                        medianMicroseconds: median * 1e6,
                        p10Microseconds: times[times.count / 10] * 1e6,
                        p90Microseconds: times[min(times.count - 1, times.count * 9 / 10)] * 1e6,
                        gflops: 2 * Double(shape.out * shape.in * batch) / median / 1e9,
                        gbps: Double(subject.weightBytes) / median / 1e9,
                        vsF32: f32Median[batch].map { $0 / median }, relError: error, unavailable: nil)
                    r.parts = parts
                    r.probeGBps = probe
                    if config.rounds > 1 { r.roundMedians = rounds }
                    results.append(r)
                    report(r)
                    progress?.advance()
                }
            }
        }
        return results
    }

    static func makeSubject(
        _ format: String, _ w: [Float], _ shape: (out: Int, in: Int), parts: [Int]? = nil, config: Configuration,
        threads: Int, target: Int, progress: Progress? = nil
    ) throws -> Subject {
        func copies(_ bytes: Int) -> Int {
            config.hot || bytes == 0 ? 1 : max(1, min(config.maxCopies, Sizes.groupCount(width: target, size: bytes)))
        }
        /// `n` of something made by `make`, stopping between them when cancelled.
        func made<T>(_ n: Int, _ make: () -> T) throws -> [T] {
            try (0..<n).map { _ in
                if progress?.isCancelled == true { throw QuantizationError.cancelled }
                return make()
            }
        }
        switch format {
        case "f32", "f16", "bf16":
            let storage: DenseLinear.Storage = format == "f32" ? .f32 : (format == "f16" ? .f16 : .bf16)
            let first = DenseLinear(w, rows: shape.out, cols: shape.in, storage: storage)
            let n = copies(first.weightBytes)
            let layers = [first] + (try made(n - 1) { DenseLinear(w, rows: shape.out, cols: shape.in, storage: storage) })
            let stored = first.weights
            return Subject(
                weightBytes: first.weightBytes, copies: n,
                run: { c, x, m in layers[c].forward(x, m: m, threads: threads) },
                reference: { x, m, rows in referenceProduct(Array(stored.prefix(rows * shape.in)), rows: rows, cols: shape.in, x: x, m: m) })
        case "blas":
            guard let blas = OpenBLAS.shared else { throw BenchUnavailable(OpenBLAS.loadError ?? "OpenBLAS missing") }
            let bytes = w.count * 4
            let n = copies(bytes)
            let layers = try made(n) { w.withUnsafeBufferPointer { Array($0) } }
            return Subject(
                weightBytes: bytes, copies: n,
                run: { c, x, m in
                    layers[c].withUnsafeBufferPointer { blas.forward($0, rows: shape.out, cols: shape.in, x: x, m: m, threads: threads) }
                },
                reference: { x, m, rows in referenceProduct(Array(w.prefix(rows * shape.in)), rows: rows, cols: shape.in, x: x, m: m) })
        case "q8":
            guard shape.in % 32 == 0 else { throw BenchUnavailable("q8 needs a width that is a multiple of 32, got \(shape.in)") }
            let blocks = shape.in >> 5
            let bytes = shape.out * shape.in + shape.out * blocks * 4  // int8 codes and f32 block scales
            let layers = try made(copies(bytes)) { Q8Linear(w, rows: shape.out, cols: shape.in, threads: threads) }
            // Against the f32 weights it was made from (its int8 rounding is part of the error).
            return Subject(
                weightBytes: bytes, copies: layers.count,
                run: { c, x, m in layers[c].forward(x, m: m, threads: threads, bias: nil) },
                reference: { x, m, rows in referenceProduct(Array(w.prefix(rows * shape.in)), rows: rows, cols: shape.in, x: x, m: m) })
        default:
            var options = QuantizationOptions()
            options.groupSize = config.groupSize
            options.threads = threads
            let numeric = try FormatRegistry.named(format)
            if let parts {
                // One layer per part (rows quantize independently), run as one grouped call.
                var first: [PackedLinear] = []
                var deq: [Float] = []
                var start = 0
                var bytes = 0
                for rows in parts {
                    let slice = Array(w[(start * shape.in)..<((start + rows) * shape.in)])
                    let q = try Quantizer.quantize(
                        slice, rows: rows, cols: shape.in, name: "bench", format: numeric, options: options,
                        progress: Progress(total: rows, parent: progress))
                    let layer = try PackedLinear(q)
                    first.append(layer)
                    bytes += layer.streamedBytes(config.path)
                    deq += q.dequantized()
                    start += rows
                }
                let n = copies(first.reduce(0) { $0 + $1.weightBytes })
                let groups = [first] + (try made(n - 1) { first.map { $0.duplicate() } })
                let biases = [[Float]?](repeating: nil, count: parts.count)
                return Subject(
                    weightBytes: bytes, copies: n,
                    run: { c, x, m in
                        let ys = PackedLinear.forward(groups[c], biases: biases, x: x, m: m, path: config.path, threads: threads)
                        // Back to [m, out] with the parts side by side, as the stacked matrix gives.
                        var y = [Float](repeating: 0, count: m * shape.out)
                        var offset = 0
                        for (part, rows) in zip(ys, parts) {
                            for k in 0..<m { for r in 0..<rows { y[k * shape.out + offset + r] = part[k * rows + r] } }
                            offset += rows
                        }
                        return y
                    },
                    reference: { x, m, rows in referenceProduct(Array(deq.prefix(rows * shape.in)), rows: rows, cols: shape.in, x: x, m: m) },
                    timed: { c, x, m in _ = PackedLinear.forward(groups[c], biases: biases, x: x, m: m, path: config.path, threads: threads) })
            }
            // Its own counts, the bench's cancellation.
            let q = try Quantizer.quantize(
                w, rows: shape.out, cols: shape.in, name: "bench", format: numeric, options: options,
                progress: Progress(total: shape.out, parent: progress))
            let first = try PackedLinear(q)
            let n = copies(first.weightBytes)
            let layers = [first] + (try made(n - 1) { first.duplicate() })
            let deq = q.dequantized()
            return Subject(
                weightBytes: first.streamedBytes(config.path), copies: n,
                run: { c, x, m in layers[c].forward(x, m: m, path: config.path, threads: threads) },
                reference: { x, m, rows in referenceProduct(Array(deq.prefix(rows * shape.in)), rows: rows, cols: shape.in, x: x, m: m) })
        }
    }

    struct BenchUnavailable: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }
}
