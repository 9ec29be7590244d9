import Any4Core
import Foundation
import TestSupport
import XCTest

/// The checkpoint writers' parts: GGUF round trip, sizes, shard packing.
final class CheckpointWriterTests: XCTestCase {
    func testByteSizes() {
        let cases: [(String, Int?)] = [
            ("5GB", 5_000_000_000), ("500MB", 500_000_000), ("2GiB", 2_147_483_648), ("123", 123), ("1.5k", 1500),
            ("10 kib", 10240), ("7b", 7), ("1TB", 1_000_000_000_000), ("", nil), ("0", nil), ("GB", nil), ("5 parsecs", nil),
            ("1.2.3MB", nil), ("-5", nil), ("99999999999TB", nil)
        ]
        for (text, bytes) in cases { XCTAssertEqual(QuantizedCheckpoint.parseByteSize(text), bytes, text) }
    }

    /// Every value type (nested arrays, strings, extremes) and tensors of block and plain types
    /// come back from GGUFFile as written, at aligned offsets.
    func testGGUFWriterRoundTrip() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let metadata: [(key: String, value: GGUFValue)] = [
            ("general.architecture", .string("llama")), ("general.alignment", .uint32(64)),
            ("u8", .uint8(200)), ("i8", .int8(-100)), ("u16", .uint16(60000)), ("i16", .int16(-30000)),
            ("u32", .uint32(4_000_000_000)), ("i32", .int32(-2_000_000_000)), ("f32", .float32(-0.15625)),
            ("bool", .bool(true)), ("s", .string("héllo \"x\"")), ("u64", .uint64(1 << 63 + 5)), ("i64", .int64(-(1 << 62))),
            ("f64", .float64(2.718281828459045)),
            ("tokens", .array(elementType: 8, ["a", "b c", ""].map { .string($0) })),
            ("scores", .array(elementType: 6, [.float32(1.5), .float32(-0)])),
            ("nested", .array(elementType: 9, [.array(elementType: 5, [.int32(1), .int32(2)]), .array(elementType: 5, [])]))
        ]
        let block = (0..<40).map { UInt8($0) }  // 2 Q4_1 blocks: 64 elements
        let floats = SafeTensorsWriter.Entry(name: "f", shape: [2, 3], floats: [1, 2, 3, 4, 5, 6], as: .f16).bytes
        let tensors: [GGUFWriter.Tensor] = [
            .init(name: "blocks", shape: [1, 64], type: .q4_1, byteCount: 40) { .bytes(block) },
            .init(name: "half", shape: [2, 3], type: .f16, byteCount: 12) { .bytes(floats) },
            .init(name: "codes", shape: [3], type: .i8, byteCount: 3) { .bytes([1, 2, 255]) }
        ]
        let path = dir + "/t.gguf"
        let progress = Progress(total: 0)
        try GGUFWriter.write(metadata: metadata, tensors: tensors, to: path, progress: progress)
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        XCTAssertEqual(size, try GGUFWriter.fileSize(metadata: metadata, tensors: tensors, file: path))
        XCTAssertEqual(progress.completed, size, "progress counts every byte")
        let file = try GGUFFile(path: path)
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(file.alignment, 64)
        XCTAssertEqual(file.metadata.map(\.key), metadata.map(\.key))
        for (a, b) in zip(file.metadata, metadata) { XCTAssertEqual(a.value, b.value, a.key) }
        XCTAssertEqual(file.tensors.map(\.name), ["blocks", "half", "codes"])
        XCTAssertEqual(file.tensors.map(\.shape), [[1, 64], [2, 3], [3]])
        XCTAssertEqual(file.tensors.map(\.encoding), [.ggml(.q4_1), .ggml(.f16), .ggml(.i8)])
        for t in file.tensors { XCTAssertEqual((t.offset - file.dataOffset) % 64, 0, t.name) }
        XCTAssertEqual(Array(file.store.bytes[file.tensors[0].offset..<(file.tensors[0].offset + 40)]), block)
        XCTAssertEqual(file.tensors[1].decodeAll(from: file.store), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(file.tensors[2].decodeAll(from: file.store), [1, 2, -1])

        // A shape that does not match the bytes is refused, naming the tensor, and nothing is written.
        let bad: [GGUFWriter.Tensor] = [.init(name: "odd", shape: [1, 33], type: .q4_1, byteCount: 20) { .bytes([]) }]
        XCTAssertThrowsError(try GGUFWriter.write(metadata: [], tensors: bad, to: dir + "/bad.gguf", progress: nil)) {
            XCTAssertEqual(($0 as? FileFormatError)?.subject, "odd")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad.gguf"))
    }

    /// Streaming safetensors: the file equals the one-shot writer's, and a payload of the wrong
    /// size is an error naming the tensor (nothing written).
    func testPlannedSafetensorsMatchesTheImage() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let entries: [SafeTensorsWriter.Entry] = [
            .init(name: "b", shape: [2], floats: [1, 2], as: .bf16), .init(name: "a", shape: [3], floats: [1, 2, 3]),
            .init(name: "c", dtype: .u8, shape: [4], bytes: [9, 8, 7, 6])
        ]
        let path = dir + "/s.safetensors"
        try SafeTensorsWriter.write(planned: entries.map(SafeTensorsWriter.Planned.init), metadata: ["k": "v"], to: path, progress: nil)
        XCTAssertEqual(FileManager.default.contents(atPath: path).map(Array.init), try SafeTensorsWriter.image(entries, metadata: ["k": "v"]))
        let wrong = SafeTensorsWriter.Planned(name: "w", dtype: .f32, shape: [2], byteCount: 8) { .bytes([0, 0, 0, 0]) }
        XCTAssertThrowsError(try SafeTensorsWriter.write(planned: [wrong], metadata: [:], to: dir + "/w.safetensors", progress: nil)) {
            XCTAssertEqual(($0 as? FileFormatError)?.subject, "w")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/w.safetensors"))
    }

    /// Shards: a layer's parts stay together, each shard's real file size is within the limit
    /// unless one unit alone is larger, which then has a shard of its own.
    func testShardPackingStaysWithinTheLimit() throws {
        func unit(_ name: String, _ sizes: [Int], layer: Bool) -> QuantizedCheckpoint.Unit {
            QuantizedCheckpoint.Unit(
                entries: sizes.enumerated().map { i, n in
                    SafeTensorsWriter.Planned(name: "\(name).p\(i)", dtype: .u8, shape: [n], byteCount: n) { .bytes([UInt8](repeating: 0, count: n)) }
                }, layer: layer ? (name + ".weight", .object([("shape", .array([JSONValue(1), JSONValue(2)]))])) : nil)
        }
        var units: [QuantizedCheckpoint.Unit] = []
        for i in 0..<30 { units.append(unit("model.layers.\(i).mlp", [300, 40 + i, 7], layer: i % 2 == 0)) }
        units.insert(unit("huge", [5000], layer: false), at: 10)
        let metadata = ["any4.version": "2", "any4.fake_quant": "0", "any4.format": "any4"]
        let limit = 2000
        let shards = try QuantizedCheckpoint.shards(units, limit: limit, baseMetadata: metadata, fakeQuant: false)
        XCTAssertGreaterThan(shards.count, 5)
        XCTAssertEqual(shards.flatMap(\.units).map { $0.entries[0].name }, units.map { $0.entries[0].name }, "order and every unit kept")
        func size(_ units: [QuantizedCheckpoint.Unit]) throws -> Int {
            var m = metadata
            m["any4.layers"] = JSONValue.object(units.compactMap(\.layer)).serialized
            return try SafeTensorsWriter.fileSize(units.flatMap(\.entries), metadata: m, file: "t")
        }
        for (i, shard) in shards.enumerated() {
            if shard.units.count == 1 && shard.units[0].bytes > limit {
                XCTAssertEqual(shard.units[0].entries[0].name, "huge.p0")
            } else {
                XCTAssertLessThanOrEqual(try size(shard.units), limit)
            }
            // Packed: the next unit would not have fitted, but for the header estimate's slack
            // (data offsets counted at their widest, the padding).
            if i + 1 < shards.count {
                XCTAssertGreaterThan(try size(shard.units + [shards[i + 1].units[0]]), limit - 64, "shard \(i)")
            }
        }
    }
}
