/// A 4-bit layer resident on the GPU, run by the lookup kernel: y = x·Ŵᵀ for m ≤ 16.
public final class GPULookupLinear: @unchecked Sendable {
    public let backend: GPUBackend
    public let formatName: String
    public let rows: Int
    public let cols: Int
    public let paddedCols: Int
    /// Bytes a call streams: codes, tables, scales and zeros.
    public let streamedBytes: Int
    let codes: GPUBuffer
    let table: GPUBuffer
    let scaleZero: GPUBuffer
    let tableStride: Int
    let paddedGroups: Int
    let groupSize: Int

    public init(_ layout: GPULookupLayout, on backend: GPUBackend) throws(GPUError) {
        self.backend = backend
        formatName = layout.formatName
        rows = layout.rows
        cols = layout.cols
        paddedCols = layout.paddedCols
        streamedBytes = layout.streamedBytes
        codes = try backend.upload(layout.codes)
        table = try backend.upload(layout.table)
        scaleZero = try backend.upload(layout.scaleZero)
        tableStride = layout.tableStride
        paddedGroups = layout.paddedGroups
        groupSize = layout.groupSize
    }

    /// Enqueues y = x·Ŵᵀ: `x` holds [m, paddedCols] activations of `type`
    /// (``GPUActivationType/pack(_:m:cols:paddedCols:)``), `y` room for [m, rows] floats.
    public func launch(x: GPUBuffer, y: GPUBuffer, m: Int, type: GPUActivationType) throws(GPUError) {
        let tile = try GPUGeometry.tile(for: m)
        try backend.launch(
            "any4_lut_\(type.rawValue)_m\(tile)", blocks: GPUGeometry.blocks(rows: rows),
            [
                .buffer(codes), .buffer(table), .int(tableStride), .buffer(scaleZero), .int(paddedGroups), .int(groupSize),
                .buffer(x), .buffer(y), .int(rows), .int(paddedCols), .int(m)
            ])
    }

    /// y[m, rows] for x[m, cols] (rounded to `type` on the way in).
    public func forward(_ x: [Float], m: Int, type: GPUActivationType) throws(GPUError) -> [Float] {
        try backend.run(x, m: m, cols: cols, paddedCols: paddedCols, rows: rows, type: type) { xd, yd throws(GPUError) in
            try launch(x: xd, y: yd, m: m, type: type)
        }
    }
}

/// A dense f16/bf16 layer on the GPU, run by our dense kernel (the baseline of our own).
public final class GPUDenseLinear: @unchecked Sendable {
    public let backend: GPUBackend
    public let rows: Int
    public let cols: Int
    public let paddedCols: Int
    public let type: GPUActivationType
    public let streamedBytes: Int
    let weights: GPUBuffer

    public init(_ layout: GPUDenseLayout, on backend: GPUBackend) throws(GPUError) {
        self.backend = backend
        rows = layout.rows
        cols = layout.cols
        paddedCols = layout.paddedCols
        type = layout.type
        streamedBytes = layout.deviceBytes
        weights = try backend.upload(layout.weights)
    }

    public func launch(x: GPUBuffer, y: GPUBuffer, m: Int) throws(GPUError) {
        let tile = try GPUGeometry.tile(for: m)
        try backend.launch(
            "any4_dense_\(type.rawValue)_m\(tile)", blocks: GPUGeometry.blocks(rows: rows),
            [
                .buffer(weights), .buffer(x), .buffer(y), .int(rows), .int(paddedCols), .int(m)
            ])
    }

    public func forward(_ x: [Float], m: Int) throws(GPUError) -> [Float] {
        try backend.run(x, m: m, cols: cols, paddedCols: paddedCols, rows: rows, type: type) { xd, yd throws(GPUError) in
            try launch(x: xd, y: yd, m: m)
        }
    }
}

/// A dense f16/bf16 layer on the GPU run by cuBLAS (`cublasGemmEx`, f32 accumulation): the
/// vendor baseline. Weights [rows, cols] unpadded; activations [m, cols] unpadded.
public final class GPUCuBLASLinear: @unchecked Sendable {
    public let backend: GPUBackend
    public let rows: Int
    public let cols: Int
    public let type: GPUActivationType
    public let streamedBytes: Int
    let weights: GPUBuffer
    let cublas: CuBLAS

    public init(_ w: [Float], rows: Int, cols: Int, type: GPUActivationType, on backend: GPUBackend) throws(GPUError) {
        precondition(w.count == rows * cols, "weights must be [rows, cols]")
        cublas = try backend.cublas()
        self.backend = backend
        self.rows = rows
        self.cols = cols
        self.type = type
        streamedBytes = rows * cols * 2
        weights = try backend.upload(w.map(type.bits))
    }

    public func launch(x: GPUBuffer, y: GPUBuffer, m: Int) throws(GPUError) {
        try backend.makeCurrent()
        try cublas.gemm(w: weights.address, x: x.address, y: y.address, rows: rows, cols: cols, m: m, type: type)
    }

    public func forward(_ x: [Float], m: Int) throws(GPUError) -> [Float] {
        try backend.run(x, m: m, cols: cols, paddedCols: cols, rows: rows, type: type) { xd, yd throws(GPUError) in
            try launch(x: xd, y: yd, m: m)
        }
    }
}

extension GPUBackend {
    /// Uploads x [m, cols] as `type` padded to `paddedCols`, runs `launch` into room for [m, rows]
    /// floats and returns them.
    func run(
        _ x: [Float], m: Int, cols: Int, paddedCols: Int, rows: Int, type: GPUActivationType,
        _ launch: (GPUBuffer, GPUBuffer) throws(GPUError) -> Void
    ) throws(GPUError) -> [Float] {
        let xd = try upload(type.pack(x, m: m, cols: cols, paddedCols: paddedCols))
        let yd = try allocate(bytes: m * rows * 4)
        try launch(xd, yd)
        let y = try download(yd, count: m * rows)
        withExtendedLifetime(xd) {}  // x is freed only after the kernel has run (the copy waits for it)
        return y
    }
}
