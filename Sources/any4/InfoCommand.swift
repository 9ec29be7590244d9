import Any4Bench
import Any4Core
import Any4GPU
import Any4Kernels
import ArgumentParser

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show what this machine offers the kernels: CPU features, OpenBLAS, and GPUs (or why none).",
        discussion: """
            The GPU backend needs, at run time only: the NVIDIA driver (libcuda.so.1), NVRTC \
            (libnvrtc.so.12 from a CUDA toolkit or pip's nvidia-cuda-nvrtc-cu12) and, for the vendor \
            baseline, cuBLAS (libcublas.so.12 or pip's nvidia-cublas-cu12). Exits 0 whatever is missing.
            """
    )

    @OptionGroup var jsonOutput: JSONOutputOption

    func run() throws {
        let gpu = GPUReport.gather()
        #if arch(x86_64)
            let arch = "x86_64"
        #elseif arch(arm64)
            let arch = "arm64"
        #else
            let arch = "other"
        #endif
        if jsonOutput.json {
            func part(_ path: String?, _ version: String?, _ error: String?) -> JSONValue {
                var fields: [(key: String, value: JSONValue)] = []
                if let path { fields.append(("path", .string(path))) }
                if let version { fields.append(("version", .string(version))) }
                if let error { fields.append(("unavailable", .string(error))) }
                return .object(fields)
            }
            var gpuFields: [(key: String, value: JSONValue)] = [("available", .bool(gpu.unavailable == nil))]
            if let why = gpu.unavailable { gpuFields.append(("unavailable", .string(why))) }
            gpuFields.append(("driver", part(gpu.driverPath, gpu.driverVersion, gpu.driverError)))
            gpuFields.append(
                (
                    "devices",
                    .array(
                        gpu.devices.map { d in
                            .object([
                                ("ordinal", JSONValue(d.ordinal)), ("name", .string(d.name)),
                                ("compute_capability", .string("\(d.computeCapability.major).\(d.computeCapability.minor)")),
                                ("architecture", .string(d.architecture)), ("memory_bytes", JSONValue(d.memoryBytes)),
                                ("multiprocessors", JSONValue(d.multiprocessors)), ("l2_bytes", JSONValue(d.l2CacheBytes)),
                                ("peak_gbps", JSONValue(d.peakBandwidthGBps))
                            ])
                        })
                ))
            gpuFields.append(("nvrtc", part(gpu.nvrtcPath, gpu.nvrtcVersion, gpu.nvrtcError)))
            gpuFields.append(("cublas", part(gpu.cublasPath, nil, gpu.cublasError)))
            gpuFields.append(("cache_directory", gpu.cacheDirectory.map { .string($0) } ?? .null))
            print(
                JSONValue.object([
                    (
                        "cpu",
                        .object([
                            ("arch", .string(arch)), ("cores", JSONValue(SystemInfo.processorCount)),
                            ("avx2", .bool(CPUFeatures.hasAVX2)), ("simd", .string(CPUFeatures.simd.name)),
                            ("llc_bytes", JSONValue(KernelBenchmark.lastLevelCacheBytes))
                        ])
                    ),
                    ("openblas", part(OpenBLAS.shared?.path, nil, OpenBLAS.shared == nil ? OpenBLAS.loadError : nil)),
                    ("gpu", .object(gpuFields))
                ]).serialized)
            return
        }
        print(
            "CPU: \(arch), \(SystemInfo.processorCount) cores, AVX2+FMA+F16C \(CPUFeatures.hasAVX2 ? "yes" : "no"), kernels \(CPUFeatures.simd.name), "
                + "last-level cache \(Formatting.bytes(KernelBenchmark.lastLevelCacheBytes))")
        print("OpenBLAS: " + (OpenBLAS.shared.map { $0.path } ?? "not available: \(OpenBLAS.loadError ?? "?")"))
        if let why = gpu.unavailable { print("GPU: not available: \(why)") } else { print("GPU: available") }
        if let path = gpu.driverPath { print("  driver: \(path) (CUDA \(gpu.driverVersion ?? "?"))") }
        for d in gpu.devices {
            var line =
                "  device \(d.ordinal): \(d.name) · compute capability \(d.computeCapability.major).\(d.computeCapability.minor) "
                + "(\(d.architecture)) · \(Formatting.bytes(d.memoryBytes)) · \(d.multiprocessors) SMs · L2 \(Formatting.bytes(d.l2CacheBytes))"
            if d.peakBandwidthGBps > 0 { line += " · peak \(Formatting.fixed(d.peakBandwidthGBps, 0)) GB/s" }
            print(line)
        }
        print("  NVRTC: " + (gpu.nvrtcPath.map { "\($0) (\(gpu.nvrtcVersion ?? "?"))" } ?? "not available: \(gpu.nvrtcError ?? "?")"))
        print("  cuBLAS: " + (gpu.cublasPath ?? "not available: \(gpu.cublasError ?? "?")"))
        print("  kernel cache: " + (gpu.cacheDirectory ?? "none (no HOME or XDG_CACHE_HOME)"))
    }
}
