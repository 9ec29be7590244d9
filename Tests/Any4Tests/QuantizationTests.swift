import Any4Core
import Foundation
import TestSupport
import XCTest

final class QuantizationTests: XCTestCase {
    /// A heavy-tailed random matrix.
    func matrix(rows: Int, cols: Int, seed: UInt64 = 5) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<(rows * cols)).map { _ in Float(rng.nextStudentT4() * 0.02) }
    }

    func quantize(
        _ w: [Float], rows: Int, cols: Int, _ name: String, group: Int = 64, storage: DType = .f32,
        _ configure: (inout QuantizationOptions) -> Void = { _ in }
    ) throws -> QuantizedMatrix {
        var o = QuantizationOptions()
        o.groupSize = group
        configure(&o)
        return try Quantizer.quantize(w, rows: rows, cols: cols, name: "w", format: FormatRegistry.named(name), options: o, storage: storage)
    }

    // MARK: - int-b against an independent reference

    /// The DESIGN.md formula, written out plainly (no shared code with the format).
    func referenceInt(_ w: [Float], rows: Int, cols: Int, bits: Int, group: Int, round: (Float) -> Float) -> [Float] {
        var out = [Float](repeating: 0, count: w.count)
        let levels = Float((1 << bits) - 1), half = Float(1 << (bits - 1))
        for r in 0..<rows {
            var start = 0
            while start < cols {
                let end = min(start + group, cols)
                let g = w[(r * cols + start)..<(r * cols + end)]
                let mn = g.min()!, mx = g.max()!
                let s = round(max(mx - mn, 1e-6) / levels)
                let z = round(mn + s * half)
                for c in start..<end {
                    var q = ((w[r * cols + c] - (z - s * half)) / s).rounded(.toNearestOrEven)
                    q = min(max(q, 0), levels)
                    out[r * cols + c] = (q - half) * s + z
                }
                start = end
            }
        }
        return out
    }

    func testIntFormatsEqualTheReferenceIncludingRaggedGroups() throws {
        let rows = 7, cols = 200  // 200 = 3 × 64 + 8: a ragged last group
        let w = matrix(rows: rows, cols: cols)
        let bf16: (Float) -> Float = { Float(bitPattern: (($0.bitPattern &+ 0x7FFF &+ (($0.bitPattern >> 16) & 1)) >> 16) << 16) }
        for bits in [2, 3, 4, 8] {
            for (storage, round) in [(DType.f32, { (x: Float) in x }), (.bf16, bf16)] {
                let q = try quantize(w, rows: rows, cols: cols, "int\(bits)", storage: storage)
                XCTAssertEqual(q.groupsPerRow, 4)
                XCTAssertEqual(
                    q.dequantized(), referenceInt(w, rows: rows, cols: cols, bits: bits, group: 64, round: round),
                    "int\(bits) \(storage)")
            }
        }
    }

    // MARK: - Table formats: nearest code, scales per spec

    func testTableCodesAreNearestAndScalesFollowTheirSpecs() throws {
        let rows = 5, cols = 200
        var w = matrix(rows: rows, cols: cols)
        w[3] = 0
        w[cols + 7] = -w[cols + 8]  // zeros and symmetric values
        // Every format with a fixed table and no zeros (nf4, fp4, fp4-bnb, iq4_nl, mxfp4, nvfp4).
        for format in FormatRegistry.all where format.sharedTable != nil && !format.hasZeros {
            let name = format.name
            let q = try quantize(w, rows: rows, cols: cols, name)
            let table = try XCTUnwrap(format.sharedTable)
            let block = format.fixedBlockSize ?? 64
            XCTAssertEqual(q.groupSize, block, name)
            for r in 0..<rows {
                for g in 0..<q.groupsPerRow {
                    let range = q.groups.range(g)
                    let scale = q.scales[r * q.groupsPerRow + g] * q.tensorScale
                    let amax = range.map { abs(w[r * cols + $0]) }.max()!
                    switch name {
                    case "nf4", "fp4-bnb": XCTAssertEqual(scale, amax, "\(name) absmax scale")
                    case "fp4": XCTAssertEqual(scale, amax / 6, "\(name) absmax/6")
                    case "mxfp4":
                        XCTAssertEqual(scale, Float(sign: .plus, exponent: Int(amax.exponent) - 2, significand: 1), "E8M0 = 2^(floor(log2 amax) - 2)")
                    case "nvfp4":
                        let global = w.map(abs).max()! / (6 * 448)
                        XCTAssertEqual(q.tensorScale, global)
                        XCTAssertEqual(q.scales[r * q.groupsPerRow + g], referenceE4M3(amax / 6 / global), "E4M3 block scale")
                    default: break
                    }
                    guard scale != 0 else { continue }
                    for c in range {
                        let x = w[r * cols + c] / scale
                        let code = Int(q.codes[r * cols + c])
                        let d = abs(x - table[code])
                        for (j, t) in table.enumerated() {
                            // Saturating formats clamp beyond the table: nearest still holds.
                            XCTAssertLessThanOrEqual(d, abs(x - t) * (1 + 1e-6), "\(name) row \(r) col \(c): code \(code) vs \(j)")
                        }
                    }
                }
            }
        }
        // Ties: fp4 rounds half to even codes (IEEE), nf4 takes the lower index.
        let tie: [Float] = [6, 0.25 * 6 / 6, 1.25, 2.5, 5, 0.75, 1.75, 3.5, -2.5, 0, 0, 0, 0, 0, 0, 0]
        let q = try quantize(tie, rows: 1, cols: 16, "fp4", group: 16)
        XCTAssertEqual(q.scales[0], 1)
        XCTAssertEqual(Array(q.codes[1...8]), [0, 2, 4, 6, 2, 4, 6, 12], "0.25→0, 1.25→1, 2.5→2, 5→4, 0.75→1, 1.75→2, 3.5→4, -2.5→-2")
    }

    /// E4M3 by brute force: the nearest of all finite positive E4M3 values, ties to even mantissa.
    func referenceE4M3(_ x: Float) -> Float {
        var values: [(Float, Int)] = []
        for e in 0..<16 {
            for m in 0..<8 where !(e == 15 && m == 7) {
                let v = e == 0 ? Float(m) / 8 * pow(2, -6) : (1 + Float(m) / 8) * pow(2, Float(e - 7))
                values.append((v, m))
            }
        }
        if x >= 448 { return 448 }
        var best = values[0]
        for v in values {
            let d = abs(v.0 - x), bd = abs(best.0 - x)
            if d < bd || (d == bd && v.1 % 2 == 0 && best.1 % 2 == 1) { best = v }
        }
        return best.0
    }

    func testFP8E4M3MatchesBruteForce() {
        for byte in UInt8(0)..<0x7F {
            XCTAssertEqual(FP8E4M3.encode(FP8E4M3.decode(byte)), byte, "code \(byte) round-trips")
        }
        var rng = SplitMix64(seed: 9)
        for _ in 0..<3000 {
            let x = Float(rng.nextUnit() * pow(2, Double(Int(rng.next() % 24)) - 12))
            XCTAssertEqual(FP8E4M3.round(x), referenceE4M3(x), "\(x)")
        }
        XCTAssertEqual(FP8E4M3.round(1000), 448)
    }

    // MARK: - any-b

    func testAnyIsLosslessOnRowsWithFewDistinctScaledValues() throws {
        for bits in [2, 3, 4] {
            let k = 1 << bits
            let rows = 6, cols = 192, group = 64
            var rng = SplitMix64(seed: UInt64(bits))
            var w = [Float](repeating: 0, count: rows * cols)
            for r in 0..<rows {
                // k distinct levels; every group holds the lowest and the highest, so all groups share
                // one scaling and the row has exactly k distinct scaled values.
                let levels = (0..<k).map { Float($0) * 0.01 + Float(r) * 0.001 }
                for c in 0..<cols {
                    let pick = c % group == 0 ? 0 : (c % group == 1 ? k - 1 : Int(rng.next() % UInt64(k)))
                    w[r * cols + c] = levels[pick]
                }
            }
            for cluster in ClusterMethod.allCases {
                let q = try quantize(w, rows: rows, cols: cols, "any\(bits)", group: group) { $0.cluster = cluster }
                let metrics = ErrorMetrics(original: w, approximation: q.dequantized())
                XCTAssertLessThan(metrics.maxAbsError, 1e-7, "any\(bits) \(cluster)")
            }
        }
    }

    func testAnyFourBeatsIntFourOnHeavyTailedWeights() throws {
        let rows = 64, cols = 512
        let w = matrix(rows: rows, cols: cols)
        let int4 = ErrorMetrics(original: w, approximation: try quantize(w, rows: rows, cols: cols, "int4", group: 128).dequantized())
        for cluster in ClusterMethod.allCases {
            let q = try quantize(w, rows: rows, cols: cols, "any4", group: 128) { $0.cluster = cluster }
            let any4 = ErrorMetrics(original: w, approximation: q.dequantized())
            XCTAssertGreaterThan(any4.sqnrDB, int4.sqnrDB + 1, "\(cluster): any4 \(any4.sqnrDB) dB vs int4 \(int4.sqnrDB) dB")
            // The stored LUT is sorted and centred.
            for r in 0..<rows {
                let lut = Array(q.tables[(r * 16)..<((r + 1) * 16)])
                XCTAssertEqual(lut, lut.sorted())
                XCTAssertGreaterThanOrEqual(lut.first!, -8 - 1e-5)
                XCTAssertLessThanOrEqual(lut.last!, 7 + 1e-5)
            }
        }
        // Deterministic: same seed, same codes.
        let a = try quantize(w, rows: rows, cols: cols, "any4"), b = try quantize(w, rows: rows, cols: cols, "any4")
        XCTAssertEqual(a.codes, b.codes)
        XCTAssertEqual(a.tables, b.tables)
    }

    func testBitsPerWeightCountsEveryTable() throws {
        let w = matrix(rows: 4, cols: 256)
        XCTAssertEqual(try quantize(w, rows: 4, cols: 256, "int4", group: 128, storage: .bf16).bitsPerWeight, 4 + 32.0 / 128)
        XCTAssertEqual(try quantize(w, rows: 4, cols: 256, "any4", group: 128, storage: .bf16).bitsPerWeight, 4 + 32.0 / 128 + 16 * 16.0 / 256)
        XCTAssertEqual(try quantize(w, rows: 4, cols: 256, "nf4", group: 64, storage: .f32).bitsPerWeight, 4 + 32.0 / 64)
        XCTAssertEqual(try quantize(w, rows: 4, cols: 256, "mxfp4").bitsPerWeight, 4 + 8.0 / 32)
        XCTAssertEqual(try quantize(w, rows: 4, cols: 256, "iq4_nl").bitsPerWeight, 4.5)
        XCTAssertEqual(try quantize(w, rows: 4, cols: 256, "nvfp4").bitsPerWeight, 4 + 8.0 / 16 + 32.0 / 1024)
        // Ragged: 200 columns in groups of 64 → 4 groups per row.
        let r = try quantize(matrix(rows: 2, cols: 200), rows: 2, cols: 200, "int4", group: 64)
        XCTAssertEqual(r.bitsPerWeight, 4 + 4 * 64.0 / 200)
    }

    // MARK: - Bad input

    func testBadOptionsAndNonFiniteWeights() {
        let w = matrix(rows: 2, cols: 96)
        for group in [0, -64, 33] {
            XCTAssertThrowsError(try quantize(w, rows: 2, cols: 96, "int4", group: group)) {
                XCTAssertTrue("\($0)".contains("group size"), "\($0)")
            }
        }
        XCTAssertThrowsError(try quantize(w, rows: 2, cols: 96, "int4", group: 64) { $0.strictGroups = true }) {
            XCTAssertEqual($0 as? QuantizationError, .groupsDoNotDivide(tensor: "w", width: 96, groupSize: 64))
        }
        XCTAssertNoThrow(try quantize(w, rows: 2, cols: 96, "int4", group: 32) { $0.strictGroups = true })
        XCTAssertThrowsError(try FormatRegistry.named("int5")) { XCTAssertTrue("\($0)".contains("known: any4")) }
        var bad = w
        bad[101] = .nan
        XCTAssertThrowsError(try quantize(bad, rows: 2, cols: 96, "any4")) {
            XCTAssertEqual("\($0)", "w: weight [1, 5] is nan; refusing to quantize non-finite weights")
        }
        bad[101] = -.infinity
        XCTAssertThrowsError(try quantize(bad, rows: 2, cols: 96, "nf4"))
    }

    // MARK: - Checkpoint

    func testCheckpointRoundTripIsBitIdentical() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let rows = 6, cols = 200
        let w = matrix(rows: rows, cols: cols)
        let image = try SafeTensorsWriter.image([
            .init(name: "model.layers.0.mlp.up_proj.weight", shape: [rows, cols], floats: w, as: .bf16),
            .init(name: "model.layers.0.input_layernorm.weight", shape: [cols], floats: Array(repeating: 1, count: cols), as: .bf16)
        ])
        let model = try Model.inMemory(safetensors: image, name: "mem", format: .safetensors)
        let layer = model.tensor(named: "model.layers.0.mlp.up_proj.weight")!
        for format in FormatRegistry.all {
            let name = format.name
            var options = QuantizationOptions()
            options.groupSize = 64
            let result = try ModelQuantization.quantize(layer, of: model, format: format, options: options)
            let q = try XCTUnwrap(result.matrix)
            let path = dir + "/\(name).safetensors"
            try QuantizedCheckpoint.write(
                model: model, quantized: [layer.name: q],
                description: .init(format: name, codeBits: format.codeBits, groupSize: 64, method: "lloyd", sampleWeight: "scale"),
                fakeQuant: false, to: path)
            let (description, layers) = try QuantizedCheckpoint.read(path)
            XCTAssertEqual(description.format, name)
            assertSameMatrix(try XCTUnwrap(layers[layer.name], name), q, name)
            // Other tensors are copied unchanged.
            let file = try SafeTensorsFile(path: path)
            let norm = try XCTUnwrap(file.tensor(named: "model.layers.0.input_layernorm.weight"))
            XCTAssertEqual(norm.encoding, .plain(.bf16))
            XCTAssertNil(file.tensor(named: layer.name), "the weight is replaced by its codes")
        }
    }

    func testFakeQuantReadsInPythonSafetensorsWithTheInputLayout() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let rows = 8, cols = 136
        let w = matrix(rows: rows, cols: cols)
        let input = dir + "/in.safetensors"
        try SafeTensorsWriter.write(
            [
                .init(name: "layers.0.fc.weight", shape: [rows, cols], floats: w, as: .f16),
                .init(name: "layers.0.fc.bias", shape: [rows], floats: Array(repeating: 0.5, count: rows)),
                .init(name: "layers.0.big.weight", shape: [4, cols], floats: Array(w.prefix(4 * cols)))
            ], metadata: ["origin": "test"], to: input)
        let out = dir + "/fake.safetensors"
        let r = try runProcess(TestPaths.any4Binary, ["quantize", input, "--format", "any4", "--group-size", "64", "--out", out, "--fake-quant"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let read = try JSONParser.parse(try Python.run("safetensors_fixtures.py", ["read", out], modules: ["safetensors", "numpy"]), file: "py")
        let model = try Model.open(input)
        for t in model.tensors {
            let got = try XCTUnwrap(read[t.name], t.name)
            XCTAssertEqual(got["dtype"]?.string, t.info.encoding.description, t.name)
            XCTAssertEqual(got["shape"]?.array?.compactMap(\.int), t.shape, t.name)
        }
        // Values equal our own dequantization, rounded to the input dtype.
        let layer = model.tensor(named: "layers.0.fc.weight")!
        var options = QuantizationOptions()
        options.groupSize = 64
        let q = try XCTUnwrap(try ModelQuantization.quantize(layer, of: model, format: FormatRegistry.named("any4"), options: options).matrix)
        let expected = q.dequantized().map { Float(Float16($0)) }
        let fake = try Model.open(out)
        XCTAssertEqual(try fake.decode(fake.tensor(named: layer.name)!), expected)
        XCTAssertEqual(read["__metadata__"]?["any4.format"]?.string, "any4")
        XCTAssertEqual(read["__metadata__"]?["origin"]?.string, "test")
    }
}
