import Any4Core
import TestSupport
import XCTest

/// The streaming writer plans every layer's parts from its job before quantizing: that plan must be
/// exactly what the quantizer then makes, for every format and dtype, or nothing could be written
/// ahead; and split parts must be balanced, contiguous and cover every unit once.
final class CheckpointPlanTests: XCTestCase {
    func testPlannedLayoutIsWhatTheQuantizerMakesForEveryFormat() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        var rng = SplitMix64(seed: 3)
        // Widths the group size divides and one it does not (a shorter last group).
        let shapes = [[24, 256], [8, 200]]
        var entries: [SafeTensorsWriter.Entry] = []
        for (i, shape) in shapes.enumerated() {
            for dtype in [DType.f32, .f16, .bf16] {
                let values = (0..<shape.reduce(1, *)).map { _ in Float(rng.nextGaussian() * 0.02) }
                entries.append(.init(name: "model.layers.\(i).mlp.\(dtype.rawValue).weight", shape: shape, floats: values, as: dtype))
            }
        }
        let path = dir + "/m.safetensors"
        try SafeTensorsWriter.write(entries, to: path)
        let model = try Model.open(path)
        var checked = 0
        for format in FormatRegistry.all {
            for tensor in model.tensors where tensor.isLinear {
                var options = QuantizationOptions()
                options.groupSize = 64
                options.threads = 1
                let job = LayerJob(tensor: tensor, format: format, options: options)
                let planned = try StoredLayerLayout(job: job)
                let result = try ModelQuantization.quantize(job, of: model)
                let q = try XCTUnwrap(result.matrix)
                XCTAssertEqual(planned, StoredLayerLayout(q), "\(format.name) \(tensor.name)")
                let made = QuantizedCheckpoint.quantizedParts(q, base: "x")
                let plannedParts = planned.parts(base: "x")
                XCTAssertEqual(made.map(\.name), plannedParts.map(\.name), format.name)
                XCTAssertEqual(made.map(\.dtype), plannedParts.map(\.dtype), format.name)
                XCTAssertEqual(made.map(\.shape), plannedParts.map(\.shape), format.name)
                XCTAssertEqual(made.map(\.byteCount), plannedParts.map(\.byteCount), format.name)
                XCTAssertEqual(made.map { $0.make().count }, plannedParts.map(\.byteCount), format.name)
                checked += 1
            }
        }
        XCTAssertEqual(checked, FormatRegistry.all.count * 6)
    }

    func testPartsAreContiguousBalancedAndCoverEveryUnitOnce() throws {
        // Copies (0) around layers of uneven sizes.
        let work = [0, 0, 4, 4, 4, 4, 0, 16, 16, 0, 4, 4, 4, 4, 0, 16, 16, 0]
        for n in 1...6 {
            let parts = try XCTUnwrap(CheckpointPlan.partition(work, parts: n))
            XCTAssertEqual(parts.count, n)
            XCTAssertEqual(parts.first?.lowerBound, 0)
            XCTAssertEqual(parts.last?.upperBound, work.count)
            for (a, b) in zip(parts, parts.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
            let sums = parts.map { work[$0].reduce(0, +) }
            XCTAssertTrue(sums.allSatisfy { $0 > 0 }, "every part quantizes something: \(sums)")
            // No better cut: each part within one largest layer of the ideal share.
            let ideal = Double(work.reduce(0, +)) / Double(n)
            for s in sums { XCTAssertLessThanOrEqual(abs(Double(s) - ideal), 16, "\(n) parts: \(sums)") }
        }
        XCTAssertEqual(CheckpointPlan.partition(work, parts: 3), [0..<8, 8..<15, 15..<18], "32 weights each")
        XCTAssertNil(CheckpointPlan.partition(work, parts: 13), "more parts than layers")
    }

    func testCopiedBytesCountInTheBalance() throws {
        // A copied embedding (80 bytes = 8 weights' time at 0.1) before six layers of 4 weights.
        let work = [0, 4, 4, 4, 4, 4, 4]
        XCTAssertEqual(CheckpointPlan.copiedByteCost, 0.1)
        XCTAssertEqual(CheckpointPlan.partition(work, parts: 3), [0..<3, 3..<5, 5..<7], "by weights: 8 each")
        let parts = try XCTUnwrap(CheckpointPlan.partition(work, copied: [80, 0, 0, 0, 0, 0, 0], parts: 3))
        XCTAssertEqual(parts, [0..<2, 2..<4, 4..<7], "the copy's part quantizes less")
        // Each part's cost within one layer of a third of 32.
        let costs = parts.map { r in r.reduce(0.0) { $0 + Double(work[$1]) + ($1 == 0 ? 8 : 0) } }
        for c in costs { XCTAssertLessThanOrEqual(abs(c - 32.0 / 3), 4, "\(costs)") }
        // A copy after the last layer goes with the last part, and counts there.
        XCTAssertEqual(CheckpointPlan.partition([4, 4, 4, 4, 0], copied: [0, 0, 0, 0, 80], parts: 2), [0..<3, 3..<5])
    }
}
