import Any4Core
import Foundation
import TestSupport
import XCTest

/// `ppl --kl-divergence` and `--save-logits` as a user runs them, on a synthetic Llama (issue #17's
/// tests: against itself 0; a --fake-quant checkpoint equals quantize-on-load; a saved reference
/// equals the in-memory one; mismatched and truncated references refused with status 2).
final class DivergenceCLITests: XCTestCase {
    func any4(_ arguments: [String]) throws -> ProcessResult { try runProcess(TestPaths.any4Binary, arguments) }

    func kl(_ arguments: [String], _ what: String) throws -> JSONValue {
        let r = try any4(arguments)
        XCTAssertEqual(r.status, 0, "\(what): \(r.stderr)")
        let json = try JSONParser.parse(r.stdout.split(separator: "\n").last.map(String.init) ?? "", file: what)
        return try XCTUnwrap(json["kl_divergence"], what)
    }

    func testKLDivergenceAgainstItselfFakeQuantAndASavedReference() throws {
        let python = try Python.require(["numpy", "tokenizers"])
        let dir = try TestPaths.temporaryDirectory(for: self)
        let tiny = dir + "/tiny"
        let gen = try runProcess(python, [TestPaths.packageRoot + "/scripts/make-synthetic-llama.py", "--size", "tiny", tiny, "--seed", "4"])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let text = TestPaths.packageRoot + "/assets/calibration.txt"
        let windows = ["--text", text, "--ctx", "64", "--chunks", "4", "--json"]

        // Against itself: 0 and full agreement; the perplexity is ppl's.
        let plain = try JSONParser.parse(try any4(["ppl", tiny] + windows).stdout, file: "ppl")
        let same = try kl(["ppl", tiny, "--kl-divergence", tiny] + windows, "self")
        XCTAssertEqual(same["mean"]?.double, 0)
        XCTAssertEqual(same["max"]?.double, 0)
        XCTAssertEqual(same["top1_agreement"]?.double, 1)
        XCTAssertEqual(same["tokens"]?.int, 4 * 31)
        XCTAssertEqual(try XCTUnwrap(same["ppl"]?.double), try XCTUnwrap(plain["ppl"]?.double), accuracy: 1e-9)

        // Quantize on load (BASE is MODEL: its distributions are taken before quantizing) against a
        // --fake-quant checkpoint of the same format.
        let onLoad = try kl(["ppl", tiny, "--format", "any4", "--kl-divergence", tiny] + windows, "--format any4")
        let fake = dir + "/fake"
        let q = try any4(["quantize", tiny, "--format", "any4", "--fake-quant", "--out", fake])
        XCTAssertEqual(q.status, 0, q.stderr)
        let fromFake = try kl(["ppl", fake, "--kl-divergence", tiny] + windows, "fake-quant")
        let a = try XCTUnwrap(onLoad["mean"]?.double), b = try XCTUnwrap(fromFake["mean"]?.double)
        XCTAssertGreaterThan(a, 1e-4, "any4 moves the distributions")
        XCTAssertEqual(a, b, accuracy: 1e-4)
        XCTAssertEqual(try XCTUnwrap(onLoad["ppl"]?.double), try XCTUnwrap(fromFake["ppl"]?.double), accuracy: 1e-4 * b)
        XCTAssertEqual(onLoad["reference_ppl"]?.double, same["ppl"]?.double)

        // A saved reference: the same figures as the in-memory one, with or without --text.
        let ref = dir + "/tiny.kld"
        let save = try any4(["ppl", tiny, "--save-logits", ref] + windows)
        XCTAssertEqual(save.status, 0, save.stderr)
        let saved = try JSONParser.parse(save.stdout, file: "save")
        XCTAssertEqual(saved["ppl"]?.double, plain["ppl"]?.double)
        let size = try XCTUnwrap(saved["bytes"]?.int)
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: ref)[.size] as? Int), size)
        XCTAssertEqual(saved["bytes_per_token"]?.int, 2 * 4096 + 12)
        let viaFile = try kl(["ppl", tiny, "--format", "any4", "--kl-divergence", ref] + windows, "via file")
        let noText = try kl(["ppl", tiny, "--format", "any4", "--kl-divergence", ref, "--json"], "via file, no --text")
        for key in ["mean", "stderr", "median", "p99", "max", "top1_agreement", "ppl", "reference_ppl"] {
            XCTAssertEqual(try XCTUnwrap(viaFile[key]?.double), try XCTUnwrap(onLoad[key]?.double), accuracy: 1e-9, key)
            XCTAssertEqual(noText[key]?.double, viaFile[key]?.double, key)
        }

        // The human table names every figure.
        let table = try any4(["ppl", tiny, "--format", "int4", "--kl-divergence", ref])
        XCTAssertEqual(table.status, 0, table.stderr)
        for label in ["mean KL", "KL median", "KL p90", "KL p95", "KL p99", "KL max", "same top token", "reference ppl", "ln(ppl ratio)"] {
            XCTAssertTrue(table.stdout.contains(label), "\(label) in\n\(table.stdout)")
        }

        // Mismatches and damage: status 2 naming what differs.
        let other = dir + "/other.txt"
        try String(repeating: "A different text entirely, with its own tokens. ", count: 60).write(toFile: other, atomically: true, encoding: .utf8)
        let cut = dir + "/cut.kld"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: ref))
        try (bytes.prefix(bytes.count - 100)).write(to: URL(fileURLWithPath: cut))
        let refused: [([String], String)] = [
            (["ppl", tiny, "--kl-divergence", ref, "--text", text, "--ctx", "32"], "windows of 64 tokens; --ctx is 32"),
            (["ppl", tiny, "--kl-divergence", ref, "--text", text, "--ctx", "64", "--chunks", "3"], "4 windows of 64; the text and --chunks give 3"),
            (["ppl", tiny, "--kl-divergence", ref, "--text", other, "--ctx", "64", "--chunks", "4"], "was made on another text: window 0"),
            (["ppl", tiny, "--kl-divergence", cut], "cut.kld: the file ends at byte \(bytes.count - 100) inside record 123 of 124"),
            (["ppl", tiny, "--kl-divergence", ref, "--save-logits", dir + "/x.kld"], "run them apart"),
            (["ppl", tiny, "--save-logits", tiny + "/model.safetensors", "--text", text], "refusing to write"),
            (["ppl", tiny], "--text is needed")
        ]
        for (args, message) in refused {
            let r = try any4(args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): expected \"\(message)\" in \(r.stderr)")
        }
        if FileManager.default.fileExists(atPath: TestPaths.smolLM2) {
            let r = try any4(["ppl", TestPaths.smolLM2, "--kl-divergence", ref])
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue(r.stderr.contains("another shape"), r.stderr)
        }
    }
}
