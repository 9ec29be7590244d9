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
            --device gpu|all adds GPU rows (batches 1-16): the lookup kernel for each 4-bit format, our dense \
            f16/bf16 kernel, and cuBLAS (blas) as the baseline (vs cuBLAS instead of vs f32), timed with CUDA \
            events over copies exceeding 4x the L2 cache; the probe is a device-to-device copy.
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

    @Option(help: "Where to run: cpu, gpu (the CUDA lookup kernel, our dense kernel and cuBLAS) or all.")
    var device = "cpu"

    @Option(help: "Activation type of the GPU lookup kernel and cuBLAS rows: bf16 or f16.")
    var gpuActivations = "bf16"

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
        guard let device = KernelBenchmark.Device(rawValue: device) else { throw usageError("--device must be cpu, gpu or all") }
        config.device = device
        guard let activations = GPUActivationType(rawValue: gpuActivations) else { throw usageError("--gpu-activations must be bf16 or f16") }
        config.gpuActivations = activations

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
        let probe: Double? = device != .gpu ? BandwidthProbe.triadGBps(threads: workers) : nil
        if !json, let probe {
            print("bandwidth probe (triad, \(workers) threads): \(Formatting.fixed(probe, 1)) GB/s · AVX2 \(CPUFeatures.hasAVX2 ? "yes" : "no") · LLC \(Formatting.bytes(KernelBenchmark.lastLevelCacheBytes)) · \(hot ? "hot" : "cold (cycling copies > 4x LLC)")")
            printHeader(ratio: "vs f32")
        }
        var gpuHeaderShown = false
        let rowsPerShape = config.batches.count * (config.formats.count + 1)
        let progress = Progress(total: config.shapes.count * rowsPerShape * (device == .all && config.gpu != nil ? 2 : 1))
        let results = try cancellingOnInterrupt(progress) {
            try KernelBenchmark.run(config, progress: progress) { r in
                guard !json else { return }
                if r.device == "gpu" && !gpuHeaderShown, let gpu = config.gpu {
                    gpuHeaderShown = true
                    print("GPU \(gpu.device.name) (\(gpu.device.architecture), \(Formatting.bytes(gpu.device.memoryBytes))): device copy "
                          + "\(Formatting.fixed(gpuProbe ?? .nan, 0)) GB/s · activations \(activations.rawValue) · "
                          + (hot ? "hot" : "cold (cycling copies > 4x L2)"))
                    printHeader(ratio: "vs cuBLAS")
                }
                var line = Formatting.pad(r.format, 8) + Formatting.pad("\(r.shape.out)x\(r.shape.in)", 12)
                    + Formatting.pad(String(r.batch), 4, right: true)
                if let why = r.unavailable { print(line + "  unavailable: \(why)"); return }
                let rowProbe = r.device == "gpu" ? gpuProbe : probe
                let digits = r.device == "gpu" ? 1 : 0
                line += Formatting.pad(r.kernel, 7, right: true) + Formatting.pad(Formatting.fixed(r.medianMicroseconds, digits), 11, right: true)
                line += Formatting.pad(Formatting.fixed(r.p10Microseconds, digits), 9, right: true)
                    + Formatting.pad(Formatting.fixed(r.p90Microseconds, digits), 9, right: true)
                line += Formatting.pad(Formatting.fixed(r.gflops, 1), 9, right: true) + Formatting.pad(Formatting.fixed(r.gbps, 1), 7, right: true)
                line += Formatting.pad(rowProbe.map { Formatting.fixed(100 * r.gbps / $0, 0) + "%" } ?? "-", 7, right: true)
                let ratio = r.device == "gpu" ? r.vsCuBLAS : r.vsF32
                line += Formatting.pad(ratio.map { Formatting.fixed($0, 2) + "x" } ?? "-", 10, right: true)
                line += Formatting.pad(Formatting.scientific(r.relError, 1), 10, right: true)
                print(line)
            }
        }
        if json {
            var top: [(key: String, value: JSONValue)] = [("probe_gbps", probe.map { JSONValue($0) } ?? .null)]
            if let gpu = config.gpu {
                top.append(("gpu_probe_gbps", gpuProbe.map { JSONValue($0) } ?? .null))
                top.append(("gpu", .object([
                    ("name", .string(gpu.device.name)), ("architecture", .string(gpu.device.architecture)),
                    ("memory_bytes", JSONValue(gpu.device.memoryBytes)), ("activations", .string(activations.rawValue)),
                ])))
            }
            if let gpuUnavailable { top.append(("gpu_unavailable", .string(gpuUnavailable))) }
            top.append(("results", .array(results.map { r in
                let rowProbe = r.device == "gpu" ? gpuProbe : probe
                var fields: [(key: String, value: JSONValue)] = [
                    ("device", .string(r.device)),
                    ("format", .string(r.format)), ("shape", .array([JSONValue(r.shape.out), JSONValue(r.shape.in)])),
                    ("batch", JSONValue(r.batch)), ("threads", JSONValue(r.threads)), ("kernel", .string(r.kernel)),
                    ("median_us", JSONValue(r.medianMicroseconds)), ("p10_us", JSONValue(r.p10Microseconds)),
                    ("p90_us", JSONValue(r.p90Microseconds)), ("gflops", JSONValue(r.gflops)), ("gbps", JSONValue(r.gbps)),
                    ("probe_share", rowProbe.map { JSONValue(r.gbps / $0) } ?? .null),
                    ("vs_f32", r.vsF32.map { JSONValue($0) } ?? .null), ("rel_error", JSONValue(r.relError)),
                ]
                if r.device == "gpu" {
                    fields.append(("vs_cublas", r.vsCuBLAS.map { JSONValue($0) } ?? .null))
                    fields.append(("activations", .string(r.kernel == "dense" ? r.format : activations.rawValue)))
                }
                if let why = r.unavailable { fields.append(("unavailable", .string(why))) }
                return .object(fields)
            })))
            print(JSONValue.object(top).serialized)
        }
    }

    private func printHeader(ratio: String) {
        print(Formatting.pad("format", 8) + Formatting.pad("shape", 12) + Formatting.pad("m", 4, right: true)
              + Formatting.pad("kernel", 7, right: true) + Formatting.pad("median µs", 11, right: true)
              + Formatting.pad("p10", 9, right: true) + Formatting.pad("p90", 9, right: true)
              + Formatting.pad("GFLOP/s", 9, right: true) + Formatting.pad("GB/s", 7, right: true)
              + Formatting.pad("probe", 7, right: true) + Formatting.pad(ratio, 10, right: true)
              + Formatting.pad("rel err", 10, right: true))
    }
}
