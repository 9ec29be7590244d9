import Dispatch

/// How far a dequantized matrix is from the original.
public struct ErrorMetrics: Sendable, Equatable {
    /// Mean squared error per weight.
    public var mse: Double
    /// Signal-to-quantization-noise ratio, 10·log10(Σw² / Σ(w − ŵ)²), in dB (∞ when exact).
    public var sqnrDB: Double
    public var maxAbsError: Double

    /// Compares `original` and `approximation` element by element (Double accumulation). A NaN
    /// in either makes every figure NaN (`max(worst, NaN)` would keep `worst` and read as exact).
    public init(original: [Float], approximation: [Float]) {
        precondition(original.count == approximation.count, "sizes differ")
        var signal = 0.0, noise = 0.0, worst = 0.0
        for i in 0..<original.count {
            let w = Double(original[i])
            let d = w - Double(approximation[i])
            signal += w * w
            noise += d * d
            if !(abs(d) <= worst) { worst = abs(d) }
            if worst.isNaN { break }
        }
        if worst.isNaN {
            signal = .nan
            noise = .nan
        }
        mse = original.isEmpty ? 0 : noise / Double(original.count)
        sqnrDB = Self.sqnrDB(signal: signal, noise: noise)
        maxAbsError = worst
    }

    /// 10·log10(signal / noise) in dB from Σw² and Σ(w − ŵ)²: ∞ when the noise is 0.
    public static func sqnrDB(signal: Double, noise: Double) -> Double {
        noise == 0 ? .infinity : 10 * log10(signal / noise)
    }

    /// ‖X·Wᵀ − X·Ŵᵀ‖ / ‖X·Wᵀ‖ (Frobenius) for activations X of shape [m, cols].
    public static func outputRelativeError(
        original: [Float], approximation: [Float], rows: Int, cols: Int,
        activations x: [Float]
    ) -> Double {
        let m = x.count / cols
        precondition(m * cols == x.count && original.count == rows * cols, "shapes differ")
        // One slot per row, written by the worker that owns the row: plain memory, not a Swift
        // array in a shared object (concurrent writes through an array's accessors race on its
        // uniqueness check and could copy or free its buffer twice). Summed in row order after.
        var num = [Double](repeating: 0, count: rows), den = num
        num.withUnsafeMutableBufferPointer { numOut in
            den.withUnsafeMutableBufferPointer { denOut in
                let out = UncheckedBox((numOut, denOut))
                DispatchQueue.concurrentPerform(iterations: rows) { r in
                    var n = 0.0, d = 0.0
                    for i in 0..<m {
                        var y = 0.0, e = 0.0
                        for c in 0..<cols {
                            let xv = Double(x[i * cols + c])
                            y += xv * Double(original[r * cols + c])
                            e += xv * Double(original[r * cols + c] - approximation[r * cols + c])
                        }
                        n += e * e
                        d += y * y
                    }
                    out.value.0[r] = n
                    out.value.1[r] = d
                }
            }
        }
        let total = num.reduce(0, +), signal = den.reduce(0, +)
        return signal > 0 ? (total / signal).squareRoot() : (total > 0 ? .infinity : 0)
    }

    /// Gaussian activations [m, cols] from a fixed seed: the default for output error.
    public static func gaussianActivations(m: Int, cols: Int, seed: UInt64 = 1) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<(m * cols)).map { _ in Float(rng.nextGaussian()) }
    }
}

/// A histogram of values over [low, high] in `bins` equal bins (values outside are clamped in).
public struct Histogram: Sendable, Equatable {
    public var low: Float
    public var high: Float
    public var counts: [Int]

    public init(_ values: UnsafeBufferPointer<Float>, bins: Int, low: Float? = nil, high: Float? = nil) {
        var lo = low ?? .infinity, hi = high ?? -.infinity
        if low == nil || high == nil {
            for v in values where v.isFinite {
                if low == nil { lo = min(lo, v) }
                if high == nil { hi = max(hi, v) }
            }
        }
        if !(lo < hi) {
            lo = lo.isFinite ? lo - 0.5 : 0
            hi = lo + 1
        }
        self.low = lo
        self.high = hi
        var counts = [Int](repeating: 0, count: max(bins, 1))
        let scale = Float(counts.count) / (hi - lo)
        for v in values where v.isFinite {
            let b = Int(((v - lo) * scale).rounded(.down))
            counts[min(max(b, 0), counts.count - 1)] += 1
        }
        self.counts = counts
    }

    public init(_ values: [Float], bins: Int, low: Float? = nil, high: Float? = nil) {
        self = values.withUnsafeBufferPointer { Histogram($0, bins: bins, low: low, high: high) }
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
