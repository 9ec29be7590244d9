/// A small, fast, seedable generator (SplitMix64): the same seed gives the same stream on every
/// machine, which the demo model, the k-means seeding and the tests rely on.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Standard normal (Box–Muller).
    public mutating func nextGaussian() -> Double {
        let u = Swift.max(nextUnit(), 1e-300), v = nextUnit()
        return (-2 * _log(u)).squareRoot() * _cos(2 * Double.pi * v)
    }

    /// Student-t with 4 degrees of freedom: heavy tails like trained LLM weights.
    /// (χ²₄ = −2·ln(u₁u₂), so one Gaussian, two uniforms and one log per sample.)
    public mutating func nextStudentT4() -> Double {
        let z = nextGaussian()
        let chi2 = -2 * _log(Swift.max(nextUnit() * nextUnit(), 1e-300))
        return z / (chi2 / 4).squareRoot()
    }
}

#if canImport(Glibc)
    import Glibc
    @inline(__always) func _log(_ x: Double) -> Double { Glibc.log(x) }
    @inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#elseif canImport(Darwin)
    import Darwin
    @inline(__always) func _log(_ x: Double) -> Double { Darwin.log(x) }
    @inline(__always) func _cos(_ x: Double) -> Double { Darwin.cos(x) }
#endif
