import Any4Bench
import Any4Core
import Any4Kernels
import TestSupport
import XCTest

/// Every registered format through the whole path, as ggml's test-quantize-fns does: quantize,
/// write a checkpoint, read it back, dequantize, and run both CPU lookup kernels against the
/// dequantized product. A format added to ``FormatRegistry`` is tested here with no edit.
final class FormatRegistryTests: XCTestCase {
    /// The formats whose own block the lookup kernel refuses, and why. A new format the kernel
    /// cannot take must be added here (the test fails otherwise): never skipped in silence.
    static let refusedByTheKernel: [String: String] = [
        "int8": "8-bit codes: the lookup kernels hold 16-entry tables (4-bit codes or narrower)",
        "nvfp4": "its block of 16: the kernels' groups are multiples of 32 (run below at block 64 instead)"
    ]

    /// The registered formats the lookup kernel takes at their own blocks (for the other tests).
    static var kernelFormats: [any NumericFormat] { FormatRegistry.all.filter { refusedByTheKernel[$0.name] == nil } }

    func weights(_ rows: Int, _ cols: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<(rows * cols)).map { _ in Float(rng.nextStudentT4() * 0.02) }
    }

    /// Shapes: groups that divide the width, and an odd width no group size divides (a ragged last
    /// group, an odd last nibble in each packed row).
    let shapes: [(rows: Int, cols: Int, group: Int)] = [(9, 256, 64), (7, 201, 64)]

    func testEveryFormatRoundTripsAndRunsInBothKernels() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        var refused: [String: String] = [:]
        for format in FormatRegistry.all {
            for (rows, cols, group) in shapes {
                for dtype in [DType.f32, .bf16] {
                    var options = QuantizationOptions()
                    options.groupSize = group
                    options.threads = 1
                    let label = "\(format.name) \(rows)x\(cols) g\(group) \(dtype)"
                    let q = try roundTrip(format, rows: rows, cols: cols, dtype: dtype, options: options, dir: dir, label: label)
                    if let why = Self.refusedByTheKernel[format.name] {
                        XCTAssertThrowsError(try PackedLinear(q), label)
                        refused[format.name] = why
                        // nvfp4 at a block the kernel takes (as `compare --equal-blocks` runs it): its
                        // tensor scale through the kernels too. In memory only: a checkpoint's reader
                        // takes a fixed-block format at its own block (the CLI never writes another).
                        guard format.fixedBlockSize != nil, format.codeBits <= 4 else { continue }
                        options.overrideFixedBlocks = true
                        let wide = try Quantizer.quantize(
                            weights(rows, cols, seed: UInt64(rows * cols)), rows: rows, cols: cols,
                            name: "w", format: format, options: options)
                        XCTAssertEqual(wide.groupSize, group)
                        XCTAssertNotEqual(wide.tensorScale, 1)
                        try checkKernels(wide, label: label + " at block \(group)")
                    } else {
                        try checkKernels(q, label: label)
                    }
                }
            }
        }
        XCTAssertEqual(Set(refused.keys), Set(Self.refusedByTheKernel.keys), "every stated refusal is a registered format")
    }

    /// Quantizes a seeded [rows, cols] weight of a model in `dtype`, writes the checkpoint, reads it
    /// back and checks that the read matrix is the written one (codes, tables, scales, zeros, tensor
    /// scale, dequantized values and bits per weight exactly). Returns the matrix read back.
    func roundTrip(
        _ format: any NumericFormat, rows: Int, cols: Int, dtype: DType, options: QuantizationOptions,
        dir: String, label: String
    ) throws -> QuantizedMatrix {
        let name = "model.layers.0.mlp.up_proj.weight"
        let image = try SafeTensorsWriter.image([
            .init(name: name, shape: [rows, cols], floats: weights(rows, cols, seed: UInt64(rows * cols)), as: dtype)
        ])
        let model = try Model.inMemory(safetensors: image, name: "mem", format: .safetensors)
        let layer = try XCTUnwrap(model.tensor(named: name))
        let result = try ModelQuantization.quantize(layer, of: model, format: format, options: options)
        let q = try XCTUnwrap(result.matrix, label)
        XCTAssertEqual(q.groupSize, options.blockSize(for: format), label)
        let path = dir + "/q.safetensors"
        try QuantizedCheckpoint.write(
            model: model, quantized: [name: q], description: .init(format: format, options: options),
            fakeQuant: false, to: path)
        let (description, layers) = try QuantizedCheckpoint.read(path)
        XCTAssertEqual(description.format, format.name, label)
        XCTAssertEqual(description.codeBits, format.codeBits, label)
        let back = try XCTUnwrap(layers[name], label)
        assertSameMatrix(back, q, label)
        XCTAssertEqual(back.tensorScale != 1, format.hasTensorScale && q.tensorScale != 1, label)
        let file = try SafeTensorsFile(path: path)
        let base = String(name.dropLast(".weight".count))
        let scales = try XCTUnwrap(file.tensor(named: base + ".scales"), label)
        if format.scaleEncoding != .float { XCTAssertEqual(scales.encoding, .plain(.u8), label) }
        XCTAssertEqual(file.tensor(named: base + ".tensor_scale") != nil, format.hasTensorScale, label)
        XCTAssertEqual(file.tensor(named: base + ".lut") != nil, format.perRowTable, label)
        XCTAssertEqual(file.tensor(named: base + ".zeros") != nil, format.hasZeros, label)
        return back
    }

    /// Both kernels against the f64 product of the dequantized weights read back, m = 1 and 5 (with
    /// a bias). Exact path (f32 lookups and sums): ≤ 1e-5 relative — f32 rounding over a few hundred
    /// terms is ≈ 1e-7·√K. Fast path (activations rounded to int8 per group, tables to int8 with a
    /// per-row factor): ≤ 2e-2 relative, the bound KernelTests holds every format to on each case
    /// (an int8 rounding is ≤ 1/254 of a group's range; over a handful of outputs the error is
    /// ≈ 0.5 % with room for unlucky draws).
    func checkKernels(_ q: QuantizedMatrix, label: String) throws {
        let layer = try PackedLinear(q)
        let deq = q.dequantized()
        for m in [1, 5] {
            var rng = SplitMix64(seed: UInt64(m + q.cols))
            let x = (0..<(m * q.cols)).map { _ in Float(rng.nextGaussian()) }
            let bias: [Float]? = m == 5 ? (0..<q.rows).map { Float($0) * 0.01 } : nil
            let ref = referenceProduct(deq, rows: q.rows, cols: q.cols, x: x, m: m, bias: bias)
            for simd in CPUFeatures.levels {
                let exact = layer.forward(x, m: m, path: .exact, threads: 1, bias: bias, simd: simd)
                XCTAssertLessThanOrEqual(relativeError(exact, ref), 1e-5, "exact \(label) m=\(m) simd=\(simd.name)")
                let fast = layer.forward(x, m: m, path: .fast, threads: 1, bias: bias, simd: simd)
                XCTAssertLessThanOrEqual(relativeError(fast, ref), 2e-2, "fast \(label) m=\(m) simd=\(simd.name)")
            }
        }
    }

    /// The lists users see, in the orders they have always had.
    func testListsKeepTheirOrders() {
        XCTAssertEqual(
            FormatRegistry.offered.map(\.name), ["any4", "int4", "nf4", "fp4", "iq4_nl", "mxfp4", "nvfp4", "any3", "int2", "int8"],
            "the TUI's format key")
        XCTAssertEqual(
            FormatRegistry.fourBit.map(\.name), ["any4", "int4", "nf4", "fp4", "fp4-bnb", "iq4_nl", "mxfp4", "nvfp4"],
            "the TUI's comparison table")
        XCTAssertEqual(
            FormatRegistry.comparison.map(\.name), ["any4", "int4", "nf4", "fp4", "fp4-bnb", "mxfp4", "nvfp4", "iq4_nl"],
            "compare's default")
        XCTAssertEqual(KernelBenchmark.Configuration().formats, ["any4", "int4", "nf4", "f32", "f16", "bf16", "blas"], "bench's default")
        XCTAssertEqual(Set(FormatRegistry.all.map(\.name)).count, FormatRegistry.all.count, "names are unique")
    }

    /// The byte scale encodings give back what they store.
    func testByteScaleEncodingsRoundTrip() {
        for exponent in -127...127 {
            let scale = Float(sign: .plus, exponent: exponent, significand: 1)
            XCTAssertEqual(ScaleEncoding.e8m0.decode(ScaleEncoding.e8m0.encode(scale)), scale)
        }
        for byte in UInt8(0)...UInt8(0x7E) {
            XCTAssertEqual(ScaleEncoding.e4m3.encode(ScaleEncoding.e4m3.decode(byte)), byte)
        }
        XCTAssertEqual(MXFP4Format().scaleBits, 8)
        XCTAssertEqual(NVFP4Format().scaleBits, 8)
        XCTAssertNil(TableFormat.nf4.scaleBits)
        XCTAssertEqual(TableFormat.iq4nl.scaleBits, 16)
    }
}

/// A quantized matrix read back from a checkpoint is the one written: codes, tables, scales, zeros,
/// tensor scale, group size, dequantized values and bits per weight, exactly.
func assertSameMatrix(
    _ back: QuantizedMatrix, _ written: QuantizedMatrix, _ label: String, file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(back.codes, written.codes, label, file: file, line: line)
    XCTAssertEqual(back.tables, written.tables, label, file: file, line: line)
    XCTAssertEqual(back.scales, written.scales, label, file: file, line: line)
    XCTAssertEqual(back.zeros, written.zeros, label, file: file, line: line)
    XCTAssertEqual(back.tensorScale, written.tensorScale, label, file: file, line: line)
    XCTAssertEqual(back.groupSize, written.groupSize, label, file: file, line: line)
    XCTAssertEqual(back.dequantized(), written.dequantized(), label, file: file, line: line)
    XCTAssertEqual(back.bitsPerWeight, written.bitsPerWeight, label, file: file, line: line)
}
