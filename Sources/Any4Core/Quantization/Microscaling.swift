/// The hardware microscaling formats: E2M1 codes with a shared block scale.
///
/// - mxfp4 (OCP Microscaling v1.0): blocks of 32, scale 2^(⌊log2 absmax⌋ − 2) stored as E8M0
///   (the largest E2M1 exponent is 2); values beyond ±6 after scaling saturate.
/// - nvfp4 (NVIDIA): blocks of 16, block scale = E4M3(absmax_block / 6 / g) where the per-tensor
///   f32 scale g = absmax_tensor / (6 · 448), so block scales use FP8's range; w ≈ e2m1 · s · g.
/// Codes are the nearest E2M1 value, ties to the even code (IEEE round-half-to-even).
public struct MXFP4Format: NumericFormat {
    public init() {}
    public var name: String { "mxfp4" }
    public var summary: String { "OCP MX FP4: E2M1, block 32, power-of-two E8M0 scale" }
    public var codeBits: Int { 4 }
    public var fixedBlockSize: Int? { 32 }
    public var scaleEncoding: ScaleEncoding { .e8m0 }
    public var sharedTable: [Float]? { TableFormat.e2m1 }

    public func quantizeRow(_ job: RowJob) {
        E2M1Blocks.quantizeRow(job) { amax in
            let exponent = amax > 0 ? min(max(Int(amax.exponent) - 2, -127), 127) : -127
            let scale = Float(sign: .plus, exponent: exponent, significand: 1)
            return (scale, scale)
        }
    }

    /// The E8M0 byte of a power-of-two scale.
    public static func e8m0(_ scale: Float) -> UInt8 { UInt8(Int(scale.exponent) + 127) }
    public static func fromE8M0(_ bits: UInt8) -> Float {
        bits == 0xFF ? .nan : Float(sign: .plus, exponent: Int(bits) - 127, significand: 1)
    }
}

public struct NVFP4Format: NumericFormat {
    public init() {}
    public var name: String { "nvfp4" }
    public var summary: String { "NVIDIA FP4: E2M1, block 16, FP8 E4M3 scale and a per-tensor f32 scale" }
    public var codeBits: Int { 4 }
    public var fixedBlockSize: Int? { 16 }
    public var scaleEncoding: ScaleEncoding { .e4m3 }
    public var hasTensorScale: Bool { true }
    public var sharedTable: [Float]? { TableFormat.e2m1 }

    public func tensorScale(of values: UnsafeBufferPointer<Float>) -> Float {
        var amax: Float = 0
        for v in values { amax = max(amax, abs(v)) }
        return amax > 0 ? amax / (6 * 448) : 1
    }

    public func quantizeRow(_ job: RowJob) {
        E2M1Blocks.quantizeRow(job) { amax in
            let scale = FP8E4M3.round(amax / 6 / job.tensorScale)
            return (scale, scale * job.tensorScale)
        }
    }
}

/// The block loop both microscaling formats share: absmax per block, a scale from it, and each
/// value's nearest E2M1 code (ties to the even code).
enum E2M1Blocks {
    /// `scale(amax)` gives the stored scale and the factor the codes are measured against.
    static func quantizeRow(_ job: RowJob, scale: (Float) -> (stored: Float, effective: Float)) {
        TableFormat.e2m1.withUnsafeBufferPointer { t in
            for g in 0..<job.groups.count {
                let range = job.groups.range(g)
                var amax: Float = 0
                for c in range { amax = max(amax, abs(job.values[c])) }
                let (stored, effective) = scale(amax)
                job.scales[g] = stored
                let inverse: Float = effective == 0 ? 0 : 1 / effective
                for c in range {
                    job.codes[c] = UInt8(TableSearch.nearest(job.values[c] * inverse, t, tiesToEven: true))
                }
            }
        }
    }
}

/// FP8 E4M3 (the "fn" variant: no infinities, max 448), round to nearest even, saturating.
public enum FP8E4M3 {
    public static let max: Float = 448

    /// Rounds a non-negative value to the nearest E4M3 value (saturating at 448).
    public static func round(_ x: Float) -> Float {
        decode(encode(x))
    }

    /// The E4M3 byte of a value (sign kept; NaN → 0x7F; beyond ±448 saturates).
    public static func encode(_ x: Float) -> UInt8 {
        if x.isNaN { return 0x7F }
        let sign: UInt8 = x.sign == .minus ? 0x80 : 0
        let a = abs(x)
        if a >= max { return sign | 0x7E }
        // Subnormals: m · 2^-9 for m in 0…7; normals: (1 + m/8) · 2^(e−7), e in 1…15.
        if a < Float(sign: .plus, exponent: -6, significand: 1) {
            let m = (a * 512).rounded(.toNearestOrEven)
            return sign | UInt8(m)  // m == 8 is exactly the smallest normal, encoded as 0b0000_1000
        }
        let e = Int(a.exponent)
        let step = Float(sign: .plus, exponent: e - 3, significand: 1)
        var q = (a / step).rounded(.toNearestOrEven)  // 8…16
        var exponent = e
        if q == 16 {
            q = 8
            exponent += 1
        }
        let bits = UInt8(exponent + 7) << 3 | UInt8(q - 8)
        return sign | Swift.min(bits, 0x7E)
    }

    public static func decode(_ byte: UInt8) -> Float {
        let sign: Float = byte & 0x80 != 0 ? -1 : 1
        let e = Int((byte >> 3) & 0xF), m = Float(byte & 7)
        if e == 0xF && byte & 7 == 7 { return .nan }
        if e == 0 { return sign * m * Float(sign: .plus, exponent: -9, significand: 1) }
        return sign * (1 + m / 8) * Float(sign: .plus, exponent: e - 7, significand: 1)
    }
}
