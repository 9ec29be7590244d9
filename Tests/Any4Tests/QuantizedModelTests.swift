import Any4Core
import Foundation
import TestSupport
import XCTest

/// An any4 checkpoint opened as a model: each quantized layer is one virtual tensor `X.weight`
/// [out, in] whose values are the dequantized layer. The files are written here, part by part,
/// independently of the checkpoint writer (version 2 metadata, mixed formats, groups and dtypes in
/// one file; version 1; a sharded folder with an index; a GGUF written by the `gguf` package).
final class QuantizedModelTests: XCTestCase {
    typealias Layer = QuantizedFixtures.Layer
    typealias Fixtures = QuantizedFixtures

    /// Every quantized layer of `model` is the written matrix: listed once as [out, in] with its
    /// description, decoded bit for bit as the matrix dequantizes, by rows too, and read back
    /// whole by `quantizedMatrix`.
    func assertLayers(_ layers: [Layer], in model: Model, _ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        for l in layers {
            let what = "\(label) \(l.name)"
            let t = try XCTUnwrap(model.tensor(named: l.name), what, file: file, line: line)
            XCTAssertEqual(t.shape, [l.q.rows, l.q.cols], what, file: file, line: line)
            XCTAssertTrue(t.isLinear, what, file: file, line: line)
            let layout = try XCTUnwrap(t.info.encoding.quantizedLayout, what, file: file, line: line)
            XCTAssertEqual(layout.format, l.q.formatName, what, file: file, line: line)
            XCTAssertEqual(layout.groupSize, l.q.groupSize, what, file: file, line: line)
            XCTAssertEqual(layout.dtype, l.dtype, what, file: file, line: line)
            // The dtype is shown where the layer stores floats (mxfp4 stores E8M0 bytes only).
            let floats = l.q.formatName == "mxfp4" ? "" : " " + l.dtype.rawValue.lowercased()
            XCTAssertEqual(t.info.encoding.description, "\(l.q.formatName) g\(l.q.groupSize)" + floats, what, file: file, line: line)
            XCTAssertEqual(t.info.elementCount, l.q.rows * l.q.cols, what, file: file, line: line)
            let partBytes = try Fixtures.parts(l).reduce(0) { $0 + $1.bytes.count }
            XCTAssertEqual(t.info.byteCount, partBytes, what, file: file, line: line)
            XCTAssertEqual(t.info.encoding.bitsPerElement, Double(partBytes * 8) / Double(l.q.rows * l.q.cols), what)
            let expected = l.q.dequantized()
            assertBitwiseEqual(try model.decode(t), expected, what + " decode", file: file, line: line)
            let rows = 1..<(l.q.rows - 1)
            assertBitwiseEqual(
                try model.decodeRows(t, rows: rows), Array(expected[(rows.lowerBound * l.q.cols)..<(rows.upperBound * l.q.cols)]),
                what + " decodeRows", file: file, line: line)
            let back = try XCTUnwrap(try model.quantizedMatrix(t), what, file: file, line: line)
            XCTAssertEqual(back.codes, l.q.codes, what, file: file, line: line)
            XCTAssertEqual(back.tables, l.q.tables, what, file: file, line: line)
            XCTAssertEqual(back.scales, l.q.scales, what, file: file, line: line)
            XCTAssertEqual(back.zeros, l.q.zeros, what, file: file, line: line)
            XCTAssertEqual(back.tensorScale, l.q.tensorScale, what, file: file, line: line)
            XCTAssertEqual(back.bitsPerWeight, l.q.bitsPerWeight, what, file: file, line: line)
            // Statistics read the dequantized values too.
            XCTAssertEqual(try TensorStats(of: t, in: model, chunkElements: 100), TensorStats(expected), what, file: file, line: line)
        }
    }

    func testVersion2FileWithMixedLayersOpensAsAModel() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let layers = try Fixtures.mixedLayers()
        let path = dir + "/mixed.safetensors"
        try Fixtures.writeVersion2(layers, to: path)
        let model = try Model.open(path)
        XCTAssertEqual(Set(model.tensors.map(\.name)), Set(layers.map(\.name) + ["model.norm.weight"]))
        let stored = try layers.flatMap(Fixtures.parts).map(\.name) + ["model.norm.weight"]
        XCTAssertEqual(Set(model.storedTensors.map(\.name)), Set(stored))
        XCTAssertEqual(model.storedTensors.count, stored.count)
        try assertLayers(layers, in: model, "v2")
        XCTAssertNil(try model.quantizedMatrix(try XCTUnwrap(model.tensor(named: "model.norm.weight"))))
        XCTAssertEqual(model.parameterCount, layers.reduce(96) { $0 + $1.q.rows * $1.q.cols })
        XCTAssertEqual(model.byteCount, model.storedTensors.reduce(0) { $0 + $1.info.byteCount })
        // The layers sit in their blocks, and a block counts logical parameters.
        let block0 = try XCTUnwrap(model.blocks.first { $0.name == "model.layers.0" })
        XCTAssertEqual(block0.parameters, 8 * 96 + 6 * 80)
        // The same image in memory.
        let image = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        try assertLayers(layers, in: try Model.inMemory(safetensors: image, name: "mem"), "in memory")
    }

    func testVersion1FileOpensAsAModel() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let layers = [
            try Fixtures.layer("a.weight", "nf4", rows: 4, cols: 64, group: 32, dtype: .bf16),
            try Fixtures.layer("b.weight", "nf4", rows: 3, cols: 100, group: 32, dtype: .bf16)
        ]
        let path = dir + "/v1.safetensors"
        try SafeTensorsWriter.write(
            try layers.flatMap(Fixtures.parts),
            metadata: [
                "any4.version": "1", "any4.format": "nf4", "any4.bits": "4", "any4.group_size": "32",
                "any4.layers": "{\"a.weight\": [4, 64], \"b.weight\": [3, 100]}"
            ], to: path)
        let model = try Model.open(path)
        XCTAssertEqual(model.tensors.map(\.name), ["a.weight", "b.weight"])
        try assertLayers(layers, in: model, "v1")
    }

    func testShardedFolderWithIndexOpensAsAModel() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let layers = try Fixtures.mixedLayers()
        try Fixtures.writeShardedFolder(dir, layers)
        let model = try Model.open(dir)
        XCTAssertEqual(model.format, .huggingFace)
        XCTAssertEqual(model.stores.count, 2)
        XCTAssertEqual(Set(model.tensors.map(\.name)), Set(layers.map(\.name) + ["model.norm.weight"]))
        try assertLayers(layers, in: model, "sharded")
        XCTAssertEqual(model.tensor(named: layers[2].name)?.fileIndex, 1)
    }

    func testGGUFWrittenByThePythonPackageOpensAsAModel() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let layers = try Fixtures.mixedLayers()
        try Fixtures.writeVersion2(layers, to: dir + "/mixed.safetensors")
        try Python.run(
            "quantized_checkpoint.py", ["gguf", dir + "/mixed.safetensors", dir + "/mixed.gguf"], modules: ["gguf", "safetensors", "numpy"])
        let model = try Model.open(dir + "/mixed.gguf")
        XCTAssertEqual(model.format, .gguf)
        XCTAssertEqual(Set(model.tensors.map(\.name)), Set(layers.map(\.name) + ["model.norm.weight"]))
        let qweight = try XCTUnwrap(model.storedTensors.first { $0.name == layers[0].base + ".qweight" })
        XCTAssertEqual(qweight.info.encoding, .ggml(.i8))
        try assertLayers(layers, in: model, "gguf")
    }

    /// Every stored tensor of a checkpoint, as the Python `safetensors` and `gguf` packages read it,
    /// is one we list, with the same shape, dtype and bytes; and the any4 metadata is the same.
    func testPythonPackagesReadEveryStoredTensorWeReport() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let layers = try Fixtures.mixedLayers()
        try Fixtures.writeVersion2(layers, to: dir + "/mixed.safetensors")
        try Python.run(
            "quantized_checkpoint.py", ["gguf", dir + "/mixed.safetensors", dir + "/mixed.gguf"], modules: ["gguf", "safetensors", "numpy"])
        for path in [dir + "/mixed.safetensors", dir + "/mixed.gguf"] {
            let model = try Model.open(path)
            let out = try Python.run("quantized_checkpoint.py", ["read", path], modules: ["gguf", "safetensors", "numpy"])
            let read = try JSONParser.parse(out, file: "python output")
            let tensors = try XCTUnwrap(read["tensors"]?.members, path)
            XCTAssertEqual(Set(tensors.map(\.key)), Set(model.storedTensors.map(\.name)), path)
            for t in model.storedTensors {
                let got = try XCTUnwrap(read["tensors"]?[t.name], "\(path) \(t.name)")
                XCTAssertEqual(got["shape"]?.array?.compactMap(\.int), t.shape, "\(path) \(t.name)")
                XCTAssertEqual(got["dtype"]?.string, t.info.encoding.description, "\(path) \(t.name)")
                let bytes = Array(model.stores[t.fileIndex].bytes[t.info.offset..<(t.info.offset + t.info.byteCount)])
                XCTAssertEqual(got["hex"]?.string, bytes.map { String(format: "%02x", $0) }.joined(), "\(path) \(t.name)")
            }
            XCTAssertEqual(read["metadata"]?["any4.layers"]?.string, Fixtures.layersJSON(layers), path)
            XCTAssertEqual(read["metadata"]?["any4.version"]?.string, "2", path)
        }
    }

    // MARK: - Bad checkpoints

    /// Opening (or decoding) throws a FileFormatError naming `file` and `subject`.
    func assertRefused(
        _ path: String, subject: String, _ message: String, decode: String? = nil,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            let model = try Model.open(path)
            guard let name = decode, let t = model.tensor(named: name) else {
                return XCTFail("opened \(path) without an error", file: file, line: line)
            }
            _ = try model.decodeRows(t, rows: 0..<1)
            XCTFail("decoded \(name) without an error", file: file, line: line)
        } catch let error as FileFormatError {
            XCTAssertEqual(error.subject, subject, "\(error)", file: file, line: line)
            XCTAssertTrue(error.file.hasSuffix(path.split(separator: "/").last.map(String.init) ?? ""), "\(error)", file: file, line: line)
            XCTAssertTrue(error.message.contains(message), "\(error)", file: file, line: line)
        } catch {
            XCTFail("unexpected \(error)", file: file, line: line)
        }
    }

    func testBadCheckpointsAreRefusedNamingFileAndTensor() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let layers = try Fixtures.mixedLayers()
        let any4 = layers[0]
        func write(_ name: String, _ entries: [SafeTensorsWriter.Entry], layers json: String) throws -> String {
            let path = dir + "/" + name
            try SafeTensorsWriter.write(entries, metadata: ["any4.version": "2", "any4.layers": json], to: path)
            return path
        }
        let good = try Fixtures.parts(any4)
        // A .qweight without its .lut (any-b).
        assertRefused(
            try write("nolut.safetensors", good.filter { !$0.name.hasSuffix(".lut") }, layers: Fixtures.layersJSON([any4])),
            subject: any4.base + ".lut", "missing tensor")
        // Shapes that disagree with the metadata: the layer declared one row more.
        var taller = any4
        taller.q = QuantizedMatrix(
            formatName: "any4", rows: 9, cols: 96, codeBits: 4, groupSize: 32, codes: [], tables: [], perRowTable: true,
            scales: [], zeros: [], tensorScale: 1, storage: .bf16, scaleBits: 16)
        assertRefused(
            try write("tall.safetensors", good, layers: Fixtures.layersJSON([taller])), subject: any4.base + ".qweight", "disagrees")
        // A group size whose groups disagree with the stored scales (64 instead of 32).
        let regrouped = Fixtures.layersJSON([any4]).replacingOccurrences(of: "\"group_size\": 32", with: "\"group_size\": 64")
        assertRefused(try write("group.safetensors", good, layers: regrouped), subject: any4.base + ".scales", "disagrees")
        // Group sizes out of limits: odd, zero, larger than the kernels take.
        for g in ["31", "0", "131072"] {
            let json = Fixtures.layersJSON([any4]).replacingOccurrences(of: "\"group_size\": 32", with: "\"group_size\": \(g)")
            assertRefused(try write("g\(g).safetensors", good, layers: json), subject: any4.name, "group size \(g)")
        }
        // Metadata JSON that is not an object.
        assertRefused(try write("array.safetensors", good, layers: "[1, 2]"), subject: "any4.layers", "not a JSON object")
        // A dtype that disagrees with the stored LUT.
        let f16 = Fixtures.layersJSON([any4]).replacingOccurrences(of: "\"dtype\": \"bf16\"", with: "\"dtype\": \"f16\"")
        assertRefused(try write("dtype.safetensors", good, layers: f16), subject: any4.base + ".lut", "any4.layers gives")
        // An unknown format; bits that are not the format's.
        let unknown = Fixtures.layersJSON([any4]).replacingOccurrences(of: "\"format\": \"any4\"", with: "\"format\": \"any5\"")
        assertRefused(try write("unknown.safetensors", good, layers: unknown), subject: any4.name, "unknown format")
        let bits = Fixtures.layersJSON([any4]).replacingOccurrences(of: "\"bits\": 4", with: "\"bits\": 3")
        assertRefused(try write("bits.safetensors", good, layers: bits), subject: any4.name, "do not match")
        // Codes out of range: a 2-bit layer whose packed nibbles hold 0xF.
        let two = try Fixtures.layer("c.weight", "any2", rows: 3, cols: 64, group: 32, dtype: .f32)
        var twoParts = try Fixtures.parts(two)
        twoParts[0].bytes[5] = 0xF3
        let path = try write("codes.safetensors", twoParts, layers: Fixtures.layersJSON([two]))
        assertRefused(path, subject: "c.qweight", "code 15 at row 0, column 11 is out of range", decode: "c.weight")
        let model = try Model.open(path)
        XCTAssertThrowsError(try model.quantizedMatrix(try XCTUnwrap(model.tensor(named: "c.weight"))))
        XCTAssertThrowsError(try model.decode(try XCTUnwrap(model.tensor(named: "c.weight"))))
    }

    func testBadShardedFoldersAreRefusedNamingFileAndTensor() throws {
        let layers = try Fixtures.mixedLayers()
        // A shard named by the index missing on disk.
        let missing = try TestPaths.temporaryDirectory(for: self)
        try Fixtures.writeShardedFolder(missing, layers)
        try FileManager.default.removeItem(atPath: missing + "/model-00002-of-00002.safetensors")
        XCTAssertThrowsError(try Model.open(missing)) { error in
            let e = error as? FileFormatError
            XCTAssertEqual(e?.file, missing + "/model.safetensors.index.json", "\(error)")
            XCTAssertTrue(e?.message.contains("model-00002-of-00002.safetensors") == true, "\(error)")
        }
        // A tensor the index maps to a shard that does not hold it.
        let moved = try TestPaths.temporaryDirectory(for: self)
        try Fixtures.writeShardedFolder(moved, layers)
        let index = moved + "/model.safetensors.index.json"
        let text = try String(contentsOfFile: index, encoding: .utf8).replacingOccurrences(
            of: "\"model.norm.weight\": \"model-00001-of-00002.safetensors\"",
            with: "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"")
        try text.write(toFile: index, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Model.open(moved)) { error in
            let e = error as? FileFormatError
            XCTAssertEqual(e?.file, index, "\(error)")
            XCTAssertEqual(e?.subject, "model.norm.weight", "\(error)")
            XCTAssertTrue(e?.message.contains("does not hold it") == true, "\(error)")
        }
        // Parts of one layer split across shards: the shard that declares it lacks a part.
        let split = try TestPaths.temporaryDirectory(for: self)
        try Fixtures.writeShardedFolder(split, layers)
        let first = split + "/model-00001-of-00002.safetensors"
        let parts = try Fixtures.parts(layers[0])
        try SafeTensorsWriter.write(
            parts.filter { !$0.name.hasSuffix(".scales") } + [Fixtures.norm],
            metadata: ["any4.version": "2", "any4.layers": Fixtures.layersJSON([layers[0]])], to: first)
        XCTAssertThrowsError(try Model.open(split)) { error in
            let e = error as? FileFormatError
            XCTAssertEqual(e?.subject, layers[0].base + ".scales", "\(error)")
        }
    }
}
