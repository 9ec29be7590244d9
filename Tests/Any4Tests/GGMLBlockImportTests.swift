import Any4Core
import Any4Kernels
import CAny4Kernels
import TestSupport
import XCTest

/// GGUF Q4_0/Q4_1 blocks as quantized matrices and Q8_0 blocks as a Q8Linear: their values against
/// ggml's decode (GGMLType.dequantize) bit for bit, and the kernels on them against the dense
/// product of those values.
final class GGMLBlockImportTests: XCTestCase {
    /// Random blocks of `type`: f16 scales (and mins) of both signs, with ±0, subnormals and large
    /// values among them, and random nibbles or bytes.
    func blocks(_ type: GGMLType, rows: Int, cols: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        let specials: [Float16] = [0, -0.0, 6.0e-8, -6.0e-8, 1e-5, 65504, -3.5]
        func f16() -> UInt16 {
            let v = rng.next() % 8 == 0 ? specials[Int(rng.next() % UInt64(specials.count))] : Float16(rng.nextGaussian() * 0.01)
            return v.bitPattern
        }
        var out: [UInt8] = []
        for _ in 0..<(rows * cols / 32) {
            for _ in 0..<(type == .q4_1 ? 2 : 1) {
                let h = f16()
                out += [UInt8(h & 0xFF), UInt8(h >> 8)]
            }
            let payload = type.typeSize - (type == .q4_1 ? 4 : 2)
            for _ in 0..<payload { out.append(UInt8(truncatingIfNeeded: rng.next())) }
        }
        XCTAssertEqual(out.count, rows * cols / 32 * type.typeSize)
        return out
    }

    func ggmlDecode(_ data: [UInt8], _ type: GGMLType, count: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, n in
            data.withUnsafeBytes { type.dequantize($0.baseAddress!, count: count, into: buffer.baseAddress!) }
            n = count
        }
    }

    /// The layer a quantized matrix builds: its dequantization equal to `expected` bit for bit (scalar
    /// and AVX2), and both lookup paths within the KernelTests bounds of the dense f64 product of
    /// `expected` (exact ≤ 1e-5 relative; fast ≤ 2e-2 per case and ≤ 1e-2 over all).
    func checkLayer(_ q: QuantizedMatrix, equals expected: [Float], _ label: String) throws {
        let layer = try PackedLinear(q)
        for avx in Set([false, CPUFeatures.hasAVX2]) {
            assertBitwiseEqual(layer.dequantized(useAVX2: avx), expected, "\(label) PackedLinear.dequantize avx2=\(avx)")
        }
        var fastAll: [Float] = [], refAll: [Double] = []
        for m in [1, 5, 16] {
            var rng = SplitMix64(seed: UInt64(m))
            let x = (0..<(m * q.cols)).map { _ in Float(rng.nextGaussian()) }
            let ref = referenceProduct(expected, rows: q.rows, cols: q.cols, x: x, m: m)
            for simd in CPUFeatures.levels {
                let exact = layer.forward(x, m: m, path: .exact, threads: 2, simd: simd)
                XCTAssertLessThanOrEqual(relativeError(exact, ref), 1e-5, "\(label) exact m=\(m) simd=\(simd.name)")
                let fast = layer.forward(x, m: m, path: .fast, threads: 2, simd: simd)
                XCTAssertLessThanOrEqual(relativeError(fast, ref), 2e-2, "\(label) fast m=\(m) simd=\(simd.name)")
                fastAll += fast
                refAll += ref
            }
        }
        XCTAssertLessThanOrEqual(relativeError(fastAll, refAll), 1e-2, "\(label) fast, all cases")
    }

    /// SmolLM2's 210 Q4_1 matrices: each imported matrix dequantizes to the file's decode bit for
    /// bit, as int4 (m + 8·d is exact in f32 for all of its blocks: d and m are of like magnitude);
    /// three of them (square, wide, tall) through the kernels.
    func testSmolLM2Q4_1MatricesDecodeBitForBit() throws {
        let model = try Model.open(TestPaths.requireModel(TestPaths.smolLM2))
        let q41 = model.tensors.filter { $0.info.encoding == .ggml(.q4_1) }
        XCTAssertEqual(q41.count, 210)
        var formats: [String: Int] = [:]
        for t in q41 {
            let q = try GGMLBlockImport.quantizedMatrix(t, of: model)
            XCTAssertEqual([q.rows, q.cols], t.shape, t.name)
            XCTAssertEqual(q.groupSize, 32)
            formats[q.formatName, default: 0] += 1
            assertBitwiseEqual(q.dequantized(), try model.decode(t), t.name)
        }
        print("SmolLM2 Q4_1 matrices imported as: \(formats)")
        XCTAssertEqual(formats, ["int4": 210])
        for name in ["blk.0.attn_q.weight", "blk.3.ffn_down.weight", "blk.29.ffn_up.weight"] {
            let t = try XCTUnwrap(model.tensor(named: name))
            try checkLayer(GGMLBlockImport.quantizedMatrix(t, of: model), equals: model.decode(t), name)
        }
    }

    /// Synthetic Q4_0 and Q4_1 blocks with scales of both signs, ±0, subnormals and f16's largest:
    /// bit for bit ggml's decode, through the kernels too (where the values are finite). Q4_0 needs
    /// its zeros of −0: ggml's d·0 is −0 for a negative d, and the same matrix without zeros (adding
    /// +0) turns those into +0.
    func testSyntheticQ4BlocksDecodeBitForBit() throws {
        for type in [GGMLType.q4_0, .q4_1] {
            for (rows, cols) in [(7, 96), (3, 1056), (16, 256)] {
                let data = blocks(type, rows: rows, cols: cols, seed: UInt64(rows * cols))
                let expected = ggmlDecode(data, type, count: rows * cols)
                let q = data.withUnsafeBytes { GGMLBlockImport.quantizedMatrix(blocks: $0, type: type, rows: rows, cols: cols) }
                let label = "\(type.name) \(rows)x\(cols)"
                // Q4_0 is int4 always; Q4_1 is int4 unless a block's special values (m = −0 with a
                // negative d, d tiny against m) make that form differ (below, one such block is forced).
                if type == .q4_0 { XCTAssertEqual(q.formatName, "int4", label) }
                XCTAssertEqual(q.tables.count, q.formatName == "int4" ? 16 : rows * 16, label)
                assertBitwiseEqual(q.dequantized(), expected, label)
                assertBitwiseEqual(try PackedLinear(q).dequantized(), expected, label + " packed")
                if type == .q4_0 {
                    XCTAssertTrue(expected.contains { $0 == 0 && $0.sign == .minus }, "\(label): no −0 to check")
                    let plusZero = QuantizedMatrix(
                        formatName: "int4", rows: rows, cols: cols, codeBits: 4, groupSize: 32, codes: q.codes, tables: q.tables,
                        perRowTable: false, scales: q.scales, zeros: [], tensorScale: 1, storage: .f16, scaleBits: 16)
                    XCTAssertNotEqual(plusZero.dequantized().map(\.bitPattern), expected.map(\.bitPattern), label)
                }
            }
            // Kernel products on finite, ordinary scales (65504 × 8 columns would overflow the sums).
            let (rows, cols) = (37, 576)
            var data = blocks(type, rows: rows, cols: cols, seed: 77)
            var rng = SplitMix64(seed: 78)
            for b in 0..<(rows * cols / 32) {
                for k in 0..<(type == .q4_1 ? 2 : 1) {
                    let h = Float16(rng.nextGaussian() * 0.01).bitPattern
                    data[b * type.typeSize + 2 * k] = UInt8(h & 0xFF)
                    data[b * type.typeSize + 2 * k + 1] = UInt8(h >> 8)
                }
            }
            let q = data.withUnsafeBytes { GGMLBlockImport.quantizedMatrix(blocks: $0, type: type, rows: rows, cols: cols) }
            XCTAssertEqual(q.formatName, "int4")
            try checkLayer(q, equals: ggmlDecode(data, type, count: rows * cols), "\(type.name) \(rows)x\(cols)")
            guard type == .q4_1 else { continue }
            // One block whose m = −0 (with a negative d) cannot be int4: the whole tensor is any4.
            let minusZero = Float16(-0.0).bitPattern, negative = Float16(-0.02).bitPattern
            data.replaceSubrange(
                20 * type.typeSize..<(20 * type.typeSize + 4),
                with: [
                    UInt8(negative & 0xFF), UInt8(negative >> 8), UInt8(minusZero & 0xFF), UInt8(minusZero >> 8)
                ])
            let any4 = data.withUnsafeBytes { GGMLBlockImport.quantizedMatrix(blocks: $0, type: type, rows: rows, cols: cols) }
            XCTAssertEqual(any4.formatName, "any4")
            try checkLayer(any4, equals: ggmlDecode(data, type, count: rows * cols), "\(type.name) \(rows)x\(cols) as any4")
        }
    }

    /// Tensors that cannot be imported: another type, a width not a multiple of 32, a byte count that
    /// contradicts the shape, blocks past the end of the file. Each error names the file, the
    /// tensor and its offset.
    func testBadTensorsAreRefusedWithFileTensorAndOffset() throws {
        let store = ByteStore(copying: [UInt8](repeating: 0, count: 1000), name: "m.gguf")
        let cases: [(TensorInfo, FileFormatError.Kind)] = [
            (TensorInfo(name: "a", shape: [2, 64], encoding: .ggml(.q8_0), offset: 0, byteCount: 136), .unsupported),
            (TensorInfo(name: "b", shape: [2, 48], encoding: .ggml(.q4_1), offset: 0, byteCount: 60), .badShape),
            (TensorInfo(name: "c", shape: [2, 64], encoding: .ggml(.q4_0), offset: 8, byteCount: 70), .badShape),
            (TensorInfo(name: "d", shape: [64], encoding: .ggml(.q4_0), offset: 8, byteCount: 36), .badShape),
            (TensorInfo(name: "e", shape: [20, 64], encoding: .ggml(.q4_1), offset: 400, byteCount: 800), .truncated)
        ]
        for (info, kind) in cases {
            XCTAssertThrowsError(try GGMLBlockImport.quantizedMatrix(info, from: store), info.name) { error in
                let e = error as? FileFormatError
                XCTAssertEqual(e?.kind, kind, info.name)
                XCTAssertEqual(e?.file, "m.gguf")
                XCTAssertEqual(e?.subject, info.name)
                XCTAssertEqual(e?.offset, info.offset)
            }
        }
        let good = TensorInfo(name: "f", shape: [2, 64], encoding: .ggml(.q4_0), offset: 10, byteCount: 72)
        XCTAssertEqual(try GGMLBlockImport.quantizedMatrix(good, from: store).rows, 2)
        XCTAssertThrowsError(try Q8Linear(cases[1].0, from: store))
        XCTAssertThrowsError(try Q8Linear(TensorInfo(name: "g", shape: [2, 64], encoding: .ggml(.q8_0), offset: 0, byteCount: 130), from: store))
        XCTAssertThrowsError(try Q8Linear(TensorInfo(name: "h", shape: [30, 64], encoding: .ggml(.q8_0), offset: 0, byteCount: 2040), from: store))
        XCTAssertEqual(try Q8Linear(cases[0].0, from: store).storedBytes, 128 + 4 * 4)
    }

    /// Q8_0 blocks as a Q8Linear: the int8 values and scales as stored, dequantized bit for bit as
    /// ggml decodes them (synthetic blocks with special scales, and SmolLM2's Q8_0 embedding), and the
    /// int8 kernel on them equal to the f64 product of those int8 weights and the int8 activations
    /// (1e-6, as KernelTests' head test), and within 2e-2 of the dense product on the decoded weights.
    func testQ8_0BlocksRunAsStored() throws {
        for (rows, cols) in [(5, 64), (19, 320)] {
            let data = blocks(.q8_0, rows: rows, cols: cols, seed: UInt64(rows))
            let layer = data.withUnsafeBytes { Q8Linear(q8_0: $0, rows: rows, cols: cols) }
            var got = [Float](repeating: .nan, count: rows * cols)
            got.withUnsafeMutableBufferPointer { layer.dequantize(rows: 0..<rows, into: $0.baseAddress!) }
            assertBitwiseEqual(got, ggmlDecode(data, .q8_0, count: rows * cols), "Q8_0 \(rows)x\(cols)")
            var part = [Float](repeating: .nan, count: 2 * cols)
            part.withUnsafeMutableBufferPointer { layer.dequantize(rows: 2..<4, into: $0.baseAddress!) }
            assertBitwiseEqual(part, Array(got[(2 * cols)..<(4 * cols)]), "Q8_0 rows 2..<4")
        }
        // The kernel, on ordinary scales.
        let (rows, cols, m) = (33, 256, 3)
        var data = blocks(.q8_0, rows: rows, cols: cols, seed: 40)
        var rng = SplitMix64(seed: 41)
        for b in 0..<(rows * cols / 32) {
            let h = Float16(rng.nextGaussian() * 0.001).bitPattern
            data[b * 34] = UInt8(h & 0xFF)
            data[b * 34 + 1] = UInt8(h >> 8)
        }
        let layer = data.withUnsafeBytes { Q8Linear(q8_0: $0, rows: rows, cols: cols) }
        let w = ggmlDecode(data, .q8_0, count: rows * cols)
        let x = (0..<(m * cols)).map { _ in Float(rng.nextGaussian()) }
        let blocks = cols / 32
        var xq = [Int8](repeating: 0, count: m * cols), xs = [Float](repeating: 0, count: m * blocks), sums = xs
        any4_quantize_activations(x, Int32(m), Int32(cols), 32, Int32(blocks), &xq, &xs, &sums, 0, 0)
        var ref = [Double](repeating: 0, count: m * rows)
        for k in 0..<m {
            for r in 0..<rows {
                for c in 0..<cols {
                    // w = code · d exactly, so w · xq · xs is the kernel's product term by term.
                    ref[k * rows + r] += Double(w[r * cols + c]) * Double(xq[k * cols + c]) * Double(xs[k * blocks + c / 32])
                }
            }
        }
        let dense = referenceProduct(w, rows: rows, cols: cols, x: x, m: m)
        for simd in CPUFeatures.levels {
            let y = layer.forward(x, m: m, threads: 2, bias: nil, simd: simd)
            XCTAssertLessThanOrEqual(relativeError(y, ref), 1e-6, "simd=\(simd.name)")
            XCTAssertLessThanOrEqual(relativeError(y, dense), 2e-2, "simd=\(simd.name)")
        }
        // SmolLM2's tied embedding (Q8_0, 49152 × 576): rows as the file decodes them.
        let model = try Model.open(TestPaths.requireModel(TestPaths.smolLM2))
        let t = try XCTUnwrap(model.tensor(named: "token_embd.weight"))
        let embed = try Q8Linear(t.info, from: model.stores[t.fileIndex])
        XCTAssertEqual(embed.storedBytes, 49152 * 576 + 49152 * 18 * 4)
        for range in [0..<3, 1000..<1004, 49150..<49152] {
            var out = [Float](repeating: .nan, count: range.count * 576)
            out.withUnsafeMutableBufferPointer { embed.dequantize(rows: range, into: $0.baseAddress!) }
            assertBitwiseEqual(out, try model.decodeRows(t, rows: range), "token_embd rows \(range)")
        }
    }
}
