import Any4Core

/// cuBLAS (`libcublas.so.12`), loaded at run time: `cublasGemmEx` with f16/bf16 inputs and f32
/// accumulation and output is the vendor baseline the GPU rows are measured against.
final class CuBLAS: @unchecked Sendable {
    typealias GemmEx =
        @convention(c) (
            OpaquePointer?, Int32, Int32, Int32, Int32, Int32, UnsafeRawPointer?,
            UnsafeRawPointer?, Int32, Int32, UnsafeRawPointer?, Int32, Int32,
            UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, Int32, Int32, Int32
        ) -> Int32

    let library: DynamicLibrary
    let gemmEx: GemmEx
    let destroy: @convention(c) (OpaquePointer?) -> Int32
    /// The handle (made in the backend's context).
    let handle: OpaquePointer?

    // cublas_api.h / library_types.h
    static let opN: Int32 = 0, opT: Int32 = 1
    static let typeF32: Int32 = 0, typeF16: Int32 = 2, typeBF16: Int32 = 14
    static let compute32F: Int32 = 68
    static let gemmDefault: Int32 = -1

    static var candidates: [String] {
        var names = ["libcublas.so.12", "libcublas.so", "/usr/local/cuda/lib64/libcublas.so.12"]
        for folder in DynamicLibrary.pythonPackageFolders("nvidia/cublas/lib") {
            names += listDirectory(folder).filter { $0.hasPrefix("libcublas.so") }.sorted().map { folder + "/" + $0 }
        }
        return names
    }

    /// Opens cuBLAS and makes a handle; the caller's CUDA context must be current.
    init(candidates: [String] = CuBLAS.candidates) throws(GPUError) {
        let l = try DynamicLibrary.open(
            "cuBLAS (libcublas.so.12: the CUDA toolkit, or pip install nvidia-cublas-cu12)",
            candidates: candidates
        ) { path in
            // libcublas needs libcublasLt from the same folder.
            guard path.hasPrefix("/"), let slash = path.lastIndex(of: "/") else { return [] }
            let folder = String(path[..<slash])
            return listDirectory(folder).filter { $0.hasPrefix("libcublasLt.so") }.map { folder + "/" + $0 }
        }
        library = l
        gemmEx = try l.function("cublasGemmEx", as: GemmEx.self)
        destroy = try l.function("cublasDestroy_v2", as: (@convention(c) (OpaquePointer?) -> Int32).self)
        let create = try l.function("cublasCreate_v2", as: (@convention(c) (UnsafeMutablePointer<OpaquePointer?>?) -> Int32).self)
        var h: OpaquePointer?
        let status = create(&h)
        guard status == 0 else { throw GPUError("cublasCreate_v2 failed with cuBLAS status \(status) in \(l.path)") }
        handle = h
    }

    deinit { _ = destroy(handle) }

    /// y[m, rows] (f32, row-major) = x[m, cols] · Wᵀ with W [rows, cols] row-major, both in
    /// `type`, f32 accumulation. (Column-major: Yᵀ[rows, m] = op_T(W as [cols, rows]) · Xᵀ[cols, m].)
    func gemm(w: UInt64, x: UInt64, y: UInt64, rows: Int, cols: Int, m: Int, type: GPUActivationType) throws(GPUError) {
        var alpha: Float = 1, beta: Float = 0
        let t = type == .f16 ? Self.typeF16 : Self.typeBF16
        let status = gemmEx(
            handle, Self.opT, Self.opN, Int32(rows), Int32(m), Int32(cols), &alpha,
            UnsafeRawPointer(bitPattern: UInt(w)), t, Int32(cols),
            UnsafeRawPointer(bitPattern: UInt(x)), t, Int32(cols), &beta,
            UnsafeMutableRawPointer(bitPattern: UInt(y)), Self.typeF32, Int32(rows),
            Self.compute32F, Self.gemmDefault)
        guard status == 0 else { throw GPUError("cublasGemmEx failed with cuBLAS status \(status)") }
    }
}
