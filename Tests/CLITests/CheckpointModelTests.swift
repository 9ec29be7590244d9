import Any4Core
import Foundation
import TestSupport
import XCTest

/// Issue #15's loop on a model made by scripts/make-synthetic-llama.py: quantize two layers with
/// two different group sizes (the second run re-quantizing the first's checkpoint), and the
/// checkpoint is a model — `inspect`, `ppl` and `run` open it, and its perplexity is the one of the
/// same quantization written as dequantized weights (`--fake-quant`), to 1e-4.
final class CheckpointModelTests: XCTestCase {
    func any4(_ arguments: [String]) throws -> ProcessResult { try runProcess(TestPaths.any4Binary, arguments) }

    func json(_ r: ProcessResult, _ what: String) throws -> JSONValue {
        XCTAssertEqual(r.status, 0, "\(what): \(r.stderr)")
        return try JSONParser.parse(r.stdout.split(separator: "\n").last.map(String.init) ?? "", file: what)
    }

    func testMixedGroupCheckpointOfASyntheticLlamaLoadsEverywhereAndMatchesFakeQuant() throws {
        let python = try Python.require(["numpy", "tokenizers"])
        let dir = try TestPaths.temporaryDirectory(for: self)
        let source = dir + "/tiny"
        let gen = try runProcess(python, [TestPaths.packageRoot + "/scripts/make-synthetic-llama.py", "--size", "tiny", source, "--seed", "3"])
        XCTAssertEqual(gen.status, 0, gen.stderr)

        // Layer 0's attention q at group 64, then layer 1's MLP down at group 128 on top of it;
        // the same twice more as dequantized weights.
        let steps: [(layers: String, group: String)] = [("layers\\.0\\.self_attn\\.q_proj", "64"), ("layers\\.1\\.mlp\\.down_proj", "128")]
        for fake in [false, true] {
            var input = source
            for (i, step) in steps.enumerated() {
                let out = dir + (fake ? "/fake\(i)" : "/ckpt\(i)")
                var args = ["quantize", input, "--format", "any4", "--group-size", step.group, "--layers", step.layers, "--out", out]
                if fake { args.append("--fake-quant") }
                let r = try any4(args)
                XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)")
                input = out
            }
        }
        let checkpoint = dir + "/ckpt1", fake = dir + "/fake1"
        for file in ["config.json", "tokenizer.json", "model.safetensors.index.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: checkpoint + "/" + file), "\(file) in the checkpoint folder")
        }

        // inspect: both layers quantized, each with its own group, at logical [out, in].
        let report = try json(try any4(["inspect", checkpoint, "--json"]), "inspect")
        let tensors = report["tensors"]?.array ?? []
        func tensor(_ suffix: String) -> JSONValue? { tensors.first { $0["name"]?.string?.hasSuffix(suffix) == true } }
        let q = try XCTUnwrap(tensor("layers.0.self_attn.q_proj.weight"))
        let down = try XCTUnwrap(tensor("layers.1.mlp.down_proj.weight"))
        XCTAssertEqual(q["group_size"]?.int, 64)
        XCTAssertEqual(down["group_size"]?.int, 128)
        XCTAssertEqual(q["format"]?.string, "any4")
        XCTAssertEqual(q["params"]?.int, 256 * 256)
        XCTAssertEqual(down["params"]?.int, 256 * 512)
        // 4-bit codes + the default F16 tables of an f32 source (16 x 16 bits per row) and F16
        // scales and zeros per group: 4 + 256/256 + 32/64 = 5.5 bits at g64 on 256 columns,
        // 4 + 0.5 + 0.25 at g128 on 512.
        XCTAssertEqual(try XCTUnwrap(q["bits_per_weight"]?.double), 5.5, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(down["bits_per_weight"]?.double), 4.75, accuracy: 1e-9)
        XCTAssertEqual(report["quantized_layers"]?.int, 2)
        // Nothing else was quantized on the way: layer 0's q survived the second run as it was.
        XCTAssertNil(tensor("layers.1.self_attn.q_proj.weight")?["group_size"]?.int)

        // ppl: the checkpoint (packed layers, dequantized a tile at a time) against the fake-quant
        // folder (the same values as f32 tensors).
        let text = TestPaths.packageRoot + "/assets/calibration.txt"
        let ppl = ["--text", text, "--ctx", "64", "--chunks", "4", "--json"]
        let a = try XCTUnwrap(try json(try any4(["ppl", checkpoint] + ppl), "ppl checkpoint")["ppl"]?.double)
        let b = try XCTUnwrap(try json(try any4(["ppl", fake] + ppl), "ppl fake-quant")["ppl"]?.double)
        let original = try XCTUnwrap(try json(try any4(["ppl", source] + ppl), "ppl original")["ppl"]?.double)
        XCTAssertEqual(a, b, accuracy: 1e-4 * b, "checkpoint vs fake-quant perplexity")
        XCTAssertNotEqual(a, original, "the two quantized layers change the model")

        // run: generates from the checkpoint, on the lookup kernel's exact path.
        let run = try json(try any4(["run", checkpoint, "-p", "The model", "-n", "6", "--kernel", "exact", "--no-probe-bandwidth", "--json"]), "run")
        XCTAssertEqual(run["tokens"]?.array?.count, 6)
        XCTAssertGreaterThan(run["bytes_per_token"]?.int ?? 0, 0)
    }
}
