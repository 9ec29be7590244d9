import Any4Bench
import Any4Core
import Any4Kernels
import TestSupport
import XCTest

/// The size computations fed random shapes, group sizes and dtypes, with products far past Int's
/// range: each answer is a thrown error or the exact size (computed here independently, in
/// Double and with multipliedReportingOverflow), never a trap. Seeded and fast.
final class SizeArithmeticTests: XCTestCase {
    /// A dimension from a mix of scales: zero, small, kernel-sized, near 2^31, near 2^62, Int.max.
    func dimension(_ rng: inout SplitMix64) -> Int {
        switch rng.next() % 8 {
        case 0: return 0
        case 1: return Int(rng.next() % 8)
        case 2: return Int(rng.next() % 5000)
        case 3: return Int(rng.next() % (1 << 20))
        case 4: return (1 << 31) - 2 + Int(rng.next() % 4)
        case 5: return Int(rng.next() >> 1)  // anywhere in 0...Int.max
        case 6: return (1 << 62) + Int(rng.next() % 1000)
        default: return Int.max - Int(rng.next() % 3)
        }
    }

    /// The exact product when it fits in an Int, else nil; computed term by term with the zero rule
    /// (any zero makes the product 0) and cross-checked in Double.
    func reference(_ factors: [Int]) -> Int? {
        if factors.contains(0) { return 0 }
        var total = 1
        for f in factors {
            let (next, overflow) = total.multipliedReportingOverflow(by: f)
            if overflow { return nil }
            total = next
        }
        let approx = factors.reduce(1.0) { $0 * Double($1) }
        XCTAssertEqual(Double(total), approx, accuracy: approx * 1e-12, "\(factors)")
        return total
    }

    func testProductsAndSumsAreExactOrThrow() {
        var rng = SplitMix64(seed: 14)
        for _ in 0..<20_000 {
            let factors = (0..<(1 + Int(rng.next() % 4))).map { _ in dimension(&rng) }
            let expected = reference(factors)
            do throws(SizeError) {
                let got = try Sizes.product(factors, "test")
                XCTAssertEqual(got, expected, "\(factors)")
            } catch {
                XCTAssertNil(expected, "\(factors) threw \(error) but fits")
                XCTAssertTrue(error.description.contains("test: ") && error.description.contains("overflows"), error.description)
            }
            let terms = factors
            let exactSum = terms.reduce(0.0) { $0 + Double($1) }
            do throws(SizeError) {
                let got = try Sizes.sum(terms, "sum")
                XCTAssertLessThanOrEqual(exactSum, Double(Int.max) * (1 + 1e-15), "\(terms)")
                XCTAssertEqual(Double(got), exactSum, accuracy: max(1, exactSum * 1e-15), "\(terms)")
            } catch {
                XCTAssertGreaterThanOrEqual(exactSum, Double(Int.max) * (1 - 1e-15), "\(terms) threw but fits")
            }
        }
        XCTAssertThrowsError(try Sizes.product([4, -1], "negative")) { error in
            XCTAssertEqual(error as? SizeError, SizeError("negative", .negative(-1)))
        }
        XCTAssertEqual(try Sizes.product([1 << 62, 1 << 62, 0], "zero last"), 0, "a zero anywhere makes the product 0")
    }

    func testGroupCountsAndLayoutsNeverOverflow() {
        var rng = SplitMix64(seed: 15)
        for _ in 0..<20_000 {
            let width = dimension(&rng)
            let size = max(1, dimension(&rng))
            let count = Sizes.groupCount(width: width, size: size)
            // ⌈width / size⌉ in exact integer arithmetic (Int has room: width / size ≤ width).
            XCTAssertEqual(count, width / size + (width % size > 0 ? 1 : 0))
            let layout = GroupLayout(columns: width, size: size)
            XCTAssertEqual(layout.count, count)
            if count > 0 {
                let last = layout.range(count - 1)
                XCTAssertEqual(last.upperBound, width, "the last group ends at the width (\(width), \(size))")
                XCTAssertGreaterThan(last.count, 0)
                XCTAssertEqual(layout.range(0).lowerBound, 0)
            }
            let multiple = max(1, Int(rng.next() % 128))
            let rounded = try? Sizes.roundUp(width, toMultipleOf: multiple, "round")
            let pad = (multiple - width % multiple) % multiple
            if width <= Int.max - pad {
                XCTAssertEqual(rounded, width + pad, "\(width) to \(multiple)")
            } else {
                XCTAssertNil(rounded, "\(width) to \(multiple) cannot fit")
            }
        }
    }

    /// Quantizer output sizes for random shapes, formats and group sizes: the exact counts, or
    /// `.tooLarge` exactly when one of them overflows.
    func testQuantizerOutputSizes() {
        var rng = SplitMix64(seed: 16)
        for _ in 0..<10_000 {
            let rows = dimension(&rng), cols = dimension(&rng)
            let format = FormatRegistry.all[Int(rng.next() % UInt64(FormatRegistry.all.count))]
            var options = QuantizationOptions()
            options.groupSize = 2 * (1 + Int(rng.next() % UInt64(QuantizationOptions.maxGroupSize / 2)))
            let group = options.blockSize(for: format)
            let groups = cols / group + (cols % group > 0 ? 1 : 0)
            let tableSize = 1 << format.codeBits
            let elements = reference([rows, cols])
            let groupEntries = reference([rows, groups])
            let tables = format.perRowTable ? reference([rows, tableSize]) : tableSize
            var expectedBytes: Int?
            if let elements, let groupEntries, let tables {
                // Codes + 4 × (tables + scales (+ zeros) + dequantized) + 8 per row of objectives,
                // in 128-bit-safe steps: each partial sum of non-negative terms either fits or not.
                func add(_ a: Int?, _ b: Int?) -> Int? {
                    guard let a, let b else { return nil }
                    let (v, o) = a.addingReportingOverflow(b)
                    return o ? nil : v
                }
                let floats = add(add(add(tables, groupEntries), format.hasZeros ? groupEntries : 0), elements)
                expectedBytes = add(add(elements, floats.flatMap { reference([$0, 4]) }), format.perRowTable ? reference([rows, 8]) : 0)
                let approx =
                    Double(elements) + 4 * (Double(tables) + Double(groupEntries) * (format.hasZeros ? 2 : 1) + Double(elements))
                    + (format.perRowTable ? 8 * Double(rows) : 0)
                if approx < 9.0e18 { XCTAssertNotNil(expectedBytes) }
                if approx > 9.4e18 { XCTAssertNil(expectedBytes) }
            }
            do throws(QuantizationError) {
                let s = try Quantizer.OutputSizes(rows: rows, cols: cols, name: "t", format: format, options: options)
                XCTAssertEqual(s.elements, elements)
                XCTAssertEqual(s.groupsPerRow, groups)
                XCTAssertEqual(s.groupEntries, groupEntries)
                XCTAssertEqual(s.tableEntries, tables)
                XCTAssertEqual(s.outputBytes, expectedBytes, "[\(rows), \(cols)] \(format.name) g\(group)")
            } catch {
                guard case .tooLarge(let size) = error else { return XCTFail("\(error)") }
                XCTAssertNil(expectedBytes, "[\(rows), \(cols)] \(format.name) g\(group) threw \(size) but fits")
                XCTAssertTrue(size.description.hasPrefix("t: "), size.description)
            }
        }
    }

    /// The quantizer itself on matrices with a zero dimension and an overflowing other one: an
    /// error at once (no loop over 2^61 rows, no trap in rows × table entries).
    func testQuantizerRefusesEmptyAndOverflowingMatricesAtOnce() {
        let start = Clock.now
        for (rows, cols) in [(1 << 61, 0), (0, 1 << 62), (1_000_000_000, 0), (0, Int.max)] {
            for format in FormatRegistry.all {
                XCTAssertThrowsError(
                    try Quantizer.quantize(
                        [], rows: rows, cols: cols, name: "w", format: format,
                        options: QuantizationOptions())
                ) { error in
                    let text = "\(error)"
                    XCTAssertTrue(text.hasPrefix("w: "), text)
                    XCTAssertTrue(text.contains("no weights") || text.contains("overflows"), text)
                }
            }
        }
        XCTAssertLessThan(Clock.now - start, 1, "O(1) in the other dimension")
    }

    /// Element and byte counts of random tensor shapes in every dtype, as the checkpoint writer and
    /// the decoders compute them.
    func testTensorByteCounts() {
        var rng = SplitMix64(seed: 17)
        for _ in 0..<10_000 {
            let shape = (0..<(1 + Int(rng.next() % 3))).map { _ in dimension(&rng) }
            let dtype = DType.allCases[Int(rng.next() % UInt64(DType.allCases.count))]
            let expected = reference(shape).flatMap { reference([$0, dtype.size]) }
            let got = try? Sizes.product(shape + [dtype.size], "bytes")
            XCTAssertEqual(got, expected, "\(shape) \(dtype)")
        }
    }

    func testMemoryCheckAgainstAFigure() throws {
        var rng = SplitMix64(seed: 18)
        for _ in 0..<5_000 {
            let bytes = Int(rng.next() >> UInt64(1 + rng.next() % 62))
            let available = Int(rng.next() >> UInt64(1 + rng.next() % 62))
            do throws(SizeError) {
                try MemoryBudget.check(bytes, against: (available, "test"), for: "thing")
                XCTAssertLessThanOrEqual(bytes, available)
            } catch {
                XCTAssertGreaterThan(bytes, available)
                XCTAssertEqual(error, SizeError("thing", .exceedsMemory(bytes: bytes, available: available, source: "test")))
                XCTAssertTrue(error.description.contains("(\(bytes) bytes)") && error.description.hasPrefix("thing needs"))
            }
        }
        XCTAssertNoThrow(try MemoryBudget.check(Int.max, against: nil, for: "unknown figure"))
        XCTAssertThrowsError(try MemoryBudget.check(-1, for: "negative"))
        XCTAssertEqual(MemoryBudget.parseByteCount("512M"), 512 << 20)
        XCTAssertEqual(MemoryBudget.parseByteCount(" 3g "), 3 << 30)
        XCTAssertEqual(MemoryBudget.parseByteCount("123"), 123)
        XCTAssertEqual(MemoryBudget.parseByteCount("9999999999T"), Int.max, "saturates")
        XCTAssertNil(MemoryBudget.parseByteCount("lots"))
        XCTAssertEqual(MemoryBudget.meminfoAvailable("MemTotal: 100 kB\nMemAvailable:    2048 kB\n"), 2 << 20)
        // This machine has a figure (Linux), and it is positive.
        let figure = try XCTUnwrap(MemoryBudget.available())
        XCTAssertGreaterThan(figure.bytes, 0)
        XCTAssertThrowsError(try MemoryBudget.check(Int.max, for: "all of it"))
    }

    /// The bench's memory estimate for random shapes and options: a positive size that grows with
    /// the shape, or a SizeError when a term overflows — never a trap.
    func testBenchEstimate() {
        var rng = SplitMix64(seed: 19)
        for _ in 0..<3_000 {
            var config = KernelBenchmark.Configuration()
            config.shapes = (0..<(1 + Int(rng.next() % 3))).map { _ in
                (max(1, dimension(&rng) % (KernelBenchmark.maxDimension + 1)), max(1, dimension(&rng) % (KernelBenchmark.maxDimension + 1)))
            }
            config.batches = [1 + Int(rng.next() % 64)]
            config.groupSize = 2 * (1 + Int(rng.next() % 1000))
            config.hot = rng.next() % 2 == 0
            do throws(SizeError) {
                let (bytes, shape) = try KernelBenchmark.estimatedPeak(config)
                let worst = config.shapes.map { 8 * Double($0.out) * Double($0.in) }.max()!
                XCTAssertGreaterThanOrEqual(Double(bytes), worst, "at least the f32 weights and one f32 copy")
                XCTAssertNotNil(shape)
            } catch {
                let largest = config.shapes.map { Double($0.out) * Double($0.in) }.max()!
                XCTAssertGreaterThan(largest * 8, 1e17, "\(config.shapes) threw \(error)")
            }
        }
    }

    /// The kernel layout refuses what its int fields cannot hold, before allocating.
    func testPackedLinearRefusesSizesTheKernelsCannotIndex() throws {
        func matrix(rows: Int, cols: Int, group: Int) -> QuantizedMatrix {
            QuantizedMatrix(
                formatName: "int4", rows: rows, cols: cols, codeBits: 4, groupSize: group, codes: [], tables: [],
                perRowTable: false, scales: [], zeros: [], tensorScale: 1, storage: .f32, scaleBits: 32)
        }
        for group in [1 << 31, 1 << 32, 1 << 40, 1 << 62, 65536 + 32] {
            XCTAssertThrowsError(try PackedLinear(matrix(rows: 0, cols: 0, group: group))) { error in
                XCTAssertTrue("\(error)".contains("at most 65536"), "\(error)")
            }
        }
        XCTAssertThrowsError(try PackedLinear(matrix(rows: 1 << 31, cols: 0, group: 128)))
        XCTAssertThrowsError(try PackedLinear(matrix(rows: 0, cols: Int.max, group: 128)))
    }

    /// A group wider than the row (up to the largest, 65536) is one group per row, in the
    /// quantizer and in both kernel paths.
    func testLargestGroupIsOneGroupPerRow() throws {
        var rng = SplitMix64(seed: 20)
        let (rows, cols) = (12, 200)
        let w = (0..<(rows * cols)).map { _ in Float(rng.nextStudentT4() * 0.02) }
        var o = QuantizationOptions()
        o.groupSize = QuantizationOptions.maxGroupSize
        let q = try Quantizer.quantize(w, rows: rows, cols: cols, name: "w", format: FormatRegistry.named("int4"), options: o)
        XCTAssertEqual(q.groupsPerRow, 1)
        let layer = try PackedLinear(q)
        let deq = q.dequantized()
        let x = (0..<(3 * cols)).map { _ in Float(rng.nextGaussian()) }
        for path in [KernelPath.exact, .fast] {
            let y = layer.forward(x, m: 3, path: path, threads: 2)
            var num = 0.0, den = 0.0
            for k in 0..<3 {
                for r in 0..<rows {
                    var ref = 0.0
                    for c in 0..<cols { ref += Double(deq[r * cols + c]) * Double(x[k * cols + c]) }
                    num += (Double(y[k * rows + r]) - ref) * (Double(y[k * rows + r]) - ref)
                    den += ref * ref
                }
            }
            XCTAssertLessThan((num / den).squareRoot(), path == .exact ? 1e-5 : 2e-2, "\(path)")
        }
    }

    /// A cancelled benchmark stops before its first format; one whose memory the machine cannot
    /// give is refused before any work.
    func testBenchStopsWhenCancelledAndRefusesTooMuchMemory() throws {
        var config = KernelBenchmark.Configuration()
        config.shapes = [(256, 256)]
        config.batches = [1]
        config.formats = ["int4"]
        config.runs = 1_000_000
        config.hot = true
        let progress = Progress(total: 0)
        progress.cancel()
        let child = Progress(total: 0, parent: progress)
        XCTAssertTrue(child.isCancelled, "a job's steps see its cancellation")
        XCTAssertThrowsError(try KernelBenchmark.run(config, progress: progress)) { error in
            XCTAssertEqual(error as? QuantizationError, .cancelled)
        }
        config.shapes = [(1 << 20, 1 << 20)]
        XCTAssertThrowsError(try KernelBenchmark.run(config)) { error in
            XCTAssertTrue("\(error)".contains("bench --shape 1048576x1048576") && "\(error)".contains("bytes"), "\(error)")
        }
    }
}
