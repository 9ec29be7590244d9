import Any4Core
import Any4GPU
import Any4Kernels
import Foundation
import TestSupport
import XCTest

/// The GPU layout, proved on the CPU: the emulation of any4_gemm.cu reads the layout back in the
/// kernel's own order and must reproduce the CPU lookup kernel and the dequantized product.
final class GPULayoutTests: XCTestCase {
    func weights(_ rows: Int, _ cols: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<(rows * cols)).map { _ in Float(rng.nextStudentT4() * 0.02) }
    }

    func quantized(_ w: [Float], _ rows: Int, _ cols: Int, _ format: String, group: Int) throws -> QuantizedMatrix {
        var o = QuantizationOptions()
        o.groupSize = group
        o.threads = 1
        return try Quantizer.quantize(w, rows: rows, cols: cols, name: "w", format: FormatRegistry.named(format), options: o)
    }

    /// Shapes that walk every branch of the kernel: tail slices only (200, 576 with a ragged last
    /// group), whole chunks plus tail slices (1300), an odd number of chunks (3072 = 3 × 1024, the
    /// second of a pair absent), two chunks exactly (2048); odd row counts (padding row); group
    /// sizes 32, 64, 96 (not a power of two) and 128.
    let shapes: [(rows: Int, cols: Int, group: Int)] = [
        (37, 200, 64), (9, 576, 128), (6, 1300, 32), (5, 3072, 96), (4, 2048, 128)
    ]

    func testLayoutHoldsEveryCodeWhereTheKernelReadsIt() throws {
        for (rows, cols, group) in shapes {
            let q = try quantized(weights(rows, cols, seed: 3), rows, cols, "any4", group: group)
            let l = try GPULookupLayout(q)
            XCTAssertEqual(l.paddedCols % 256, 0)
            XCTAssertEqual(l.paddedRows % 2, 0)
            for r in 0..<rows { for c in 0..<cols { XCTAssertEqual(l.code(row: r, column: c), q.codes[r * cols + c]) } }
            // Padding holds code 0, and every word of every row is used exactly once.
            for r in 0..<l.paddedRows {
                for c in 0..<l.paddedCols where r >= rows || c >= cols { XCTAssertEqual(l.code(row: r, column: c), 0) }
            }
            var seen = Set<Int>()
            for c in stride(from: 0, to: l.paddedCols, by: 8) {
                let (word, shift) = GPULookupLayout.position(column: c, paddedCols: l.paddedCols)
                XCTAssertEqual(shift, 0)
                XCTAssertTrue(seen.insert(word).inserted, "word \(word) used twice")
            }
            XCTAssertEqual(seen, Set(0..<(l.paddedCols / 8)))
            // Lane l's uint4 of chunk c is 16 contiguous bytes: slices 4c…4c+3 at the same lane.
            for c in 0..<(l.paddedCols / 1024) {
                for lane in 0..<32 {
                    for j in 0..<4 {
                        let column = (4 * c + j) * 256 + lane * 8
                        XCTAssertEqual(GPULookupLayout.position(column: column, paddedCols: l.paddedCols).word, (c * 32 + lane) * 4 + j)
                    }
                }
            }
        }
    }

    /// Tolerance: the emulation and the CPU exact path compute the same f32 products and sums in
    /// different orders, so they agree to ≈ 1e-7 relative; 1e-5 is asserted (the GPU criterion is
    /// 1e-3 against the CPU kernel on the same f16/bf16 inputs). Against the unrounded activations
    /// the difference is the activations' rounding: ≈ 3e-4 for f16, ≈ 2e-3 for bf16.
    func testEmulatedKernelEqualsTheCPUKernelAndTheDequantizedProduct() throws {
        for (rows, cols, group) in shapes {
            let w = weights(rows, cols, seed: UInt64(rows * cols))
            for format in FormatRegistryTests.kernelFormats.map(\.name) {
                let q = try quantized(w, rows, cols, format, group: group)
                let layout = try GPULookupLayout(q)
                let cpu = try PackedLinear(q)
                let deq = q.dequantized()
                for m in [1, 3, 8, 16] {
                    var rng = SplitMix64(seed: UInt64(m * 7 + cols))
                    let x = (0..<(m * cols)).map { _ in Float(rng.nextGaussian()) }
                    for type in GPUActivationType.allCases {
                        let label = "\(format) \(rows)x\(cols) g\(group) m=\(m) \(type)"
                        let xr = type.rounded(x)
                        let gpu = GPUEmulation.lookup(layout, x: type.pack(x, m: m, cols: cols, paddedCols: layout.paddedCols), m: m, type: type)
                        XCTAssertEqual(gpu.count, m * rows)
                        let reference = cpu.forward(xr, m: m, path: .exact, threads: 1)
                        XCTAssertLessThanOrEqual(relativeError(gpu, reference.map(Double.init)), 1e-5, "vs CPU kernel: " + label)
                        let exact = referenceProduct(deq, rows: rows, cols: cols, x: xr, m: m)
                        XCTAssertLessThanOrEqual(relativeError(gpu, exact), 1e-5, "vs f64 product: " + label)
                        let unrounded = referenceProduct(deq, rows: rows, cols: cols, x: x, m: m)
                        XCTAssertLessThanOrEqual(relativeError(gpu, unrounded), type == .f16 ? 1e-3 : 1e-2, "vs unrounded x: " + label)
                    }
                }
            }
        }
    }

    /// A layout read in the wrong order must not pass: swapping two lanes' words in one chunk
    /// changes the emulated product (the test above would catch a wrong packing).
    func testEmulationIsSensitiveToTheLayout() throws {
        let (rows, cols) = (4, 2048)
        let q = try quantized(weights(rows, cols, seed: 5), rows, cols, "any4", group: 128)
        let good = try GPULookupLayout(q)
        var codes = good.codes
        codes.swapAt(0, 4)  // lane 0 and lane 1, slice 0
        let bad = GPULookupLayout(copying: good, codes: codes)
        var rng = SplitMix64(seed: 1)
        let x = (0..<cols).map { _ in Float(rng.nextGaussian()) }
        let packed = GPUActivationType.f16.pack(x, m: 1, cols: cols, paddedCols: good.paddedCols)
        let yGood = GPUEmulation.lookup(good, x: packed, m: 1, type: .f16)
        let yBad = GPUEmulation.lookup(bad, x: packed, m: 1, type: .f16)
        XCTAssertGreaterThan(relativeError(yBad, yGood.map(Double.init)), 1e-4)
    }

    func testEmulatedDenseKernelEqualsTheProductOfTheStoredWeights() {
        for (rows, cols) in [(7, 200), (4, 1300)] {
            let w = weights(rows, cols, seed: 11)
            for type in GPUActivationType.allCases {
                let layout = GPUDenseLayout(w, rows: rows, cols: cols, type: type)
                for m in [1, 5, 16] {
                    var rng = SplitMix64(seed: UInt64(m))
                    let x = (0..<(m * cols)).map { _ in Float(rng.nextGaussian()) }
                    let y = GPUEmulation.dense(layout, x: type.pack(x, m: m, cols: cols, paddedCols: layout.paddedCols), m: m)
                    let ref = referenceProduct(layout.storedWeights, rows: rows, cols: cols, x: type.rounded(x), m: m)
                    XCTAssertLessThanOrEqual(relativeError(y, ref), 1e-5, "dense \(type) \(rows)x\(cols) m=\(m)")
                }
            }
        }
    }

    func testUnsupportedMatricesAreRefusedWithAReason() throws {
        let w = weights(4, 64, seed: 2)
        let int8 = try quantized(w, 4, 64, "int8", group: 32)
        XCTAssertThrowsError(try GPULookupLayout(int8)) {
            XCTAssertEqual("\($0)", "the GPU lookup kernel takes 4-bit (or narrower) codes, not 8-bit")
        }
    }

    /// The kernel source itself, compiled for the CPU (Tests/CUDAHost/host_runner.cpp: one thread
    /// per CUDA thread, shuffles through a barrier) and run on the layout, must give the
    /// emulation's results bit for bit: the .cu indexes the layout as the emulation does.
    func testKernelSourceRunOnTheCPUEqualsTheEmulationBitForBit() throws {
        let runner = try HostKernelRunner(test: self)
        let cases: [(rows: Int, cols: Int, group: Int, formats: [String])] = [
            (37, 200, 64, ["any4"]), (9, 576, 128, ["any4", "nf4"]), (6, 1300, 32, ["any4", "int4"]), (5, 3072, 96, ["any4"])
        ]
        for (rows, cols, group, formats) in cases {
            let w = weights(rows, cols, seed: UInt64(rows + cols))
            for format in formats {
                let layout = try GPULookupLayout(quantized(w, rows, cols, format, group: group))
                for (m, type) in [(1, GPUActivationType.bf16), (3, .f16), (16, .bf16)] {
                    var rng = SplitMix64(seed: UInt64(m))
                    let x = type.pack((0..<(m * cols)).map { _ in Float(rng.nextGaussian()) }, m: m, cols: cols, paddedCols: layout.paddedCols)
                    let y = try runner.lookup(layout, x: x, m: m, type: type)
                    assertBitwiseEqual(y, GPUEmulation.lookup(layout, x: x, m: m, type: type), "\(format) \(rows)x\(cols) m=\(m) \(type)")
                }
            }
            for type in GPUActivationType.allCases {
                let dense = GPUDenseLayout(w, rows: rows, cols: cols, type: type)
                var rng = SplitMix64(seed: 9)
                let x = type.pack((0..<(2 * cols)).map { _ in Float(rng.nextGaussian()) }, m: 2, cols: cols, paddedCols: dense.paddedCols)
                assertBitwiseEqual(try runner.dense(dense, x: x, m: 2), GPUEmulation.dense(dense, x: x, m: 2), "dense \(type) \(rows)x\(cols)")
            }
        }
    }

    /// The kernel source parses and type-checks as CUDA device code (clang's CUDA front end with
    /// Tests/CUDAHost/device_stand_ins.h for what NVRTC declares implicitly), warning-free, for
    /// the architectures the backend compiles for. Clang is not NVRTC: this catches most, not all,
    /// of what NVRTC would refuse. Skips when clang++ has no CUDA support.
    func testKernelSourceChecksAsDeviceCode() throws {
        let root = TestPaths.packageRoot
        for arch in ["sm_70", "sm_80", "sm_90"] {
            let r = try runProcess(
                "/usr/bin/env",
                [
                    "clang++", "-x", "cuda", "--cuda-device-only", "--cuda-gpu-arch=\(arch)",
                    "-nocudainc", "-nocudalib", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
                    "-include", root + "/Tests/CUDAHost/device_stand_ins.h",
                    root + "/Sources/Any4GPU/any4_gemm.cu"
                ])
            if r.status == 127 || (r.status != 0 && r.stderr.contains("unsupported option")) {
                throw XCTSkip("clang++ cannot check CUDA here: \(r.stderr)")
            }
            XCTAssertEqual(r.status, 0, "\(arch): \(r.stderr)")
        }
    }

    /// The CUDA source embedded in the binary is the .cu file in the repository.
    func testEmbeddedKernelSourceMatchesTheCUDAFile() throws {
        let path = TestPaths.packageRoot + "/Sources/Any4GPU/any4_gemm.cu"
        let file = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertEqual(GPUKernelSource.text + "\n", file, "run scripts/embed-cuda-source.sh")
        for name in ["any4_lut_f16_m1", "any4_lut_bf16_m16", "any4_dense_f16_m8", "any4_dense_bf16_m2"] {
            XCTAssertTrue(file.contains("(\(name),"), name)
        }
    }
}

/// Tests/CUDAHost/host_runner.cpp built with the toolchain's clang++ (skips when there is none).
struct HostKernelRunner {
    let executable: String
    let directory: String

    init(test: XCTestCase) throws {
        directory = try TestPaths.temporaryDirectory(for: test)
        executable = directory + "/runner"
        let root = TestPaths.packageRoot
        let build = try runProcess(
            "/usr/bin/env",
            [
                "clang++", "-std=c++17", "-O1", "-pthread", "-DANY4_HOST_CHECK",
                "-I", root + "/Sources/Any4GPU", root + "/Tests/CUDAHost/host_runner.cpp",
                "-o", executable
            ])
        guard build.status == 0 else {
            if build.status == 127 { throw XCTSkip("no clang++: \(build.stderr)") }
            throw NSError(
                domain: "host_runner", code: Int(build.status),
                userInfo: [NSLocalizedDescriptionKey: "Tests/CUDAHost/host_runner.cpp does not build: \(build.stderr)"])
        }
    }

    func write(_ name: String, _ bytes: UnsafeRawBufferPointer) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: directory + "/" + name))
    }

    func run(_ kernel: String, blocks: Int, params: [Int], count: Int) throws -> [Float] {
        try Data(params.map(String.init).joined(separator: " ").utf8).write(to: URL(fileURLWithPath: directory + "/params"))
        let r = try runProcess(executable, [kernel, String(blocks), directory])
        guard r.status == 0 else { throw NSError(domain: "host_runner", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: r.stderr]) }
        let y = try readFloat32File(directory + "/y")
        XCTAssertEqual(y.count, count)
        return y
    }

    func lookup(_ l: GPULookupLayout, x: [UInt16], m: Int, type: GPUActivationType) throws -> [Float] {
        try l.codes.withUnsafeBytes { try write("codes", $0) }
        try l.table.withUnsafeBytes { try write("table", $0) }
        try l.scaleZero.withUnsafeBytes { try write("sz", $0) }
        try x.withUnsafeBytes { try write("x", $0) }
        return try run(
            "any4_lut_\(type.rawValue)_m\(GPUGeometry.batchTile(m)!)", blocks: GPUGeometry.blocks(rows: l.rows),
            params: [l.tableStride, l.paddedGroups, l.groupSize, l.rows, l.paddedCols, m], count: m * l.rows)
    }

    func dense(_ d: GPUDenseLayout, x: [UInt16], m: Int) throws -> [Float] {
        try d.weights.withUnsafeBytes { try write("w", $0) }
        try x.withUnsafeBytes { try write("x", $0) }
        return try run(
            "any4_dense_\(d.type.rawValue)_m\(GPUGeometry.batchTile(m)!)", blocks: GPUGeometry.blocks(rows: d.rows),
            params: [d.rows, d.paddedCols, m], count: m * d.rows)
    }
}
