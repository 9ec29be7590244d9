import Any4Core
import Foundation
import TestSupport
import XCTest

/// The dtype LUTs, scales and zeros are stored in (`--table-dtype`), and the bits it costs.
final class StorageDTypeTests: XCTestCase {
    func matrix(rows: Int, cols: Int, seed: UInt64 = 5, scale: Double = 0.02) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<(rows * cols)).map { _ in Float(rng.nextStudentT4() * scale) }
    }

    func quantize(
        _ w: [Float], rows: Int, cols: Int, _ format: String, group: Int = 64, dtype: DType? = nil, source: DType = .f32
    ) throws -> QuantizedMatrix {
        var o = QuantizationOptions()
        o.groupSize = group
        o.storageDType = dtype
        return try Quantizer.quantize(
            w, rows: rows, cols: cols, name: "w", format: FormatRegistry.named(format), options: o, source: source)
    }

    /// Whether `x` is exactly a value of `dtype` (its rounding to it gives it back).
    func representable(_ x: Float, _ dtype: DType) -> Bool {
        switch dtype {
        case .f16: Float(Float16(x)) == x
        case .bf16: x.bitPattern & 0xFFFF == 0
        default: true
        }
    }

    func testTheDefaultRuleIsSixteenBits() {
        let o = QuantizationOptions()
        XCTAssertNil(o.storageDType)
        XCTAssertEqual(o.storageDType(source: .bf16), .bf16)
        XCTAssertEqual(o.storageDType(source: .f16), .f16)
        XCTAssertEqual(o.storageDType(source: .f32), .f16, "an f32 (or GGUF block) source gets f16 tables")
        var chosen = o
        chosen.storageDType = .f32
        XCTAssertEqual(chosen.storageDType(source: .bf16), .f32, "an explicit dtype wins")
        chosen.storageDType = .i8
        XCTAssertThrowsError(try chosen.validate()) { XCTAssertTrue("\($0)".contains("table dtype"), "\($0)") }
    }

    /// Every stored LUT entry, scale and zero is a value of the chosen dtype, the matrix says so,
    /// and bits per weight count it: any4 g64 on 256 columns = 4 + 16·b/256 + 2·b/64.
    func testStoredValuesAreExactlyRepresentableInTheChosenDType() throws {
        let w = matrix(rows: 8, cols: 256)
        for (dtype, source, expected) in [
            (nil, DType.f32, DType.f16), (nil, .bf16, .bf16), (.f16, .bf16, .f16), (.bf16, .f32, .bf16), (.f32, .f16, .f32)
        ] as [(DType?, DType, DType)] {
            for format in ["any4", "int4", "nf4", "fp4", "any3"] {
                let what = "\(format) \(dtype?.rawValue ?? "default") from \(source.rawValue)"
                let q = try quantize(w, rows: 8, cols: 256, format, dtype: dtype, source: source)
                XCTAssertEqual(q.storage, expected, what)
                XCTAssertNil(q.storageFallback, what)
                for x in (q.perRowTable ? q.tables : []) + q.scales + q.zeros {
                    XCTAssertTrue(representable(x, expected), "\(what): \(x) is not a \(expected.rawValue) value")
                }
                let b = Double(expected.size * 8)
                let codes = Double(q.codeBits)  // 3-bit codes are stored dense: 3 bits each on 256 columns
                let table = q.perRowTable ? 16 * b / 256 * Double(q.tableSize) / 16 : 0
                let perGroup = format.hasPrefix("any") || format.hasPrefix("int") ? 2 * b : b
                XCTAssertEqual(q.bitsPerWeight, codes + table + perGroup / 64, accuracy: 1e-12, what)
            }
        }
        // A format's own scale encoding is kept: iq4_nl F16 scales, mxfp4 E8M0 bytes.
        XCTAssertEqual(try quantize(w, rows: 8, cols: 256, "iq4_nl", dtype: .f32).bitsPerWeight, 4.5)
        XCTAssertEqual(try quantize(w, rows: 8, cols: 256, "mxfp4", dtype: .f32).bitsPerWeight, 4.25)
    }

    /// storedBits (no quantizing) is the quantized matrix's bits × elements, for every format,
    /// dtype, ragged and odd widths, fixed blocks and their override.
    func testStoredBitsWithoutQuantizingEqualsTheMatrix() throws {
        for (rows, cols, group) in [(3, 64, 64), (5, 200, 64), (4, 129, 32), (2, 300, 128)] {
            let w = matrix(rows: rows, cols: cols, seed: UInt64(cols))
            for format in FormatRegistry.all {
                for dtype in QuantizationOptions.storageDTypes {
                    for override in [false, true] {
                        var o = QuantizationOptions()
                        o.groupSize = group
                        o.storageDType = dtype
                        o.overrideFixedBlocks = override
                        let q = try Quantizer.quantize(w, rows: rows, cols: cols, name: "w", format: format, options: o)
                        let bits = try Quantizer.storedBits(rows: rows, cols: cols, format: format, options: o, storage: dtype)
                        XCTAssertEqual(
                            Double(bits), q.bitsPerWeight * Double(rows * cols), accuracy: 1e-6,
                            "\(format.name) [\(rows), \(cols)] g\(group) \(dtype.rawValue) override \(override)")
                    }
                }
            }
        }
    }

    /// A layer F16 cannot hold: a scale that overflows it, or one below its normal range in a
    /// group whose weights are not constant. The default rule stores that layer in F32 and says
    /// why (naming the row and group); an explicit f16 refuses it; bf16 holds it.
    func testWhatF16CannotHoldFallsBackOrIsRefused() throws {
        let rows = 6, cols = 128
        var big = matrix(rows: rows, cols: cols)
        big[4 * cols + 7] = 2e5  // int4 scale (2e5 − min)/15 ≈ 13 000: fine; any4 too; nf4 absmax 2e5 > 65504
        var tiny = matrix(rows: rows, cols: cols)
        for c in 64..<128 { tiny[2 * cols + c] *= 1e-4 }  // row 2, group 1: range ~1e-5, scales below 2^-14
        let cases: [(weights: [Float], format: String, row: Int, what: String, error: (QuantizationError) -> Bool)] = [
            (big, "nf4", 4, "the scale is inf in F16", { if case .overflow = $0 { true } else { false } }),
            (tiny, "int4", 2, "group 1 (columns 64..<128", { if case .underflow = $0 { true } else { false } }),
            (tiny, "any4", 2, "below F16's normal range", { if case .underflow = $0 { true } else { false } }),
            (tiny, "nf4", 2, "group 1", { if case .underflow = $0 { true } else { false } })
        ]
        for (w, format, row, text, isError) in cases {
            let what = "\(format) row \(row)"
            let q = try quantize(w, rows: rows, cols: cols, format)
            XCTAssertEqual(q.storage, .f32, what)
            let note = try XCTUnwrap(q.storageFallback, what)
            XCTAssertTrue(note.hasPrefix("w: row \(row): ") && note.contains(text) && note.contains("stored in F32"), note)
            let f32 = try quantize(w, rows: rows, cols: cols, format, dtype: .f32)
            XCTAssertEqual(q.dequantized(), f32.dequantized(), "\(what): the fallback is the f32 quantization")
            XCTAssertEqual(q.bitsPerWeight, f32.bitsPerWeight, what)
            XCTAssertThrowsError(try quantize(w, rows: rows, cols: cols, format, dtype: .f16), what) { error in
                let e = error as? QuantizationError
                XCTAssertTrue(e.map(isError) == true, "\(what): \(error)")
                XCTAssertTrue("\(error)".hasPrefix("w: row \(row): ") && "\(error)".contains(text), "\(error)")
            }
            let bf16 = try quantize(w, rows: rows, cols: cols, format, dtype: .bf16)
            XCTAssertNil(bf16.storageFallback, what)
            XCTAssertEqual(bf16.storage, .bf16)
        }
        // A constant group (range within the 1e-6 floor) is no loss: stored in F16, no warning,
        // and its weights come back to within F16's rounding of the zero.
        var flat = matrix(rows: rows, cols: cols)
        for c in 0..<64 { flat[3 * cols + c] = 0.0123 }
        for format in ["int4", "any4", "int8"] {
            let q = try quantize(flat, rows: rows, cols: cols, format)
            XCTAssertNil(q.storageFallback, format)
            XCTAssertEqual(q.storage, .f16)
            let back = q.dequantized()
            for c in 0..<64 { XCTAssertEqual(back[3 * cols + c], 0.0123, accuracy: 0.0123 / 1024, format) }
            for x in q.scales + q.zeros { XCTAssertTrue(representable(x, .f16), "\(format): \(x)") }
        }
    }

    /// Dequantized values must fit the source's dtype even when the tables do: an f16 model whose
    /// int4 levels F16 tables push past 65504 falls back to F32 tables (the values then fit), and
    /// with f16 chosen is refused as before.
    func testF16SourceValuesOverflowUnderF16TablesOnly() throws {
        var w = matrix(rows: 4, cols: 64, scale: 1000).map { Float(Float16($0)) }
        w[3 * 64 + 10] = 65504
        w[3 * 64 + 11] = -65504
        let q = try quantize(w, rows: 4, cols: 64, "int4", source: .f16)
        XCTAssertEqual(q.storage, .f32)
        XCTAssertTrue(q.storageFallback?.contains("beyond F16's range") == true, q.storageFallback ?? "no note")
        XCTAssertTrue(q.dequantized().allSatisfy { Float(Float16($0)).isFinite })
        XCTAssertThrowsError(try quantize(w, rows: 4, cols: 64, "int4", dtype: .f16, source: .f16)) {
            guard case .overflow(_, 3, _)? = $0 as? QuantizationError else { return XCTFail("\($0)") }
        }
    }
}
