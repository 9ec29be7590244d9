import Any4Core
import Any4Inference
import Foundation
import XCTest

import TestSupport

/// all-MiniLM-L6-v2 sentence embeddings against an independent float64 numpy forward pass over
/// the same safetensors (Tests/Python/reference_bert.py).
final class BertEngineTests: XCTestCase {
    static let sentences = [
        "A man is playing a guitar.",
        "Someone plays the guitar.",
        "The stock market fell sharply on Monday, erasing the week's gains.",
        "Café owners in Zürich complain about the naïve tourists!",
        "def f(x): return x ** 2  # squares",
        "東京は日本の首都です。",
        "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
        "Ok."
    ]

    func testSentenceEmbeddingsMatchNumpyReference() throws {
        let model = try Model.open(try TestPaths.requireModel(TestPaths.miniLM))
        let engine = try BertEngine(model: model)
        let tokenizer = try Tokenizers.load(for: model)
        let ids = Self.sentences.map { tokenizer.encode($0, addSpecialTokens: true) }
        let ours = try ids.map { try engine.sentenceEmbedding($0) }

        let dir = try TestPaths.temporaryDirectory(for: self)
        let idsPath = dir + "/ids.json", outPath = dir + "/emb.bin"
        let json = "[" + ids.map { "[" + $0.map(String.init).joined(separator: ",") + "]" }.joined(separator: ",") + "]"
        try json.write(toFile: idsPath, atomically: true, encoding: .utf8)
        try Python.run("reference_bert.py", [TestPaths.miniLM, idsPath, outPath], modules: ["numpy", "safetensors"])
        let reference = try readFloat32File(outPath)
        XCTAssertEqual(reference.count, Self.sentences.count * 384)
        for (i, e) in ours.enumerated() {
            XCTAssertEqual(e.count, 384)
            let norm = e.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
            XCTAssertEqual(norm, 1, accuracy: 1e-5, "embeddings are L2-normalised")
            let cos = cosineSimilarity(e, Array(reference[(i * 384)..<((i + 1) * 384)]))
            XCTAssertGreaterThanOrEqual(cos, 0.9999, "sentence \(i): \(Self.sentences[i])")
        }
        // Paraphrases are close, unrelated sentences are not (the model works, not only agrees).
        XCTAssertGreaterThan(cosineSimilarity(ours[0], ours[1]), 0.7)
        XCTAssertLessThan(cosineSimilarity(ours[0], ours[2]), 0.3)
    }

    /// On MiniLM's real fp32 weights any4 moves the embeddings less than int4 at the same group
    /// size (the paper's claim), and both stay close.
    func testQuantizedEmbeddingsStayCloseAndAny4BeatsInt4() throws {
        let model = try Model.open(try TestPaths.requireModel(TestPaths.miniLM))
        let tokenizer = try Tokenizers.load(for: model)
        let ids = Self.sentences.map { tokenizer.encode($0, addSpecialTokens: true) }
        let before = try EmbeddingComparison.embeddings(try BertEngine(model: model), ids)
        var means: [String: Double] = [:]
        for format in ["any4", "int4"] {
            let engine = try BertEngine(model: model)
            let results = try EngineQuantization.quantize(engine, format: try FormatRegistry.named(format), options: QuantizationOptions())
            XCTAssertEqual(results.count, 36, "6 blocks × (q, k, v, o, up, down); the pooler is not used")
            XCTAssertTrue(engine.linears.allSatisfy { $0.formatName == format && $0.packed != nil })
            let comparison = EmbeddingComparison(reference: before, quantized: try EmbeddingComparison.embeddings(engine, ids))
            XCTAssertGreaterThan(comparison.mean, 0.9, format)
            XCTAssertLessThan(comparison.mean, 1, format)
            means[format] = comparison.mean
        }
        XCTAssertGreaterThan(means["any4"]!, means["int4"]!)
        XCTAssertThrowsError(try BertEngine(model: model).sentenceEmbedding(Array(repeating: 101, count: 513))) { error in
            XCTAssertEqual(error as? InferenceError, .contextOverflow(needed: 513, capacity: 512))
        }
    }

    /// The quantized model the engine runs is the one a fake-quant checkpoint describes: the numpy
    /// reference over `quantize --fake-quant` output gives our quantized embeddings.
    func testQuantizedEngineMatchesNumpyOnFakeQuantCheckpoint() throws {
        let model = try Model.open(try TestPaths.requireModel(TestPaths.miniLM))
        var options = EngineOptions()
        options.kernel = .exact  // short sentences run the lookup kernel; keep f32 activations
        let engine = try BertEngine(model: model, options: options)
        let results = try EngineQuantization.quantize(engine, format: try FormatRegistry.named("nf4"), options: QuantizationOptions())
        var matrices: [String: QuantizedMatrix] = [:]
        for t in model.tensors where LayerSelection().selects(t) {
            matrices[t.name] = try ModelQuantization.quantize(
                t, of: model, format: try FormatRegistry.named("nf4"),
                options: QuantizationOptions()
            ).matrix
        }
        XCTAssertEqual(Set(results.map(\.name)), Set(matrices.keys).subtracting(["pooler.dense.weight"]))
        let dir = try TestPaths.temporaryDirectory(for: self)
        try FileManager.default.copyItem(atPath: TestPaths.miniLM + "/config.json", toPath: dir + "/config.json")
        try QuantizedCheckpoint.write(
            model: model, quantized: matrices,
            description: .init(
                format: try FormatRegistry.named("nf4"),
                options: QuantizationOptions()), fakeQuant: true, to: dir + "/model.safetensors")
        let tokenizer = try Tokenizers.load(for: model)
        let ids = Self.sentences.map { tokenizer.encode($0, addSpecialTokens: true) }
        let ours = try ids.map { try engine.sentenceEmbedding($0) }
        let json = "[" + ids.map { "[" + $0.map(String.init).joined(separator: ",") + "]" }.joined(separator: ",") + "]"
        try json.write(toFile: dir + "/ids.json", atomically: true, encoding: .utf8)
        try Python.run("reference_bert.py", [dir, dir + "/ids.json", dir + "/emb.bin"], modules: ["numpy", "safetensors"])
        let reference = try readFloat32File(dir + "/emb.bin")
        for (i, e) in ours.enumerated() {
            XCTAssertGreaterThanOrEqual(cosineSimilarity(e, Array(reference[(i * 384)..<((i + 1) * 384)])), 0.9999, Self.sentences[i])
        }
    }
}
