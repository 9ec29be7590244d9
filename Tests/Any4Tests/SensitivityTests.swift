import Any4Core
import Any4Inference
import Foundation
import XCTest

import TestSupport

/// The pieces of `any4 plan` that run the model: the layer swap, the probe's divergence, the
/// stored-bits count, and a measured table.
final class SensitivityTests: XCTestCase {
    static let prompt = [6403, 1980, 253, 655, 28, 665, 436, 253, 1838, 8180, 617]

    func engine() throws -> LlamaEngine {
        try LlamaEngine(model: try Model.open(try TestPaths.requireModel(TestPaths.smolLM2)))
    }

    func logits(_ engine: LlamaEngine) throws -> [Float] {
        try engine.forward(Self.prompt, cache: engine.makeCache(capacity: 16), logits: .all)
    }

    func quantized(_ engine: LlamaEngine, _ name: String, _ format: String) throws -> QuantizedMatrix {
        let l = try XCTUnwrap(engine.linear(named: name))
        return try Quantizer.quantize(
            l.decodedWeights(), rows: l.rows, cols: l.cols, name: name, format: try FormatRegistry.named(format),
            options: QuantizationOptions())
    }

    /// A swapped layer gives exactly the logits of the model quantized for good, and restoring it
    /// gives back exactly the original logits (twice swapped too).
    func testLayerSwapIsExactAndRestores() throws {
        let engine = try engine()
        let name = "blk.3.ffn_down.weight"
        let before = try logits(engine)
        let q = try quantized(engine, name, "any4")
        let other = try quantized(engine, name, "int4")
        try engine.replaceWeight(name: name, with: other)
        try engine.replaceWeight(name: name, with: q)
        XCTAssertEqual(engine.linear(named: name)?.formatName, "any4")
        XCTAssertTrue(engine.linear(named: name)?.isReplaced == true)
        let swapped = try logits(engine)
        engine.restoreWeight(name: name)
        XCTAssertEqual(engine.linear(named: name)?.formatName, "Q4_1")
        XCTAssertEqual(try logits(engine), before, "restored bit for bit")

        let twin = try self.engine()
        twin.linear(named: name)!.replace(with: q)
        XCTAssertEqual(try logits(twin), swapped, "a swap is the permanent replacement")
        XCTAssertNotEqual(swapped, before)

        XCTAssertThrowsError(try engine.replaceWeight(name: "no.such.weight", with: q))
        XCTAssertThrowsError(try engine.replaceWeight(name: "blk.3.attn_q.weight", with: q), "shape differs")
    }

    /// The probe's divergence from block b on cached hidden states equals the KL divergence of a
    /// full forward pass's distributions, computed here independently; 0 with nothing swapped.
    func testProbeDivergenceIsTheFullModelsKL() throws {
        let engine = try engine()
        let before = try logits(engine)
        let reference = try ProbeReference(engine, tokens: Self.prompt)
        XCTAssertEqual(reference.divergence(from: 0), 0, accuracy: 1e-12)
        let name = "blk.5.attn_v.weight"
        try engine.replaceWeight(name: name, with: try quantized(engine, name, "int4"))
        let probe = reference.divergence(from: 5)
        let after = try logits(engine)
        engine.restoreWeight(name: name)
        let vocab = engine.config.vocab
        var kl = 0.0
        for t in 0..<Self.prompt.count {
            let p = Array(before[(t * vocab)..<((t + 1) * vocab)]).map(Double.init)
            let q = Array(after[(t * vocab)..<((t + 1) * vocab)]).map(Double.init)
            let (mp, mq) = (p.max()!, q.max()!)
            let lp = log(p.map { exp($0 - mp) }.reduce(0, +)) + mp
            let lq = log(q.map { exp($0 - mq) }.reduce(0, +)) + mq
            for i in 0..<vocab { kl += exp(p[i] - lp) * ((p[i] - lp) - (q[i] - lq)) }
        }
        kl /= Double(Self.prompt.count)
        XCTAssertGreaterThan(kl, 1e-5, "int4 on one layer moves the distribution")
        XCTAssertEqual(probe, kl, accuracy: 1e-4 * kl + 1e-7)
        XCTAssertEqual(reference.divergence(from: 5), 0, accuracy: 1e-12, "restored")
    }

    /// A measured table over SmolLM2's first block: one row per selected layer, keep costs the
    /// stored Q4_1 bits at no error, errors fall as bits rise within a family, every layer probed.
    func testMeasuredTable() throws {
        let engine = try engine()
        var options = SensitivityOptions()
        options.candidates = try PlanCandidate.list("any4:g64,any4:g128,int8:g128,keep")
        options.selection = LayerSelection(include: try Regex(#"^blk\.0\."#))
        options.sampleRows = 64
        options.probeTokens = 11
        options.probeSeconds = 600
        let report = try Sensitivity.measure(engine, sequences: [Self.prompt], options: options)
        let table = report.table
        XCTAssertEqual(table.layers.count, 7)
        XCTAssertEqual(report.probed, [Bool](repeating: true, count: 7))
        XCTAssertTrue(table.errorMeasure.contains("KL"), table.errorMeasure)
        let model = engine.model
        for (l, name) in table.layers.enumerated() {
            let tensor = try XCTUnwrap(model.tensor(named: name))
            XCTAssertEqual(table.parameters[l], tensor.info.elementCount)
            XCTAssertEqual(table.entries[l][3], .init(bits: tensor.info.byteCount * 8, error: 0), name)
            let e = table.entries[l].map { $0! }
            XCTAssertLessThan(e[0].error, e[1].error, "\(name): g64 beats g128")
            XCTAssertLessThan(e[2].error, e[0].error, "\(name): int8 beats 4 bits")
            XCTAssertGreaterThan(e[0].bits, e[1].bits)
            XCTAssertGreaterThan(report.sensitivity[l], 0)
            for c in 0..<3 { XCTAssertEqual(e[c].error, report.sensitivity[l] * report.outputError[l][c]!, accuracy: 1e-12 * e[c].error) }
        }
        let planned = Set(table.layers)
        XCTAssertEqual(table.otherBits, model.tensors.filter { !planned.contains($0.name) }.reduce(0) { $0 + $1.info.byteCount * 8 })
    }
}
