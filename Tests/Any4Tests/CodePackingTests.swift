import Any4Core
import Foundation
import TestSupport
import XCTest

/// Dense 2- and 3-bit codes (`"code_packing": "dense"`, issue #17): the packer against a bit-by-bit
/// packer written here, files written by the fixtures (independently of the checkpoint writer) in
/// both layouts read back to the same codes, the writer's own files round-tripping with the sizes
/// the codes' bits give, and lying or cut layers refused naming the tensor.
final class CodePackingTests: XCTestCase {
    typealias Fixtures = QuantizedFixtures

    func randomCodes(_ count: Int, bits: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next() % UInt64(1 << bits)) }
    }

    /// A matrix of `bits`-bit codes with nothing else, to pack.
    func codesOnly(_ codes: [UInt8], rows: Int, cols: Int, bits: Int, packing: CodePacking) -> QuantizedMatrix {
        QuantizedMatrix(
            formatName: "any\(bits)", rows: rows, cols: cols, codeBits: bits, groupSize: 2, codes: codes, tables: [],
            perRowTable: true, scales: [], zeros: [], tensorScale: 1, storage: .f16, scaleBits: 16, codePacking: packing)
    }

    func testPackingIsTheBitStreamOfTheFixturesAndUnpacksBack() {
        for bits in [2, 3, 4, 8] {
            for cols in [1, 2, 3, 5, 7, 8, 13, 64, 96, 100, 577] {
                let rows = 3
                let codes = randomCodes(rows * cols, bits: bits, seed: UInt64(bits * 1000 + cols))
                let what = "\(bits) bits, \(cols) columns"
                // The writer's choice: dense below 4 bits, nibbles (the same bytes as dense) at 4, bytes at 8.
                let written = CodePacking.written(codeBits: bits)
                XCTAssertEqual(written, bits < 4 ? .dense : .nibbles, what)
                XCTAssertEqual(written.rowBytes(cols: cols, codeBits: bits), (cols * bits + 7) / 8, what)
                let packed = written.pack(codes, rows: rows, cols: cols, codeBits: bits)
                let q = codesOnly(codes, rows: rows, cols: cols, bits: bits, packing: written)
                XCTAssertEqual(packed, bits == 8 ? codes : Fixtures.densePacked(q), what)
                XCTAssertEqual(q.packedCodes(), packed, what)
                for packing in CodePacking.allCases {
                    let bytes = packing.pack(codes, rows: rows, cols: cols, codeBits: bits)
                    XCTAssertEqual(bytes.count, rows * packing.rowBytes(cols: cols, codeBits: bits), "\(what) \(packing)")
                    if packing == .nibbles {
                        XCTAssertEqual(bytes, Fixtures.packed(codesOnly(codes, rows: rows, cols: cols, bits: bits, packing: .nibbles)), what)
                    }
                    let back = bytes.withUnsafeBytes { packing.unpack($0, rows: rows, cols: cols, codeBits: bits) }
                    XCTAssertEqual(back, codes, "\(what) \(packing) round trip")
                    // One code found where it lies (the out-of-range message reads codes this way).
                    bytes.withUnsafeBytes { raw in
                        for (r, c) in [(0, 0), (1, cols / 2), (2, cols - 1)] {
                            let (offset, code) = packing.code(row: r, column: c, cols: cols, codeBits: bits, in: raw)
                            XCTAssertEqual(code, Int(codes[r * cols + c]), "\(what) \(packing) (\(r), \(c))")
                            let w = packing.slotBits(codeBits: bits)
                            XCTAssertEqual(offset, r * packing.rowBytes(cols: cols, codeBits: bits) + c * w / 8)
                        }
                    }
                }
            }
        }
        // Sizes: 3 bits on 576 columns is 216 bytes a row (nibbles: 288), 2 bits on 100 is 25 (50).
        XCTAssertEqual(CodePacking.dense.rowBytes(cols: 576, codeBits: 3), 216)
        XCTAssertEqual(CodePacking.nibbles.rowBytes(cols: 576, codeBits: 3), 288)
        XCTAssertEqual(CodePacking.dense.rowBytes(cols: 100, codeBits: 2), 25)
        XCTAssertEqual(CodePacking.nibbles.rowBytes(cols: 101, codeBits: 2), 51)
        XCTAssertEqual(CodePacking.dense.rowBytes(cols: 5, codeBits: 3), 2)
    }

    /// 2- and 3-bit layers written by the fixtures in nibbles (every file before dense packing, no
    /// `code_packing` key) and dense (with the key): both open to the written matrices, the dense
    /// one in ⌈in·bits/8⌉ bytes a row and counted so in bits per weight.
    func testOldNibbleFilesAndDenseFilesReadTheSameCodes() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let specs: [(String, String, Int, Int, Int)] = [
            ("model.layers.0.self_attn.q_proj.weight", "any3", 6, 100, 32), ("model.layers.0.mlp.up_proj.weight", "any2", 5, 96, 32),
            ("model.layers.1.mlp.down_proj.weight", "int3", 4, 77, 64), ("model.layers.1.mlp.gate_proj.weight", "any4", 3, 64, 32)
        ]
        let nibbleLayers = try specs.map { try Fixtures.layer($0.0, $0.1, rows: $0.2, cols: $0.3, group: $0.4, dtype: .f16) }
        var denseLayers = nibbleLayers
        for i in denseLayers.indices where denseLayers[i].q.codeBits < 4 { denseLayers[i].q.codePacking = .dense }
        for (label, layers) in [("nibbles", nibbleLayers), ("dense", denseLayers)] {
            let path = dir + "/\(label).safetensors"
            try Fixtures.writeVersion2(layers, to: path)
            let model = try Model.open(path)
            for l in layers {
                let what = "\(label) \(l.name)"
                let t = try XCTUnwrap(model.tensor(named: l.name), what)
                let layout = try XCTUnwrap(t.info.encoding.quantizedLayout, what)
                let dense = label == "dense" && l.q.codeBits < 4
                XCTAssertEqual(layout.codePacking, dense ? .dense : .nibbles, what)
                let rowBytes = dense ? (l.q.cols * l.q.codeBits + 7) / 8 : (l.q.cols + 1) / 2
                XCTAssertEqual(layout.qweight.byteCount, l.q.rows * rowBytes, what)
                XCTAssertEqual(layout.metadata["code_packing"]?.string, dense ? "dense" : nil, what)
                let back = try XCTUnwrap(try model.quantizedMatrix(t), what)
                XCTAssertEqual(back.codes, l.q.codes, what)
                XCTAssertEqual(back.codePacking, layout.codePacking, what)
                XCTAssertEqual(back.packedCodes(), dense ? Fixtures.densePacked(l.q) : Fixtures.packed(l.q), what)
                assertBitwiseEqual(try model.decode(t), l.q.dequantized(), what)
                // Every stored bit counted: the parts' bytes, and the matrix's own count agrees.
                let partBytes = try Fixtures.parts(l).reduce(0) { $0 + $1.bytes.count }
                XCTAssertEqual(t.info.byteCount, partBytes, what)
                XCTAssertEqual(back.bitsPerWeight, Double(partBytes * 8) / Double(l.q.rows * l.q.cols), accuracy: 1e-12, what)
            }
        }
    }

    func assertRefused(_ path: String, subject: String, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Model.open(path), file: file, line: line) { error in
            guard let e = error as? FileFormatError else { return XCTFail("unexpected \(error)", file: file, line: line) }
            XCTAssertEqual(e.subject, subject, "\(e)", file: file, line: line)
            XCTAssertTrue(e.message.contains(message) || "\(e)".contains(message), "\(e)", file: file, line: line)
        }
    }

    /// A dense layer whose metadata and bytes disagree, an unknown packing, and a file cut inside
    /// the dense codes: each refused when opened, naming the tensor.
    func testLyingOrCutDenseLayersAreRefusedNamingTheTensor() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        var l = try Fixtures.layer("c.weight", "any3", rows: 4, cols: 100, group: 50, dtype: .f16)
        l.q.codePacking = .dense
        let dense = try Fixtures.parts(l)
        let denseJSON = Fixtures.layersJSON([l])
        var n = l
        n.q.codePacking = .nibbles
        let nibbles = try Fixtures.parts(n)
        let nibbleJSON = Fixtures.layersJSON([n])
        func write(_ name: String, _ entries: [SafeTensorsWriter.Entry], _ json: String) throws -> String {
            let path = dir + "/" + name
            try SafeTensorsWriter.write(entries, metadata: ["any4.version": "2", "any4.layers": json], to: path)
            return path
        }
        XCTAssertNoThrow(try Model.open(try write("good.safetensors", dense, denseJSON)))
        // Metadata says dense, bytes are nibbles; and the other way round (a dense file read as old).
        assertRefused(try write("lying.safetensors", nibbles, denseJSON), subject: "c.qweight", "needs [4, 38]")
        assertRefused(try write("unsaid.safetensors", dense, nibbleJSON), subject: "c.qweight", "needs [4, 50]")
        // An unknown packing names the layer.
        let other = denseJSON.replacingOccurrences(of: "\"dense\"", with: "\"bitplanes\"")
        assertRefused(try write("other.safetensors", dense, other), subject: "c.weight", "code_packing \"bitplanes\"")
        // A file cut inside the dense codes (qweight last in the file).
        let ordered = dense.filter { $0.name != "c.qweight" } + dense.filter { $0.name == "c.qweight" }
        let whole = try write("whole.safetensors", ordered, denseJSON)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: whole))
        let cut = dir + "/cut.safetensors"
        try bytes.prefix(bytes.count - 7).write(to: URL(fileURLWithPath: cut))
        XCTAssertThrowsError(try Model.open(cut)) { error in
            let e = error as? FileFormatError
            XCTAssertTrue(e?.subject == "c.qweight" || "\(error)".contains("c.qweight"), "\(error)")
        }
    }

    /// The writer's files: 2-, 3- and 4-bit layers of a model written as a `.safetensors` file read back to the same codes, tables and scales, with qweight of ⌈in·bits/8⌉
    /// bytes a row, `code_packing` said exactly where it matters, and the file exactly as large as
    /// its header plus those parts.
    func testWrittenCheckpointsRoundTripAtTheirBits() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let shapes: [(String, Int, Int)] = [
            ("model.layers.0.self_attn.q_proj.weight", 8, 96), ("model.layers.0.mlp.up_proj.weight", 6, 100),
            ("model.layers.0.mlp.down_proj.weight", 5, 130)
        ]
        let source = dir + "/source.safetensors"
        try SafeTensorsWriter.write(
            shapes.map { .init(name: $0.0, shape: [$0.1, $0.2], floats: Fixtures.weights($0.1, $0.2, seed: UInt64($0.2)).map { $0 * 50 }) }
                + [Fixtures.norm], metadata: [:], to: source)
        let model = try Model.open(source)
        for format in ["any2", "any3", "int3", "any4"] {
            var options = QuantizationOptions()
            options.groupSize = 32
            options.threads = 1
            let numeric = try FormatRegistry.named(format)
            var quantized: [String: QuantizedMatrix] = [:]
            for (name, rows, cols) in shapes {
                let t = try XCTUnwrap(model.tensor(named: name))
                quantized[name] = try Quantizer.quantize(
                    try model.decode(t), rows: rows, cols: cols, name: name, format: numeric, options: options, storage: .f16)
            }
            do {
                let out = dir + "/\(format).safetensors"
                try QuantizedCheckpoint.write(model: model, quantized: quantized, fakeQuant: false, to: out)
                let back = try Model.open(out)
                var expectedBits = 0.0
                for (name, rows, cols) in shapes {
                    let what = "\(out) \(name)"
                    let q = try XCTUnwrap(quantized[name])
                    let t = try XCTUnwrap(back.tensor(named: name), what)
                    let layout = try XCTUnwrap(t.info.encoding.quantizedLayout, what)
                    let bits = numeric.codeBits
                    XCTAssertEqual(layout.qweight.shape, [rows, (cols * bits + 7) / 8], what)
                    XCTAssertEqual(layout.metadata["code_packing"]?.string, bits < 4 ? "dense" : nil, what)
                    let r = try XCTUnwrap(try back.quantizedMatrix(t), what)
                    XCTAssertEqual(r.codes, q.codes, what)
                    XCTAssertEqual(r.tables, q.tables, what)
                    XCTAssertEqual(r.scales, q.scales, what)
                    XCTAssertEqual(r.zeros, q.zeros, what)
                    XCTAssertEqual(r.bitsPerWeight, q.bitsPerWeight, what)
                    XCTAssertEqual(
                        Double(t.info.byteCount * 8), q.bitsPerWeight * Double(rows * cols), accuracy: 1e-6, "\(what): stored = counted")
                    XCTAssertEqual(
                        try Quantizer.storedBits(rows: rows, cols: cols, format: numeric, options: options, storage: .f16),
                        t.info.byteCount * 8, what)
                    expectedBits += Double(t.info.byteCount * 8)
                    // The code bits alone: rows × ⌈cols·bits/8⌉ bytes, no nibble padding.
                    XCTAssertEqual(layout.qweight.byteCount, rows * ((cols * bits + 7) / 8), what)
                }
                // The whole file: the header plus every tensor's bytes, nothing more.
                let file = out
                let st = try SafeTensorsFile(path: file)
                let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
                XCTAssertEqual(size, 8 + st.headerLength + st.tensors.reduce(0) { $0 + $1.byteCount }, file)
                XCTAssertEqual(
                    Double(st.tensors.filter { $0.name != "model.norm.weight" }.reduce(0) { $0 + $1.byteCount } * 8), expectedBits, file)
            }
        }
    }
}
