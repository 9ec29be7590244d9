import Any4Core
import Foundation
import TestSupport
import XCTest

/// The two real models fetched by scripts/fetch-models.sh, checked against the Python readers.
final class RealModelTests: XCTestCase {
    func testMiniLMHeaderAndValuesEqualPythonSafetensors() throws {
        let folder = try TestPaths.requireModel(TestPaths.miniLM)
        let model = try Model.open(folder)
        XCTAssertEqual(model.format, .huggingFace)
        XCTAssertEqual(model.config.architecture, "bert")
        XCTAssertEqual(model.config.hiddenSize, 384)
        XCTAssertEqual(model.config.layers, 6)
        XCTAssertNotNil(model.huggingFace?.tokenizerJSON)
        XCTAssertNotNil(model.huggingFace?.vocabTxt)

        let names = ["pooler.dense.bias", "encoder.layer.3.attention.self.query.weight", "embeddings.position_ids"]
        let out = try Python.run(
            "real_model_facts.py", ["safetensors", folder + "/model.safetensors"] + names,
            modules: ["safetensors", "numpy"])
        let facts = try JSONParser.parse(out, file: "python")
        let header = try XCTUnwrap(facts["tensors"]?.members)
        XCTAssertEqual(Set(model.tensors.map(\.name)), Set(header.map(\.key)))
        for (name, spec) in header {
            let t = try XCTUnwrap(model.tensor(named: name))
            XCTAssertEqual(t.info.encoding.description, spec["dtype"]?.string, name)
            XCTAssertEqual(t.shape, spec["shape"]?.array?.map { $0.int! }, name)
        }
        for name in names {
            let expected = facts["values"]![name]!.array!.map { Float(bitPattern: UInt32($0.int!)) }
            assertBitwiseEqual(try model.decode(model.tensor(named: name)!), expected, name)
        }
        // Structure: 6 layers of 16 tensors, 36 linear weights in layers plus the pooler.
        let blocks = model.blocks
        XCTAssertEqual(blocks.compactMap(\.index), Array(0..<6))
        XCTAssertEqual(blocks.filter { $0.name != nil }.map(\.tensorIndices.count), Array(repeating: 16, count: 6))
        XCTAssertEqual(model.tensors.filter(\.isLinear).count, 37)
        XCTAssertEqual(model.parameterCount, header.reduce(0) { $0 + $1.value["shape"]!.array!.reduce(1) { $0 * $1.int! } })
    }

    func testSmolLM2TensorsAndValuesEqualPythonGGUF() throws {
        let path = try TestPaths.requireModel(TestPaths.smolLM2)
        let model = try Model.open(path)
        XCTAssertEqual(model.format, .gguf)
        XCTAssertEqual(model.config.architecture, "llama")
        XCTAssertEqual(model.config.layers, 30)
        XCTAssertEqual(model.config.hiddenSize, 576)
        XCTAssertEqual(model.config.vocabSize, 49152)
        XCTAssertEqual(model.config.tiedEmbeddings, true)

        let names = ["blk.0.attn_q.weight", "blk.29.ffn_down.weight", "token_embd.weight", "output_norm.weight"]
        let out = try Python.run("real_model_facts.py", ["gguf", path] + names, modules: ["gguf", "numpy"])
        let facts = try JSONParser.parse(out, file: "python")
        XCTAssertEqual(model.ggufVersion, facts["version"]?.int)
        let tensors = try XCTUnwrap(facts["tensors"]?.members)
        XCTAssertEqual(tensors.count, 272)
        XCTAssertEqual(Set(model.tensors.map(\.name)), Set(tensors.map(\.key)))
        for (name, spec) in tensors {
            let t = try XCTUnwrap(model.tensor(named: name))
            XCTAssertEqual(t.info.encoding.description, spec["type"]?.string, name)
            XCTAssertEqual(t.shape, spec["shape"]?.array?.map { $0.int! }, "\(name) as [out, in]")
        }
        for name in names {
            let t = try XCTUnwrap(model.tensor(named: name))
            let expected = facts["values"]![name]!.array!.map { Float(bitPattern: UInt32($0.int!)) }
            let rows = min(2, t.info.rowCount)
            let got = t.shape.count == 1 ? try model.decode(t) : try model.decodeRows(t, rows: 0..<rows)
            assertBitwiseEqual(got, expected, name)
        }
        XCTAssertEqual(model.blocks.compactMap(\.index), Array(0..<30))
        XCTAssertEqual(model.tensors.filter(\.isLinear).count, 210)
        XCTAssertEqual(model.tensor(named: "token_embd.weight")?.role, .embedding)
    }
}
