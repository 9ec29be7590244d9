import Any4Core
import CAny4Kernels

/// A dense linear layer stored as f32, f16 or bf16, run by the same-care AVX2 kernels (weights
/// converted on the fly): the honest baseline for the lookup kernel.
public final class DenseLinear: @unchecked Sendable {
    public enum Storage: Int32, Sendable {
        case f32 = 0, f16 = 1, bf16 = 2
        public var name: String {
            switch self {
            case .f32: "f32"
            case .f16: "f16"
            case .bf16: "bf16"
            }
        }
        var bytes: Int { self == .f32 ? 4 : 2 }
    }

    public let rows: Int
    public let cols: Int
    public let storage: Storage
    /// The weights as stored, in huge-page memory as the packed layers' codes are (same care).
    let f32: HugePageBuffer<Float>?
    let half: HugePageBuffer<UInt16>?

    public init(_ weights: [Float], rows: Int, cols: Int, storage: Storage) {
        precondition(weights.count == rows * cols, "weights must be [rows, cols]")
        self.rows = rows
        self.cols = cols
        self.storage = storage
        switch storage {
        case .f32:
            f32 = HugePageBuffer(weights)
            half = nil
        case .f16:
            f32 = nil
            half = HugePageBuffer(weights.map { Float16($0).bitPattern })
        case .bf16:
            f32 = nil
            half = HugePageBuffer(weights.map(bfloat16Bits))
        }
    }

    public var weightBytes: Int { rows * cols * storage.bytes }

    /// The weights as stored, back in f32.
    public var weights: [Float] {
        switch storage {
        case .f32: f32!.withUnsafeBufferPointer { Array($0) }
        case .f16: half!.withUnsafeBufferPointer { $0.map { Float(Float16(bitPattern: $0)) } }
        case .bf16: half!.withUnsafeBufferPointer { $0.map { Float(bitPattern: UInt32($0) << 16) } }
        }
    }

    public func forward(
        _ x: [Float], m: Int, threads: Int = 0, bias: [Float]? = nil,
        useAVX2: Bool = CPUFeatures.hasAVX2
    ) -> [Float] {
        precondition(x.count == m * cols, "x must be [m, cols]")
        let workers = threads > 0 ? threads : SystemInfo.processorCount
        let run = { (w: UnsafeRawPointer) in
            DenseLinear.forward(
                w, storage: self.storage, rows: self.rows, cols: self.cols, x: x, m: m, bias: bias,
                workers: workers, useAVX2: useAVX2)
        }
        if let f32 { return f32.withUnsafeBufferPointer { run(UnsafeRawPointer($0.baseAddress!)) } }
        return half!.withUnsafeBufferPointer { run(UnsafeRawPointer($0.baseAddress!)) }
    }

    /// The dense path: y[m, rows] = x[m, cols]·Wᵀ (+ bias) for the weights at `w`, stored as `storage`
    /// (rows × cols, row-major), rows spread over `workers` threads. DenseLinear runs it on its own
    /// copy; the engine's `Linear` on its f32 weights or its f16 decode copy.
    package static func forward(
        _ w: UnsafeRawPointer, storage: Storage, rows: Int, cols: Int, x: [Float], m: Int,
        bias: [Float]?, workers: Int, useAVX2: Bool
    ) -> [Float] {
        var y = [Float](repeating: 0, count: m * rows)
        let avx = Int32(useAVX2 ? 1 : 0)
        x.withUnsafeBufferPointer { x in
            y.withUnsafeMutableBufferPointer { y in
                (bias ?? []).withUnsafeBufferPointer { b in
                    let args = UncheckedBox((w, x.baseAddress, y.baseAddress, b.isEmpty ? nil : b.baseAddress))
                    parallelRows(rows, threads: workers) { start, end in
                        let (w, x, y, b) = args.value
                        any4_dense_gemm(
                            w, storage.rawValue, Int32(cols), x, Int32(m), y, Int32(rows), b,
                            Int32(start), Int32(end), avx)
                    }
                }
            }
        }
        return y
    }
}

/// y = x·Wᵀ in f64 from f32 weights: the reference the kernels are held to.
public func referenceProduct(_ w: [Float], rows: Int, cols: Int, x: [Float], m: Int, bias: [Float]? = nil) -> [Double] {
    var y = [Double](repeating: 0, count: m * rows)
    for k in 0..<m {
        for r in 0..<rows {
            var acc = 0.0
            for c in 0..<cols { acc += Double(w[r * cols + c]) * Double(x[k * cols + c]) }
            y[k * rows + r] = acc + Double(bias?[r] ?? 0)
        }
    }
    return y
}

/// ‖y − ref‖ / ‖ref‖.
public func relativeError(_ y: [Float], _ ref: [Double]) -> Double {
    var num = 0.0, den = 0.0
    for i in 0..<y.count {
        let d = Double(y[i]) - ref[i]
        num += d * d
        den += ref[i] * ref[i]
    }
    return den > 0 ? (num / den).squareRoot() : num.squareRoot()
}
