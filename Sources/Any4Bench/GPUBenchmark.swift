import Any4Core
import Any4GPU
import Any4Kernels

/// The GPU rows of `any4 bench`: the lookup kernel for every 4-bit format, our dense f16/bf16
/// kernel, and cuBLAS (`blas` on the GPU) as the vendor baseline every row is compared with.
extension KernelBenchmark {
    /// A format made runnable on the GPU: `copies` device-resident copies of its weights.
    struct GPUSubject {
        var kernel: String
        var type: GPUActivationType
        var streamedBytes: Int
        var copies: Int
        /// The activations as this subject's kernel reads them, on the device.
        var upload: (_ x: [Float], _ m: Int) throws(GPUError) -> GPUBuffer
        var launch: (_ copy: Int, _ x: GPUBuffer, _ y: GPUBuffer, _ m: Int) throws(GPUError) -> Void
        /// The f64 product of the weights this format holds with `x` (already rounded to `type`).
        var reference: (_ x: [Float], _ m: Int, _ rows: Int) -> [Double]
    }

    static func runGPU(
        _ config: Configuration, on gpu: GPUBackend, progress: Progress?,
        report: (Result) -> Void
    ) throws -> [Result] {
        // Our kernels are built first (NVRTC, or the cache); if they cannot be, their rows say why
        // and cuBLAS still runs.
        try? gpu.prepareKernels()
        // Copies of the weights until they exceed 4× the L2 cache, as for the CPU's last level.
        let target = 4 * (gpu.device.l2CacheBytes > 0 ? gpu.device.l2CacheBytes : 50 << 20)
        var results: [Result] = []
        for shape in config.shapes {
            let w = try benchWeights(shape, progress: progress)
            // cuBLAS first, so every other row has its ratio; f32 has no GPU kernel here.
            var formats = config.formats.filter { $0 != "f32" }
            if !formats.contains("blas") { formats.insert("blas", at: 0) }
            formats.sort { ($0 == "blas" ? 0 : 1) < ($1 == "blas" ? 0 : 1) }
            var cublasMedian: [Int: Double] = [:]
            func unavailable(_ format: String, _ batch: Int, _ why: String, kernel: String) -> Result {
                .unavailable(format, shape: shape, batch: batch, threads: 0, kernel: kernel, why: why, device: "gpu")
            }
            for format in formats {
                progress?.setLabel("bench gpu \(format) \(shape.out)x\(shape.in)")
                let subject: GPUSubject
                do {
                    subject = try makeGPUSubject(format, w, shape, config: config, gpu: gpu, target: target)
                } catch {
                    for batch in config.batches {
                        let r = unavailable(format, batch, "\(error)", kernel: gpuKernelName(format))
                        results.append(r)
                        report(r)
                    }
                    continue
                }
                for batch in config.batches {
                    if progress?.isCancelled == true { throw QuantizationError.cancelled }
                    guard batch <= GPUGeometry.maxBatch || subject.kernel == "cublas" else {
                        let r = unavailable(format, batch, "the GPU kernels take batches of 1…\(GPUGeometry.maxBatch)", kernel: subject.kernel)
                        results.append(r)
                        report(r)
                        progress?.advance()
                        continue
                    }
                    do {
                        let r = try measure(
                            format, subject, shape: shape, batch: batch, config: config, gpu: gpu,
                            cublasMedian: cublasMedian[batch])
                        if format == "blas" { cublasMedian[batch] = r.medianMicroseconds * 1e-6 }
                        results.append(r)
                        report(r)
                    } catch {
                        // A launch that fails (cuBLAS without bf16 on an old GPU, …) is a row, not the end.
                        let r = unavailable(format, batch, "\(error)", kernel: subject.kernel)
                        results.append(r)
                        report(r)
                    }
                    progress?.advance()
                }
            }
        }
        return results
    }

    /// Checks one case against the f64 product (activations rounded as the kernel reads them),
    /// then times it.
    static func measure(
        _ format: String, _ subject: GPUSubject, shape: (out: Int, in: Int), batch: Int, config: Configuration,
        gpu: GPUBackend, cublasMedian: Double?
    ) throws -> Result {
        let x = benchActivations(batch: batch, cols: shape.in)
        let xd = try subject.upload(x, batch)
        let yd = try gpu.allocate(bytes: batch * shape.out * 4)
        try subject.launch(0, xd, yd, batch)
        let y = try gpu.download(yd, count: batch * shape.out)
        let checkRows = min(shape.out, 256)
        let ref = subject.reference(subject.type.rounded(x), batch, checkRows)
        var got = [Float](repeating: 0, count: batch * checkRows)
        for k in 0..<batch { for r in 0..<checkRows { got[k * checkRows + r] = y[k * shape.out + r] } }
        let error = relativeError(got, ref)
        _ = try gpu.time(subject.copies) { (c: Int) throws(GPUError) in try subject.launch(c, xd, yd, batch) }  // warm-up
        var times = try gpu.time(max(config.runs, 1)) { (i: Int) throws(GPUError) in
            try subject.launch(config.hot ? 0 : i % subject.copies, xd, yd, batch)
        }
        times.sort()
        let median = times[times.count / 2]
        return Result(
            format: format, shape: shape, batch: batch, threads: 0, kernel: subject.kernel,
            medianMicroseconds: median * 1e6, p10Microseconds: times[times.count / 10] * 1e6,
            p90Microseconds: times[min(times.count - 1, times.count * 9 / 10)] * 1e6,
            gflops: 2 * Double(shape.out * shape.in * batch) / median / 1e9,
            gbps: Double(subject.streamedBytes) / median / 1e9, vsF32: nil, relError: error,
            unavailable: nil, device: "gpu", vsCuBLAS: cublasMedian.map { $0 / median })
    }

    static func gpuKernelName(_ format: String) -> String {
        switch format {
        case "blas": "cublas"
        case "f16", "bf16": "dense"
        default: "lut"
        }
    }

    static func makeGPUSubject(
        _ format: String, _ w: [Float], _ shape: (out: Int, in: Int), config: Configuration,
        gpu: GPUBackend, target: Int
    ) throws -> GPUSubject {
        func copies(_ bytes: Int) -> Int { config.hot ? 1 : max(1, min(64, (target + bytes - 1) / bytes)) }
        switch format {
        case "blas":
            let type = config.gpuActivations
            let first = try GPUCuBLASLinear(w, rows: shape.out, cols: shape.in, type: type, on: gpu)
            let n = copies(first.streamedBytes)
            var layers = [first]
            for _ in 1..<max(n, 1) { layers.append(try GPUCuBLASLinear(w, rows: shape.out, cols: shape.in, type: type, on: gpu)) }
            let stored = w.map { type.value(type.bits($0)) }
            return GPUSubject(
                kernel: "cublas", type: type, streamedBytes: first.streamedBytes, copies: n,
                upload: { (x: [Float], m: Int) throws(GPUError) in try gpu.upload(type.pack(x, m: m, cols: shape.in, paddedCols: shape.in)) },
                launch: { (c: Int, x: GPUBuffer, y: GPUBuffer, m: Int) throws(GPUError) in try layers[c].launch(x: x, y: y, m: m) },
                reference: { x, m, rows in referenceProduct(Array(stored.prefix(rows * shape.in)), rows: rows, cols: shape.in, x: x, m: m) })
        case "f16", "bf16":
            let type: GPUActivationType = format == "f16" ? .f16 : .bf16
            try gpu.prepareKernels()
            let layout = GPUDenseLayout(w, rows: shape.out, cols: shape.in, type: type)
            let n = copies(layout.deviceBytes)
            var layers: [GPUDenseLinear] = []
            for _ in 0..<n { layers.append(try GPUDenseLinear(layout, on: gpu)) }
            let stored = layout.storedWeights
            return GPUSubject(
                kernel: "dense", type: type, streamedBytes: layout.deviceBytes, copies: n,
                upload: { (x: [Float], m: Int) throws(GPUError) in
                    try gpu.upload(type.pack(x, m: m, cols: shape.in, paddedCols: layout.paddedCols))
                },
                launch: { (c: Int, x: GPUBuffer, y: GPUBuffer, m: Int) throws(GPUError) in try layers[c].launch(x: x, y: y, m: m) },
                reference: { x, m, rows in referenceProduct(Array(stored.prefix(rows * shape.in)), rows: rows, cols: shape.in, x: x, m: m) })
        default:
            try gpu.prepareKernels()
            var options = QuantizationOptions()
            options.groupSize = config.groupSize
            options.threads = config.threads
            let numeric = try FormatRegistry.named(format)
            let q = try Quantizer.quantize(w, rows: shape.out, cols: shape.in, name: "bench", format: numeric, options: options)
            let layout = try GPULookupLayout(q)
            let n = copies(layout.deviceBytes)
            var layers: [GPULookupLinear] = []
            for _ in 0..<n { layers.append(try GPULookupLinear(layout, on: gpu)) }
            let deq = q.dequantized()
            let type = config.gpuActivations
            return GPUSubject(
                kernel: "lut", type: type, streamedBytes: layout.streamedBytes, copies: n,
                upload: { (x: [Float], m: Int) throws(GPUError) in
                    try gpu.upload(type.pack(x, m: m, cols: shape.in, paddedCols: layout.paddedCols))
                },
                launch: { (c: Int, x: GPUBuffer, y: GPUBuffer, m: Int) throws(GPUError) in try layers[c].launch(x: x, y: y, m: m, type: type) },
                reference: { x, m, rows in referenceProduct(Array(deq.prefix(rows * shape.in)), rows: rows, cols: shape.in, x: x, m: m) })
        }
    }
}
