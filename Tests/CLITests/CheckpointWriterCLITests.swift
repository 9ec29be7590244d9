import Any4Core
import Foundation
import TestSupport
import XCTest

/// `quantize`'s containers (issue #15): a sharded Hugging Face-style folder, a GGUF file that keeps
/// its source's metadata and tensors, fake-quant folders; read back with the Python packages.
final class CheckpointWriterCLITests: XCTestCase {
    func any4(_ arguments: [String]) throws -> ProcessResult { try runProcess(TestPaths.any4Binary, arguments) }

    static let tokenizerJSON = #"{"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}"#
    static let configJSON = #"{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 32}"#

    /// A tiny Llama-shaped Hugging Face folder: 2 layers of bf16 weights, config.json and tokenizer.json.
    func makeFolder(_ dir: String) throws -> String {
        let folder = dir + "/hf"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var rng = SplitMix64(seed: 15)
        func t(_ name: String, _ shape: [Int]) -> SafeTensorsWriter.Entry {
            .init(name: name, shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in Float(rng.nextStudentT4() * 0.02) }, as: .bf16)
        }
        var entries = [t("model.embed_tokens.weight", [32, 64]), t("model.norm.weight", [64]), t("lm_head.weight", [32, 64])]
        for i in 0..<2 {
            entries += [
                t("model.layers.\(i).self_attn.q_proj.weight", [64, 64]), t("model.layers.\(i).mlp.up_proj.weight", [128, 64]),
                t("model.layers.\(i).input_layernorm.weight", [64])
            ]
        }
        try SafeTensorsWriter.write(entries, metadata: ["format": "pt"], to: folder + "/model.safetensors")
        try Self.configJSON.write(toFile: folder + "/config.json", atomically: true, encoding: .utf8)
        try Self.tokenizerJSON.write(toFile: folder + "/tokenizer.json", atomically: true, encoding: .utf8)
        return folder
    }

    func pythonFolder(_ folder: String) throws -> JSONValue {
        try JSONParser.parse(
            try Python.run("checkpoint_check.py", ["folder", folder], modules: ["safetensors", "numpy"]), file: "checkpoint_check.py")
    }

    func testFolderCheckpointIsShardedIndexedAndReadByPython() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let source = try makeFolder(dir)
        let out = dir + "/q"
        let limit = 12_000
        let r = try any4(["quantize", source, "--format", "any4", "--group-size", "32", "--out", out, "--max-shard-size", "12KB"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // config and tokenizer copied byte for byte.
        for name in ["config.json", "tokenizer.json"] {
            XCTAssertEqual(FileManager.default.contents(atPath: out + "/" + name), FileManager.default.contents(atPath: source + "/" + name), name)
        }
        let checked = try pythonFolder(out)
        let shards = try XCTUnwrap(checked["shards"]?.members)
        XCTAssertGreaterThanOrEqual(shards.count, 3, "12 KB shards of ~40 KB of weights")
        XCTAssertEqual(shards.map(\.key), (1...shards.count).map { String(format: "model-%05d-of-%05d.safetensors", $0, shards.count) })
        var stored: [String: (dtype: String, shape: [Int], shard: String)] = [:]
        for (name, shard) in shards {
            let size = try XCTUnwrap(shard["size"]?.int)
            XCTAssertLessThanOrEqual(size, limit, name)
            XCTAssertEqual(size, try XCTUnwrap(FileManager.default.attributesOfItem(atPath: out + "/" + name)[.size] as? Int))
            XCTAssertEqual(shard["metadata"]?["any4.version"]?.string, "2")
            XCTAssertEqual(shard["metadata"]?["format"]?.string, "pt", "the source's metadata is kept")
            for (tensor, info) in try XCTUnwrap(shard["tensors"]?.members) {
                stored[tensor] = (info.array![0].string!, info.array![1].array!.compactMap(\.int), name)
            }
            // Every layer described in this shard's metadata has all its parts in this shard.
            let layers = try JSONParser.parse(try XCTUnwrap(shard["metadata"]?["any4.layers"]?.string), file: name)
            for (layer, description) in layers.members ?? [] {
                let base = String(layer.dropLast(".weight".count))
                for part in [".qweight", ".lut", ".scales"] {
                    XCTAssertNotNil(shard["tensors"]?[base + part], "\(base + part) with its layer in \(name)")
                }
                XCTAssertEqual(description["format"]?.string, "any4")
                XCTAssertEqual(description["bits"]?.int, 4)
                XCTAssertEqual(description["group_size"]?.int, 32)
                XCTAssertEqual(description["dtype"]?.string, "bf16")
                XCTAssertEqual(description["method"]?.string, "lloyd")
                XCTAssertEqual(description["sample_weight"]?.string, "scale")
            }
        }
        // The index maps exactly the stored tensors to the shards holding them.
        let index = try XCTUnwrap(checked["index"])
        let map = try XCTUnwrap(index["weight_map"]?.members)
        XCTAssertEqual(Set(map.map(\.key)), Set(stored.keys))
        for (tensor, shard) in map { XCTAssertEqual(shard.string, stored[tensor]?.shard, tensor) }
        XCTAssertEqual(index["metadata"]?["any4.version"]?.string, "2")
        let dataBytes = stored.values.reduce(0) { total, t in
            total + t.shape.reduce(1, *) * (t.dtype == "U8" ? 1 : 2)
        }
        XCTAssertEqual(index["metadata"]?["total_size"]?.int, dataBytes)
        // The expected tensors, dtypes and shapes.
        for i in 0..<2 {
            for (module, rows) in [("self_attn.q_proj", 64), ("mlp.up_proj", 128)] {
                let base = "model.layers.\(i).\(module)"
                XCTAssertNil(stored[base + ".weight"])
                XCTAssertEqual(stored[base + ".qweight"]?.dtype, "U8")
                XCTAssertEqual(stored[base + ".qweight"]?.shape, [rows, 32])
                XCTAssertEqual(stored[base + ".lut"]?.dtype, "BF16")
                XCTAssertEqual(stored[base + ".lut"]?.shape, [rows, 16])
                XCTAssertEqual(stored[base + ".scales"]?.shape, [rows, 2])
            }
            XCTAssertEqual(stored["model.layers.\(i).input_layernorm.weight"]?.dtype, "BF16")
        }
        XCTAssertEqual(stored["lm_head.weight"]?.shape, [32, 64], "the LM head is skipped")
        XCTAssertEqual(stored["model.embed_tokens.weight"]?.dtype, "BF16")

        // The same quantization written as fake-quant: the source's names, shapes and dtypes, and
        // each weight equal to the dequantized layer the checkpoint holds.
        let fake = dir + "/fake"
        let f = try any4(["quantize", source, "--format", "any4", "--group-size", "32", "--out", fake, "--fake-quant", "--max-shard-size", "20000"])
        XCTAssertEqual(f.status, 0, f.stderr)
        let sourceModel = try Model.open(source)
        let fakeModel = try Model.open(fake)
        XCTAssertEqual(fakeModel.tensors.map(\.name), sourceModel.tensors.map(\.name))
        XCTAssertEqual(fakeModel.tensors.map(\.shape), sourceModel.tensors.map(\.shape))
        XCTAssertEqual(fakeModel.tensors.map(\.info.encoding), sourceModel.tensors.map(\.info.encoding))
        XCTAssertGreaterThan(fakeModel.stores.count, 1)
        let fakeShards = try XCTUnwrap(try pythonFolder(fake)["shards"]?.members)
        XCTAssertEqual(fakeShards.count, fakeModel.stores.count)
        for (name, shard) in fakeShards { XCTAssertLessThanOrEqual(shard["size"]?.int ?? .max, 20000, name) }
        let layers = try QuantizedCheckpoint.read(out).layers
        XCTAssertEqual(layers.count, 4)
        for (name, q) in layers {
            let values = try fakeModel.decode(try XCTUnwrap(fakeModel.tensor(named: name)))
            // The fake-quant file holds the dequantized values rounded to the model's bf16.
            let expected = q.dequantized().map { Float(bitPattern: UInt32(bfloat16Bits($0)) << 16) }
            XCTAssertEqual(values, expected, name)
        }

        // The checkpoint quantized again, one layer to nf4: the other layers' parts kept byte for
        // byte with their descriptions, the new one described on its own (a mixed checkpoint).
        let again = dir + "/again"
        let g = try any4(["quantize", out, "--format", "nf4", "--layers", #"layers\.0\.mlp"#, "--out", again])
        XCTAssertEqual(g.status, 0, g.stderr)
        let first = try Model.open(out)
        let second = try Model.open(again)
        XCTAssertEqual(second.tensors.map(\.name), first.tensors.map(\.name))
        let reread = try QuantizedCheckpoint.read(again).layers
        XCTAssertEqual(Set(reread.keys), Set(layers.keys))
        for (name, q) in reread {
            if name == "model.layers.0.mlp.up_proj.weight" {
                XCTAssertEqual(q.formatName, "nf4")
            } else {
                XCTAssertEqual(q.formatName, "any4", name)
                XCTAssertEqual(q.method, "lloyd", name)
                XCTAssertEqual(q.dequantized(), layers[name]?.dequantized(), name)
                let part = try XCTUnwrap(first.storedTensors.first { $0.name == String(name.dropLast(7)) + ".qweight" })
                let copy = try XCTUnwrap(second.storedTensors.first { $0.name == part.name })
                XCTAssertEqual(
                    Array(second.stores[copy.fileIndex].bytes[copy.info.offset..<(copy.info.offset + copy.info.byteCount)]),
                    Array(first.stores[part.fileIndex].bytes[part.info.offset..<(part.info.offset + part.info.byteCount)]), name)
            }
        }
        XCTAssertEqual(second.metadata.first { $0.key == "any4.format" }?.value, "mixed")
    }

    func testFolderOutputRules() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let source = try makeFolder(dir)
        let out = dir + "/q"
        // A non-empty folder that is not a checkpoint is refused before any work.
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try "notes".write(toFile: out + "/notes.txt", atomically: true, encoding: .utf8)
        var r = try any4(["quantize", source, "--format", "int4", "--out", out])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("the folder exists and is not empty"), r.stderr)
        try FileManager.default.removeItem(atPath: out + "/notes.txt")
        // An empty folder is filled (named with a trailing slash or not); a checkpoint folder of
        // ours is replaced as a whole.
        r = try any4(["quantize", source, "--format", "int4", "--out", out + "/"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: out).sorted(),
            [
                "config.json", "model-00001-of-00001.safetensors", "model.safetensors.index.json", "tokenizer.json"
            ])
        r = try any4(["quantize", source, "--format", "nf4", "--out", out, "--max-shard-size", "10000"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let names = try FileManager.default.contentsOfDirectory(atPath: out)
        XCTAssertFalse(names.contains("model-00001-of-00001.safetensors"), "the previous checkpoint was replaced: \(names)")
        XCTAssertEqual(try Model.open(out).metadata.first { $0.key == "any4.format" }?.value, "nf4")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["hf", "q"], "nothing left beside it")
        // Bad sizes and containers.
        for (arguments, message) in [
            (["--max-shard-size", "5 parsecs"], "--max-shard-size"), (["--max-shard-size", "0"], "--max-shard-size"),
            (["--out", dir + "/q.gguf"], "a .gguf checkpoint is written from a GGUF model only"),
            (["--out", dir + "/q.safetensors", "--max-shard-size", "1GB"], "--max-shard-size is for a folder checkpoint")
        ] {
            r = try any4(["quantize", source, "--format", "int4", "--out", out] + arguments)
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue(r.stderr.contains(message), "\(arguments): \(r.stderr)")
        }
    }

    /// SmolLM2 (Q4_1 blocks) with a few layers quantized to a GGUF checkpoint: every source key
    /// and unquantized tensor kept as it was, the parts readable by gguf-py, the size as predicted.
    func testGGUFCheckpointKeepsTheSourceAndReadsInPython() throws {
        let smol = try TestPaths.requireModel(TestPaths.smolLM2)
        let dir = try TestPaths.temporaryDirectory(for: self)
        let out = dir + "/smol-any4.gguf"
        let r = try any4(["quantize", smol, "--format", "any4", "--layers", #"blk\.[01]\.(attn_q|ffn_down)"#, "--out", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        let checked = try JSONParser.parse(
            try Python.run("checkpoint_check.py", ["gguf", out, smol], modules: ["gguf", "numpy"]), file: "checkpoint_check.py")
        XCTAssertEqual(checked["missing_kv"]?.array, [], "every source key/value is present")
        XCTAssertEqual(checked["changed_kv"]?.array, [], "with the same type and value")
        XCTAssertEqual(checked["changed_tensors"]?.array, [], "unquantized tensors byte-identical to the source's")
        XCTAssertEqual(checked["kv"]?["any4.version"]?.string, "2")
        let layers = try JSONParser.parse(try XCTUnwrap(checked["kv"]?["any4.layers"]?.string), file: "any4.layers")
        let names = (layers.members ?? []).map(\.key).sorted()
        XCTAssertEqual(names, ["blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.1.attn_q.weight", "blk.1.ffn_down.weight"])
        let tensors = try XCTUnwrap(checked["tensors"]?.members)
        let sourceTensors = try XCTUnwrap(checked["source_tensors"]?.members)
        var removed = 0
        var added = 0
        for name in names {
            let base = String(name.dropLast(".weight".count))
            XCTAssertNil(tensors.first { $0.key == name }, "\(name) is replaced by its parts")
            removed += try XCTUnwrap(sourceTensors.first { $0.key == name }?.value.array?[1].int)
            let description = try XCTUnwrap(layers[name])
            let shape = try XCTUnwrap(description["shape"]?.array?.compactMap(\.int))
            let qweight = try XCTUnwrap(tensors.first { $0.key == base + ".qweight" }?.value)
            XCTAssertEqual(qweight.array?[0].string, "I8")
            XCTAssertEqual(qweight.array?[1].array?.compactMap(\.int), [shape[0], shape[1] / 2])
            let lut = try XCTUnwrap(tensors.first { $0.key == base + ".lut" }?.value)
            XCTAssertEqual(lut.array?[0].string, "F16", "Q4_1 source: tables in the default f16")
            XCTAssertEqual(lut.array?[1].array?.compactMap(\.int), [shape[0], 16])
            XCTAssertEqual(description["dtype"]?.string, "f16")
            for part in [".qweight", ".lut", ".scales", ".zeros"] {
                added += try XCTUnwrap(tensors.first { $0.key == base + part }?.value.array?[2].int)
            }
        }
        XCTAssertEqual(tensors.count, sourceTensors.count - names.count + 4 * names.count, "any4: codes, table, scales, zeros")
        let outSize = try XCTUnwrap(checked["sizes"]?["out"]?.int)
        let sourceSize = try XCTUnwrap(checked["sizes"]?["source"]?.int)
        let predicted = sourceSize - removed + added
        XCTAssertLessThan(abs(Double(outSize - predicted)) / Double(predicted), 0.01, "\(outSize) vs \(predicted)")

        // Quantizing the checkpoint again: its layers' parts and descriptions are kept as they
        // were, the new layer added.
        let again = dir + "/smol-again.gguf"
        let a = try any4(["quantize", out, "--format", "nf4", "--layers", #"blk\.2\.attn_q"#, "--out", again])
        XCTAssertEqual(a.status, 0, a.stderr)
        let rechecked = try JSONParser.parse(
            try Python.run("checkpoint_check.py", ["gguf", again, out], modules: ["gguf", "numpy"]), file: "checkpoint_check.py")
        XCTAssertEqual(rechecked["missing_kv"]?.array, [])
        XCTAssertEqual(rechecked["changed_kv"]?.array, [.string("any4.format"), .string("any4.layers")])
        XCTAssertEqual(rechecked["changed_tensors"]?.array, [], "the first checkpoint's parts kept byte for byte")
        XCTAssertEqual(rechecked["kv"]?["any4.format"]?.string, "mixed")
        let relayers = try JSONParser.parse(try XCTUnwrap(rechecked["kv"]?["any4.layers"]?.string), file: "any4.layers")
        XCTAssertEqual((relayers.members ?? []).map(\.key).sorted(), (names + ["blk.2.attn_q.weight"]).sorted())
        XCTAssertEqual(relayers["blk.0.attn_q.weight"], layers["blk.0.attn_q.weight"])
        XCTAssertEqual(relayers["blk.2.attn_q.weight"]?["format"]?.string, "nf4")

        // Fake-quant: the same names and shapes, quantized weights as F32 in place of Q4_1.
        let fake = dir + "/smol-fake.gguf"
        let f = try any4(["quantize", smol, "--format", "any4", "--layers", #"blk\.0\.attn_q"#, "--out", fake, "--fake-quant"])
        XCTAssertEqual(f.status, 0, f.stderr)
        let source = try GGUFFile(path: smol)
        let written = try GGUFFile(path: fake)
        XCTAssertEqual(written.tensors.map(\.name), source.tensors.map(\.name))
        XCTAssertEqual(written.tensors.map(\.shape), source.tensors.map(\.shape))
        for (a, b) in zip(written.tensors, source.tensors) {
            XCTAssertEqual(a.encoding, a.name == "blk.0.attn_q.weight" ? .ggml(.f32) : b.encoding, a.name)
        }
        XCTAssertEqual(written.value("any4.fake_quant")?.string, "1")
        XCTAssertNil(written.value("any4.layers"))
        XCTAssertEqual(written.value("tokenizer.ggml.tokens"), source.value("tokenizer.ggml.tokens"))
    }

    /// A `.gguf` output is streamed (its header laid out first, each layer written at its offset
    /// as soon as it is quantized): the GGUF writer, given the file's own parsed key/values and
    /// tensors in one sequential pass, writes it again byte for byte, padding included — for
    /// packed layers, fake-quant, and an any4 GGUF quantized again. A split or --force run on a
    /// `.gguf` output is refused with status 2, and nothing is written.
    func testStreamedGGUFIsWhatTheSequentialWriterWrites() throws {
        let smol = try TestPaths.requireModel(TestPaths.smolLM2)
        let dir = try TestPaths.temporaryDirectory(for: self)
        let packed = dir + "/streamed.gguf"
        let runs: [(out: String, arguments: [String])] = [
            (packed, ["quantize", smol, "--format", "nf4", "--layers", #"blk\.[01]\.(attn_k|ffn_up)"#]),
            (dir + "/streamed-fake.gguf", ["quantize", smol, "--format", "int4", "--layers", #"blk\.0\.attn_v"#, "--fake-quant"]),
            (dir + "/streamed-again.gguf", ["quantize", packed, "--format", "int4", "--layers", #"blk\.(0\.attn_k|2\.attn_q)"#])
        ]
        for (out, arguments) in runs {
            let r = try any4(arguments + ["--out", out])
            XCTAssertEqual(r.status, 0, r.stderr)
            let file = try GGUFFile(path: out)
            let tensors = try file.tensors.map { info in
                guard case .ggml(let type) = info.encoding else { throw XCTSkip("\(info.name) is not a ggml tensor") }
                let range = info.offset..<(info.offset + info.byteCount)
                return GGUFWriter.Tensor(name: info.name, shape: info.shape, type: type, byteCount: info.byteCount) { .region(file.store, range) }
            }
            let rewritten = dir + "/rewritten.gguf"
            try GGUFWriter.write(metadata: file.metadata, tensors: tensors, to: rewritten, progress: nil)
            let a = try Data(contentsOf: URL(fileURLWithPath: out)), b = try Data(contentsOf: URL(fileURLWithPath: rewritten))
            XCTAssertEqual(a.count, b.count, out)
            XCTAssertTrue(a == b, "\(out) differs from its sequential rewrite")
            XCTAssertTrue(file.tensors.contains { $0.name.hasSuffix(".qweight") } || arguments.contains("--fake-quant"), out)
        }
        // The same command again replaces the file with the same GGUF bytes (an existing `.gguf`
        // path is still a GGUF output, not a safetensors file under that name).
        let before = try Data(contentsOf: URL(fileURLWithPath: packed))
        let again = try any4(runs[0].arguments + ["--out", packed])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(try Data(contentsOf: URL(fileURLWithPath: packed)) == before, "a rerun onto an existing .gguf")
        let refused = dir + "/refused.gguf"
        for (extra, message) in [
            (["--shard", "0/2"], "writes a folder checkpoint's shards"), (["--force"], "--force is for a folder checkpoint")
        ] {
            let r = try any4(["quantize", smol, "--format", "nf4", "--layers", #"blk\.0\.attn_k"#, "--out", refused] + extra)
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue(r.stderr.contains(message), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: refused))
        }
    }
}
