/// Summary statistics of a tensor's values.
public struct TensorStats: Sendable, Equatable {
    public var count: Int
    public var min: Float
    public var max: Float
    public var mean: Double
    /// Population standard deviation.
    public var std: Double
    /// Pearson kurtosis, E[(x−μ)⁴]/σ⁴: 3 for a Gaussian, larger for heavy tails.
    public var kurtosis: Double
    /// Share of values with |x − μ| > 6σ.
    public var outlierShare: Double
    /// Number of NaN or infinite values (excluded from the other figures).
    public var nonFinite: Int

    /// Computes the statistics of `values` in two passes with Double accumulators.
    public init(_ values: UnsafeBufferPointer<Float>) {
        var acc = Accumulator()
        acc.addFirstPass(values)
        acc.finishFirstPass()
        acc.addSecondPass(values)
        self = acc.result()
    }

    public init(_ values: [Float]) {
        self = values.withUnsafeBufferPointer { TensorStats($0) }
    }

    /// Computes the statistics of a model tensor, decoding it a slice of rows at a time so memory
    /// stays bounded for large tensors (a quantized layer: its dequantized values).
    ///
    /// - Parameter progress: advanced by the elements decoded (each element twice: two passes);
    ///   cancelling it stops the work with ``QuantizationError/cancelled``.
    public init(of tensor: ModelTensor, in model: Model, chunkElements: Int = 1 << 20, progress: Progress? = nil) throws {
        try model.checkDecodable(tensor)
        let info = tensor.info
        let rowsPerChunk = Swift.max(1, chunkElements / Swift.max(info.rowLength, 1))
        var acc = Accumulator()
        for pass in 0..<2 {
            var row = 0
            while row < info.rowCount {
                let end = Swift.min(row + rowsPerChunk, info.rowCount)
                if progress?.isCancelled == true { throw QuantizationError.cancelled }
                let values = try model.decodeRows(tensor, rows: row..<end)
                values.withUnsafeBufferPointer { pass == 0 ? acc.addFirstPass($0) : acc.addSecondPass($0) }
                progress?.advance(by: values.count)
                row = end
            }
            if pass == 0 { acc.finishFirstPass() }
        }
        self = acc.result()
    }

    struct Accumulator {
        var count = 0, nonFinite = 0
        var sum = 0.0, sumSquares = 0.0
        var minimum = Float.infinity, maximum = -Float.infinity
        var mean = 0.0
        var m2 = 0.0, m4 = 0.0
        var outliers = 0
        var threshold = 0.0

        mutating func addFirstPass(_ values: UnsafeBufferPointer<Float>) {
            var s = 0.0, s2 = 0.0
            for v in values {
                guard v.isFinite else {
                    nonFinite += 1
                    continue
                }
                s += Double(v)
                s2 += Double(v) * Double(v)
                minimum = Swift.min(minimum, v)
                maximum = Swift.max(maximum, v)
                count += 1
            }
            sum += s
            sumSquares += s2
        }

        /// Fixes the mean, and the outlier threshold from a one-pass variance (exact enough to
        /// decide which values lie beyond 6σ; the reported σ comes from the second pass).
        mutating func finishFirstPass() {
            mean = count > 0 ? sum / Double(count) : 0
            let variance = count > 0 ? Swift.max(sumSquares / Double(count) - mean * mean, 0) : 0
            threshold = 6 * variance.squareRoot()
        }

        mutating func addSecondPass(_ values: UnsafeBufferPointer<Float>) {
            for v in values where v.isFinite {
                let d = Double(v) - mean
                let d2 = d * d
                m2 += d2
                m4 += d2 * d2
                if abs(d) > threshold { outliers += 1 }
            }
        }

        func result() -> TensorStats {
            let n = Double(Swift.max(count, 1))
            let variance = m2 / n
            let std = variance.squareRoot()
            return TensorStats(
                count: count, min: count > 0 ? minimum : .nan, max: count > 0 ? maximum : .nan,
                mean: mean, std: std, kurtosis: variance > 0 ? (m4 / n) / (variance * variance) : 0,
                outlierShare: Double(outliers) / n, nonFinite: nonFinite)
        }
    }

    public init(
        count: Int, min: Float, max: Float, mean: Double, std: Double, kurtosis: Double,
        outlierShare: Double, nonFinite: Int
    ) {
        self.count = count
        self.min = min
        self.max = max
        self.mean = mean
        self.std = std
        self.kurtosis = kurtosis
        self.outlierShare = outlierShare
        self.nonFinite = nonFinite
    }
}
