/// Times the lookup-GEMM kernels against dense baselines, the way `any4 bench` reports them.
///
/// Unless `hot`, each format's weights are copied until the copies exceed 4× the last-level cache
/// and successive runs cycle through them, so every run streams its weights from memory as a
/// real model's layers do. Latency is the median (and p10/p90) of `runs` timed calls after one
/// warm-up pass over the copies.
public enum KernelBenchmark {
    public struct Configuration: Sendable {
        public var shapes: [(out: Int, in: Int)] = [(4096, 4096), (14336, 4096), (4096, 14336)]
        public var batches: [Int] = [1, 8, 32]
        public var formats: [String] = ["any4", "int4", "nf4", "f32", "f16", "bf16", "blas"]
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
        public init() {}
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

        /// A row for a format that could not run, saying why.
        static func unavailable(_ format: String, shape: (out: Int, in: Int), batch: Int, threads: Int, kernel: String,
                                why: String, device: String = "cpu") -> Result {
            Result(format: format, shape: shape, batch: batch, threads: threads, kernel: kernel, medianMicroseconds: .nan,
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
    }

    /// Runs the whole configuration; `report` gets each result as it is measured.
    public static func run(_ config: Configuration, progress: Progress? = nil,
                           report: (Result) -> Void = { _ in }) throws -> [Result] {
        var results: [Result] = []
        if config.device.runsCPU { results += try runCPU(config, progress: progress, report: report) }
        if config.device.runsGPU, let gpu = config.gpu { results += try runGPU(config, on: gpu, progress: progress, report: report) }
        return results
    }

    /// The random Student-t weights every format of a shape starts from.
    static func benchWeights(_ shape: (out: Int, in: Int)) -> [Float] {
        var rng = SplitMix64(seed: UInt64(shape.out * 31 + shape.in))
        return (0..<(shape.out * shape.in)).map { _ in Float(rng.nextStudentT4() * 0.02) }
    }

    /// The activations of a batch (Gaussian).
    static func benchActivations(batch: Int, cols: Int) -> [Float] {
        var xr = SplitMix64(seed: UInt64(batch))
        return (0..<(batch * cols)).map { _ in Float(xr.nextGaussian()) }
    }

    static func runCPU(_ config: Configuration, progress: Progress?, report: (Result) -> Void) throws -> [Result] {
        let threads = config.threads > 0 ? config.threads : SystemInfo.processorCount
        let target = 4 * lastLevelCacheBytes
        var results: [Result] = []
        for shape in config.shapes {
            let w = benchWeights(shape)
            var formats = config.formats
            if !formats.contains("f32") { formats.insert("f32", at: 0) }
            // f32 first so every other row has its ratio.
            formats.sort { ($0 == "f32" ? 0 : 1) < ($1 == "f32" ? 0 : 1) }
            var f32Median: [Int: Double] = [:]
            for format in formats {
                progress?.setLabel("bench \(format) \(shape.out)x\(shape.in)")
                let subject: Subject
                do {
                    subject = try makeSubject(format, w, shape, config: config, threads: threads, target: target)
                } catch {
                    for batch in config.batches {
                        let r = Result.unavailable(format, shape: shape, batch: batch, threads: threads,
                                                   kernel: config.path.rawValue, why: "\(error)")
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
                    for c in 0..<subject.copies { _ = subject.run(c, x, batch) }  // warm-up
                    var times: [Double] = []
                    for i in 0..<max(config.runs, 1) {
                        let copy = config.hot ? 0 : i % subject.copies
                        let t0 = Clock.now
                        _ = subject.run(copy, x, batch)
                        times.append(Clock.now - t0)
                    }
                    times.sort()
                    let median = times[times.count / 2]
                    if format == "f32" { f32Median[batch] = median }
                    let r = Result(format: format, shape: shape, batch: batch, threads: threads,
                                   kernel: ["f32", "f16", "bf16", "blas"].contains(format) ? "dense" : config.path.rawValue,
                                   medianMicroseconds: median * 1e6,
                                   p10Microseconds: times[times.count / 10] * 1e6,
                                   p90Microseconds: times[min(times.count - 1, times.count * 9 / 10)] * 1e6,
                                   gflops: 2 * Double(shape.out * shape.in * batch) / median / 1e9,
                                   gbps: Double(subject.weightBytes) / median / 1e9,
                                   vsF32: f32Median[batch].map { $0 / median }, relError: error, unavailable: nil)
                    results.append(r)
                    report(r)
                    progress?.advance()
                }
            }
        }
        return results
    }

    static func makeSubject(_ format: String, _ w: [Float], _ shape: (out: Int, in: Int), config: Configuration,
                            threads: Int, target: Int) throws -> Subject {
        func copies(_ bytes: Int) -> Int { config.hot ? 1 : max(1, min(16, (target + bytes - 1) / bytes)) }
        switch format {
        case "f32", "f16", "bf16":
            let storage: DenseLinear.Storage = format == "f32" ? .f32 : (format == "f16" ? .f16 : .bf16)
            let first = DenseLinear(w, rows: shape.out, cols: shape.in, storage: storage)
            let n = copies(first.weightBytes)
            let layers = [first] + (1..<n).map { _ in DenseLinear(w, rows: shape.out, cols: shape.in, storage: storage) }
            let stored = first.weights
            return Subject(weightBytes: first.weightBytes, copies: n,
                           run: { c, x, m in layers[c].forward(x, m: m, threads: threads) },
                           reference: { x, m, rows in referenceProduct(Array(stored.prefix(rows * shape.in)), rows: rows, cols: shape.in, x: x, m: m) })
        case "blas":
            guard let blas = OpenBLAS.shared else { throw BenchUnavailable(OpenBLAS.loadError ?? "OpenBLAS missing") }
            let bytes = w.count * 4
            let n = copies(bytes)
            let layers = (0..<n).map { _ in w.withUnsafeBufferPointer { Array($0) } }
            return Subject(weightBytes: bytes, copies: n,
                           run: { c, x, m in layers[c].withUnsafeBufferPointer { blas.forward($0, rows: shape.out, cols: shape.in, x: x, m: m, threads: threads) } },
                           reference: { x, m, rows in referenceProduct(Array(w.prefix(rows * shape.in)), rows: rows, cols: shape.in, x: x, m: m) })
        default:
            var options = QuantizationOptions()
            options.groupSize = config.groupSize
            options.threads = threads
            let numeric = try FormatRegistry.named(format)
            let q = try Quantizer.quantize(w, rows: shape.out, cols: shape.in, name: "bench", format: numeric, options: options)
            let first = try PackedLinear(q)
            let n = copies(first.weightBytes)
            let layers = [first] + (1..<n).map { _ in first.duplicate() }
            let deq = q.dequantized()
            return Subject(weightBytes: first.streamedBytes(config.path), copies: n,
                           run: { c, x, m in layers[c].forward(x, m: m, path: config.path, threads: threads) },
                           reference: { x, m, rows in referenceProduct(Array(deq.prefix(rows * shape.in)), rows: rows, cols: shape.in, x: x, m: m) })
        }
    }

    struct BenchUnavailable: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }
}
