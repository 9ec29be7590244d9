import Any4Core
import Foundation
import TestSupport
import XCTest

final class ModelViewTests: XCTestCase {
    func testBlocksModulesAndRoles() {
        func placed(_ name: String, _ shape: [Int]) -> ModelTensor {
            Model.place(TensorInfo(name: name, shape: shape, encoding: .plain(.f32), offset: 0, byteCount: 0), fileIndex: 0)
        }
        let q = placed("model.layers.12.self_attn.q_proj.weight", [4096, 4096])
        XCTAssertEqual(q.block, "model.layers.12")
        XCTAssertEqual(q.blockIndex, 12)
        XCTAssertEqual(q.module, "self_attn.q_proj")
        XCTAssertEqual(q.role, .linear)
        let g = placed("blk.3.ffn_gate.weight", [1536, 576])
        XCTAssertEqual(g.block, "blk.3")
        XCTAssertEqual(g.module, "ffn_gate")
        XCTAssertEqual(placed("encoder.layer.0.attention.self.query.bias", [384]).role, .bias)
        XCTAssertEqual(placed("encoder.layer.0.attention.output.LayerNorm.weight", [384]).role, .norm)
        XCTAssertEqual(placed("blk.0.attn_norm.weight", [576]).role, .norm)
        XCTAssertEqual(placed("token_embd.weight", [49152, 576]).role, .embedding)
        XCTAssertEqual(placed("model.embed_tokens.weight", [49152, 576]).role, .embedding)
        XCTAssertEqual(placed("lm_head.weight", [49152, 576]).role, .linear)
        XCTAssertEqual(placed("output.weight", [49152, 576]).role, .linear)
        XCTAssertEqual(placed("embeddings.position_ids", [1, 512]).role, .other)
        XCTAssertNil(placed("output_norm.weight", [576]).block)
        XCTAssertEqual(placed("transformer.h.7.attn.c_attn.weight", [768, 2304]).block, "transformer.h.7")
    }

    func testNaturalOrder() {
        let names = ["blk.10.a", "blk.2.a", "blk.1.b", "blk.1.a", "a", "blk.02.c"]
        XCTAssertEqual(names.sorted(by: Model.naturalLess), ["a", "blk.1.a", "blk.1.b", "blk.2.a", "blk.02.c", "blk.10.a"])
    }

    func testShardedHuggingFaceFolder() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        try SafeTensorsWriter.write(
            [
                .init(name: "model.layers.0.mlp.up_proj.weight", shape: [4, 2], floats: Array(repeating: 1, count: 8)),
                .init(name: "model.embed_tokens.weight", shape: [3, 2], floats: Array(repeating: 2, count: 6))
            ], to: dir + "/model-00001-of-00002.safetensors")
        try SafeTensorsWriter.write(
            [
                .init(name: "model.layers.1.mlp.up_proj.weight", shape: [4, 2], floats: Array(repeating: 3, count: 8))
            ], to: dir + "/model-00002-of-00002.safetensors")
        let index = """
            {"metadata": {"total_size": 88}, "weight_map": {
              "model.layers.0.mlp.up_proj.weight": "model-00001-of-00002.safetensors",
              "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
              "model.layers.1.mlp.up_proj.weight": "model-00002-of-00002.safetensors"}}
            """
        try index.write(toFile: dir + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        try #"{"model_type": "llama", "hidden_size": 2, "num_hidden_layers": 2, "architectures": ["LlamaForCausalLM"]}"#
            .write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        let model = try Model.open(dir)
        XCTAssertEqual(model.stores.count, 2)
        XCTAssertEqual(model.config.architecture, "llama")
        XCTAssertEqual(model.config.className, "LlamaForCausalLM")
        XCTAssertEqual(model.blocks.map(\.name), [nil, "model.layers.0", "model.layers.1"])
        let layer1 = try XCTUnwrap(model.tensor(named: "model.layers.1.mlp.up_proj.weight"))
        XCTAssertEqual(try model.decode(layer1), Array(repeating: 3, count: 8))
        XCTAssertEqual(try model.decodeRows(layer1, rows: 1..<3), Array(repeating: 3, count: 4))

        // A missing shard is named.
        try FileManager.default.removeItem(atPath: dir + "/model-00002-of-00002.safetensors")
        XCTAssertThrowsError(try Model.open(dir)) { error in
            XCTAssertTrue("\(error)".contains("model-00002-of-00002.safetensors"), "\(error)")
        }
    }

    func testStatsOfKnownValuesAndNonFinite() throws {
        let values: [Float] = [1, 2, 3, 4, .nan, .infinity]
        let s = TensorStats(values)
        XCTAssertEqual(s.count, 4)
        XCTAssertEqual(s.nonFinite, 2)
        XCTAssertEqual(s.mean, 2.5, accuracy: 1e-12)
        XCTAssertEqual(s.std, 1.25.squareRoot(), accuracy: 1e-12)
        // kurtosis of {1,2,3,4}: m4 = (2·1.5⁴ + 2·0.5⁴)/4 = 2.5625, σ⁴ = 1.5625 → 1.64
        XCTAssertEqual(s.kurtosis, 1.64, accuracy: 1e-12)
        var heavy = [Float](repeating: 0, count: 9999)
        heavy.append(1000)
        XCTAssertEqual(TensorStats(heavy).outlierShare, 1e-4, accuracy: 1e-12)
        // Chunked model statistics equal the in-memory ones.
        var rng = SplitMix64(seed: 3)
        let data = (0..<3000).map { _ in Float(rng.nextGaussian()) }
        let image = try SafeTensorsWriter.image([.init(name: "w", shape: [30, 100], floats: data)])
        let model = try Model.inMemory(safetensors: image, name: "mem")
        let chunked = try TensorStats(of: model.tensors[0], in: model, chunkElements: 700)
        let whole = TensorStats(data)
        XCTAssertEqual(chunked.mean, whole.mean, accuracy: 1e-12)
        XCTAssertEqual(chunked.std, whole.std, accuracy: 1e-12)
        XCTAssertEqual(chunked.kurtosis, whole.kurtosis, accuracy: 1e-9)
    }

    func testDemoModelIsDeterministicAndLlamaShaped() throws {
        let a = try DemoModel.make(), b = try DemoModel.make()
        XCTAssertEqual(a.tensors.map(\.name), b.tensors.map(\.name))
        let name = "model.layers.1.mlp.down_proj.weight"
        XCTAssertEqual(try a.decode(a.tensor(named: name)!), try b.decode(b.tensor(named: name)!))
        XCTAssertEqual(a.tensor(named: name)?.shape, [DemoModel.hidden, DemoModel.intermediate])
        XCTAssertEqual(a.blocks.count, DemoModel.layers + 1)
        XCTAssertEqual(a.tensors.filter(\.isLinear).count, DemoModel.layers * 7 + 1)
        let stats = try TensorStats(of: a.tensor(named: name)!, in: a)
        XCTAssertGreaterThan(stats.kurtosis, 4, "heavy tails")
    }
}
