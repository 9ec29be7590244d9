import Any4Core
import Foundation
import TestSupport
import XCTest

/// Dense 2- and 3-bit codes as a user meets them (issue #17): `quantize --format any3` writes
/// ⌈in·3/8⌉ bytes of codes a row, `inspect` counts them so, and `ppl` on the reloaded checkpoint
/// is `ppl --format any3` (quantize on load), on a synthetic Llama (the streaming folder writer)
/// and on SmolLM2 (the GGUF writer).
final class DenseCodesCLITests: XCTestCase {
    func any4(_ arguments: [String]) throws -> ProcessResult { try runProcess(TestPaths.any4Binary, arguments) }

    func json(_ arguments: [String]) throws -> JSONValue {
        let r = try any4(arguments)
        XCTAssertEqual(r.status, 0, "\(arguments): \(r.stderr)")
        return try JSONParser.parse(r.stdout.split(separator: "\n").last.map(String.init) ?? "", file: "\(arguments)")
    }

    /// Quantizes `source` to `format` at `out`, checks every layer's stored bytes against the code
    /// bits, and returns ppl of the checkpoint and of quantize-on-load on the same windows.
    func reloadedAndOnLoad(_ source: String, _ format: String, bits: Int, out: String, windows: [String]) throws -> (Double, Double, JSONValue) {
        let q = try any4(["quantize", source, "--format", format, "--out", out])
        XCTAssertEqual(q.status, 0, q.stderr)
        let report = try json(["inspect", out, "--json"])
        let layers = (report["tensors"]?.array ?? []).filter { $0["format"]?.string == format }
        XCTAssertGreaterThan(layers.count, 0)
        var codeBytes = 0, params = 0
        for t in layers {
            let shape = t["shape"]?.array?.compactMap(\.int) ?? []
            let name = t["name"]?.string ?? ""
            XCTAssertEqual(t["code_bits"]?.int, bits, name)
            XCTAssertEqual(t["code_packing"]?.string, bits == 4 ? "nibbles" : "dense", name)
            XCTAssertEqual(t["row_bytes"]?.int, (shape[1] * bits + 7) / 8, name)
            // Dense: ⌈in·bits/8⌉ bytes a row of codes; the rest of the bytes are tables, scales, zeros.
            let groups = (shape[1] + 127) / 128
            let floats = shape[0] * ((format.hasPrefix("any") ? 1 << bits : 0) + 2 * groups) * 2
            XCTAssertEqual(t["bytes"]?.int, shape[0] * ((shape[1] * bits + 7) / 8) + floats, name)
            codeBytes += shape[0] * ((shape[1] * bits + 7) / 8)
            params += shape[0] * shape[1]
        }
        XCTAssertEqual(Double(codeBytes * 8) / Double(params), Double(bits), accuracy: 0.01, "codes cost their bits")
        let reloaded = try XCTUnwrap(try json(["ppl", out] + windows)["ppl"]?.double)
        let onLoad = try XCTUnwrap(try json(["ppl", source, "--format", format] + windows)["ppl"]?.double)
        return (reloaded, onLoad, report)
    }

    func testDenseCheckpointOfASyntheticLlamaHasTheBitsAndThePerplexityOfQuantizeOnLoad() throws {
        let python = try Python.require(["numpy", "tokenizers"])
        let dir = try TestPaths.temporaryDirectory(for: self)
        let tiny = dir + "/tiny"
        let gen = try runProcess(python, [TestPaths.packageRoot + "/scripts/make-synthetic-llama.py", "--size", "tiny", tiny, "--seed", "5"])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let windows = ["--text", TestPaths.packageRoot + "/assets/calibration.txt", "--ctx", "64", "--chunks", "2", "--json"]
        let original = try XCTUnwrap(try json(["ppl", tiny] + windows)["ppl"]?.double)
        for (format, bits) in [("any3", 3), ("any2", 2), ("int3", 3)] {
            let (reloaded, onLoad, _) = try reloadedAndOnLoad(tiny, format, bits: bits, out: dir + "/\(format)", windows: windows)
            XCTAssertEqual(reloaded, onLoad, accuracy: 1e-9 * onLoad, format)
            XCTAssertNotEqual(reloaded, original, "\(format) changes the model")
        }
    }

    func testDenseAny3CheckpointOfSmolLM2HasThePerplexityOfQuantizeOnLoad() throws {
        let smol = try TestPaths.requireModel(TestPaths.smolLM2)
        // The repository's calibration text: the evaluation text is not fetched in CI.
        let text = TestPaths.packageRoot + "/assets/calibration.txt"
        let dir = try TestPaths.temporaryDirectory(for: self)
        let windows = ["--text", text, "--ctx", "64", "--chunks", "1", "--json"]
        let (reloaded, onLoad, report) = try reloadedAndOnLoad(smol, "any3", bits: 3, out: dir + "/smol-any3.gguf", windows: windows)
        XCTAssertEqual(reloaded, onLoad, accuracy: 1e-9 * onLoad)
        // The whole model's quantized layers: any3 g128 with f16 tables is 3.46 bits a weight, not 4.46.
        XCTAssertEqual(try XCTUnwrap(report["quantized_bits_per_weight"]?.double), 3.458, accuracy: 0.001)
    }
}
