import Any4Bench
import Any4Core
import Any4GPU
import Any4Kernels
import ArgumentParser

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time the lookup-GEMM kernels against dense f32/f16/bf16 and OpenBLAS on random Student-t weights.",
        discussion: """
            For each shape, batch and format: median, p10 and p90 latency over --runs timed calls after a \
            warm-up, GFLOP/s, effective weight bandwidth (bytes streamed / median), the speed-up over dense \
            f32 on the same shape, batch and threads, the share of a STREAM-triad-like bandwidth probe \
            measured once at the start, and the relative error against the f64 product. Unless --hot, \
            weights are copied until the copies exceed 4x the last-level cache and runs cycle through them.
            --device gpu|all adds GPU rows (batches 1-16): the lookup kernel for each 4-bit format, our dense \
            f16/bf16 kernel, and cuBLAS (blas) as the baseline (vs cuBLAS instead of vs f32), timed with CUDA \
            events over copies exceeding 4x the L2 cache; the probe is a device-to-device copy.
            The lookup kernel takes group sizes that are multiples of 32.
            """
    )

    @Option(
        parsing: .upToNextOption,
        help:
            "Shapes as OUTxIN, each dimension 1 to 1073741824 (the memory the run needs is estimated first, and refused when the machine cannot give it); A+B+CxIN times layers of A, B and C rows called together over one input (q/k/v, gate/up), as a decode step does."
    )
    var shape: [String] = ["4096x4096", "14336x4096", "4096x14336"]

    @Option(help: "Comma-separated batch sizes (rows of x), each 1 to 64.")
    var batch = "1,8,32"

    @Option(
        name: .customLong("format"),
        help:
            "Comma-separated formats: any 4-bit format (any4, int4, nf4, fp4, iq4_nl, mxfp4, ...), f32, f16, bf16, blas, q8 (the int8 decode head).")
    var formats = KernelBenchmark.Configuration().formats.joined(separator: ",")

    /// `--formats`, the old spelling of `--format`.
    @Option(name: .customLong("formats"), help: .hidden)
    var formatsAlias: String?

    @Option(help: "Lookup path: fast (int8) or exact (float LUT).")
    var kernel: KernelPath = .fast

    @OptionGroup var threadsOption: ThreadsOption

    @Option(parsing: .unconditional, help: "Timed runs per case, 1 to 1000000 (at least 20 are recommended).")
    var runs = 20

    @OptionGroup var groupSizeOption: GroupSizeOption

    @Flag(help: "Run on one copy of the weights (cache-hot) instead of cycling through copies.")
    var hot = false

    @Option(help: "Where to run: cpu, gpu (the CUDA lookup kernel, our dense kernel and cuBLAS) or all.")
    var device: KernelBenchmark.Device = .cpu

    @Option(help: "Activation type of the GPU lookup kernel and cuBLAS rows: bf16 or f16.")
    var gpuActivations: GPUActivationType = .bf16

    @Option(
        help:
            "MiB of weight copies to cycle through (default: 4x the last-level cache, at most 16 copies); more where the host's cache is larger than the one reported."
    )
    var cycleMib: Int?

    @Option(
        help:
            "Rounds of --runs timed calls per row, 1 to 100, each with its own median (and its own probe with --probe-each-shape): the spread over time."
    )
    var rounds = 1

    @Flag(help: "Skip the dense f32 baseline unless --format names it (no vs f32 column; saves its copies and time on large shapes).")
    var noBaseline = false

    @Flag(help: "Measure the bandwidth probe again before each shape; each row's share is against its shape's probe.")
    var probeEachShape = false

    @Flag(
        help:
            "Instead of the kernels: time exact k-means against Lloyd on a seeded 4096x4096 Student-t(5) x 0.02 matrix (any4 at --group-size, f16 tables), the whole matrix (--threads) and the solvers alone (one thread, 256 rows), interleaved over --kmeans-rounds, after checking the exact objective on 2 rows against a plain O(k n^2) dynamic program."
    )
    var kmeans = false

    @Option(help: "Rounds for --kmeans, 1 to 100.")
    var kmeansRounds = 5

    @OptionGroup var jsonOutput: JSONOutputOption

    var threads: Int { threadsOption.threads }
    var groupSize: Int { groupSizeOption.groupSize }
    var json: Bool { jsonOutput.json }

    static let maxRuns = 1_000_000

    /// The spelling of the format option the command line used, for messages.
    var formatOption: String { formatsAlias != nil ? "--formats" : "--format" }

    /// The shapes, each dimension in 1...KernelBenchmark.maxDimension (a grouped shape's OUT is the
    /// sum of its parts).
    func shapes() throws -> [(out: Int, in: Int)] {
        try parsedShapes().map { ($0.parts.reduce(0, +), $0.in) }
    }

    /// Each shape's layer row counts (one for a single layer) and width.
    func parsedShapes() throws -> [(parts: [Int], in: Int)] {
        try shape.map { text in
            let fields = text.lowercased().split(separator: "x", omittingEmptySubsequences: false)
            guard fields.count == 2 else { throw usageError("--shape: expected OUTxIN, got \(text)") }
            let outs = fields[0].split(separator: "+", omittingEmptySubsequences: false).map { Int($0) }
            guard let width = Int(fields[1]), !outs.contains(nil) else { throw usageError("--shape: expected OUTxIN, got \(text)") }
            let parts = outs.compactMap { $0 }
            for d in parts + [width] where d < 1 || d > KernelBenchmark.maxDimension {
                throw usageError("--shape \(text): each dimension must be in 1...\(KernelBenchmark.maxDimension), got \(d)")
            }
            let total = parts.reduce(0) { $0 + $1 }  // each ≤ 2^30: no overflow
            guard total <= KernelBenchmark.maxDimension else {
                throw usageError("--shape \(text): the parts add up to \(total), more than \(KernelBenchmark.maxDimension)")
            }
            return (parts, width)
        }
    }

    func batches() throws -> [Int] {
        try batch.split(separator: ",", omittingEmptySubsequences: false).map { b in
            guard let v = Int(b), v > 0, v <= 64 else { throw usageError("--batch: expected sizes 1...64, got \(b)") }
            return v
        }
    }

    /// Numeric options checked as the command line is parsed (status 2 naming the option).
    func validate() throws {
        _ = try shapes()
        _ = try batches()
        try requireRange("--runs", runs, 1...Self.maxRuns)
        if let cycleMib { try requireRange("--cycle-mib", cycleMib, 1...(1 << 20)) }
        try requireRange("--rounds", rounds, 1...100)
        try requireRange("--kmeans-rounds", kmeansRounds, 1...100)
    }

    func run() throws {
        if kmeans { return try runKMeans() }
        var config = KernelBenchmark.Configuration()
        config.shapes = try shapes()
        config.batches = try batches()
        config.formats = (formatsAlias ?? formats).split(separator: ",").map(String.init)
        config.parts = try parsedShapes().map(\.parts)
        config.probeEachShape = probeEachShape
        config.cycleBytes = cycleMib.map { $0 << 20 }
        config.rounds = rounds
        config.baseline = !noBaseline
        for f in config.formats where !(KernelBenchmark.denseFormats + KernelBenchmark.decodeFormats).contains(f) {
            do { _ = try FormatRegistry.named(f) } catch { throw usageError("\(formatOption): \(error)") }
        }
        config.path = kernel
        config.threads = threads
        config.runs = runs
        config.hot = hot
        config.groupSize = groupSize
        config.device = device
        let activations = gpuActivations
        config.gpuActivations = activations
        // The memory the run needs, before the probe or any weights.
        do { try KernelBenchmark.checkMemory(config) } catch { throw usageError("\(error)") }

        // The GPU: required for --device gpu, optional for all.
        var gpuUnavailable: String?
        var gpuProbe: Double?
        if device != .cpu {
            switch GPUBackend.load() {
            case .available(let backend):
                config.gpu = backend
                do { gpuProbe = try backend.copyBandwidthGBps() } catch {
                    printError("any4: error: GPU copy probe failed: \(error)")
                    throw ExitCode(2)
                }
            case .unavailable(let why):
                guard device == .all else {
                    printError("any4: error: --device gpu: no GPU backend: \(why)")
                    throw ExitCode(2)
                }
                gpuUnavailable = why
                printError("any4: GPU rows skipped: \(why)")
            }
        }
        let workers = threads > 0 ? threads : SystemInfo.processorCount
        var probe: Double?
        var gpuHeaderShown = false
        let rowsPerShape = config.batches.count * (config.formats.count + 1)
        let progress = Progress(total: config.shapes.count * rowsPerShape * (device == .all && config.gpu != nil ? 2 : 1))
        /// One row as it is measured (text mode).
        func show(_ r: KernelBenchmark.Result) {
            guard !json else { return }
            if r.device == "gpu" && !gpuHeaderShown, let gpu = config.gpu {
                gpuHeaderShown = true
                print(
                    "GPU \(gpu.device.name) (\(gpu.device.architecture), \(Formatting.bytes(gpu.device.memoryBytes))): device copy "
                        + "\(Formatting.fixed(gpuProbe ?? .nan, 0)) GB/s · activations \(activations.rawValue) · "
                        + (hot ? "hot" : "cold (cycling copies > 4x L2)"))
                printHeader(ratio: "vs cuBLAS")
            }
            var line =
                Formatting.pad(r.format, 8) + Formatting.pad(r.shapeLabel, 12)
                + Formatting.pad(String(r.batch), 4, right: true)
            if let why = r.unavailable {
                print(line + "  unavailable: \(why)")
                return
            }
            let rowProbe = r.device == "gpu" ? gpuProbe : (r.probeGBps ?? probe)
            let digits = r.device == "gpu" ? 1 : 0
            line += Formatting.pad(r.kernel, 7, right: true) + Formatting.pad(Formatting.fixed(r.medianMicroseconds, digits), 11, right: true)
            line +=
                Formatting.pad(Formatting.fixed(r.p10Microseconds, digits), 9, right: true)
                + Formatting.pad(Formatting.fixed(r.p90Microseconds, digits), 9, right: true)
            line += Formatting.pad(Formatting.fixed(r.gflops, 1), 9, right: true) + Formatting.pad(Formatting.fixed(r.gbps, 1), 7, right: true)
            line += Formatting.pad(rowProbe.map { Formatting.fixed(100 * r.gbps / $0, 0) + "%" } ?? "-", 7, right: true)
            let ratio = r.device == "gpu" ? r.vsCuBLAS : r.vsF32
            line += Formatting.pad(ratio.map { Formatting.fixed($0, 2) + "x" } ?? "-", 10, right: true)
            line += Formatting.pad(Formatting.scientific(r.relError, 1), 10, right: true)
            print(line)
        }
        let results: [KernelBenchmark.Result]
        do {
            // SIGINT/SIGTERM stop the probe's run too (checked after it: it takes a second or two).
            results = try cancellingOnInterrupt(progress) {
                probe = device != .gpu ? BandwidthProbe.triadGBps(threads: workers) : nil
                if progress.isCancelled { throw QuantizationError.cancelled }
                if !json, let probe {
                    print(
                        "bandwidth probe (triad, \(workers) threads): \(Formatting.fixed(probe, 1)) GB/s · kernels \(CPUFeatures.simd.name) · LLC \(Formatting.bytes(KernelBenchmark.lastLevelCacheBytes)) · \(hot ? "hot" : cycleMib.map { "cold (cycling \($0) MiB of copies)" } ?? "cold (cycling copies > 4x LLC)")"
                    )
                    printHeader(ratio: "vs f32")
                }
                return try KernelBenchmark.run(config, progress: progress, report: show)
            }
        } catch QuantizationError.cancelled {
            // SIGINT/SIGTERM: stopped between formats, copies or timed runs.
            printError("any4: interrupted")
            throw ExitCode(130)
        } catch let error as SizeError {
            throw usageError("\(error)")
        }
        if json {
            var top: [(key: String, value: JSONValue)] = [("probe_gbps", probe.map { JSONValue($0) } ?? .null)]
            if let gpu = config.gpu {
                top.append(("gpu_probe_gbps", gpuProbe.map { JSONValue($0) } ?? .null))
                top.append(
                    (
                        "gpu",
                        .object([
                            ("name", .string(gpu.device.name)), ("architecture", .string(gpu.device.architecture)),
                            ("memory_bytes", JSONValue(gpu.device.memoryBytes)), ("activations", .string(activations.rawValue))
                        ])
                    ))
            }
            if let gpuUnavailable { top.append(("gpu_unavailable", .string(gpuUnavailable))) }
            top.append(
                (
                    "results",
                    .array(
                        results.map { r in
                            let rowProbe = r.device == "gpu" ? gpuProbe : (r.probeGBps ?? probe)
                            var fields: [(key: String, value: JSONValue)] = [
                                ("device", .string(r.device)),
                                ("format", .string(r.format)), ("shape", .array([JSONValue(r.shape.out), JSONValue(r.shape.in)])),
                                ("batch", JSONValue(r.batch)), ("threads", JSONValue(r.threads)), ("kernel", .string(r.kernel)),
                                ("median_us", JSONValue(r.medianMicroseconds)), ("p10_us", JSONValue(r.p10Microseconds)),
                                ("p90_us", JSONValue(r.p90Microseconds)), ("gflops", JSONValue(r.gflops)), ("gbps", JSONValue(r.gbps)),
                                ("probe_share", rowProbe.map { JSONValue(r.gbps / $0) } ?? .null),
                                ("vs_f32", r.vsF32.map { JSONValue($0) } ?? .null), ("rel_error", JSONValue(r.relError))
                            ]
                            if let parts = r.parts { fields.append(("parts", .array(parts.map { JSONValue($0) }))) }
                            if let p = r.probeGBps { fields.append(("row_probe_gbps", JSONValue(p))) }
                            if let rounds = r.roundMedians {
                                fields.append(("round_median_us", .array(rounds.map { JSONValue($0.microseconds) })))
                                fields.append(("round_probe_gbps", .array(rounds.map { $0.probeGBps.map { JSONValue($0) } ?? .null })))
                            }
                            if r.device == "gpu" {
                                fields.append(("vs_cublas", r.vsCuBLAS.map { JSONValue($0) } ?? .null))
                                fields.append(("activations", .string(r.kernel == "dense" ? r.format : activations.rawValue)))
                            }
                            if let why = r.unavailable { fields.append(("unavailable", .string(why))) }
                            return .object(fields)
                        })
                ))
            print(JSONValue.object(top).serialized)
        }
    }

    private func runKMeans() throws {
        var config = KMeansBenchmark.Configuration()
        config.groupSize = groupSize
        config.threads = threads
        config.rounds = kmeansRounds
        let result = try KMeansBenchmark.run(config) { printError($0) }
        if json { return print(result.serialized) }
        func line(_ label: String, _ v: JSONValue?, unit: String) -> String {
            let f = { (x: Double) in Formatting.fixed(x, 3) }
            return "\(label): median \(f(v?["median"]?.double ?? 0))\(unit) (min \(f(v?["min"]?.double ?? 0)), max \(f(v?["max"]?.double ?? 0)))"
        }
        print(result["matrix"]?.string ?? "", "- any4 g\(groupSize), f16 tables,", result["threads"]?.int ?? 0, "threads")
        let q = result["quantize_seconds"], s = result["solver_microseconds_per_row"]
        print(line("quantize lloyd", q?["lloyd"], unit: " s"))
        print(line("quantize exact", q?["exact"], unit: " s"))
        print(line("quantize exact/lloyd", q?["exact_over_lloyd"], unit: "x"))
        print(line("solver lloyd", s?["lloyd"], unit: " us/row"))
        print(line("solver lloyd (1 plain k-means++ run)", s?["lloyd_plain"], unit: " us/row"))
        print(line("solver exact", s?["exact"], unit: " us/row"))
        print(line("solver exact/lloyd", s?["exact_over_lloyd"], unit: "x"))
        print(line("solver exact/lloyd plain", s?["exact_over_lloyd_plain"], unit: "x"))
        let o = result["kmeans_objective"]
        print("objective: lloyd \(o?["lloyd"]?.double ?? 0), exact \(o?["exact"]?.double ?? 0)")
        let v = result["optimality"]
        print(
            "exact vs reference DP: max relative difference \(v?["max_relative_difference"]?.double ?? 0) (\(v?["ok"]?.bool == true ? "ok" : "MISMATCH"))"
        )
    }

    private func printHeader(ratio: String) {
        print(
            Formatting.pad("format", 8) + Formatting.pad("shape", 12) + Formatting.pad("m", 4, right: true)
                + Formatting.pad("kernel", 7, right: true) + Formatting.pad("median µs", 11, right: true)
                + Formatting.pad("p10", 9, right: true) + Formatting.pad("p90", 9, right: true)
                + Formatting.pad("GFLOP/s", 9, right: true) + Formatting.pad("GB/s", 7, right: true)
                + Formatting.pad("probe", 7, right: true) + Formatting.pad(ratio, 10, right: true)
                + Formatting.pad("rel err", 10, right: true))
    }
}
