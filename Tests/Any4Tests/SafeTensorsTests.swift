import Any4Core
import Foundation
import TestSupport
import XCTest

final class SafeTensorsTests: XCTestCase {
    /// A file image from a raw header text and `dataSize` bytes of data.
    func image(_ header: String, dataSize: Int) -> [UInt8] {
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) } + Array(header.utf8)
            + [UInt8](repeating: 0, count: dataSize)
    }

    func error(_ header: String, dataSize: Int) -> FileFormatError? {
        do {
            _ = try SafeTensorsFile(store: ByteStore(copying: image(header, dataSize: dataSize), name: "t.safetensors"))
            return nil
        } catch { return error as? FileFormatError }
    }

    func testLyingHeadersAreNamed() {
        let ok = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        XCTAssertNil(error(ok, dataSize: 8))
        let cases: [(String, Int, FileFormatError.Kind, String)] = [
            (#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8, .badShape, "needs 12 bytes"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}"#, 8, .badOffset, "past the data area"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, 8, .badOffset, "ordered pair"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 12, .badOffset, "file holds 12"),
            (
                #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}"#, 6, .badOffset,
                "overlaps"
            ),
            (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#, 12, .badOffset, "gap"),
            (#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#, 8, .unknownType, "unknown dtype"),
            (#"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, 8, .badShape, "non-negative integer"),
            (#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}}"#, 8, .badShape, "overflows"),
            (
                #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}}"#, 8, .badHeader,
                "duplicate key"
            ),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}"#, 8, .badHeader, "unknown field"),
            (#"{"__metadata__":{"k":1}}"#, 0, .badHeader, "not a string"),
            (#"[1,2]"#, 0, .badHeader, "not a JSON object"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#, 8, .badHeader, "unterminated object"),
            ("{\"a\u{1}\":1}", 0, .badHeader, "control character")
        ]
        for (header, size, kind, fragment) in cases {
            let e = error(header, dataSize: size)
            XCTAssertEqual(e?.kind, kind, header)
            XCTAssertTrue(e?.description.contains(fragment) ?? false, "\(header): \(e?.description ?? "no error")")
            XCTAssertTrue(e?.description.hasPrefix("t.safetensors: ") ?? false, "names the file")
        }
        // Invalid UTF-8 in the header.
        var bad = image(#"{"a":1}"#, dataSize: 0)
        bad[10] = 0xFF
        XCTAssertThrowsError(try SafeTensorsFile(store: ByteStore(copying: bad, name: "u"))) {
            XCTAssertEqual(($0 as? FileFormatError)?.kind, .badHeader)
        }
    }

    func testWriterRoundTripAndAlignment() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let values: [Float] = (0..<35).map { Float($0) * 0.37 - 3 }
        let entries: [SafeTensorsWriter.Entry] = [
            .init(name: "w", shape: [5, 7], floats: values),
            .init(name: "h", shape: [35], floats: values, as: .f16),
            .init(name: "b", shape: [35], floats: values, as: .bf16)
        ]
        try SafeTensorsWriter.write(entries, metadata: ["x": "y"], to: dir + "/m.safetensors")
        let file = try SafeTensorsFile(path: dir + "/m.safetensors")
        XCTAssertEqual(file.headerLength % 8, 0)
        XCTAssertEqual(file.metadata, ["x": "y"])
        XCTAssertEqual(file.tensors.map(\.name), ["w", "b", "h"], "descending dtype size, then name")
        XCTAssertEqual(file.tensor(named: "w")!.decodeAll(from: file.store), values)
        XCTAssertEqual(file.tensor(named: "h")!.decodeAll(from: file.store), values.map { Float(Float16($0)) })
        let bf = file.tensor(named: "b")!.decodeAll(from: file.store)
        for (a, b) in zip(bf, values) { XCTAssertEqual(a, b, accuracy: abs(b) / 128 + 1e-6) }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["m.safetensors"], "no temp file left")
    }

    func testFailedWriteLeavesNoFileAndKeepsTheOldOne() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let path = dir + "/m.safetensors"
        try SafeTensorsWriter.write([.init(name: "a", shape: [1], floats: [1])], to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        // A shape that does not match the bytes is refused before anything is written.
        XCTAssertThrowsError(try SafeTensorsWriter.write([.init(name: "a", dtype: .f32, shape: [3], bytes: [0, 0])], to: path))
        // An abandoned writer removes its temporary file.
        let writer = try AtomicFileWriter(path: path)
        try writer.write([1, 2, 3])
        writer.abandon()
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["m.safetensors"])
    }

    func testBFloat16Rounding() {
        XCTAssertEqual(bfloat16Bits(1), 0x3F80)
        XCTAssertEqual(bfloat16Bits(Float(bitPattern: 0x3F80_8000)), 0x3F80, "tie to even (down)")
        XCTAssertEqual(bfloat16Bits(Float(bitPattern: 0x3F81_8000)), 0x3F82, "tie to even (up)")
        XCTAssertEqual(bfloat16Bits(Float(bitPattern: 0x3F80_8001)), 0x3F81)
        XCTAssertTrue(Float(bitPattern: UInt32(bfloat16Bits(.nan)) << 16).isNaN)
        XCTAssertEqual(bfloat16Bits(.infinity), 0x7F80)
    }

    /// A file declaring 20 GB of tensors, made sparse with ftruncate: opening reads the header only.
    func testSparseTwentyGigabyteFileOpensWithoutReadingData() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let path = try makeSparseTwentyGigabyteFile(in: dir)
        let model = try Model.open(path)
        XCTAssertEqual(model.byteCount, 20 * 1024 * 1024 * 1024)
        XCTAssertEqual(model.tensors.filter(\.isLinear).count, 40)
    }
}

/// Writes `big.safetensors`: 40 F16 linear weights of 16384 × 16384 (20 GiB) declared in the
/// header, the data left as a hole by ftruncate.
func makeSparseTwentyGigabyteFile(in dir: String) throws -> String {
    var members: [(key: String, value: JSONValue)] = []
    let bytesEach = 16384 * 16384 * 2
    for i in 0..<40 {
        members.append(
            (
                "model.layers.\(i / 4).mlp.proj\(i % 4).weight",
                .object([
                    ("dtype", .string("F16")), ("shape", .array([JSONValue(16384), JSONValue(16384)])),
                    ("data_offsets", .array([JSONValue(i * bytesEach), JSONValue((i + 1) * bytesEach)]))
                ])
            ))
    }
    var header = Array(JSONValue.object(members).serialized.utf8)
    while header.count % 8 != 0 { header.append(0x20) }
    let path = dir + "/big.safetensors"
    let prefix = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) } + header
    _ = FileManager.default.createFile(atPath: path, contents: Data(prefix))
    guard truncate(path, off_t(prefix.count + 40 * bytesEach)) == 0 else {
        throw XCTSkip("cannot make a sparse file here")
    }
    return path
}
