import Any4Core
import Foundation
import TestSupport
import XCTest

final class QuantizeCLITests: XCTestCase {
    func any4(_ arguments: [String]) throws -> ProcessResult { try runProcess(TestPaths.any4Binary, arguments) }

    /// A small Llama-shaped model file with a width (200) that 128 does not divide.
    func makeModel(_ dir: String, nan: Bool = false) throws -> String {
        var rng = SplitMix64(seed: 2)
        var w = (0..<(64 * 200)).map { _ in Float(rng.nextStudentT4() * 0.02) }
        if nan { w[130] = .nan }
        let path = dir + "/m.safetensors"
        try SafeTensorsWriter.write(
            [
                .init(name: "model.embed_tokens.weight", shape: [10, 200], floats: Array(w.prefix(2000)), as: .bf16),
                .init(name: "model.layers.0.mlp.up_proj.weight", shape: [64, 200], floats: w, as: .bf16),
                .init(name: "model.layers.0.self_attn.q_proj.weight", shape: [32, 200], floats: Array(w.prefix(6400)), as: .bf16),
                .init(name: "lm_head.weight", shape: [10, 200], floats: Array(w.prefix(2000)), as: .bf16)
            ], to: path)
        return path
    }

    func testQuantizeWritesACheckpointThatReadsBack() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = try makeModel(dir)
        let out = dir + "/q.safetensors"
        let r = try any4(["quantize", model, "--format", "any4", "--out", out, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONParser.parse(r.stdout, file: "stdout")
        let layers = try XCTUnwrap(json["layers"]?.array)
        XCTAssertEqual(
            layers.compactMap { $0["name"]?.string }.sorted(),
            ["model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight"], "embeddings and LM head skipped")
        XCTAssertGreaterThan(layers[0]["sqnr_db"]!.double!, 15)
        let (description, quantized) = try QuantizedCheckpoint.read(out)
        XCTAssertEqual(description.format, "any4")
        XCTAssertEqual(description.groupSize, 128)
        XCTAssertEqual(quantized["model.layers.0.mlp.up_proj.weight"]?.groupsPerRow, 2, "ragged last group of 72")
        let file = try SafeTensorsFile(path: out)
        XCTAssertEqual(file.tensor(named: "model.layers.0.mlp.up_proj.lut")?.shape, [64, 16])
        XCTAssertEqual(file.tensor(named: "model.layers.0.mlp.up_proj.qweight")?.shape, [64, 100])
        XCTAssertEqual(file.tensor(named: "model.layers.0.mlp.up_proj.scales")?.encoding, .plain(.bf16))
        XCTAssertNotNil(file.tensor(named: "lm_head.weight"))
    }

    func testBadOptionsExitTwoAndWriteNothing() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = try makeModel(dir)
        let out = dir + "/q.safetensors"
        let cases: [([String], String)] = [
            (["--format", "any4", "--group-size", "0"], "group size must be a positive multiple of 2"),
            (["--format", "any4", "--group-size=-64"], "group size"),
            (["--format", "any4", "--group-size", "33"], "group size"),
            (["--format", "int4", "--strict-groups"], "width 200 is not a multiple of the group size 128"),
            (["--format", "int5"], "unknown format \"int5\""),
            (["--format", "any4", "--layers", "nothing.matches"], "no linear layer"),
            (["--format", "any4", "--cluster", "kmeans"], "--cluster"),
            (["--format", "any4", "--sample-weight", "calib:" + dir + "/missing.safetensors"], "missing.safetensors: cannot open")
        ]
        for (arguments, message) in cases {
            let r = try any4(["quantize", model, "--out", out] + arguments)
            XCTAssertEqual(r.status, 2, "\(arguments): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(arguments): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(arguments) wrote a file")
        }
        let bad = try makeModel(try TestPaths.temporaryDirectory(for: self), nan: true)
        let r = try any4(["quantize", bad, "--format", "nf4", "--out", out])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("model.layers.0.mlp.up_proj.weight: weight [0, 130] is nan"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["m.safetensors"], "no temporary file left")
    }

    func testCompareJSONHasEveryFormatAndRaggedGroups() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = try makeModel(dir)
        let r = try any4(["compare", model, "--formats", "any4,int4,nf4,fp4,mxfp4,nvfp4,iq4_nl", "--both-clusterings", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONParser.parse(r.stdout, file: "stdout")
        let layers = try XCTUnwrap(json["layers"]?.array)
        XCTAssertEqual(layers.count, 2)
        let results = try XCTUnwrap(layers[0]["results"]?.members)
        XCTAssertEqual(results.map(\.key), ["any4", "any4-exact", "int4", "nf4", "fp4", "mxfp4", "nvfp4", "iq4_nl"])
        for (format, value) in results {
            XCTAssertNotNil(value["sqnr_db"]?.double, format)
            XCTAssertNotNil(value["bits_per_weight"]?.double, format)
        }
        let summary = try XCTUnwrap(json["summary"])
        XCTAssertGreaterThan(summary["any4"]!["mean_sqnr_db"]!.double!, summary["int4"]!["mean_sqnr_db"]!.double!)
        XCTAssertGreaterThanOrEqual(summary["any4-exact"]!["mean_sqnr_db"]!.double! + 0.05, summary["any4"]!["mean_sqnr_db"]!.double!)
    }
}

extension QuantizeCLITests {
    /// Ctrl-C (SIGINT) in the middle of a run: status 130, no output file, no temp file. Exact
    /// k-means on MiniLM takes about 1 s on a fast machine, so the write is slowed by the test hook
    /// (300 ms a write call) to keep the process busy past the signal, whichever phase it is in.
    func testInterruptLeavesNoOutputFile() throws {
        let folder = try TestPaths.requireModel(TestPaths.miniLM)
        let dir = try TestPaths.temporaryDirectory(for: self)
        let out = dir + "/q.safetensors"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestPaths.any4Binary)
        process.arguments = ["quantize", folder, "--format", "any4", "--cluster", "exact", "--out", out]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.environment = ProcessInfo.processInfo.environment.merging(["ANY4_TEST_WRITE_DELAY_MS": "300"]) { $1 }
        try process.run()
        Thread.sleep(forTimeInterval: 1.0)
        XCTAssertTrue(process.isRunning, "quantization finished before the interrupt; use a slower case")
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 130)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [], "nothing written")
    }
}
