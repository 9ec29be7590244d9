import Any4Core
import Foundation
import TestSupport
import XCTest

/// Files written by the PyPI `safetensors` and `gguf` packages, read here; and files written here,
/// read by them. Values must agree bit for bit.
final class CrossCheckTests: XCTestCase {
    // MARK: - safetensors

    func testReadsEveryDTypeWrittenByPythonSafetensors() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        try Python.run("safetensors_fixtures.py", ["write", dir], modules: ["safetensors", "numpy"])
        let file = try SafeTensorsFile(path: dir + "/all_dtypes.safetensors")
        let expected = try readJSONFile(dir + "/expected.json")
        XCTAssertEqual(file.metadata, ["made_by": "safetensors-py", "note": "üñí"])
        let names = Set(expected.members!.map(\.key))
        XCTAssertEqual(Set(file.tensors.map(\.name)), names)
        var seenDTypes = Set<String>()
        for (name, spec) in expected.members! {
            let info = try XCTUnwrap(file.tensor(named: name))
            XCTAssertEqual(info.encoding.description, spec["dtype"]!.string!, name)
            XCTAssertEqual(info.shape, spec["shape"]!.array!.map { $0.int! }, name)
            let raw = hexBytes(spec["hex"]!.string!)
            XCTAssertEqual(Array(file.data(of: info)), raw, "\(name): raw bytes")
            seenDTypes.insert(info.encoding.description)
            // Decoded values equal an independent decoding of the same bytes.
            guard case .plain(let dtype) = info.encoding else { continue }
            let decoded = info.decodeAll(from: file.store)
            assertBitwiseEqual(decoded, independentDecode(raw, dtype), name)
        }
        XCTAssertEqual(seenDTypes, ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"])
    }

    func testPythonSafetensorsReadsWhatWeWrite() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let path = dir + "/ours.safetensors"
        let floats: [Float] = [1.5, -0.0, .infinity, 3.25e-5, -7, 65504, 1e-8, .nan]
        let entries: [SafeTensorsWriter.Entry] = [
            .init(name: "a.f32", shape: [2, 4], floats: floats, as: .f32),
            .init(name: "b.f16", shape: [8], floats: floats, as: .f16),
            .init(name: "c.u8", dtype: .u8, shape: [3], bytes: [1, 2, 255]),
            .init(name: "d.i64", dtype: .i64, shape: [1], bytes: withUnsafeBytes(of: Int64(-5).littleEndian) { Array($0) }),
            .init(name: "e.empty", dtype: .f32, shape: [0], bytes: [])
        ]
        try SafeTensorsWriter.write(entries, metadata: ["format": "any4", "quote": "a \"b\" \\ c"], to: path)
        let out = try Python.run("safetensors_fixtures.py", ["read", path], modules: ["safetensors", "numpy"])
        let read = try JSONParser.parse(out, file: "python output")
        XCTAssertEqual(read["__metadata__"]?["format"]?.string, "any4")
        XCTAssertEqual(read["__metadata__"]?["quote"]?.string, "a \"b\" \\ c")
        for entry in entries {
            let got = try XCTUnwrap(read[entry.name], entry.name)
            XCTAssertEqual(got["dtype"]?.string, entry.dtype.rawValue)
            XCTAssertEqual(got["shape"]?.array?.map { $0.int! }, entry.shape)
            XCTAssertEqual(hexBytes(got["hex"]!.string!), entry.bytes, entry.name)
        }
        // And our own reader agrees, with the header padded to 8 bytes.
        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(file.headerLength % 8, 0)
        XCTAssertEqual(file.tensors.count, entries.count)
    }

    // MARK: - GGUF

    func testReadsEveryBlockTypeWrittenByPythonGGUF() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        try Python.run("gguf_fixtures.py", [dir], modules: ["gguf", "numpy"])
        let file = try GGUFFile(path: dir + "/blocks.gguf")
        XCTAssertEqual(file.version, 3)
        let tensors = try readJSONFile(dir + "/tensors.json")
        XCTAssertEqual(file.tensors.map(\.name), tensors.members!.map(\.key), "tensor order")
        var types = Set<String>()
        for (name, spec) in tensors.members! {
            let info = try XCTUnwrap(file.tensor(named: name))
            XCTAssertEqual(info.encoding.description, spec["type"]!.string!, name)
            XCTAssertEqual(info.shape, spec["shape"]!.array!.map { $0.int! }, "\(name): shape [out, in]")
            XCTAssertEqual(info.offset, spec["offset"]!.int!, "\(name): data offset")
            let expected = try readFloat32File(dir + "/\(name).f32")
            assertBitwiseEqual(info.decodeAll(from: file.store), expected, "\(name) vs gguf.quants.dequantize")
            // Row-range decoding agrees with whole-tensor decoding.
            assertBitwiseEqual(info.decodeRows(from: file.store, rows: 1..<3), Array(expected[info.rowLength...]), "\(name) rows 1..<3")
            types.insert(info.encoding.description)
        }
        XCTAssertEqual(
            types,
            [
                "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "MXFP4",
                "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL"
            ])
    }

    func testGGUFMetadataOfEveryValueType() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        try Python.run("gguf_fixtures.py", [dir], modules: ["gguf", "numpy"])
        let file = try GGUFFile(path: dir + "/blocks.gguf")
        let expected = try readJSONFile(dir + "/metadata.json")
        XCTAssertEqual(file.metadata.map(\.key), expected.members!.map(\.key), "key order")
        XCTAssertEqual(file.value("test.u8"), .uint8(200))
        XCTAssertEqual(file.value("test.i8"), .int8(-100))
        XCTAssertEqual(file.value("test.u16"), .uint16(60000))
        XCTAssertEqual(file.value("test.i16"), .int16(-30000))
        XCTAssertEqual(file.value("test.u32"), .uint32(4_000_000_000))
        XCTAssertEqual(file.value("test.i32"), .int32(-2_000_000_000))
        XCTAssertEqual(file.value("test.f32"), .float32(0.15625))
        XCTAssertEqual(file.value("test.u64"), .uint64(1 << 63 + 5))
        XCTAssertEqual(file.value("test.i64"), .int64(-(1 << 62)))
        XCTAssertEqual(file.value("test.f64"), .float64(2.718281828459045))
        XCTAssertEqual(file.value("test.bool"), .bool(true))
        XCTAssertEqual(file.value("test.string"), .string("héllo, wörld ✓"))
        XCTAssertEqual(file.value("test.strings")?.array?.compactMap(\.string), ["a", "bc", "", "日本"])
        XCTAssertEqual(file.value("test.ints")?.array?.compactMap(\.int), [1, -2, 3])
        let nested = try XCTUnwrap(file.value("test.nested")?.array)
        XCTAssertEqual(nested.map { $0.array?.compactMap(\.int) ?? [] }, [[1, 2], [3]])
        for (key, value) in expected.members! {
            let kind = value.array![0].string!
            XCTAssertEqual(file.value(key).map(typeName), kind, key)
        }
        XCTAssertEqual(file.architecture, "llama")
    }

    func testGGUFVersion2ReadsLikeVersion3() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        try Python.run("gguf_fixtures.py", [dir], modules: ["gguf", "numpy"])
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: dir + "/blocks.gguf")))
        bytes[4] = 2
        let v2 = try GGUFFile(store: ByteStore(copying: bytes, name: "v2.gguf"))
        let v3 = try GGUFFile(path: dir + "/blocks.gguf")
        XCTAssertEqual(v2.version, 2)
        XCTAssertEqual(v2.tensors, v3.tensors)
        bytes[4] = 1
        XCTAssertThrowsError(try GGUFFile(store: ByteStore(copying: bytes, name: "v1.gguf"))) { error in
            XCTAssertEqual((error as? FileFormatError)?.kind, .unsupported)
        }
    }

    func testBlockSizesMatchPythonGGUFConstants() throws {
        let python = try Python.require(["gguf"])
        let r = try runProcess(
            python,
            [
                "-c",
                """
                import json; from gguf.constants import GGML_QUANT_SIZES as S
                print(json.dumps({t.name: list(v) for t, v in S.items()}))
                """
            ])
        let sizes = try JSONParser.parse(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), file: "python")
        var checked = 0
        for type in GGMLType.allCases {
            guard let pair = sizes[type.name]?.array else { continue }
            XCTAssertEqual(type.blockSize, pair[0].int, "\(type.name) block size")
            XCTAssertEqual(type.typeSize, pair[1].int, "\(type.name) bytes per block")
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 30)
    }

    // MARK: - Helpers

    func typeName(_ value: GGUFValue) -> String {
        switch value {
        case .uint8: "UINT8"
        case .int8: "INT8"
        case .uint16: "UINT16"
        case .int16: "INT16"
        case .uint32: "UINT32"
        case .int32: "INT32"
        case .float32: "FLOAT32"
        case .bool: "BOOL"
        case .string: "STRING"
        case .array: "ARRAY"
        case .uint64: "UINT64"
        case .int64: "INT64"
        case .float64: "FLOAT64"
        }
    }
}

func hexBytes(_ hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var chars = Array(hex.utf8)[...]
    while chars.count >= 2 {
        out.append(UInt8(String(decoding: chars.prefix(2), as: UTF8.self), radix: 16)!)
        chars = chars.dropFirst(2)
    }
    return out
}

/// Decodes little-endian bytes of `dtype` to Float without the reader's code: the test's own oracle.
func independentDecode(_ raw: [UInt8], _ dtype: DType) -> [Float] {
    func word(_ i: Int, _ n: Int) -> UInt64 { (0..<n).reduce(0) { $0 | UInt64(raw[i * n + $1]) << (8 * UInt64($1)) } }
    let count = raw.count / dtype.size
    return (0..<count).map { i -> Float in
        switch dtype {
        case .f64: Float(Double(bitPattern: word(i, 8)))
        case .f32: Float(bitPattern: UInt32(word(i, 4)))
        case .f16: Float(Float16(bitPattern: UInt16(word(i, 2))))
        case .bf16: Float(bitPattern: UInt32(word(i, 2)) << 16)
        case .i64: Float(Int64(bitPattern: word(i, 8)))
        case .i32: Float(Int32(truncatingIfNeeded: word(i, 4)))
        case .i16: Float(Int16(truncatingIfNeeded: word(i, 2)))
        case .i8: Float(Int8(truncatingIfNeeded: word(i, 1)))
        case .u64: Float(word(i, 8))
        case .u32, .u16, .u8: Float(word(i, dtype.size))
        case .bool: raw[i] != 0 ? 1 : 0
        }
    }
}
