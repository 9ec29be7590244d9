import Any4Core
import Foundation
import TestSupport
import XCTest

/// `inspect` on any4 checkpoints written part by part (``QuantizedFixtures``), and bad
/// checkpoints refused with status 2 naming the file and the tensor.
final class QuantizedCheckpointCLITests: XCTestCase {
    typealias Fixtures = QuantizedFixtures

    func any4(_ arguments: String...) throws -> ProcessResult {
        try runProcess(TestPaths.any4Binary, arguments, environment: ["NO_COLOR": "1"])
    }

    /// Stored bits over logical parameters, from the bytes written.
    func bitsPerWeight(_ layers: [Fixtures.Layer]) throws -> Double {
        let bytes = try layers.flatMap(Fixtures.parts).reduce(0) { $0 + $1.bytes.count }
        return Double(bytes * 8) / Double(layers.reduce(0) { $0 + $1.q.rows * $1.q.cols })
    }

    func testInspectListsQuantizedLayersWithLogicalParametersAndBits() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let layers = try Fixtures.mixedLayers()
        let path = dir + "/mixed.safetensors"
        try Fixtures.writeVersion2(layers, to: path)

        let text = try any4("inspect", path)
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("· 4 tensors ·"), text.stdout)
        let summary = "3 quantized layers, \(Formatting.fixed(try bitsPerWeight(layers), 3)) bits/weight over quantized layers"
        XCTAssertTrue(text.stdout.contains(summary), text.stdout)
        let line = try XCTUnwrap(text.stdout.split(separator: "\n").first { $0.contains("self_attn.q_proj.weight") }, text.stdout)
        XCTAssertTrue(line.contains("[8, 96]") && line.contains("any4 g32 bf16") && line.contains(" 768 "), String(line))
        XCTAssertTrue(line.contains(Formatting.fixed(try bitsPerWeight([layers[0]]), 3) + " b/w"), String(line))
        XCTAssertFalse(text.stdout.contains("qweight"), text.stdout)

        let stored = try any4("inspect", path, "--stored")
        XCTAssertEqual(stored.status, 0, stored.stderr)
        for part in try layers.flatMap(Fixtures.parts) {
            XCTAssertTrue(stored.stdout.contains(String(part.name.split(separator: ".").suffix(2).joined(separator: "."))), part.name)
        }
        XCTAssertFalse(stored.stdout.contains("q_proj.weight"), stored.stdout)
        XCTAssertFalse(stored.stdout.contains("quantized layers"), stored.stdout)

        let json = try any4("inspect", path, "--json", "--stats")
        XCTAssertEqual(json.status, 0, json.stderr)
        let report = try JSONParser.parse(json.stdout, file: "stdout")
        XCTAssertEqual(report["quantized_layers"]?.int, 3)
        XCTAssertEqual(try XCTUnwrap(report["quantized_bits_per_weight"]?.double), try bitsPerWeight(layers), accuracy: 1e-12)
        XCTAssertEqual(report["params"]?.int, layers.reduce(96) { $0 + $1.q.rows * $1.q.cols })
        for l in layers {
            let t = try XCTUnwrap(report["tensors"]?.array?.first { $0["name"]?.string == l.name }, l.name)
            XCTAssertEqual(t["shape"]?.array?.compactMap(\.int), [l.q.rows, l.q.cols], l.name)
            XCTAssertEqual(t["params"]?.int, l.q.rows * l.q.cols, l.name)
            XCTAssertEqual(try XCTUnwrap(t["bits_per_weight"]?.double), try bitsPerWeight([l]), accuracy: 1e-12, l.name)
            XCTAssertEqual(t["format"]?.string, l.q.formatName, l.name)
            XCTAssertEqual(t["group_size"]?.int, l.q.groupSize, l.name)
            XCTAssertEqual(t["stored"]?.array?.compactMap(\.string), try Fixtures.parts(l).map(\.name), l.name)
            // Statistics of the dequantized values.
            let expected = TensorStats(l.q.dequantized())
            XCTAssertEqual(t["stats"]?["min"]?.double, Double(expected.min), l.name)
            XCTAssertEqual(t["stats"]?["max"]?.double, Double(expected.max), l.name)
            XCTAssertEqual(try XCTUnwrap(t["stats"]?["mean"]?.double), expected.mean, accuracy: 1e-12, l.name)
            XCTAssertEqual(try XCTUnwrap(t["stats"]?["std"]?.double), expected.std, accuracy: 1e-12, l.name)
        }
        let storedJSON = try JSONParser.parse(try any4("inspect", path, "--json", "--stored").stdout, file: "stdout")
        XCTAssertEqual(storedJSON["tensors"]?.array?.count, try layers.flatMap(Fixtures.parts).count + 1)
        XCTAssertEqual(storedJSON["quantized_layers"]?.int, 0)
    }

    func testInspectOpensAShardedCheckpointFolder() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let layers = try Fixtures.mixedLayers()
        try Fixtures.writeShardedFolder(dir, layers)
        let r = try any4("inspect", dir, "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try JSONParser.parse(r.stdout, file: "stdout")
        XCTAssertEqual(report["format"]?.string, "hf-folder")
        XCTAssertEqual(report["quantized_layers"]?.int, 3)
        let down = try XCTUnwrap(report["tensors"]?.array?.first { $0["name"]?.string == layers[2].name })
        XCTAssertEqual(down["file"]?.string, dir + "/model-00002-of-00002.safetensors")
    }

    func testInspectOpensAGGUFCheckpoint() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let layers = try Fixtures.mixedLayers()
        try Fixtures.writeVersion2(layers, to: dir + "/mixed.safetensors")
        try Python.run(
            "quantized_checkpoint.py", ["gguf", dir + "/mixed.safetensors", dir + "/mixed.gguf"], modules: ["gguf", "safetensors", "numpy"])
        let r = try any4("inspect", dir + "/mixed.gguf", "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try JSONParser.parse(r.stdout, file: "stdout")
        XCTAssertEqual(report["format"]?.string, "gguf")
        XCTAssertEqual(report["quantized_layers"]?.int, 3)
        XCTAssertEqual(try XCTUnwrap(report["quantized_bits_per_weight"]?.double), try bitsPerWeight(layers), accuracy: 1e-12)
        let q = try XCTUnwrap(report["tensors"]?.array?.first { $0["name"]?.string == layers[0].name })
        XCTAssertEqual(q["dtype"]?.string, "any4 g32 bf16")
        XCTAssertEqual(q["params"]?.int, 8 * 96)
    }

    /// Status 2 and one line on stderr naming the file and the tensor.
    func assertRefused(_ r: ProcessResult, file: String, tensor: String, _ what: String, line: UInt = #line) {
        XCTAssertEqual(r.status, 2, "\(what): \(r.stderr)", line: line)
        XCTAssertTrue(r.stderr.contains(file), "\(what): \(r.stderr)", line: line)
        XCTAssertTrue(r.stderr.contains(tensor), "\(what): \(r.stderr)", line: line)
        XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("Backtrace"), r.stderr, line: line)
    }

    func testBadCheckpointsExitTwoNamingFileAndTensor() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let layers = try Fixtures.mixedLayers()
        let any4Layer = layers[0]
        let parts = try Fixtures.parts(any4Layer)
        func write(_ name: String, _ entries: [SafeTensorsWriter.Entry], _ json: String) throws -> String {
            let path = dir + "/" + name
            try SafeTensorsWriter.write(entries, metadata: ["any4.version": "2", "any4.layers": json], to: path)
            return path
        }
        let good = Fixtures.layersJSON([any4Layer])
        let noLUT = try write("nolut.safetensors", parts.filter { !$0.name.hasSuffix(".lut") }, good)
        assertRefused(try any4("inspect", noLUT), file: noLUT, tensor: any4Layer.base + ".lut", "qweight without lut")
        let wide = try write("wide.safetensors", parts, good.replacingOccurrences(of: "[8, 96]", with: "[8, 98]"))
        assertRefused(try any4("inspect", wide), file: wide, tensor: any4Layer.base + ".qweight", "shape against metadata")
        let notObject = try write("array.safetensors", parts, "[\"x\"]")
        assertRefused(try any4("inspect", notObject), file: notObject, tensor: "any4.layers", "metadata not an object")
        let bigGroup = try write("group.safetensors", parts, good.replacingOccurrences(of: "\"group_size\": 32", with: "\"group_size\": 100000"))
        assertRefused(try any4("inspect", bigGroup), file: bigGroup, tensor: any4Layer.name, "group size over the limit")

        // Codes out of range (a 2-bit layer holding nibble 0xF): the engine's and quantizer's
        // reads refuse them; inspect --stats names them in the tensor's line.
        let two = try Fixtures.layer("c.weight", "any2", rows: 3, cols: 64, group: 32, dtype: .f32)
        var twoParts = try Fixtures.parts(two)
        twoParts[0].bytes[40] = 0xF0
        let codes = try write("codes.safetensors", twoParts, Fixtures.layersJSON([two]))
        assertRefused(
            try any4("quantize", codes, "--format", "int4", "--out", dir + "/out.safetensors"), file: codes, tensor: "c.qweight",
            "codes out of range")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out.safetensors"))
        let stats = try any4("inspect", codes, "--stats")
        XCTAssertTrue(stats.stdout.contains("code 15 at row 1, column 17 is out of range"), stats.stdout + stats.stderr)

        // A shard named by the index missing on disk; a tensor mapped to a shard that lacks it.
        let missing = dir + "/missing"
        try FileManager.default.createDirectory(atPath: missing, withIntermediateDirectories: true)
        try Fixtures.writeShardedFolder(missing, layers)
        try FileManager.default.removeItem(atPath: missing + "/model-00002-of-00002.safetensors")
        assertRefused(
            try any4("inspect", missing), file: missing + "/model.safetensors.index.json", tensor: "model-00002-of-00002.safetensors",
            "missing shard")
        let moved = dir + "/moved"
        try FileManager.default.createDirectory(atPath: moved, withIntermediateDirectories: true)
        try Fixtures.writeShardedFolder(moved, layers)
        let index = moved + "/model.safetensors.index.json"
        try String(contentsOfFile: index, encoding: .utf8)
            .replacingOccurrences(of: "\"\(any4Layer.base).lut\": \"model-00001", with: "\"\(any4Layer.base).lut\": \"model-00002")
            .write(toFile: index, atomically: true, encoding: .utf8)
        assertRefused(try any4("inspect", moved), file: index, tensor: any4Layer.base + ".lut", "tensor in another shard")
    }
}
