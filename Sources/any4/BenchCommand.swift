import Any4
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
            """
    )

    @Option(parsing: .upToNextOption, help: "Shapes as OUTxIN.")
    var shape: [String] = ["4096x4096", "14336x4096", "4096x14336"]

    @Option(help: "Comma-separated batch sizes (rows of x).")
    var batch = "1,8,32"

    @Option(help: "Comma-separated formats: any 4-bit format (any4, int4, nf4, fp4, iq4_nl, mxfp4, ...), f32, f16, bf16, blas.")
    var formats = "any4,int4,nf4,f32,f16,bf16,blas"

    @Option(help: "Lookup path: fast (int8) or exact (float LUT).")
    var kernel = "fast"

    @Option(help: "Threads (0: all cores).")
    var threads = 0

    @Option(help: "Timed runs per case (at least 20 are recommended).")
    var runs = 20

    @Option(help: "Group size of the quantized formats.")
    var groupSize = 128

    @Flag(help: "Run on one copy of the weights (cache-hot) instead of cycling through copies.")
    var hot = false

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        var config = KernelBenchmark.Configuration()
        config.shapes = try shape.map { text in
            let parts = text.lowercased().split(separator: "x").compactMap { Int($0) }
            guard parts.count == 2, parts[0] > 0, parts[1] > 0 else { throw usageError("--shape: expected OUTxIN, got \(text)") }
            return (parts[0], parts[1])
        }
        config.batches = try batch.split(separator: ",").map { b in
            guard let v = Int(b), v > 0, v <= 64 else { throw usageError("--batch: expected sizes 1...64, got \(b)") }
            return v
        }
        config.formats = formats.split(separator: ",").map(String.init)
        for f in config.formats where !["f32", "f16", "bf16", "blas"].contains(f) {
            do { _ = try FormatRegistry.named(f) } catch { throw usageError("--formats: \(error)") }
        }
        guard let path = KernelPath(rawValue: kernel) else { throw usageError("--kernel must be fast or exact") }
        config.path = path
        config.threads = threads
        guard runs >= 1 else { throw usageError("--runs must be at least 1, got \(runs)") }
        config.runs = runs
        config.hot = hot
        config.groupSize = groupSize
        let workers = threads > 0 ? threads : SystemInfo.processorCount
        let probe = BandwidthProbe.triadGBps(threads: workers)
        if !json {
            print("bandwidth probe (triad, \(workers) threads): \(Formatting.fixed(probe, 1)) GB/s · AVX2 \(CPUFeatures.hasAVX2 ? "yes" : "no") · LLC \(Formatting.bytes(KernelBenchmark.lastLevelCacheBytes)) · \(hot ? "hot" : "cold (cycling copies > 4x LLC)")")
            print(Formatting.pad("format", 8) + Formatting.pad("shape", 12) + Formatting.pad("m", 4, right: true)
                  + Formatting.pad("kernel", 7, right: true) + Formatting.pad("median µs", 11, right: true)
                  + Formatting.pad("p10", 9, right: true) + Formatting.pad("p90", 9, right: true)
                  + Formatting.pad("GFLOP/s", 9, right: true) + Formatting.pad("GB/s", 7, right: true)
                  + Formatting.pad("probe", 7, right: true) + Formatting.pad("vs f32", 8, right: true)
                  + Formatting.pad("rel err", 10, right: true))
        }
        let progress = Progress(total: config.shapes.count * config.batches.count * (config.formats.count + 1))
        let results = try cancellingOnInterrupt(progress) {
            try KernelBenchmark.run(config, progress: progress) { r in
                guard !json else { return }
                var line = Formatting.pad(r.format, 8) + Formatting.pad("\(r.shape.out)x\(r.shape.in)", 12)
                    + Formatting.pad(String(r.batch), 4, right: true)
                if let why = r.unavailable { print(line + "  unavailable: \(why)"); return }
                line += Formatting.pad(r.kernel, 7, right: true) + Formatting.pad(Formatting.fixed(r.medianMicroseconds, 0), 11, right: true)
                line += Formatting.pad(Formatting.fixed(r.p10Microseconds, 0), 9, right: true) + Formatting.pad(Formatting.fixed(r.p90Microseconds, 0), 9, right: true)
                line += Formatting.pad(Formatting.fixed(r.gflops, 1), 9, right: true) + Formatting.pad(Formatting.fixed(r.gbps, 1), 7, right: true)
                line += Formatting.pad(Formatting.fixed(100 * r.gbps / probe, 0) + "%", 7, right: true)
                line += Formatting.pad(r.vsF32.map { Formatting.fixed($0, 2) + "x" } ?? "-", 8, right: true)
                line += Formatting.pad(Formatting.scientific(r.relError, 1), 10, right: true)
                print(line)
            }
        }
        if json {
            print(JSONValue.object([
                ("probe_gbps", JSONValue(probe)),
                ("results", .array(results.map { r in
                    var fields: [(key: String, value: JSONValue)] = [
                        ("format", .string(r.format)), ("shape", .array([JSONValue(r.shape.out), JSONValue(r.shape.in)])),
                        ("batch", JSONValue(r.batch)), ("threads", JSONValue(r.threads)), ("kernel", .string(r.kernel)),
                        ("median_us", JSONValue(r.medianMicroseconds)), ("p10_us", JSONValue(r.p10Microseconds)),
                        ("p90_us", JSONValue(r.p90Microseconds)), ("gflops", JSONValue(r.gflops)), ("gbps", JSONValue(r.gbps)),
                        ("probe_share", JSONValue(r.gbps / probe)),
                        ("vs_f32", r.vsF32.map { JSONValue($0) } ?? .null), ("rel_error", JSONValue(r.relError)),
                    ]
                    if let why = r.unavailable { fields.append(("unavailable", .string(why))) }
                    return .object(fields)
                })),
            ]).serialized)
        }
    }
}
