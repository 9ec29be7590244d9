import Any4Core
import TestSupport
import XCTest

/// The explorer's histogram data and reference grids, computed in the core.
final class WeightHistogramTests: XCTestCase {
    func row(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in Float(rng.nextStudentT4() * 0.02) }
    }

    func any4(_ values: [Float], group: Int) throws -> QuantizedMatrix {
        var options = QuantizationOptions()
        options.groupSize = group
        options.threads = 1
        return try Quantizer.quantize(
            values, rows: 1, cols: values.count, name: "row", format: FormatRegistry.named("any4"),
            options: options)
    }

    /// Every value lands in one bin (the scaled domain's range holds every group-scaled weight),
    /// and each code's usage counts the weights that use it.
    func testCountsSumToTheValues() throws {
        let values = row(300, seed: 1)  // 300 = 2 groups of 128 and a ragged one of 44
        let q = try any4(values, group: 128)
        for scaled in [true, false] {
            let h = WeightHistogram(row: values, quantized: q, scaled: scaled, bins: 37)
            XCTAssertEqual(h.counts.count, 37)
            XCTAssertEqual(h.counts.reduce(0, +), values.count, "scaled=\(scaled)")
            XCTAssertEqual(h.usage.reduce(0, +), values.count)
            XCTAssertEqual(h.codebook.count, 16)
        }
        let whole = WeightHistogram(values: values, bins: 10)
        XCTAssertEqual(whole.counts.reduce(0, +), values.count)
        XCTAssertEqual(whole.low, values.min())
        XCTAssertEqual(whole.high, values.max())
        XCTAssertTrue(whole.codebook.isEmpty && whole.usage.isEmpty && whole.firstGroup == nil)
    }

    /// The group-scaled domain is [−0.5, 15.5] for 4-bit codes: the codebook is the centred table
    /// plus int4's offset 8, each weight's dequantized value sits on its code's codebook entry,
    /// and the first group's range is the raw min and max of its columns.
    func testScaledDomainIsTheCodesDomain() throws {
        XCTAssertEqual(GroupScaling.offset(bits: 4), 8)
        XCTAssertEqual(IntFormat(bits: 4).sharedTable, (0..<16).map { Float($0) - GroupScaling.offset(bits: 4) })
        let values = row(200, seed: 2)
        let q = try any4(values, group: 64)
        let h = WeightHistogram(row: values, quantized: q, scaled: true, bins: 64)
        XCTAssertEqual(h.low, -0.5)
        XCTAssertEqual(h.high, 15.5)
        XCTAssertEqual(h.codebook, q.tables.map { $0 + 8 })
        let first = try XCTUnwrap(h.firstGroup)
        XCTAssertEqual(first.low, values[0..<64].min())
        XCTAssertEqual(first.high, values[0..<64].max())
        let deq = q.dequantized()
        for c in [0, 63, 64, 199] {
            let g = c / 64
            let scaled = (deq[c] - q.zeros[g]) / q.scales[g] + 8
            XCTAssertEqual(scaled, h.codebook[Int(q.codes[c])], accuracy: 1e-4, "column \(c)")
        }
        let raw = WeightHistogram(row: values, quantized: q, scaled: false, bins: 64)
        XCTAssertEqual(raw.codebook, q.tables.map { $0 * q.scales[0] + q.zeros[0] })
    }

    /// The grids come from the registry's formats: int4's levels are IntFormat(4)'s dequantized
    /// levels for a group spanning [low, high] (to f32 rounding: the grid steps (high − low)/15 from
    /// low, the format rounds its scale and zero first); nf4's and fp4's are their tables at the
    /// group's absmax. Scaled, int4's grid is its codes 0…15.
    func testGridsAreTheFormatsLevels() throws {
        XCTAssertEqual(ReferenceGrid.all.map(\.name), ["int4", "nf4", "fp4"])
        XCTAssertNil(ReferenceGrid(AnyFormat(bits: 4)), "a learned table has no fixed grid")
        XCTAssertNil(ReferenceGrid(TableFormat.iq4nl), "iq4_nl searches its scale")
        XCTAssertNil(ReferenceGrid(MXFP4Format()))
        let low: Float = -0.031, high: Float = 0.047
        var group = row(64, seed: 3).map { min(max($0, low), high) }
        group[5] = low
        group[9] = high
        let int4 = try XCTUnwrap(ReferenceGrid(IntFormat(bits: 4)))
        let grid = int4.values(low: low, high: high, scaled: false)
        var options = QuantizationOptions()
        options.groupSize = 64
        options.storageDType = .f32  // the grid is exact to f32 rounding, not to F16 scales
        let q = try Quantizer.quantize(group, rows: 1, cols: 64, name: "g", format: IntFormat(bits: 4), options: options)
        let levels = q.tables.map { $0 * q.scales[0] + q.zeros[0] }
        XCTAssertEqual(grid.count, 16)
        for (a, b) in zip(grid, levels) { XCTAssertEqual(a, b, accuracy: 1e-6 * (high - low)) }
        for (i, v) in int4.values(low: low, high: high, scaled: true).enumerated() { XCTAssertEqual(v, Float(i), accuracy: 1e-4) }

        let amax = max(abs(low), abs(high))
        let nf4 = try XCTUnwrap(ReferenceGrid(TableFormat.nf4)).values(low: low, high: high, scaled: false)
        XCTAssertEqual(nf4, TableFormat.nf4.table.map { $0 * amax })
        let fp4 = try XCTUnwrap(ReferenceGrid(TableFormat.fp4)).values(low: low, high: high, scaled: false)
        XCTAssertEqual(fp4, TableFormat.e2m1.map { $0 * amax / 6 })
        XCTAssertEqual(int4.values(low: 1, high: 1, scaled: true), [], "no grid for a constant group")
    }

    func testWholeTensorSamplesRowsBeyondTheLimit() throws {
        let rows = 40, cols = 50
        let w = (0..<(rows * cols)).map { Float($0) }
        let image = try SafeTensorsWriter.image([.init(name: "t.weight", shape: [rows, cols], floats: w)])
        let model = try Model.inMemory(safetensors: image, name: "mem", format: .safetensors)
        let tensor = try XCTUnwrap(model.tensor(named: "t.weight"))
        let all = try WeightHistogram.sampled(tensor, of: model, bins: 20)
        XCTAssertEqual(all.rowStep, 1)
        XCTAssertEqual(all.histogram.counts.reduce(0, +), rows * cols)
        let sampled = try WeightHistogram.sampled(tensor, of: model, bins: 20, maxValues: 500)
        XCTAssertEqual(sampled.rowStep, 4)
        XCTAssertEqual(sampled.histogram.counts.reduce(0, +), rows / 4 * cols)
    }
}
