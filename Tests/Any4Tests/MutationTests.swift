import Any4Core
import Foundation
import TestSupport
import XCTest

/// Damaged files: truncations at structural boundaries, byte flips in headers, lying lengths,
/// offsets and counts, absurd sizes. Every case must end in a thrown FileFormatError (or, for a
/// flip that leaves the file valid, a successful parse) — never a crash or a hang.
final class MutationTests: XCTestCase {
    /// Parses `store` as `kind`; returns the error kind, or nil if it parsed.
    func outcome(_ store: ByteStore, gguf: Bool) -> FileFormatError.Kind? {
        do {
            if gguf { _ = try GGUFFile(store: store) } else { _ = try SafeTensorsFile(store: store) }
            return nil
        } catch let error as FileFormatError {
            XCTAssertFalse(error.description.isEmpty)
            return error.kind
        } catch {
            XCTFail("untyped error \(error)")
            return .io
        }
    }

    // MARK: - Real headers

    func testTruncatedMiniLMAlwaysThrows() throws {
        let path = try TestPaths.requireModel(TestPaths.miniLM) + "/model.safetensors"
        let store = try ByteStore(mapping: path)
        let file = try SafeTensorsFile(store: store)
        let headerEnd = 8 + file.headerLength
        var cuts = Array(0...16) + Array(stride(from: 17, to: headerEnd, by: 97)) + [headerEnd - 1, headerEnd]
        for t in file.tensors { cuts += [t.offset, t.offset + 1, t.offset + t.byteCount - 1] }
        for cut in Set(cuts) where cut < store.count {
            XCTAssertNotNil(outcome(store.prefix(cut), gguf: false), "truncated at \(cut) parsed")
        }
    }

    func testMiniLMHeaderByteFlipsNeverCrash() throws {
        let path = try TestPaths.requireModel(TestPaths.miniLM) + "/model.safetensors"
        let store = try ByteStore(mapping: path, copyOnWrite: true)
        let headerEnd = 8 + (try SafeTensorsFile(store: store)).headerLength
        let bytes = UnsafeMutableRawBufferPointer(mutating: store.bytes)
        var rng = SplitMix64(seed: 11)
        var failures = 0
        for position in Array(0..<8) + (0..<600).map({ _ in 8 + Int(rng.next() % UInt64(headerEnd - 8)) }) {
            let original = bytes[position]
            for flip: UInt8 in [0x01, 0x80, 0xFF] where !(position < 8 && flip == 0x80 && position == 7) {
                bytes[position] = original ^ flip
                if outcome(store, gguf: false) != nil { failures += 1 }
            }
            bytes[position] = original
        }
        XCTAssertGreaterThan(failures, 600, "most flips must be detected")
        XCTAssertNil(outcome(store, gguf: false), "restored file parses again")
    }

    func testMiniLMLyingOffsetsAndShapes() throws {
        let path = try TestPaths.requireModel(TestPaths.miniLM) + "/model.safetensors"
        let store = try ByteStore(mapping: path)
        let file = try SafeTensorsFile(store: store)
        let header = String(decoding: UnsafeRawBufferPointer(rebasing: store.bytes[8..<(8 + file.headerLength)]), as: UTF8.self)
        let data = Array(UnsafeRawBufferPointer(rebasing: store.bytes[(8 + file.headerLength)...]).prefix(0))
        let target = "\"pooler.dense.bias\":{\"dtype\":\"F32\",\"shape\":[384],\"data_offsets\":["
        guard let range = header.range(of: target) else { throw XCTSkip("unexpected header layout") }
        let cases: [(String, String, FileFormatError.Kind)] = [
            ("shape [384]", "\"shape\":[385]", .badShape),
            ("shape [384]", "\"shape\":[-1]", .badShape),
            ("shape [384]", "\"shape\":[9223372036854775807,2]", .badShape),
            ("dtype", "\"dtype\":\"F33\"", .unknownType)
        ]
        for (label, replacement, kind) in cases {
            var mutated = header
            let entry = header[range]
            let fixed =
                label == "dtype"
                ? entry.replacingOccurrences(of: "\"dtype\":\"F32\"", with: replacement)
                : entry.replacingOccurrences(of: "\"shape\":[384]", with: replacement)
            mutated.replaceSubrange(range, with: fixed)
            let image = rebuilt(header: mutated, data: data, dataSize: store.count - 8 - file.headerLength)
            XCTAssertEqual(outcome(ByteStore(copying: image, name: "lying.safetensors"), gguf: false), kind, label + " → " + replacement)
        }
        // Header length larger than the file, and absurd.
        var bytes = Array(store.bytes.prefix(8 + file.headerLength))
        withUnsafeBytes(of: UInt64(bytes.count + 1).littleEndian) { for i in 0..<8 { bytes[i] = $0[i] } }
        XCTAssertEqual(outcome(ByteStore(copying: bytes, name: "x"), gguf: false), .truncated)
        withUnsafeBytes(of: UInt64.max.littleEndian) { for i in 0..<8 { bytes[i] = $0[i] } }
        XCTAssertEqual(outcome(ByteStore(copying: bytes, name: "x"), gguf: false), .tooLarge)
    }

    /// A safetensors image with `header` (padded) followed by `dataSize` zero bytes.
    func rebuilt(header: String, data: [UInt8], dataSize: Int) -> [UInt8] {
        var h = Array(header.utf8)
        while h.count % 8 != 0 { h.append(0x20) }
        var out = withUnsafeBytes(of: UInt64(h.count).littleEndian) { Array($0) } + h
        out += [UInt8](repeating: 0, count: dataSize)
        return out
    }

    func testTruncatedSmolLM2AlwaysThrows() throws {
        let path = try TestPaths.requireModel(TestPaths.smolLM2)
        let store = try ByteStore(mapping: path)
        let file = try GGUFFile(store: store)
        var cuts = Array(0...40) + Array(stride(from: 41, to: file.dataOffset, by: 65537)) + [file.dataOffset - 1]
        // The tensor-info section: every field boundary of the first and the last tensor info.
        let infoStart = tensorInfoStart(store)
        var c = ByteCursor(store.bytes, file: path, offset: infoStart)
        for index in 0..<file.tensors.count {
            let keep = index == 0 || index == file.tensors.count - 1
            let start = c.offset
            let length = Int(try c.read(UInt64.self, for: "name"))
            try c.skip(length, for: "name")
            let afterName = c.offset
            let dims = Int(try c.read(UInt32.self, for: "dims"))
            try c.skip(8 * dims, for: "dims")
            let afterDims = c.offset
            try c.skip(4, for: "type")
            let afterType = c.offset
            try c.skip(8, for: "offset")
            if keep { cuts += [start, start + 4, afterName - 1, afterName, afterName + 2, afterDims, afterType, c.offset - 1] }
        }
        for t in file.tensors.prefix(3) + file.tensors.suffix(3) { cuts += [t.offset, t.offset + t.byteCount - 1] }
        for cut in Set(cuts) where cut < store.count {
            XCTAssertNotNil(outcome(store.prefix(cut), gguf: true), "truncated at \(cut) parsed")
        }
    }

    /// Offset of the first tensor info: after the 24-byte header and every metadata KV.
    func tensorInfoStart(_ store: ByteStore) -> Int {
        var c = ByteCursor(store.bytes, file: "", offset: 16)
        let kvs = try! c.read(UInt64.self, for: "")
        for _ in 0..<kvs {
            _ = try! GGUFFile.readString(&c, for: "")
            let type = try! c.read(UInt32.self, for: "")
            _ = try! GGUFFile.readValue(&c, type: type, typeOffset: 0, key: "", depth: 0)
        }
        return c.offset
    }

    func testSmolLM2LyingCountsAndOffsets() throws {
        let path = try TestPaths.requireModel(TestPaths.smolLM2)
        let store = try ByteStore(mapping: path, copyOnWrite: true)
        let bytes = UnsafeMutableRawBufferPointer(mutating: store.bytes)
        func with<T: FixedWidthInteger>(_ value: T, at offset: Int, expect kinds: Set<FileFormatError.Kind>, _ label: String) {
            let saved = Array(bytes[offset..<(offset + MemoryLayout<T>.size)])
            bytes.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
            let got = outcome(store, gguf: true)
            XCTAssertTrue(got.map { kinds.contains($0) } ?? false, "\(label): got \(String(describing: got))")
            for (i, b) in saved.enumerated() { bytes[offset + i] = b }
        }
        let everything: Set<FileFormatError.Kind> = [.truncated, .badHeader, .badShape, .badOffset, .tooLarge, .unknownType, .unsupported, .badMagic]
        with(UInt64.max, at: 8, expect: [.badShape], "tensor count")
        with(UInt64(1) << 40, at: 16, expect: [.badShape], "metadata count")
        with(UInt64(1) << 40, at: 24, expect: [.tooLarge], "first key length")
        with(
            UInt32(99), at: 8 + 16 + 8 + Int(store.bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self)), expect: [.unknownType],
            "first value type")
        with(UInt32(0), at: 0, expect: [.badMagic], "magic")
        with(UInt32(7), at: 4, expect: [.unsupported], "version")
        // The first tensor info: rank, a dimension, the type and the offset.
        let info = tensorInfoStart(store)
        let nameLength = Int(store.bytes.loadUnaligned(fromByteOffset: info, as: UInt64.self))
        let rankAt = info + 8 + nameLength
        with(UInt32(0), at: rankAt, expect: [.badShape], "rank 0")
        with(UInt32(5), at: rankAt, expect: [.badShape], "rank 5")
        with(UInt64.max, at: rankAt + 4, expect: [.badShape], "dimension 2^64-1")
        with(UInt64(1) << 40, at: rankAt + 4, expect: everything.subtracting([.tooLarge]), "dimension 2^40")
        with(UInt64(33), at: rankAt + 4, expect: [.badShape], "row length not a block multiple")
        let rank = Int(store.bytes.loadUnaligned(fromByteOffset: rankAt, as: UInt32.self))
        let typeAt = rankAt + 4 + 8 * rank
        with(UInt32(1000), at: typeAt, expect: [.unknownType], "type id")
        with(UInt64(1) << 50, at: typeAt + 4, expect: [.badOffset], "offset past the end")
        with(UInt64(3), at: typeAt + 4, expect: [.badOffset], "misaligned offset")
        XCTAssertNil(outcome(store, gguf: true), "restored file parses again")
    }

    // MARK: - Small files, exhaustively

    func testEveryTruncationAndFlipOfASmallGGUF() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        try Python.run("gguf_fixtures.py", [dir], modules: ["gguf", "numpy"])
        let original = try ByteStore(mapping: dir + "/blocks.gguf")
        let file = try GGUFFile(store: original)
        let image = Array(original.bytes)
        for cut in 0..<file.dataOffset {
            XCTAssertNotNil(outcome(original.prefix(cut), gguf: true), "cut at \(cut)")
        }
        var mutated = image
        for position in 0..<file.dataOffset {
            for flip: UInt8 in [0x01, 0x10, 0xFF] {
                mutated[position] ^= flip
                _ = outcome(ByteStore(copying: mutated, name: "flip.gguf"), gguf: true)
                mutated[position] = image[position]
            }
        }
    }

    func testEveryTruncationAndFlipOfASmallSafetensors() throws {
        let entries: [SafeTensorsWriter.Entry] = [
            .init(name: "a", shape: [2, 3], floats: [1, 2, 3, 4, 5, 6]),
            .init(name: "b", shape: [4], floats: [1, 2, 3, 4], as: .bf16),
            .init(name: "c", dtype: .bool, shape: [], bytes: [1])
        ]
        let image = try SafeTensorsWriter.image(entries, metadata: ["k": "v"])
        let store = ByteStore(copying: image, name: "small.safetensors")
        XCTAssertNil(outcome(store, gguf: false))
        for cut in 0..<image.count { XCTAssertNotNil(outcome(store.prefix(cut), gguf: false), "cut at \(cut)") }
        var mutated = image
        for position in image.indices {
            for flip: UInt8 in [0x01, 0x20, 0x80] {
                mutated[position] ^= flip
                _ = outcome(ByteStore(copying: mutated, name: "flip.safetensors"), gguf: false)
                mutated[position] = image[position]
            }
        }
    }
}

extension MutationTests {
    /// Found by the fuzzer: dims [0, 2^40, 2^40] in GGUF order become [2^40, 2^40, 0] outermost
    /// first; counting elements must not overflow on the way to the zero.
    func testZeroSizedTensorWithHugeDimensions() throws {
        var bytes: [UInt8] = Array("GGUF".utf8) + [3, 0, 0, 0]
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        u64(1)
        u64(0)  // one tensor, no metadata
        u64(1)
        bytes += Array("t".utf8)
        u32(3)
        u64(0)
        u64(1 << 40)
        u64(1 << 40)
        u32(0)
        u64(0)
        while bytes.count % 32 != 0 { bytes.append(0) }
        let store = ByteStore(copying: bytes, name: "zero.gguf")
        let file = try GGUFFile(store: store)
        XCTAssertEqual(file.tensors[0].shape, [1 << 40, 1 << 40, 0])
        XCTAssertEqual(file.tensors[0].elementCount, 0)
        XCTAssertEqual(file.tensors[0].rowCount, 0)
        let model = try Model.open(
            try { () throws -> String in
                let dir = try TestPaths.temporaryDirectory(for: self)
                _ = FileManager.default.createFile(atPath: dir + "/zero.gguf", contents: Data(bytes))
                return dir + "/zero.gguf"
            }())
        XCTAssertEqual(model.parameterCount, 0)
        XCTAssertEqual(try model.decode(model.tensors[0]), [])
    }
}
