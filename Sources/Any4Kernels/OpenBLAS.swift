import Any4Core

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// OpenBLAS loaded at run time (no build dependency): `cblas_sgemv` / `cblas_sgemm` as the vendor
/// baseline for the dense f32 product. Absent library → `OpenBLAS.shared` is nil and says why.
public final class OpenBLAS: @unchecked Sendable {
    typealias Sgemv =
        @convention(c) (
            Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32,
            UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32
        ) -> Void
    typealias Sgemm =
        @convention(c) (
            Int32, Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32,
            UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32
        ) -> Void
    typealias SetThreads = @convention(c) (Int32) -> Void

    let sgemv: Sgemv
    let sgemm: Sgemm
    let setThreads: SetThreads?
    public let path: String

    /// The library, or nil when none could be loaded (see ``loadError``).
    public static let shared: OpenBLAS? = load().0
    public static var loadError: String? { load().1 }

    static func load() -> (OpenBLAS?, String?) {
        let candidates = [
            "libopenblas.so.0", "libopenblas.so", "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
            "/usr/lib/aarch64-linux-gnu/libopenblas.so.0", "libopenblas.dylib"
        ]
        for name in candidates {
            guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else { continue }
            guard let v = dlsym(handle, "cblas_sgemv"), let m = dlsym(handle, "cblas_sgemm") else { continue }
            let t = dlsym(handle, "openblas_set_num_threads")
            return (
                OpenBLAS(
                    sgemv: unsafeBitCast(v, to: Sgemv.self), sgemm: unsafeBitCast(m, to: Sgemm.self),
                    setThreads: t.map { unsafeBitCast($0, to: SetThreads.self) }, path: name), nil
            )
        }
        return (nil, "OpenBLAS not found (install libopenblas0 or libopenblas-dev)")
    }

    init(sgemv: Sgemv, sgemm: Sgemm, setThreads: SetThreads?, path: String) {
        self.sgemv = sgemv
        self.sgemm = sgemm
        self.setThreads = setThreads
        self.path = path
    }

    /// y[m, rows] = x[m, cols] · Wᵀ with W [rows, cols] row-major, f32.
    public func forward(_ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int, x: [Float], m: Int, threads: Int) -> [Float] {
        setThreads?(Int32(threads))
        var y = [Float](repeating: 0, count: m * rows)
        let rowMajor: Int32 = 101, noTrans: Int32 = 111, trans: Int32 = 112
        x.withUnsafeBufferPointer { x in
            y.withUnsafeMutableBufferPointer { y in
                if m == 1 {
                    sgemv(rowMajor, noTrans, Int32(rows), Int32(cols), 1, w.baseAddress, Int32(cols), x.baseAddress, 1, 0, y.baseAddress, 1)
                } else {
                    // Y[m, rows] = X[m, cols] · W[rows, cols]ᵀ
                    sgemm(
                        rowMajor, noTrans, trans, Int32(m), Int32(rows), Int32(cols), 1, x.baseAddress, Int32(cols),
                        w.baseAddress, Int32(cols), 0, y.baseAddress, Int32(rows))
                }
            }
        }
        return y
    }

    /// y[m, rows] = x[m, cols] · Wᵀ with OpenBLAS single-threaded on each of `threads` slices of
    /// W's rows, spread over our own workers: OpenBLAS's pthread pool spins (sched_yield) between
    /// calls and starves any other work on a small machine; this keeps one pool.
    public func forwardSliced(_ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int, x: [Float], m: Int, threads: Int) -> [Float] {
        setThreads?(1)
        var y = [Float](repeating: 0, count: m * rows)
        let rowMajor: Int32 = 101, noTrans: Int32 = 111, trans: Int32 = 112
        x.withUnsafeBufferPointer { x in
            y.withUnsafeMutableBufferPointer { y in
                let args = UncheckedBox((w.baseAddress!, x.baseAddress!, y.baseAddress!))
                // Slices of whole 16-row panels, so each call keeps the kernel's full width.
                let panels = (rows + 15) / 16
                parallelRows(panels, threads: threads) { p0, p1 in
                    let (w, x, y) = args.value
                    let r0 = p0 * 16, r1 = min(rows, p1 * 16)
                    guard r0 < r1 else { return }
                    self.sgemm(
                        rowMajor, noTrans, trans, Int32(m), Int32(r1 - r0), Int32(cols), 1, x, Int32(cols),
                        w + r0 * cols, Int32(cols), 0, y + r0, Int32(rows))
                }
            }
        }
        return y
    }

    /// Makes OpenBLAS's own calls single-threaded (the callers spread work over their workers).
    package func useOneThread() { setThreads?(1) }

    /// y[k, r] = Σ_c x[k, c]·w[r, c] for r < rows, k < m: one single-threaded sgemm writing the
    /// `rows` columns of y (row stride `ldy`) — one tile of a larger layer's rows.
    package func product(
        _ w: UnsafePointer<Float>, rows: Int, cols: Int, x: UnsafePointer<Float>, m: Int,
        y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        let rowMajor: Int32 = 101, noTrans: Int32 = 111, trans: Int32 = 112
        sgemm(rowMajor, noTrans, trans, Int32(m), Int32(rows), Int32(cols), 1, x, Int32(cols), w, Int32(cols), 0, y, Int32(ldy))
    }
}
