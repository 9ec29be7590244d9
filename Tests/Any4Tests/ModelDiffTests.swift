import Any4Core
import Foundation
import TestSupport
import XCTest

/// `ModelDiff` (`any4 diff`, the TUI's `--diff`) against independent sums over whole arrays.
final class ModelDiffTests: XCTestCase {
    /// A small model: two linear layers (bf16 and f32), a norm, an embedding.
    func makeModel(_ dir: String, name: String = "m.safetensors", extra: [SafeTensorsWriter.Entry] = [], seed: UInt64 = 7) throws -> String {
        var rng = SplitMix64(seed: seed)
        func values(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.nextGaussian()) * 0.05 } }
        let path = dir + "/" + name
        try SafeTensorsWriter.write(
            [
                .init(name: "model.embed_tokens.weight", shape: [32, 96], floats: values(32 * 96)),
                .init(name: "model.layers.0.input_layernorm.weight", shape: [96], floats: values(96)),
                .init(name: "model.layers.0.mlp.up_proj.weight", shape: [40, 96], floats: values(40 * 96), as: .bf16),
                .init(name: "model.layers.0.self_attn.q_proj.weight", shape: [96, 96], floats: values(96 * 96))
            ] + extra, to: path)
        return path
    }

    /// The figures of b against a computed over whole arrays in element order (the reference).
    struct Reference {
        var signal = 0.0, noise = 0.0, maxAbs = 0.0
        var differences: [Double] = []
        init(_ a: [Float], _ b: [Float]) {
            for (x, y) in zip(a, b) {
                let d = Double(y) - Double(x)
                signal += Double(x) * Double(x)
                noise += d * d
                maxAbs = max(maxAbs, abs(d))
                differences.append(d)
            }
        }
    }

    func testAModelAgainstItselfIsExactlyZeroEverywhere() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = try Model.open(try makeModel(dir))
        let diff = try ModelDiff(model, try Model.open(model.path))
        XCTAssertEqual(diff.pairs.count, model.tensors.count)
        XCTAssertTrue(diff.onlyInA.isEmpty && diff.onlyInB.isEmpty)
        for d in try diff.run(threads: 2) {
            let s = try XCTUnwrap(d.stats, d.name)
            XCTAssertTrue(s.identical, d.name)
            XCTAssertEqual(s.noise, 0, d.name)
            XCTAssertEqual(s.maxAbs, 0, d.name)
            XCTAssertEqual(s.relativeError, 0, d.name)
            XCTAssertEqual(s.sqnrDB, .infinity, d.name)
            XCTAssertEqual(s.histogram.zeros, s.elements, d.name)
            XCTAssertEqual(s.histogram.range, 0, d.name)
            XCTAssertEqual(s.histogram.quantile(0.999), 0, d.name)
            XCTAssertEqual(s.histogram.counts[DifferenceHistogram.bins / 2], s.elements, d.name)
        }
    }

    /// An original against its any4 checkpoint: the quantized layer's figures are the
    /// quantization's (ErrorMetrics of the matrix the quantizer made); every other tensor is
    /// identical. Small blocks and 1 or 3 workers give the same figures.
    func testAgainstItsCheckpointEqualsTheQuantizationError() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let original = try Model.open(try makeModel(dir))
        let layer = try XCTUnwrap(original.tensor(named: "model.layers.0.self_attn.q_proj.weight"))
        var options = QuantizationOptions()
        options.groupSize = 32
        let result = try ModelQuantization.quantize(layer, of: original, format: FormatRegistry.named("any4"), options: options)
        let matrix = try XCTUnwrap(result.matrix)
        try QuantizedCheckpoint.write(model: original, quantized: [layer.name: matrix], fakeQuant: false, to: dir + "/q.safetensors")
        let checkpoint = try Model.open(dir + "/q.safetensors")
        XCTAssertNotNil(checkpoint.tensor(named: layer.name)?.info.encoding.quantizedLayout, "stored quantized")

        let diff = try ModelDiff(original, checkpoint)
        let index = try XCTUnwrap(diff.pairs.firstIndex { $0.a.name == layer.name })
        let weights = try original.decode(layer)
        let reference = Reference(weights, matrix.dequantized())
        let metrics = ErrorMetrics(original: weights, approximation: matrix.dequantized())
        var seen: [DifferenceStats] = []
        for (threads, block) in [(1, 96 * 7), (3, 96 * 7), (2, 1), (1, 1 << 20)] {
            let s = try ModelDiff.measure(layer, of: original, diff.pairs[index].b, of: checkpoint, threads: threads, blockElements: block)
            XCTAssertEqual(s.elements, weights.count)
            XCTAssertEqual(s.sqnrDB, metrics.sqnrDB, accuracy: 1e-9)
            XCTAssertEqual(s.sqnrDB, result.metrics.sqnrDB, accuracy: 1e-9, "the quantizer's own SQNR")
            XCTAssertEqual(s.maxAbs, metrics.maxAbsError)
            XCTAssertEqual(s.mse, metrics.mse, accuracy: 1e-12 * max(metrics.mse, 1e-30))
            XCTAssertEqual(s.relativeError, (reference.noise / reference.signal).squareRoot(), accuracy: 1e-12)
            XCTAssertFalse(s.identical)
            seen.append(s)
        }
        for s in seen.dropFirst() { XCTAssertEqual(s.histogram, seen[0].histogram, "the histogram does not depend on the blocks or workers") }
        XCTAssertEqual(seen[0].signal, seen[1].signal, "block sums are added in row order, whatever the workers")
        XCTAssertEqual(seen[0].noise, seen[1].noise)

        // The histogram against one made from the whole array: range the smallest power of two
        // ≥ max |d|, bin floor((d + R) / 2R · bins).
        let h = seen[0].histogram
        let range = pow(2, (log2(reference.maxAbs)).rounded(.up))
        XCTAssertEqual(h.range, range)
        var counts = [Int](repeating: 0, count: DifferenceHistogram.bins)
        for d in reference.differences { counts[min(DifferenceHistogram.bins - 1, Int(((d + range) / (2 * range) * 64).rounded(.down)))] += 1 }
        XCTAssertEqual(h.counts, counts)
        XCTAssertEqual(h.zeros, reference.differences.filter { $0 == 0 }.count)
        // Quantiles: the upper edge of a quarter octave above the true value.
        let sorted = reference.differences.map(abs).sorted()
        for p in [0.5, 0.9, 0.99, 0.999] {
            let truth = sorted[Int((p * Double(sorted.count)).rounded(.up)) - 1]
            let q = try XCTUnwrap(h.quantile(p))
            XCTAssertGreaterThan(q, truth, "p\(p)")
            XCTAssertLessThanOrEqual(q, truth * 1.25 * (1 + 1e-12), "p\(p)")
        }

        for d in try diff.run(threads: 2) where d.name != layer.name {
            XCTAssertTrue(try XCTUnwrap(d.stats, d.name).identical, "\(d.name) is stored as it was")
        }
    }

    func testTensorsInOnlyOneModelShapeMismatchAndWorstFirst() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let a = try Model.open(
            try makeModel(
                dir, name: "a.safetensors", extra: [.init(name: "lm_head.weight", shape: [32, 96], floats: [Float](repeating: 1, count: 32 * 96))]))
        let b = try Model.open(
            try makeModel(
                dir, name: "b.safetensors",
                extra: [
                    .init(name: "lm_head.weight", shape: [96, 32], floats: [Float](repeating: 1, count: 32 * 96)),
                    .init(name: "model.norm.weight", shape: [96], floats: [Float](repeating: 1, count: 96))
                ], seed: 8))
        let diff = try ModelDiff(a, b)
        XCTAssertEqual(diff.onlyInA.map(\.name), [])
        XCTAssertEqual(diff.onlyInB.map(\.name), ["model.norm.weight"])
        let results = try diff.run(threads: 2).sorted(by: TensorDifference.worstFirst)
        let head = try XCTUnwrap(results.first { $0.name == "lm_head.weight" })
        XCTAssertNil(head.stats)
        XCTAssertEqual(head.problem, "shape [32, 96] vs [96, 32]")
        XCTAssertEqual(results.last?.name, "lm_head.weight", "not compared: last")
        let sqnrs = results.compactMap(\.stats?.sqnrDB)
        XCTAssertEqual(sqnrs, sqnrs.sorted(), "worst (lowest SQNR) first")
        XCTAssertEqual(sqnrs.count, 4)
        // Two unrelated Gaussian draws: SQNR near 10·log10(1/2) = −3 dB.
        for s in sqnrs { XCTAssertEqual(s, -3, accuracy: 1.5) }

        XCTAssertEqual(try ModelDiff(b, a).onlyInA.map(\.name), ["model.norm.weight"])
    }

    func testDifferentArchitecturesOrNoCommonTensorIsAnError() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let a = try Model.open(try makeModel(dir))
        try SafeTensorsWriter.write([.init(name: "encoder.layer.0.x.weight", shape: [2, 2], floats: [1, 2, 3, 4])], to: dir + "/other.safetensors")
        XCTAssertThrowsError(try ModelDiff(a, try Model.open(dir + "/other.safetensors"))) { error in
            XCTAssertTrue("\(error)".contains("no tensor name in common"), "\(error)")
        }
        let llama = try Model.inMemory(
            safetensors: try SafeTensorsWriter.image([.init(name: "x.weight", shape: [2], floats: [1, 2])]), name: "l",
            config: ModelConfig(huggingFace: try JSONParser.parse(#"{"model_type": "llama"}"#, file: "c")))
        let bert = try Model.inMemory(
            safetensors: try SafeTensorsWriter.image([.init(name: "x.weight", shape: [2], floats: [1, 2])]), name: "b",
            config: ModelConfig(huggingFace: try JSONParser.parse(#"{"model_type": "bert"}"#, file: "c")))
        XCTAssertThrowsError(try ModelDiff(llama, bert)) { error in
            XCTAssertTrue("\(error)".contains("architecture bert differs from l's llama"), "\(error)")
        }
    }

    /// Growing the signed histogram's range merges bins exactly as binning at the final range.
    func testHistogramMergeIsBinningAtTheFinalRange() {
        var rng = SplitMix64(seed: 11)
        let values = (0..<5000).map { i in Double(rng.nextGaussian()) * (i % 100 == 0 ? 8 : 0.01) }
        var streamed = DifferenceStats()
        var parts = [DifferenceStats(), DifferenceStats(), DifferenceStats()]
        let zeros = [Float](repeating: 0, count: values.count)
        let floats = values.map(Float.init)
        zeros.withUnsafeBufferPointer { z in
            floats.withUnsafeBufferPointer { f in
                streamed.add(z.baseAddress!, f.baseAddress!, count: f.count)
                // Three parts with very different ranges, merged in another order.
                parts[0].add(z.baseAddress!, f.baseAddress! + 1, count: 99)
                parts[1].add(z.baseAddress!, f.baseAddress!, count: 1)
                parts[2].add(z.baseAddress!, f.baseAddress! + 100, count: f.count - 100)
            }
        }
        var merged = parts[2]
        merged.merge(parts[0])
        merged.merge(parts[1])
        XCTAssertEqual(merged.histogram, streamed.histogram)
        let r = streamed.histogram.range
        var counts = [Int](repeating: 0, count: DifferenceHistogram.bins)
        for v in floats { counts[min(63, Int(((Double(v) + r) / (2 * r) * 64).rounded(.down)))] += 1 }
        XCTAssertEqual(streamed.histogram.counts, counts)
    }
}
