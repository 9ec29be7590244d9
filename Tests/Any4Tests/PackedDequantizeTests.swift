import Any4Core
import Any4Kernels
import Dispatch
import TestSupport
import XCTest

/// `PackedLinear.dequantize(rows:into:)` against `QuantizedMatrix.dequantize(rows:into:)` of the
/// matrix the layer was built from: bit for bit, for every format the lookup kernel takes.
final class PackedDequantizeTests: XCTestCase {
    func weights(_ rows: Int, _ cols: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<(rows * cols)).map { _ in Float(rng.nextStudentT4() * 0.02) }
    }

    /// Both dequantizations of rows `range`, compared bit for bit (scalar and AVX2).
    func check(_ layer: PackedLinear, _ q: QuantizedMatrix, rows range: Range<Int>, _ label: String) {
        let n = range.count * q.cols
        var expected = [Float](repeating: .nan, count: n)
        expected.withUnsafeMutableBufferPointer { q.dequantize(rows: range, into: $0.baseAddress!) }
        for avx in Set([false, CPUFeatures.hasAVX2]) {
            // One float past the end, to catch a write beyond range.count × cols.
            var actual = [Float](repeating: .nan, count: n + 1)
            actual[n] = 12345
            actual.withUnsafeMutableBufferPointer { layer.dequantize(rows: range, into: $0.baseAddress!, useAVX2: avx) }
            XCTAssertEqual(actual[n], 12345, "\(label) rows \(range) avx2=\(avx): wrote past the end")
            assertBitwiseEqual(Array(actual[0..<n]), expected, "\(label) rows \(range) avx2=\(avx)")
        }
    }

    /// Every registered format the kernel takes (nvfp4 at blocks of 32 and more, with its tensor
    /// scale), group sizes 32/64/128, odd row counts and widths (a ragged last group, a partial
    /// super-block, tails of 32- and 64-column blocks), whole matrices and random row ranges.
    func testEveryPackableFormatDequantizesBitForBit() throws {
        let shapes: [(rows: Int, cols: Int)] = [(13, 1100), (7, 2100), (9, 201), (5, 96), (3, 1056), (11, 4096)]
        var tested = Set<String>()
        var rng = SplitMix64(seed: 99)
        for format in FormatRegistry.all {
            for group in [32, 64, 128] {
                for (rows, cols) in shapes {
                    var options = QuantizationOptions()
                    options.groupSize = group
                    options.overrideFixedBlocks = true
                    options.threads = 1
                    let label = "\(format.name) \(rows)x\(cols) g\(group)"
                    let q = try Quantizer.quantize(
                        weights(rows, cols, seed: UInt64(rows * cols + group)), rows: rows, cols: cols, name: "w",
                        format: format, options: options)
                    guard let layer = try? PackedLinear(q) else {
                        XCTAssertGreaterThan(format.codeBits, 4, "\(label): refused by the kernel")
                        continue
                    }
                    tested.insert(format.name)
                    check(layer, q, rows: 0..<rows, label)
                    for _ in 0..<4 {
                        let a = Int(rng.next() % UInt64(rows + 1)), b = Int(rng.next() % UInt64(rows + 1))
                        check(layer, q, rows: min(a, b)..<max(a, b), label)
                    }
                    check(layer, q, rows: (rows - 1)..<rows, label)
                }
            }
        }
        XCTAssertEqual(tested, Set(FormatRegistry.all.filter { $0.codeBits <= 4 }.map(\.name)))
    }

    /// A hand-made matrix with what quantizers rarely give: a tensor scale, negative and -0 scales
    /// and zeros (the sign of a zero result must survive), per-row 16-entry tables with -0 entries,
    /// a partial last group in a super-block, and 2- and 3-bit tables narrower than 16.
    func testSignedZerosTensorScaleAndNarrowTables() throws {
        var rng = SplitMix64(seed: 5)
        func pick(_ values: [Float]) -> Float { values[Int(rng.next() % UInt64(values.count))] }
        let cases: [(bits: Int, perRow: Bool, withZeros: Bool, ts: Float)] = [
            (4, true, true, 0.37), (4, false, false, 1), (4, false, false, -3.5), (3, true, true, 1), (2, false, true, 1.5)
        ]
        var negativeZeros = 0
        for (bits, perRow, withZeros, ts) in cases {
            for (rows, cols, group) in [(5, 1000, 32), (4, 1100, 128), (3, 8 * 64 + 64, 64)] {
                let groups = (cols + group - 1) / group, n = 1 << bits
                let codes = (0..<(rows * cols)).map { _ in UInt8(rng.next() % UInt64(n)) }
                let tables = (0..<((perRow ? rows : 1) * n)).map { _ in pick([0, -0.0, 1, -2.5, 0.125, 7, -1e-3]) }
                let scales = (0..<(rows * groups)).map { _ in pick([0.01, -0.02, 0, -0.0, 3e-5, 1e4]) }
                let zeros = withZeros ? (0..<(rows * groups)).map { _ in pick([0, -0.0, 0.5, -1e-2]) } : []
                let q = QuantizedMatrix(
                    formatName: "test", rows: rows, cols: cols, codeBits: bits, groupSize: group, codes: codes, tables: tables,
                    perRowTable: perRow, scales: scales, zeros: zeros, tensorScale: ts, storage: .f32, scaleBits: 32)
                let layer = try PackedLinear(q)
                let label = "b\(bits) perRow=\(perRow) zeros=\(withZeros) ts=\(ts) \(rows)x\(cols) g\(group)"
                check(layer, q, rows: 0..<rows, label)
                check(layer, q, rows: 1..<rows, label)
                negativeZeros += q.dequantized().filter { $0 == 0 && $0.sign == .minus }.count
            }
        }
        // Some expected values are -0, so a lost sign would have been seen.
        XCTAssertGreaterThan(negativeZeros, 0)
    }

    /// The bytes a layer holds: codes as allocated, the kernels' arrays, and the dequantization's
    /// own arrays only where they are not the kernels' (int4: its scales and zeros are held once;
    /// any4: its centred table and moved zeros are the kernels', so the originals are extra).
    func testStoredBytesCountSharedArraysOnce() throws {
        let rows = 16, cols = 512, group = 128, groups = 4
        var options = QuantizationOptions()
        options.groupSize = group
        let w = weights(rows, cols, seed: 3)
        let int4 = try PackedLinear(Quantizer.quantize(w, rows: rows, cols: cols, name: "w", format: IntFormat(bits: 4), options: options))
        let any4 = try PackedLinear(Quantizer.quantize(w, rows: rows, cols: cols, name: "w", format: AnyFormat(bits: 4), options: options))
        let codes = rows * cols / 2  // 4096: under a huge page, a multiple of 64
        // The kernels': exact table, int8 table and factor(s), f32 and f16 scales and zeros, factors.
        let int4Kernel = 16 * 4 + 16 + 4 + rows * groups * (4 + 4 + 2 + 2) + rows * 2 * 4
        XCTAssertEqual(int4.storedBytes, codes + int4Kernel + 16 * 4)
        let any4Kernel = rows * 16 * 4 + rows * 16 + rows * 4 + rows * groups * (4 + 4 + 2 + 2) + rows * 2 * 4
        XCTAssertEqual(any4.storedBytes, codes + any4Kernel + rows * 16 * 4 + rows * groups * 4)
        // A layer of 4 MiB of codes is allocated in whole 2 MiB pages.
        let big = try PackedLinear(
            QuantizedMatrix(
                formatName: "int4", rows: 2049, cols: 4096, codeBits: 4, groupSize: 128, codes: [UInt8](repeating: 3, count: 2049 * 4096),
                tables: (0..<16).map { Float($0 - 8) }, perRowTable: false, scales: [Float](repeating: 1, count: 2049 * 32), zeros: [],
                tensorScale: 1, storage: .f32, scaleBits: 32))
        XCTAssertEqual(big.storedBytes, 6 << 20 + 16 * 4 + 16 + 4 + 2049 * 32 * (4 + 2) + 2049 * 2 * 4 + 16 * 4)
    }

    /// Output speed at 4096 columns on one core (reported; the engine's prompt tiles need ≥ 1 GB/s).
    func testDequantizeSpeed() throws {
        let rows = 512, cols = 4096
        var options = QuantizationOptions()
        options.groupSize = 128
        for format in ["any4", "int4", "nf4"] {
            let q = try Quantizer.quantize(
                weights(rows, cols, seed: 8), rows: rows, cols: cols, name: "w", format: FormatRegistry.named(format), options: options)
            let layer = try PackedLinear(q)
            var out = [Float](repeating: 0, count: rows * cols)
            for avx in Set([false, CPUFeatures.hasAVX2]) {
                var best = Double.infinity
                for _ in 0..<5 {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    out.withUnsafeMutableBufferPointer { layer.dequantize(rows: 0..<rows, into: $0.baseAddress!, useAVX2: avx) }
                    best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                }
                let gbs = Double(rows * cols * 4) / best / 1e9
                print("dequantize \(format) \(rows)x\(cols) avx2=\(avx): \(String(format: "%.2f", gbs)) GB/s of f32 output")
            }
        }
    }
}
