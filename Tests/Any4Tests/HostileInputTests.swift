import Any4Core
import Foundation
import TestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The core pieces behind issue 14's part D: the regular-file check of every reader, the bounded
/// name matching, the row overflow check and error figures that do not hide NaN.
final class HostileInputTests: XCTestCase {
    func testReadersOpenOnlyRegularFiles() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let fifo = dir + "/pipe.gguf"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let cases: [(String, String)] = [
            (fifo, "is a FIFO (named pipe), expected a regular file"),
            ("/dev/zero", "is a character device, expected a regular file"),
            ("/dev/null", "is a character device, expected a regular file"),
            (dir, "is a directory, expected a regular file")
        ]
        for (path, message) in cases {
            let started = Date()
            XCTAssertThrowsError(try ByteStore(mapping: path), path) { error in
                let e = error as? FileFormatError
                XCTAssertEqual(e?.kind, .io, path)
                XCTAssertEqual(e?.file, path)
                XCTAssertEqual(e?.message, message)
            }
            XCTAssertLessThan(Date().timeIntervalSince(started), 1, "\(path): refused without waiting")
        }
        XCTAssertThrowsError(try GGUFFile(path: fifo))
        XCTAssertThrowsError(try SafeTensorsFile(path: fifo))
        XCTAssertThrowsError(try readJSONFile(fifo))
        XCTAssertThrowsError(try Model.open(fifo))
        // A missing file is still "cannot open".
        XCTAssertThrowsError(try ByteStore(mapping: dir + "/none")) { error in
            XCTAssertTrue((error as? FileFormatError)?.message.hasPrefix("cannot open") == true, "\(error)")
        }
    }

    func testBoundedMatchingAgreesWithContainsAndStopsBacktracking() throws {
        let names = ["model.layers.0.mlp.up_proj.weight", "blk.1.attn_q.weight", "lm_head.weight", "", "aaaa"]
        for pattern in [#"^blk\.(0|1)\."#, "weight$", "a{2,}", "^$", "mlp|attn"] {
            let regex = try Regex(pattern)
            XCTAssertEqual(try BoundedMatching.matches(regex, in: names), names.map { $0.contains(regex) }, pattern)
        }
        XCTAssertEqual(try BoundedMatching.matches(try Regex("x"), in: []), [])

        // 15 characters: about 1 s of backtracking, so the abandoned match ends soon after the
        // test (Swift cannot interrupt it) instead of spinning for the rest of the suite.
        let long = ["short.weight", String(repeating: "a", count: 15) + "!"]
        let started = Date()
        XCTAssertThrowsError(try BoundedMatching.matches(try Regex("(a+)+$"), in: long, limit: 0.1)) { error in
            let timeout = error as? PatternTimeout
            XCTAssertEqual(timeout?.name, long[1], "the name it stalled on")
            XCTAssertEqual(timeout?.description, "took longer than 0.1 s against \"aaaaaaaaaaaaaaa!\"; simplify it")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
    }

    func testResolvedSelectionAnswersAsTheRegexesDo() throws {
        let model = try DemoModel.make()
        let names = model.tensors.filter(\.isLinear).map(\.name)
        for (include, skip) in [(nil, nil), (#"blk\.[01]\."#, nil), (nil, "ffn"), ("attn", "attn_v"), ("output", nil)] as [(String?, String?)] {
            let plain = LayerSelection(include: try include.map { try Regex($0) }, skip: try skip.map { try Regex($0) })
            let resolved = try plain.resolved(for: names)
            XCTAssertEqual(model.tensors.map(resolved.selects), model.tensors.map(plain.selects), "\(include ?? "-") / \(skip ?? "-")")
        }
        let slow = LayerSelection(include: try Regex("x"), skip: try Regex("(a+)+$"))
        XCTAssertThrowsError(try slow.resolved(for: [String(repeating: "a", count: 15) + "b"], limit: 0.1)) { error in
            XCTAssertEqual((error as? PatternTimeout)?.which, "skip")
        }
    }

    /// Rows 7 and 40 overflow; with 4 threads claiming chunks, the error still names row 7.
    func testTheLowestOverflowingRowIsReportedWhateverTheThreads() throws {
        let rows = 64, cols = 64
        var rng = SplitMix64(seed: 9)
        var w = (0..<(rows * cols)).map { _ in Float(rng.nextGaussian()) }
        for r in [7, 40] {
            w[r * cols] = 3.4e38
            w[r * cols + 1] = -3.4e38
        }
        var options = QuantizationOptions()
        options.groupSize = 64
        for threads in [1, 4] {
            options.threads = threads
            XCTAssertThrowsError(
                try Quantizer.quantize(
                    w, rows: rows, cols: cols, name: "t", format: try FormatRegistry.named("int4"),
                    options: options)
            ) { error in
                guard case let .overflow(tensor, row, detail)? = error as? QuantizationError else {
                    return XCTFail("\(error)")
                }
                XCTAssertEqual(tensor, "t")
                XCTAssertEqual(row, 7, "threads \(threads)")
                XCTAssertTrue(detail.contains("dequantizes to"), detail)
            }
        }
    }

    /// Near ±3e38 the int-b and any-b range max − min exceeds Float; scales and zeros come from
    /// Double and every element still reconstructs within one step of the scale. The 2- and 3-bit
    /// ones refuse these weights instead: their end codes times the scale (table −4 × 8.6e37 for
    /// 3 bits) overflow F32 before the zero is added (the row check names it; HostileInputCLITests
    /// pins the same refusals).
    func testWideRangesAreScaledInDoubleWhereFloatOverflows() throws {
        var w: [Float] = (0..<64).map { Float($0 - 32) * 1e36 }
        w[0] = -3e38
        w[63] = 3e38
        let options = {
            var o = QuantizationOptions()
            o.groupSize = 64
            return o
        }()
        for format in FormatRegistry.all where format.hasZeros {  // the int-b and any-b formats
            let name = format.name
            if format.codeBits < 4 {
                XCTAssertThrowsError(try Quantizer.quantize(w, rows: 1, cols: 64, name: "t", format: format, options: options), name) {
                    XCTAssertTrue("\($0)".contains("\(name) cannot store weights this large"), "\($0)")
                }
                continue
            }
            let q = try Quantizer.quantize(w, rows: 1, cols: 64, name: "t", format: format, options: options)
            XCTAssertTrue(q.scales.allSatisfy(\.isFinite) && q.zeros.allSatisfy(\.isFinite) && q.tables.allSatisfy(\.isFinite), name)
            let back = q.dequantized()
            for (a, b) in zip(w, back) {
                XCTAssertLessThanOrEqual(abs(Double(a) - Double(b)), Double(q.scales[0]), "\(name): \(a) came back as \(b)")
            }
        }
    }

    /// The same weights quantize to the same codes and scales as the plain Float computation
    /// where nothing overflows (the Double path is only taken past Float's range); F32 scales and
    /// zeros, so that the plain computation needs no rounding.
    func testOrdinaryRangesAreUnchanged() throws {
        var rng = SplitMix64(seed: 21)
        let w = (0..<(16 * 96)).map { _ in Float(rng.nextStudentT4() * 0.05) }
        var options = QuantizationOptions()
        options.groupSize = 32
        options.storageDType = .f32
        let q = try Quantizer.quantize(w, rows: 16, cols: 96, name: "t", format: try FormatRegistry.named("int4"), options: options)
        for r in 0..<16 {
            for g in 0..<3 {
                let group = w[(r * 96 + g * 32)..<(r * 96 + g * 32 + 32)]
                let mn = group.min()!, mx = group.max()!
                let s = max(mx - mn, 1e-6) / 15
                let z = mn + s * 8
                XCTAssertEqual(q.scales[r * 3 + g].bitPattern, s.bitPattern)
                XCTAssertEqual(q.zeros[r * 3 + g].bitPattern, z.bitPattern)
                for (i, v) in group.enumerated() {
                    let code = ((v - (z - s * 8)) / s).rounded(.toNearestOrEven)
                    XCTAssertEqual(Float(q.codes[r * 96 + g * 32 + i]), min(max(code, 0), 15))
                }
            }
        }
    }

    func testErrorMetricsDoNotReadNaNAsExact() {
        let m = ErrorMetrics(original: [1, 2, 3], approximation: [1, .nan, 3])
        XCTAssertTrue(m.maxAbsError.isNaN)
        XCTAssertTrue(m.mse.isNaN)
        XCTAssertTrue(m.sqnrDB.isNaN)
        let inf = ErrorMetrics(original: [1, 2], approximation: [1, .infinity])
        XCTAssertEqual(inf.maxAbsError, .infinity)
        let exact = ErrorMetrics(original: [1, 2], approximation: [1, 2])
        XCTAssertEqual(exact.maxAbsError, 0)
        XCTAssertEqual(exact.sqnrDB, .infinity)
    }
}
