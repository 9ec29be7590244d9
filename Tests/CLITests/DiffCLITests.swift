import Any4Core
import Foundation
import TestSupport
import XCTest

/// `any4 diff A B` as a user runs it (issue 18): SmolLM2 against its any4 checkpoint gives
/// `compare`'s SQNR per layer; a model against itself is exactly zero in valid JSON; against its
/// fake-quant export it is the quantization error numpy computes from the files; tensors in one
/// model only and shape mismatches are listed; bad input exits 2 with the file named.
final class DiffCLITests: XCTestCase {
    func any4(_ arguments: [String]) throws -> ProcessResult { try runProcess(TestPaths.any4Binary, arguments) }

    /// Parses `text` with Python's json, refusing NaN and Infinity (which Python accepts by default).
    func strictJSON(_ text: String, file: String) throws -> JSONValue {
        let python = try Python.require(["json"])
        let path = file + ".json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let check = try runProcess(
            python,
            [
                "-c",
                "import json,sys\ndef bad(c): raise ValueError('non-standard JSON constant ' + c)\njson.load(open(sys.argv[1]), parse_constant=bad)\n",
                path
            ])
        XCTAssertEqual(check.status, 0, "python json: \(check.stderr)")
        return try JSONParser.parse(text, file: path)
    }

    func diffJSON(_ a: String, _ b: String, _ dir: String) throws -> JSONValue {
        let r = try any4(["diff", a, b, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return try strictJSON(r.stdout, file: dir + "/diff-\(UUID().uuidString)")
    }

    func makeTiny(_ dir: String) throws -> String {
        let python = try Python.require(["numpy", "tokenizers"])
        let path = dir + "/tiny"
        let gen = try runProcess(python, [TestPaths.packageRoot + "/scripts/make-synthetic-llama.py", "--size", "tiny", path, "--seed", "5"])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        return path
    }

    /// The closing note's figure: per layer, diff's SQNR of SmolLM2 against its any4 checkpoint
    /// is `compare`'s for the same options (group 64, block 0's seven layers); the rest is identical.
    func testSmolLM2AgainstItsAny4CheckpointGivesCompareSQNR() throws {
        let model = try TestPaths.requireModel(TestPaths.smolLM2)
        let dir = try TestPaths.temporaryDirectory(for: self)
        let options = ["--format", "any4", "--group-size", "64", "--layers", #"blk\.0\."#]
        let q = try any4(["quantize", model] + options + ["--out", dir + "/smol.any4.gguf"])
        XCTAssertEqual(q.status, 0, q.stderr)
        let c = try any4(["compare", model] + options + ["--json"])
        XCTAssertEqual(c.status, 0, c.stderr)
        let compare = try JSONParser.parse(c.stdout, file: "compare")
        let diff = try diffJSON(model, dir + "/smol.any4.gguf", dir)
        let tensors = try XCTUnwrap(diff["tensors"]?.array)
        var byName: [String: JSONValue] = [:]
        for t in tensors { byName[t["name"]!.string!] = t }
        let layers = try XCTUnwrap(compare["layers"]?.array)
        XCTAssertEqual(layers.count, 7)
        for layer in layers {
            let name = try XCTUnwrap(layer["name"]?.string)
            let expected = try XCTUnwrap(layer["results"]?["any4"]?["sqnr_db"]?.double)
            let got = try XCTUnwrap(byName[name]?["sqnr_db"]?.double, name)
            XCTAssertEqual(got, expected, accuracy: 1e-9, name)
            XCTAssertEqual(byName[name]?["max_abs_error"]?.double, layer["results"]?["any4"]?["max_abs_error"]?.double, name)
            XCTAssertEqual(byName[name]?["encoding_b"]?.string, "any4 g64 f16", name)
        }
        // Worst first: the quantized layers lead, every other tensor is identical.
        XCTAssertEqual(Set(tensors.prefix(7).compactMap { $0["name"]?.string }), Set(layers.compactMap { $0["name"]?.string }))
        for t in tensors.dropFirst(7) { XCTAssertEqual(t["identical"]?.bool, true, t["name"]?.string ?? "") }
        XCTAssertEqual(diff["summary"]?["compared"]?.int, tensors.count)
        XCTAssertEqual(diff["only_in_a"]?.array?.count, 0)

        // The text table: the same SQNR to two decimals, the identical tensors counted.
        let text = try any4(["diff", model, dir + "/smol.any4.gguf"])
        XCTAssertEqual(text.status, 0, text.stderr)
        for layer in layers {
            let name = layer["name"]!.string!, sqnr = Formatting.fixed(layer["results"]!["any4"]!["sqnr_db"]!.double!, 2)
            XCTAssertNotNil(
                text.stdout.range(
                    of: NSRegularExpression.escapedPattern(for: name) + #" +\[[0-9, ]+\] +"# + NSRegularExpression.escapedPattern(for: sqnr) + " ",
                    options: .regularExpression),
                "\(name) \(sqnr):\n\(text.stdout)")
        }
        XCTAssertTrue(text.stdout.contains("(\(tensors.count - 7) identical, not listed"), text.stdout)
    }

    /// Against itself: every tensor identical, SQNR null in JSON (no NaN, no Infinity) and `inf`
    /// in the text, every error 0, every difference in the zero bin.
    func testAModelAgainstItselfIsZeroInValidJSON() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let tiny = try makeTiny(dir)
        let diff = try diffJSON(tiny, tiny, dir)
        let tensors = try XCTUnwrap(diff["tensors"]?.array)
        XCTAssertGreaterThan(tensors.count, 10)
        for t in tensors {
            let name = t["name"]?.string ?? ""
            XCTAssertEqual(t["identical"]?.bool, true, name)
            XCTAssertEqual(t["sqnr_db"], .null, name)
            XCTAssertEqual(t["relative_error"]?.double, 0, name)
            XCTAssertEqual(t["max_abs_error"]?.double, 0, name)
            XCTAssertEqual(t["histogram"]?["zeros"]?.int, t["elements"]?.int, name)
            XCTAssertEqual(t["abs_quantiles"]?["p99.9"]?.double, 0, name)
        }
        XCTAssertEqual(diff["summary"]?["identical"]?.int, tensors.count)
        let text = try any4(["diff", tiny, tiny, "--all"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("overall SQNR inf dB, rel err 0.00e+00, max |d| 0.00e+00"), text.stdout)
        XCTAssertFalse(text.stdout.lowercased().contains("nan"), text.stdout)
    }

    /// Against its fake-quant export (dequantized weights, f32): the figures numpy computes from
    /// the two folders in float64, and `quantize --json`'s SQNR for the quantized layers.
    func testAgainstItsFakeQuantExportEqualsTheQuantizationError() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let tiny = try makeTiny(dir)
        let q = try any4([
            "quantize", tiny, "--format", "int4", "--group-size", "64", "--layers", #"layers\.0\.(self_attn\.q|mlp\.down)"#, "--fake-quant",
            "--out", dir + "/fake", "--json"
        ])
        XCTAssertEqual(q.status, 0, q.stderr)
        let quantized = try JSONParser.parse(q.stdout.split(separator: "\n").last.map(String.init) ?? "", file: "quantize")
        let diff = try diffJSON(tiny, dir + "/fake", dir)
        let reference = try JSONParser.parse(
            try Python.run("diff_reference.py", [tiny, dir + "/fake"], modules: ["numpy", "safetensors"]), file: "diff_reference")
        let tensors = try XCTUnwrap(diff["tensors"]?.array)
        XCTAssertEqual(tensors.count, reference["tensors"]?.members?.count)
        for t in tensors {
            let name = try XCTUnwrap(t["name"]?.string)
            let ref = try XCTUnwrap(reference["tensors"]?[name], name)
            let signal = try XCTUnwrap(ref["signal"]?.double), noise = try XCTUnwrap(ref["noise"]?.double)
            XCTAssertEqual(t["elements"]?.int, ref["elements"]?.int, name)
            XCTAssertEqual(t["max_abs_error"]?.double, ref["max_abs"]?.double, name)
            if noise == 0 {
                XCTAssertEqual(t["identical"]?.bool, true, name)
            } else {
                XCTAssertEqual(try XCTUnwrap(t["sqnr_db"]?.double, name), 10 * log10(signal / noise), accuracy: 1e-9, name)
                XCTAssertEqual(try XCTUnwrap(t["relative_error"]?.double, name), (noise / signal).squareRoot(), accuracy: 1e-12, name)
                let counts = t["histogram"]?["counts"]?.array?.compactMap(\.int) ?? []
                XCTAssertEqual(counts.count, 64, name)
                XCTAssertEqual(counts.reduce(0, +), t["elements"]?.int, name)
            }
        }
        let layers = try XCTUnwrap(quantized["layers"]?.array)
        XCTAssertEqual(layers.count, 2)
        for layer in layers {
            let name = try XCTUnwrap(layer["name"]?.string)
            let t = try XCTUnwrap(tensors.first { $0["name"]?.string == name })
            XCTAssertEqual(try XCTUnwrap(t["sqnr_db"]?.double), try XCTUnwrap(layer["sqnr_db"]?.double), accuracy: 1e-9, name)
        }
        XCTAssertEqual(Set(tensors.prefix(2).compactMap { $0["name"]?.string }), Set(layers.compactMap { $0["name"]?.string }), "worst first")
    }

    func testTensorsInOneModelOnlyShapeMismatchAndBadInput() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        try SafeTensorsWriter.write(
            [
                .init(name: "model.layers.0.mlp.up_proj.weight", shape: [4, 8], floats: (0..<32).map { Float($0) }),
                .init(name: "model.layers.0.mlp.down_proj.weight", shape: [8, 4], floats: (0..<32).map { Float($0) }),
                .init(name: "model.layers.0.only_a.weight", shape: [2, 2], floats: [1, 2, 3, 4])
            ], to: dir + "/a.safetensors")
        try SafeTensorsWriter.write(
            [
                .init(name: "model.layers.0.mlp.up_proj.weight", shape: [4, 8], floats: (0..<32).map { Float($0) + 0.5 }, as: .bf16),
                .init(name: "model.layers.0.mlp.down_proj.weight", shape: [4, 8], floats: (0..<32).map { Float($0) }),
                .init(name: "model.layers.0.only_b.weight", shape: [3], floats: [1, 2, 3])
            ], to: dir + "/b.safetensors")
        let text = try any4(["diff", dir + "/a.safetensors", dir + "/b.safetensors"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("not compared (1):\n  model.layers.0.mlp.down_proj.weight: shape [8, 4] vs [4, 8]"), text.stdout)
        XCTAssertTrue(text.stdout.contains("only in A (\(dir)/a.safetensors): 1\n  model.layers.0.only_a.weight [2, 2] F32"), text.stdout)
        XCTAssertTrue(text.stdout.contains("only in B (\(dir)/b.safetensors): 1\n  model.layers.0.only_b.weight [3] F32"), text.stdout)
        XCTAssertTrue(text.stdout.contains("F32 → BF16"), text.stdout)
        let json = try diffJSON(dir + "/a.safetensors", dir + "/b.safetensors", dir)
        XCTAssertEqual(json["only_in_a"]?.array?.compactMap { $0["name"]?.string }, ["model.layers.0.only_a.weight"])
        XCTAssertEqual(json["only_in_b"]?.array?.compactMap { $0["name"]?.string }, ["model.layers.0.only_b.weight"])
        let mismatch = try XCTUnwrap(json["tensors"]?.array?.first { $0["compared"]?.bool == false })
        XCTAssertEqual(mismatch["shape_b"]?.array?.compactMap(\.int), [4, 8])

        // Bad input: a missing file, a truncated file, another architecture: status 2, the file named.
        let missing = try any4(["diff", dir + "/a.safetensors", dir + "/missing.safetensors"])
        XCTAssertEqual(missing.status, 2, missing.stderr)
        XCTAssertTrue(missing.stderr.contains(dir + "/missing.safetensors"), missing.stderr)
        let bytes = try XCTUnwrap(FileManager.default.contents(atPath: dir + "/b.safetensors"))
        try bytes.prefix(bytes.count - 20).write(to: URL(fileURLWithPath: dir + "/cut.safetensors"))
        let cut = try any4(["diff", dir + "/a.safetensors", dir + "/cut.safetensors"])
        XCTAssertEqual(cut.status, 2, cut.stderr)
        XCTAssertTrue(cut.stderr.contains(dir + "/cut.safetensors"), cut.stderr)
        for (name, type) in [("llama", "llama"), ("bert", "bert")] {
            try FileManager.default.createDirectory(atPath: dir + "/" + name, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: dir + "/a.safetensors", toPath: dir + "/\(name)/model.safetensors")
            try #"{"model_type": "\#(type)"}"#.write(toFile: dir + "/\(name)/config.json", atomically: true, encoding: .utf8)
        }
        let other = try any4(["diff", dir + "/llama", dir + "/bert"])
        XCTAssertEqual(other.status, 2, other.stderr)
        XCTAssertTrue(other.stderr.contains("architecture bert differs from \(dir)/llama's llama"), other.stderr)
    }
}
