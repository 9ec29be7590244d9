/// ggml tensor types as stored in GGUF files: id, block layout, and a scalar dequantizer.
///
/// Block sizes and byte sizes are those of ggml's `type_traits` (cross-checked in the tests
/// against the `gguf` Python package's `GGML_QUANT_SIZES`). Every dequantizer follows the order
/// of operations of ggml's reference `dequantize_row_*`, so results are bit-identical to it.
public enum GGMLType: UInt32, Sendable, CaseIterable, Hashable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_XXS = 16, iq2_XS = 17, iq3_XXS = 18, iq1_S = 19, iq4_NL = 20, iq3_S = 21, iq2_S = 22, iq4_XS = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_M = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39, nvfp4 = 40

    /// The name ggml gives the type (`Q4_K`, `IQ4_NL`, ...).
    public var name: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .bf16: "BF16"
        case .f64: "F64"
        case .i8: "I8"
        case .i16: "I16"
        case .i32: "I32"
        case .i64: "I64"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"
        case .q5_1: "Q5_1"
        case .q8_0: "Q8_0"
        case .q8_1: "Q8_1"
        case .q2_K: "Q2_K"
        case .q3_K: "Q3_K"
        case .q4_K: "Q4_K"
        case .q5_K: "Q5_K"
        case .q6_K: "Q6_K"
        case .q8_K: "Q8_K"
        case .iq2_XXS: "IQ2_XXS"
        case .iq2_XS: "IQ2_XS"
        case .iq3_XXS: "IQ3_XXS"
        case .iq1_S: "IQ1_S"
        case .iq4_NL: "IQ4_NL"
        case .iq3_S: "IQ3_S"
        case .iq2_S: "IQ2_S"
        case .iq4_XS: "IQ4_XS"
        case .iq1_M: "IQ1_M"
        case .tq1_0: "TQ1_0"
        case .tq2_0: "TQ2_0"
        case .mxfp4: "MXFP4"
        case .nvfp4: "NVFP4"
        }
    }

    /// Elements per block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .f64, .i8, .i16, .i32, .i64: 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_NL, .mxfp4: 32
        case .nvfp4: 64
        default: 256
        }
    }

    /// Bytes per block.
    public var typeSize: Int {
        switch self {
        case .f32, .i32: 4
        case .f16, .bf16, .i16: 2
        case .f64, .i64: 8
        case .i8: 1
        case .q4_0: 18
        case .q4_1: 20
        case .q5_0: 22
        case .q5_1: 24
        case .q8_0: 34
        case .q8_1: 40
        case .q2_K: 84
        case .q3_K: 110
        case .q4_K: 144
        case .q5_K: 176
        case .q6_K: 210
        case .q8_K: 292
        case .iq2_XXS: 66
        case .iq2_XS: 74
        case .iq3_XXS: 98
        case .iq1_S: 50
        case .iq4_NL: 18
        case .iq3_S: 110
        case .iq2_S: 82
        case .iq4_XS: 136
        case .iq1_M: 56
        case .tq1_0: 54
        case .tq2_0: 66
        case .mxfp4: 17
        case .nvfp4: 36
        }
    }

    /// Whether ``dequantize(_:count:into:)`` decodes this type.
    public var isDecodable: Bool {
        switch self {
        case .f32, .f16, .bf16, .f64, .i8, .i16, .i32, .i64,
            .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_NL, .mxfp4:
            true
        default: false
        }
    }

    /// The llama.cpp IQ4_NL codebook.
    public static let iq4nlValues: [Int8] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]
    /// E2M1 values doubled, as ggml's MXFP4 stores them.
    public static let mxfp4Values: [Int8] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12]

    /// Decodes `count` elements (a multiple of `blockSize`) starting at `src`.
    public func dequantize(_ src: UnsafeRawPointer, count: Int, into y: UnsafeMutablePointer<Float>) {
        precondition(isDecodable, "\(name) cannot be decoded")
        precondition(count % blockSize == 0, "count not a multiple of the block size")
        let blocks = count / blockSize
        switch self {
        case .f32: DType.f32.decode(src, count: count, into: y)
        case .f16: DType.f16.decode(src, count: count, into: y)
        case .bf16: DType.bf16.decode(src, count: count, into: y)
        case .f64: DType.f64.decode(src, count: count, into: y)
        case .i8: DType.i8.decode(src, count: count, into: y)
        case .i16: DType.i16.decode(src, count: count, into: y)
        case .i32: DType.i32.decode(src, count: count, into: y)
        case .i64: DType.i64.decode(src, count: count, into: y)
        default:
            for b in 0..<blocks {
                let block = GGMLBlock(base: src + b * typeSize)
                let out = y + b * blockSize
                switch self {
                case .q4_0: Self.q4_0(block, out)
                case .q4_1: Self.q4_1(block, out)
                case .q5_0: Self.q5_0(block, out)
                case .q5_1: Self.q5_1(block, out)
                case .q8_0: Self.q8_0(block, out)
                case .q2_K: Self.q2_K(block, out)
                case .q3_K: Self.q3_K(block, out)
                case .q4_K: Self.q4_K(block, out)
                case .q5_K: Self.q5_K(block, out)
                case .q6_K: Self.q6_K(block, out)
                case .iq4_NL: Self.iq4_NL(block, out)
                case .mxfp4: Self.mxfp4(block, out)
                default: preconditionFailure("unreachable")
                }
            }
        }
    }
}

/// Little-endian field access inside one ggml block.
struct GGMLBlock {
    let base: UnsafeRawPointer
    @inline(__always) func u8(_ i: Int) -> UInt8 { base.load(fromByteOffset: i, as: UInt8.self) }
    @inline(__always) func i8(_ i: Int) -> Int8 { base.load(fromByteOffset: i, as: Int8.self) }
    @inline(__always) func f16(_ i: Int) -> Float {
        Float(Float16(bitPattern: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt16.self))))
    }
    @inline(__always) func u32(_ i: Int) -> UInt32 { UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt32.self)) }
}

// MARK: - Dequantizers (one per block type)

extension GGMLType {
    /// Q4_0: `f16 d; u8 qs[16]`; element j is the low nibble of qs[j], j+16 the high one.
    static func q4_0(_ b: GGMLBlock, _ y: UnsafeMutablePointer<Float>) {
        let d = b.f16(0)
        for j in 0..<16 {
            let q = b.u8(2 + j)
            y[j] = d * Float(Int(q & 0xF) - 8)
            y[j + 16] = d * Float(Int(q >> 4) - 8)
        }
    }

    /// Q4_1: `f16 d; f16 m; u8 qs[16]`, x = q·d + m.
    static func q4_1(_ b: GGMLBlock, _ y: UnsafeMutablePointer<Float>) {
        let d = b.f16(0), m = b.f16(2)
        for j in 0..<16 {
            let q = b.u8(4 + j)
            y[j] = d * Float(q & 0xF) + m
            y[j + 16] = d * Float(q >> 4) + m
        }
    }

    /// Q5_0: `f16 d; u32 qh; u8 qs[16]`; bit j of qh is the fifth bit of element j.
    static func q5_0(_ b: GGMLBlock, _ y: UnsafeMutablePointer<Float>) {
        let d = b.f16(0), qh = b.u32(2)
        for j in 0..<16 {
            let q = b.u8(6 + j)
            let h0 = UInt8((qh >> UInt32(j)) & 1) << 4
            let h1 = UInt8((qh >> UInt32(j + 16)) & 1) << 4
            y[j] = d * Float(Int((q & 0xF) | h0) - 16)
            y[j + 16] = d * Float(Int((q >> 4) | h1) - 16)
        }
    }

    /// Q5_1: `f16 d; f16 m; u32 qh; u8 qs[16]`, x = q·d + m.
    static func q5_1(_ b: GGMLBlock, _ y: UnsafeMutablePointer<Float>) {
        let d = b.f16(0), m = b.f16(2), qh = b.u32(4)
        for j in 0..<16 {
            let q = b.u8(8 + j)
            let h0 = UInt8((qh >> UInt32(j)) & 1) << 4
            let h1 = UInt8((qh >> UInt32(j + 16)) & 1) << 4
            y[j] = d * Float((q & 0xF) | h0) + m
            y[j + 16] = d * Float((q >> 4) | h1) + m
        }
    }

    /// Q8_0: `f16 d; i8 qs[32]`.
    static func q8_0(_ b: GGMLBlock, _ y: UnsafeMutablePointer<Float>) {
        let d = b.f16(0)
        for j in 0..<32 { y[j] = Float(b.i8(2 + j)) * d }
    }

    /// Q2_K: `u8 scales[16]; u8 qs[64]; f16 d; f16 dmin`; 16 sub-blocks of 16 with 4-bit scale and min.
    static func q2_K(_ b: GGMLBlock, _ y: UnsafeMutablePointer<Float>) {
        let d = b.f16(80), dmin = b.f16(82)
        var out = 0, scaleIndex = 0
        for half in 0..<2 {
            let q = 16 + half * 32
            for shift in stride(from: 0, to: 8, by: 2) {
                for part in 0..<2 {
                    let sc = b.u8(scaleIndex)
                    scaleIndex += 1
                    let dl = d * Float(sc & 0xF), ml = dmin * Float(sc >> 4)
                    for l in 0..<16 {
                        y[out] = dl * Float((b.u8(q + part * 16 + l) >> UInt8(shift)) & 3) - ml
                        out += 1
                    }
                }
            }
        }
    }

    /// Q3_K: `u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d`; 16 six-bit signed scales.
    static func q3_K(_ b: GGMLBlock, _ y: UnsafeMutablePointer<Float>) {
        let d = b.f16(108)
        var scales = [Int](repeating: 0, count: 16)
        for i in 0..<16 {
            let low = i < 8 ? b.u8(96 + i) & 0xF : b.u8(96 + i - 8) >> 4
            let high = (b.u8(96 + 8 + i % 4) >> UInt8(2 * (i / 4))) & 3
            scales[i] = Int(low | high << 4) - 32
        }
        var out = 0, scaleIndex = 0, mask: UInt8 = 1
        for half in 0..<2 {
            let q = 32 + half * 32
            for shift in stride(from: 0, to: 8, by: 2) {
                for part in 0..<2 {
                    let dl = d * Float(scales[scaleIndex])
                    scaleIndex += 1
                    for l in 0..<16 {
                        let low = Int((b.u8(q + part * 16 + l) >> UInt8(shift)) & 3)
                        let high = b.u8(part * 16 + l) & mask != 0 ? 0 : 4
                        y[out] = dl * Float(low - high)
                        out += 1
                    }
                }
                mask <<= 1
            }
        }
    }

    /// The 6-bit scale and min `j` (0..<8) of a Q4_K / Q5_K block, packed in 12 bytes at `at`.
    @inline(__always)
    static func scaleMinK4(_ b: GGMLBlock, at: Int, _ j: Int) -> (Float, Float) {
        if j < 4 {
            return (Float(b.u8(at + j) & 63), Float(b.u8(at + j + 4) & 63))
        }
        let sc = (b.u8(at + j + 4) & 0xF) | ((b.u8(at + j - 4) >> 6) << 4)
        let m = (b.u8(at + j + 4) >> 4) | ((b.u8(at + j) >> 6) << 4)
        return (Float(sc), Float(m))
    }

    /// Q4_K: `f16 d; f16 dmin; u8 scales[12]; u8 qs[128]`; 8 sub-blocks of 32.
    static func q4_K(_ b: GGMLBlock, _ y: UnsafeMutablePointer<Float>) {
        let d = b.f16(0), dmin = b.f16(2)
        for chunk in 0..<4 {
            let (sc1, m1) = scaleMinK4(b, at: 4, 2 * chunk)
            let (sc2, m2) = scaleMinK4(b, at: 4, 2 * chunk + 1)
            let d1 = d * sc1, dm1 = dmin * m1, d2 = d * sc2, dm2 = dmin * m2
            let q = 16 + chunk * 32, out = chunk * 64
            for l in 0..<32 {
                let byte = b.u8(q + l)
                y[out + l] = d1 * Float(byte & 0xF) - dm1
                y[out + 32 + l] = d2 * Float(byte >> 4) - dm2
            }
        }
    }

    /// Q5_K: `f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]`.
    static func q5_K(_ b: GGMLBlock, _ y: UnsafeMutablePointer<Float>) {
        let d = b.f16(0), dmin = b.f16(2)
        for chunk in 0..<4 {
            let (sc1, m1) = scaleMinK4(b, at: 4, 2 * chunk)
            let (sc2, m2) = scaleMinK4(b, at: 4, 2 * chunk + 1)
            let d1 = d * sc1, dm1 = dmin * m1, d2 = d * sc2, dm2 = dmin * m2
            let q = 48 + chunk * 32, out = chunk * 64
            let bit1 = UInt8(1) << UInt8(2 * chunk), bit2 = UInt8(2) << UInt8(2 * chunk)
            for l in 0..<32 {
                let byte = b.u8(q + l), high = b.u8(16 + l)
                y[out + l] = d1 * Float((byte & 0xF) + (high & bit1 != 0 ? 16 : 0)) - dm1
                y[out + 32 + l] = d2 * Float((byte >> 4) + (high & bit2 != 0 ? 16 : 0)) - dm2
            }
        }
    }

    /// Q6_K: `u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d`; 16 sub-blocks of 16.
    static func q6_K(_ b: GGMLBlock, _ y: UnsafeMutablePointer<Float>) {
        let d = b.f16(208)
        for half in 0..<2 {
            let ql = half * 64, qh = 128 + half * 32, sc = 192 + half * 8, out = half * 128
            for l in 0..<32 {
                let s = l / 16
                let h = b.u8(qh + l)
                let q1 = Int((b.u8(ql + l) & 0xF) | ((h & 3) << 4)) - 32
                let q2 = Int((b.u8(ql + l + 32) & 0xF) | (((h >> 2) & 3) << 4)) - 32
                let q3 = Int((b.u8(ql + l) >> 4) | (((h >> 4) & 3) << 4)) - 32
                let q4 = Int((b.u8(ql + l + 32) >> 4) | (((h >> 6) & 3) << 4)) - 32
                y[out + l] = d * Float(b.i8(sc + s)) * Float(q1)
                y[out + l + 32] = d * Float(b.i8(sc + s + 2)) * Float(q2)
                y[out + l + 64] = d * Float(b.i8(sc + s + 4)) * Float(q3)
                y[out + l + 96] = d * Float(b.i8(sc + s + 6)) * Float(q4)
            }
        }
    }

    /// IQ4_NL: `f16 d; u8 qs[16]`, x = d · table[q], nibble order as Q4_0.
    static func iq4_NL(_ b: GGMLBlock, _ y: UnsafeMutablePointer<Float>) {
        let d = b.f16(0)
        for j in 0..<16 {
            let q = b.u8(2 + j)
            y[j] = d * Float(iq4nlValues[Int(q & 0xF)])
            y[j + 16] = d * Float(iq4nlValues[Int(q >> 4)])
        }
    }

    /// MXFP4: `u8 e (E8M0); u8 qs[16]`, x = table[q] · 2^(e−128) (the table holds doubled E2M1 values).
    static func mxfp4(_ b: GGMLBlock, _ y: UnsafeMutablePointer<Float>) {
        let e = UInt32(b.u8(0))
        let d = Float(bitPattern: e < 2 ? UInt32(0x0020_0000) << e : (e - 1) << 23)
        for j in 0..<16 {
            let q = b.u8(1 + j)
            y[j] = d * Float(mxfp4Values[Int(q & 0xF)])
            y[j + 16] = d * Float(mxfp4Values[Int(q >> 4)])
        }
    }
}
