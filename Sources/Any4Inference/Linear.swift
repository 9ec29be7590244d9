import Any4Core
import Any4Kernels

/// How the inference engine runs its linear layers.
public struct EngineOptions: Sendable {
    /// Worker threads (0: all cores).
    public var threads = 0
    /// The lookup kernel's path for quantized layers at small batch (decode): `.fast` (int8
    /// activations) or `.exact` (f32 activations, the dequantized product up to rounding).
    public var kernel: KernelPath = .fast
    /// From this many activation rows on, a layer runs as one f32 GEMM (OpenBLAS when present) on
    /// its f32 weights — the dequantized ones for a quantized layer, so the numbers are the
    /// format's — instead of the lookup kernel.
    public var gemmRows = 8
    /// Use OpenBLAS for large batches when it can be loaded.
    public var useBLAS = true
    /// How a dense LM head runs in decode steps (fewer than 4 rows): it is the largest layer a step
    /// streams, so a narrower copy nearly halves (f16) or quarters (q8) its time. Batches of 4 or
    /// more rows (prefill, perplexity) always use the f32 weights.
    public var decodeHead: DecodeHead = .f32

    public init() {}

    public var workers: Int { threads > 0 ? threads : SystemInfo.processorCount }
}

/// The storage of a dense LM head's decode-step copy.
public enum DecodeHead: String, Sendable, CaseIterable {
    /// The f32 weights themselves.
    case f32
    /// An f16 copy.
    case f16
    /// int8 with one f32 scale per 32 columns, times activations quantized the same way (the
    /// Q8_0 scheme; SmolLM2's GGUF head is stored so, which this reproduces exactly).
    case q8
}

/// Running sums of a linear layer's input activations, per input channel (for calibration).
final class ActivationSums: @unchecked Sendable {
    var sum: [Double]
    var absSum: [Double]
    var sqSum: [Double]
    var rows = 0

    init(channels: Int) {
        sum = [Double](repeating: 0, count: channels)
        absSum = sum
        sqSum = sum
    }

    func add(_ x: UnsafePointer<Float>, m: Int) {
        let n = sum.count
        sum.withUnsafeMutableBufferPointer { sum in
            absSum.withUnsafeMutableBufferPointer { absSum in
                sqSum.withUnsafeMutableBufferPointer { sqSum in
                    for k in 0..<m {
                        let row = x + k * n
                        for c in 0..<n {
                            let v = Double(row[c])
                            sum[c] += v
                            absSum[c] += abs(v)
                            sqSum[c] += v * v
                        }
                    }
                }
            }
        }
        rows += m
    }

    var layer: CalibrationStats.Layer {
        let d = Double(max(rows, 1))
        return CalibrationStats.Layer(
            mean: sum.map { Float($0 / d) }, absmean: absSum.map { Float($0 / d) },
            sqmean: sqSum.map { Float($0 / d) }, count: Float(rows))
    }
}

/// One linear layer of a running model: y = x·Wᵀ (+ b) with W [rows, cols] held dense (f32) or
/// quantized (packed for the lookup kernel, plus its dequantized f32 form for large batches).
/// Quantizing a model swaps each layer's weights in place.
public final class Linear: @unchecked Sendable {
    /// The weight tensor's name in the model file (calibration and selection use it).
    public let name: String
    public let rows: Int
    public let cols: Int
    public let bias: [Float]?
    /// The weights in f32: the file's, or the dequantized quantized ones.
    public private(set) var weights: [Float]
    /// The quantized weights in the lookup kernel's layout, when quantized to a ≤4-bit format
    /// whose group size is a multiple of 32.
    public private(set) var packed: PackedLinear?
    /// What the weights are: the file's encoding ("q4_1", "f32") or the format quantized to.
    public private(set) var formatName: String
    /// Bits per weight of the current storage (codes + scales + zeros + tables).
    public private(set) var bitsPerWeight: Double
    /// A narrower copy of dense weights for bandwidth-bound decode steps (the LM head).
    private var decodeCopy: DecodeCopy?
    private enum DecodeCopy {
        case f16([UInt16])
        case q8(Q8Linear)
    }
    var sums: ActivationSums?

    init(name: String, weights: [Float], rows: Int, cols: Int, bias: [Float]?, formatName: String, bitsPerWeight: Double) {
        precondition(weights.count == rows * cols)
        self.name = name
        self.rows = rows
        self.cols = cols
        self.bias = bias
        self.weights = weights
        self.formatName = formatName
        self.bitsPerWeight = bitsPerWeight
    }

    /// Replaces the weights by `q` (the lookup kernel's layout when it can run it).
    public func replace(with q: QuantizedMatrix) {
        precondition(q.rows == rows && q.cols == cols, "quantized matrix does not match \(name)")
        weights = q.dequantized()
        packed = try? PackedLinear(q)
        formatName = q.formatName
        bitsPerWeight = q.bitsPerWeight
        decodeCopy = nil
    }

    /// Makes (or drops) the decode-step copy of dense weights.
    func prepareDecodeCopy(_ kind: DecodeHead, threads: Int) {
        guard packed == nil else {
            decodeCopy = nil
            return
        }
        switch (kind, decodeCopy) {
        case (.f32, _): decodeCopy = nil
        case (.f16, .f16?): break
        case (.q8, .q8?): break
        case (.q8, _) where cols % 32 == 0: decodeCopy = .q8(Q8Linear(weights, rows: rows, cols: cols, threads: threads))
        default: decodeCopy = .f16(weights.map { Float16($0).bitPattern })
        }
    }

    /// Starts (or stops) recording input statistics.
    func record(_ on: Bool) { sums = on ? ActivationSums(channels: cols) : nil }

    /// The outputs of several layers over the same input (q, k, v; gate, up). Packed layers at
    /// small batch share one activation preparation and one parallel loop.
    static func forward(_ layers: [Linear], _ x: [Float], m: Int, options: EngineOptions) -> [[Float]] {
        let packed = layers.compactMap(\.packed)
        if m < options.gemmRows, packed.count == layers.count, layers.allSatisfy({ $0.sums == nil }),
            packed.allSatisfy({
                $0.colsPadded == packed[0].colsPadded && $0.groupSize == packed[0].groupSize
                    && $0.blockCols == packed[0].blockCols
            })
        {
            return PackedLinear.forward(
                packed, biases: layers.map(\.bias), x: x, m: m, path: options.kernel,
                threads: options.workers)
        }
        return layers.map { $0.forward(x, m: m, options: options) }
    }

    /// y[m, rows] = x[m, cols]·Wᵀ (+ bias).
    func forward(_ x: [Float], m: Int, options: EngineOptions) -> [Float] {
        precondition(x.count == m * cols, "\(name): input is not [m, \(cols)]")
        if let sums { x.withUnsafeBufferPointer { sums.add($0.baseAddress!, m: m) } }
        let threads = options.workers
        if m < options.gemmRows, let packed {
            return packed.forward(x, m: m, path: options.kernel, threads: threads, bias: bias)
        }
        if m >= options.gemmRows, options.useBLAS, let blas = OpenBLAS.shared {
            var y = weights.withUnsafeBufferPointer { blas.forwardSliced($0, rows: rows, cols: cols, x: x, m: m, threads: threads) }
            if let bias {
                for k in 0..<m { for r in 0..<rows { y[k * rows + r] += bias[r] } }
            }
            return y
        }
        return dense(x, m: m, threads: threads)
    }

    /// The dense path (DenseLinear's loop) on the f32 weights, or in a decode step on the narrower copy.
    private func dense(_ x: [Float], m: Int, threads: Int) -> [Float] {
        let useAVX2 = CPUFeatures.hasAVX2
        switch decodeCopy {
        case .f16(let half)? where m < 4:
            return half.withUnsafeBytes {
                DenseLinear.forward(
                    $0.baseAddress!, storage: .f16, rows: rows, cols: cols, x: x, m: m, bias: bias,
                    workers: threads, useAVX2: useAVX2)
            }
        case .q8(let q8)? where m < 4:
            return q8.forward(x, m: m, threads: threads, bias: bias, useAVX2: useAVX2)
        default:
            return weights.withUnsafeBytes {
                DenseLinear.forward(
                    $0.baseAddress!, storage: .f32, rows: rows, cols: cols, x: x, m: m, bias: bias,
                    workers: threads, useAVX2: useAVX2)
            }
        }
    }
}
