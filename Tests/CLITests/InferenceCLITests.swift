import Any4Core
import Foundation
import TestSupport
import XCTest

/// tokenize, calibrate, ppl, embed-eval, run and quantize --calibrate as a user runs them.
final class InferenceCLITests: XCTestCase {
    func any4(_ arguments: [String]) throws -> ProcessResult { try runProcess(TestPaths.any4Binary, arguments) }

    var calibrationText: String { TestPaths.packageRoot + "/assets/calibration.txt" }

    /// A tiny Llama-shaped Hugging Face folder (random weights, no tokenizer files).
    func makeTinyLlama(_ dir: String, modelType: String = "llama") throws -> String {
        let folder = dir + "/tiny-\(modelType)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try """
        {"model_type": "\(modelType)", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
         "num_key_value_heads": 1, "intermediate_size": 16, "vocab_size": 10, "max_position_embeddings": 64,
         "rms_norm_eps": 1e-5, "tie_word_embeddings": true}
        """.write(toFile: folder + "/config.json", atomically: true, encoding: .utf8)
        var rng = SplitMix64(seed: 5)
        func t(_ name: String, _ shape: [Int]) -> SafeTensorsWriter.Entry {
            .init(name: name, shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in Float(rng.nextGaussian() * 0.1) }, as: .f32)
        }
        let p = "model.layers.0."
        try SafeTensorsWriter.write(
            [
                t("model.embed_tokens.weight", [10, 8]), t("model.norm.weight", [8]),
                t(p + "input_layernorm.weight", [8]), t(p + "post_attention_layernorm.weight", [8]),
                t(p + "self_attn.q_proj.weight", [8, 8]), t(p + "self_attn.k_proj.weight", [4, 8]),
                t(p + "self_attn.v_proj.weight", [4, 8]), t(p + "self_attn.o_proj.weight", [8, 8]),
                t(p + "mlp.gate_proj.weight", [16, 8]), t(p + "mlp.up_proj.weight", [16, 8]), t(p + "mlp.down_proj.weight", [8, 16])
            ], to: folder + "/model.safetensors")
        return folder
    }

    func testRunGeneratesAndReportsBothSpeeds() throws {
        let smol = try TestPaths.requireModel(TestPaths.smolLM2)
        let r = try any4(["run", smol, "-p", "The capital of France is", "-n", "6"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("The capital of France is Paris"), r.stdout)
        XCTAssertTrue(r.stderr.contains("prefill 5 tokens:") && r.stderr.contains("decode 6 tokens:"), r.stderr)

        let j = try any4([
            "run", smol, "-p", "The capital of France is", "-n", "6", "--json", "--format", "any4",
            "--layers", #"blk\.(0|1)\."#
        ])
        XCTAssertEqual(j.status, 0, j.stderr)
        let json = try JSONParser.parse(j.stdout, file: "stdout")
        XCTAssertEqual(json["prompt_tokens"]?.int, 5)
        XCTAssertEqual(json["tokens"]?.array?.count, 6)
        XCTAssertGreaterThan(json["decode_tokens_per_s"]?.double ?? 0, 0)
        XCTAssertGreaterThan(json["prefill_tokens_per_s"]?.double ?? 0, 0)
        XCTAssertTrue(json["weights"]?.string?.hasPrefix("any4 g128: 14 layers") == true, j.stdout)
        // --prefill auto: the lookup kernel where the AVX-512 VNNI kernel runs the fast path, else
        // f32 GEMMs; --kernel exact always GEMMs; an explicit choice is kept.
        let vnni = json["simd"]?.string?.hasPrefix("avx512") == true
        XCTAssertEqual(json["prefill_path"]?.string, vnni ? "lookup" : "gemm", j.stdout)
        for (extra, expected) in [(["--kernel", "exact"], "gemm"), (["--prefill", "lookup", "--prompt-tokens", "40"], "lookup")] {
            let e = try any4(["run", smol, "-p", "The capital of France is", "-n", "2", "--json", "--no-probe-bandwidth"] + extra)
            XCTAssertEqual(e.status, 0, e.stderr)
            let ej = try JSONParser.parse(e.stdout, file: "stdout")
            XCTAssertEqual(ej["prefill_path"]?.string, expected, "\(extra)")
            XCTAssertEqual(ej["tokens"]?.array?.count, 2)
        }
    }

    func testPerplexityJSONAndItsRefusals() throws {
        let smol = try TestPaths.requireModel(TestPaths.smolLM2)
        let r = try any4(["ppl", smol, "--text", calibrationText, "--ctx", "128", "--chunks", "2", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONParser.parse(r.stdout, file: "stdout")
        let ppl = try XCTUnwrap(json["ppl"]?.double)
        XCTAssertEqual(json["tokens"]?.int, 2 * 63, "each window of 128 scores positions 64..<127")
        XCTAssertEqual(json["chunks"]?.int, 2)
        XCTAssertGreaterThan(ppl, 1)
        XCTAssertLessThan(ppl, 200, "a fluent model should not be this surprised by plain prose and code")

        let q = try any4([
            "ppl", smol, "--text", calibrationText, "--ctx", "128", "--chunks", "2", "--json",
            "--format", "int4", "--group-size", "64"
        ])
        XCTAssertEqual(q.status, 0, q.stderr)
        let qppl = try XCTUnwrap(try JSONParser.parse(q.stdout, file: "stdout")["ppl"]?.double)
        XCTAssertNotEqual(qppl, ppl, "quantizing every block must move perplexity")

        let dir = try TestPaths.temporaryDirectory(for: self)
        try "".write(toFile: dir + "/empty.txt", atomically: true, encoding: .utf8)
        try "Just a few words.".write(toFile: dir + "/short.txt", atomically: true, encoding: .utf8)
        let refusals: [([String], String)] = [
            (["ppl", smol, "--text", dir + "/empty.txt"], "empty.txt: the text is empty"),
            (["ppl", smol, "--text", dir + "/short.txt"], "fewer than one window of --ctx 512"),
            (["ppl", smol, "--text", dir + "/missing.txt"], "missing.txt: cannot read the text"),
            (["ppl", smol, "--text", calibrationText, "--ctx", "100000"], "longer than the model's context of 8192"),
            (["ppl", try TestPaths.requireModel(TestPaths.miniLM), "--text", calibrationText], "perplexity needs a decoder"),
            (["ppl", smol, "--text", calibrationText, "--calibrate"], "--calibrate needs --format"),
            (["run", smol, "-p", "x", "-n", "10000"], "do not fit the model's context")
        ]
        for (args, message) in refusals {
            let e = try any4(args)
            XCTAssertEqual(e.status, 2, "\(args): \(e.stderr)")
            XCTAssertTrue(e.stderr.contains(message), "\(args): \(e.stderr)")
        }
    }

    /// `--quantize`, the old spelling of `--format`, quantizes the same way: the same perplexity
    /// and description (bar the seconds) on one short window with only block 0 quantized.
    func testPerplexityQuantizeAliasMatchesFormat() throws {
        let smol = try TestPaths.requireModel(TestPaths.smolLM2)
        func measure(_ option: String) throws -> JSONValue {
            let r = try any4([
                "ppl", smol, "--text", calibrationText, "--ctx", "64", "--chunks", "1", "--json",
                option, "any4", "--layers", #"blk\.0\."#
            ])
            XCTAssertEqual(r.status, 0, "\(option): \(r.stderr)")
            return try JSONParser.parse(r.stdout, file: "stdout")
        }
        let format = try measure("--format"), alias = try measure("--quantize")
        for key in ["ppl", "nll", "tokens", "chunks", "ctx", "text_tokens"] {
            XCTAssertNotNil(format[key], key)
            XCTAssertEqual(format[key], alias[key], key)
        }
        // "any4 g128: 7 layers, B bits/weight, S s": all but the seconds.
        let weights = { (json: JSONValue) in json["weights"]?.string?.split(separator: ",").dropLast().joined(separator: ",") }
        XCTAssertEqual(weights(format), weights(alias))
        XCTAssertTrue(weights(format)?.hasPrefix("any4 g128: 7 layers") == true, format["weights"]?.string ?? "")
    }

    func testUnknownArchitectureAndMissingTokenizerExitTwo() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let mamba = try makeTinyLlama(dir, modelType: "mamba")
        let r = try any4(["run", mamba, "-p", "hello"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("architecture \"mamba\" is not one the engine runs"), r.stderr)

        let llama = try makeTinyLlama(dir)
        for args in [["run", llama, "-p", "hello"], ["tokenize", llama, "hello"]] {
            let e = try any4(args)
            XCTAssertEqual(e.status, 2, e.stderr)
            XCTAssertTrue(e.stderr.contains(llama) && e.stderr.lowercased().contains("tokenizer"), e.stderr)
        }
    }

    func testEmbedEvalComparesQuantizedEmbeddings() throws {
        let minilm = try TestPaths.requireModel(TestPaths.miniLM)
        let dir = try TestPaths.temporaryDirectory(for: self)
        let sentences = [
            "A man is playing a guitar.", "The stock market fell sharply on Monday.", "Someone plays the guitar.",
            "How do I bake bread at home?", "Quantum computers use qubits.", "The cat sits on the mat."
        ]
        try sentences.joined(separator: "\n").write(toFile: dir + "/s.txt", atomically: true, encoding: .utf8)
        let r = try any4(["embed-eval", minilm, "--sentences", dir + "/s.txt", "--format", "int4", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONParser.parse(r.stdout, file: "stdout")
        XCTAssertEqual(json["sentences"]?.int, 6)
        let mean = try XCTUnwrap(json["mean_cosine"]?.double), min = try XCTUnwrap(json["min_cosine"]?.double)
        XCTAssertLessThanOrEqual(min, mean)
        XCTAssertGreaterThan(min, 0.9, "int4 g128 keeps MiniLM's embeddings close")
        XCTAssertLessThan(min, 1, "quantization must move the embeddings a little")
        XCTAssertTrue(sentences.contains(json["worst"]?.string ?? ""))

        let e = try any4([
            "embed-eval", try TestPaths.requireModel(TestPaths.smolLM2), "--sentences", dir + "/s.txt",
            "--format", "int4"
        ])
        XCTAssertEqual(e.status, 2)
        XCTAssertTrue(e.stderr.contains("embed-eval needs an encoder"), e.stderr)

        let none = try any4(["embed-eval", minilm, "--sentences", dir + "/s.txt"])
        XCTAssertEqual(none.status, 2)
        XCTAssertTrue(none.stderr.contains("embed-eval compares against a quantized model: give --format FORMAT"), none.stderr)
    }

    func testCalibrateAndSequentialQuantize() throws {
        let smol = try TestPaths.requireModel(TestPaths.smolLM2)
        let dir = try TestPaths.temporaryDirectory(for: self)
        let out = dir + "/calib.safetensors"
        let r = try any4(["calibrate", smol, "--out", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        let stats = try CalibrationStats.load(out)
        XCTAssertEqual(stats.layers.count, 210)
        let q = try XCTUnwrap(stats.layer(forWeight: "blk.5.ffn_down.weight"))
        XCTAssertEqual(q.sqmean.count, 1536)
        XCTAssertGreaterThan(q.count, 100, "the default prompt is a few hundred tokens")

        // The file feeds quantize's calib: weighting.
        let ck = dir + "/q.safetensors"
        let w = try any4([
            "quantize", smol, "--format", "any4", "--layers", #"blk\.0\.attn_q"#, "--sample-weight", "calib:" + out,
            "--stat", "sqmean", "--out", ck
        ])
        XCTAssertEqual(w.status, 0, w.stderr)

        let seq = dir + "/seq.safetensors"
        let s = try any4(["quantize", smol, "--format", "any4", "--layers", #"blk\.(0|1)\."#, "--calibrate", "--out", seq])
        XCTAssertEqual(s.status, 0, s.stderr)
        let (description, layers) = try QuantizedCheckpoint.read(seq)
        XCTAssertEqual(layers.count, 14)
        XCTAssertTrue(description.sampleWeight.hasPrefix("calib:sequential:"), description.sampleWeight)

        let bad = try any4(["quantize", smol, "--format", "int4", "--calibrate", "--out", dir + "/x.safetensors"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("has no learned table"), bad.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.safetensors"))
    }

    func testTokenizePrintsIdsAndPieces() throws {
        let smol = try TestPaths.requireModel(TestPaths.smolLM2)
        let r = try any4(["tokenize", smol, "The capital of France is", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONParser.parse(r.stdout, file: "stdout")
        XCTAssertEqual(json["ids"]?.array?.compactMap(\.int), [504, 3575, 282, 4649, 314])
        XCTAssertEqual(json["pieces"]?.array?.compactMap(\.string), ["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"])
        let text = try any4(["tokenize", smol, "a\tb"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertNotNil(text.stdout.firstMatch(of: /^[0-9]+ tokens\n/), text.stdout)
    }
}
