import Any4Core
import Foundation
import TestSupport
import XCTest

/// Runs the built `any4` binary as a user would.
final class InspectCLITests: XCTestCase {
    func any4(_ arguments: String...) throws -> ProcessResult {
        try runProcess(TestPaths.any4Binary, arguments, environment: ["NO_COLOR": "1"])
    }

    func testInspectJSONOnMiniLM() throws {
        let folder = try TestPaths.requireModel(TestPaths.miniLM)
        let r = try any4("inspect", folder, "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONParser.parse(r.stdout, file: "stdout")
        XCTAssertEqual(json["format"]?.string, "hf-folder")
        let tensors = try XCTUnwrap(json["tensors"]?.array)
        XCTAssertEqual(tensors.count, 104)
        let up = try XCTUnwrap(tensors.first { $0["name"]?.string == "encoder.layer.5.intermediate.dense.weight" })
        XCTAssertEqual(up["shape"]?.array?.compactMap(\.int), [1536, 384])
        XCTAssertEqual(up["dtype"]?.string, "F32")
        XCTAssertEqual(up["params"]?.int, 1536 * 384)
        XCTAssertEqual(up["bytes"]?.int, 1536 * 384 * 4)
        XCTAssertEqual(up["role"]?.string, "linear")
        XCTAssertEqual(up["block"]?.string, "encoder.layer.5")
        XCTAssertEqual(json["config"]?["hidden_size"]?.int, 384)
    }

    func testInspectStatsAndFilterOnSmolLM2() throws {
        let path = try TestPaths.requireModel(TestPaths.smolLM2)
        let r = try any4("inspect", path, "--json", "--stats", "--filter", #"^blk\.0\."#)
        XCTAssertEqual(r.status, 0, r.stderr)
        let tensors = try XCTUnwrap(try JSONParser.parse(r.stdout, file: "stdout")["tensors"]?.array)
        XCTAssertEqual(tensors.count, 9)
        for t in tensors {
            let stats = try XCTUnwrap(t["stats"], t["name"]?.string ?? "")
            let std = try XCTUnwrap(stats["std"]?.double)
            XCTAssertGreaterThan(std, 0)
            XCTAssertLessThan(stats["min"]!.double!, stats["max"]!.double!)
            XCTAssertGreaterThan(stats["kurtosis"]!.double!, 1)
        }
        let q = try XCTUnwrap(tensors.first { $0["name"]?.string == "blk.0.attn_q.weight" })
        XCTAssertEqual(q["shape"]?.array?.compactMap(\.int), [576, 576])
        XCTAssertEqual(q["dtype"]?.string, "Q4_1")
        XCTAssertEqual(q["bits_per_weight"]?.double, 5)

        let text = try any4("inspect", path)
        XCTAssertEqual(text.status, 0)
        XCTAssertTrue(text.stdout.contains("blk.29"))
        XCTAssertTrue(text.stdout.contains("format gguf v3 · 272 tensors"), text.stdout)
    }

    func testInspectSparseTwentyGigabyteFile() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        var members: [String] = []
        let bytesEach = 16384 * 16384 * 2
        for i in 0..<40 {
            members.append(
                "\"layers.\(i).w.weight\":{\"dtype\":\"F16\",\"shape\":[16384,16384],\"data_offsets\":[\(i * bytesEach),\((i + 1) * bytesEach)]}")
        }
        var header = Array(("{" + members.joined(separator: ",") + "}").utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        let path = dir + "/big.safetensors"
        let prefix = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) } + header
        _ = FileManager.default.createFile(atPath: path, contents: Data(prefix))
        XCTAssertEqual(truncate(path, off_t(prefix.count + 40 * bytesEach)), 0)
        let r = try any4("inspect", path, "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONParser.parse(r.stdout, file: "stdout")
        XCTAssertEqual(json["bytes"]?.int, 40 * bytesEach)
        XCTAssertEqual(json["tensors"]?.array?.count, 40)
    }

    func testBadInputExitsTwoNamingFileAndPlace() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        // Truncated: the header says 200 bytes, the file has 20.
        let truncated = dir + "/truncated.safetensors"
        var bytes = withUnsafeBytes(of: UInt64(200).littleEndian) { Array($0) }
        bytes += Array(#"{"a":{"dtype""#.utf8)
        _ = FileManager.default.createFile(atPath: truncated, contents: Data(bytes))
        var r = try any4("inspect", truncated)
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains(truncated) && r.stderr.contains("header length 200"), r.stderr)
        XCTAssertTrue(r.stdout.isEmpty)

        // A lying GGUF: magic right, tensor count absurd.
        let gguf = dir + "/lying.gguf"
        var g: [UInt8] = Array("GGUF".utf8) + [3, 0, 0, 0]
        g += withUnsafeBytes(of: UInt64(1) << 40) { Array($0) } + [UInt8](repeating: 0, count: 8)
        _ = FileManager.default.createFile(atPath: gguf, contents: Data(g))
        r = try any4("inspect", gguf)
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains(gguf) && r.stderr.contains("tensor count") && r.stderr.contains("at byte 8"), r.stderr)

        // Missing file, and a folder without weights.
        r = try any4("inspect", dir + "/nope.safetensors")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("nope.safetensors: cannot open"), r.stderr)
        try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
        r = try any4("inspect", dir + "/empty")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("no model.safetensors"), r.stderr)

        // A bad regular expression is a usage error.
        r = try any4("inspect", "--filter", "(")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--filter"), r.stderr)
    }

    func testNonFiniteWeightsAreCounted() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let path = dir + "/nan.safetensors"
        try SafeTensorsWriter.write([.init(name: "layers.0.w.weight", shape: [2, 3], floats: [1, .nan, 2, .infinity, -.infinity, 3])], to: path)
        let r = try any4("inspect", path, "--stats", "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let stats = try XCTUnwrap(try JSONParser.parse(r.stdout, file: "stdout")["tensors"]?.array?.first?["stats"])
        XCTAssertEqual(stats["non_finite"]?.int, 3)
        XCTAssertEqual(stats["max"]?.double, 3)
    }

    func testNoArgumentsShowsTheBuiltInDemo() throws {
        let r = try any4()
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("synthetic demo"), r.stdout)
        XCTAssertTrue(r.stdout.contains("model.layers.3.mlp.down_proj.weight") || r.stdout.contains("mlp.down_proj.weight"))
    }
}

extension InspectCLITests {
    /// Found by a newcomer test: files that are no model at all, bad options, empty filters.
    func testNotAModelAndOptionErrorsExitTwo() throws {
        var r = try any4("inspect", TestPaths.packageRoot + "/README.md")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("README.md: not a model file"), r.stderr)
        r = try any4("inspect", "--filter", "[")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.hasPrefix("any4: error: --filter"), r.stderr)
        r = try any4("inspect", "--filter", "no.such.tensor")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("no tensor"), r.stderr)
        r = try any4("inspect", "--filter", "layers.0.mlp")
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.contains("3 of 39 tensors"), r.stdout)
        r = try any4("quantize", "demo", "--format", "any4", "--group-size", "-4", "--out", "/tmp/never.safetensors")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("group size must be a positive multiple of 2, got -4"), r.stderr)
        r = try any4("bench", "--runs", "0", "--shape", "64x64", "--batch", "1", "--formats", "f32")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("--runs"), r.stderr)
    }
}
