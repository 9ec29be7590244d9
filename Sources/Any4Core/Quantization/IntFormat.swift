/// int-b: group-wise asymmetric integer quantization (DESIGN.md, step 1 and 2).
///
/// For each group: s = max(max − min, 1e-6) / (2^b − 1), z = min + s·2^(b−1), both rounded to the
/// storage dtype; q = clamp(round((w − min′)/s), 0, 2^b − 1) with min′ = z − s·2^(b−1) and
/// round-half-to-even (as torch.round). Dequantization: (q − 2^(b−1))·s + z.
public struct IntFormat: NumericFormat {
    public let codeBits: Int
    public init(bits: Int) { codeBits = bits }
    public var name: String { "int\(codeBits)" }
    public var summary: String { "\(codeBits)-bit integers, asymmetric per group (scale and zero)" }
    public var hasZeros: Bool { true }
    public var sharedTable: [Float]? {
        let half = 1 << (codeBits - 1)
        return (0..<(1 << codeBits)).map { Float($0 - half) }
    }

    public func quantizeRow(_ job: RowJob) {
        let levels = Float((1 << codeBits) - 1)
        let half = Float(1 << (codeBits - 1))
        for g in 0..<job.groups.count {
            let range = job.groups.range(g)
            let (s, z, low) = GroupScaling.asymmetric(job.values, range, levels: levels, half: half, storage: job.storage)
            job.scales[g] = s
            job.zeros[g] = z
            for c in range {
                let v = GroupScaling.scaled(job.values[c], low: low, scale: s).rounded(.toNearestOrEven)
                // NaN (only from a scale the storage dtype cannot hold, which the row check
                // reports) takes code 0 rather than trapping in the conversion.
                job.codes[c] = v >= 0 ? UInt8(min(v, levels)) : 0
            }
        }
    }
}

/// Group scaling shared by int-b and any-b.
public enum GroupScaling {
    /// 2^(b−1), the offset between a code q and its centred table value: int-b's table is
    /// q − 2^(b−1), and any-b stores its centroids less it. A centred table value plus the offset
    /// is where it lies in the group-scaled domain [0, 2^b − 1].
    public static func offset(bits: Int) -> Float { Float(1 << (bits - 1)) }

    /// The stored scale s and zero z of `range`, and the effective minimum min′ = z − s·2^(b−1),
    /// after rounding s and z to the storage dtype (so that codes are chosen against what is stored).
    ///
    /// Computed in Float as the format defines; a step that overflows Float (weights near ±3e38,
    /// whose range max − min exceeds Float's) is redone in Double, where the range, the zero and
    /// min′ fit. A scale or zero the storage dtype cannot hold comes back infinite, for the row
    /// check to report.
    @inline(__always)
    public static func asymmetric(
        _ values: UnsafeBufferPointer<Float>, _ range: Range<Int>, levels: Float, half: Float,
        storage: StorageRounding
    ) -> (scale: Float, zero: Float, low: Float) {
        var mn = Float.infinity, mx = -Float.infinity
        for c in range {
            mn = min(mn, values[c])
            mx = max(mx, values[c])
        }
        var s = storage(max(mx - mn, 1e-6) / levels)
        if !s.isFinite { s = storage(Float((Double(mx) - Double(mn)) / Double(levels))) }
        // F16 flushes 1e-6/255 (int8's floor) to zero: the smallest stored scale instead, so that
        // what is stored is what the codes were chosen against.
        if s == 0 { s = storage.leastNonzero }
        var z = storage(mn + s * half)
        if !z.isFinite { z = storage(Float(Double(mn) + Double(s) * Double(half))) }
        var low = z - s * half
        if !low.isFinite { low = Float(Double(z) - Double(s) * Double(half)) }
        return (s, z, low)
    }

    /// (v − min′) / s, the value in the group-scaled domain [0, 2^b − 1]; in Double when v − min′
    /// overflows Float (a group spanning more than Float's range).
    @inline(__always)
    public static func scaled(_ v: Float, low: Float, scale: Float) -> Float {
        let d = v - low
        return d.isFinite ? d / scale : Float((Double(v) - Double(low)) / Double(scale))
    }
}
