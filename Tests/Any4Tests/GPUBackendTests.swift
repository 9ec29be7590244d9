import Any4Core
import Any4GPU
import Any4Kernels
import Foundation
import TestSupport
import XCTest

/// The run-time-loaded GPU backend: without a GPU it must say exactly why; with one, the device
/// must reproduce the emulation (and so the CPU kernel).
final class GPUBackendTests: XCTestCase {
    func testLoadSaysWhyOrRunsTheKernelsLikeTheEmulation() throws {
        switch GPUBackend.load() {
        case .unavailable(let why):
            XCTAssertFalse(why.isEmpty)
            XCTAssertEqual(GPUBackend.unavailableReason, why)
            XCTAssertNil(GPUBackend.shared)
        case .available(let gpu):
            XCTAssertNil(GPUBackend.unavailableReason)
            try checkDevice(gpu)
        }
    }

    /// On a machine with a GPU: lookup and dense kernels against their emulation (same operations
    /// in the same order: 1e-6 leaves room only for a different f16 conversion) and the CPU
    /// kernel (the 1e-3), cuBLAS against the f64 product.
    func checkDevice(_ gpu: GPUBackend) throws {
        for (rows, cols, group) in [(37, 200, 64), (9, 576, 128), (6, 1300, 32), (5, 3072, 96)] {
            var rng = SplitMix64(seed: UInt64(cols))
            let w = (0..<(rows * cols)).map { _ in Float(rng.nextStudentT4() * 0.02) }
            for format in FormatRegistry.benchmarked.map(\.name) {  // the formats bench runs by default
                var o = QuantizationOptions()
                o.groupSize = group
                let q = try Quantizer.quantize(w, rows: rows, cols: cols, name: "w", format: FormatRegistry.named(format), options: o)
                let layout = try GPULookupLayout(q)
                let device = try GPULookupLinear(layout, on: gpu)
                let cpu = try PackedLinear(q)
                for m in [1, 3, 8, 16] {
                    let x = (0..<(m * cols)).map { _ in Float(rng.nextGaussian()) }
                    for type in GPUActivationType.allCases {
                        let label = "\(format) \(rows)x\(cols) m=\(m) \(type)"
                        let y = try device.forward(x, m: m, type: type)
                        let emulated = GPUEmulation.lookup(layout, x: type.pack(x, m: m, cols: cols, paddedCols: layout.paddedCols), m: m, type: type)
                        XCTAssertLessThanOrEqual(relativeError(y, emulated.map(Double.init)), 1e-6, "device vs emulation: " + label)
                        let reference = cpu.forward(type.rounded(x), m: m, path: .exact, threads: 1)
                        XCTAssertLessThanOrEqual(relativeError(y, reference.map(Double.init)), 1e-3, "device vs CPU kernel: " + label)
                    }
                }
            }
            for type in GPUActivationType.allCases {
                let dense = GPUDenseLayout(w, rows: rows, cols: cols, type: type)
                let x = (0..<(3 * cols)).map { _ in Float(rng.nextGaussian()) }
                let y = try GPUDenseLinear(dense, on: gpu).forward(x, m: 3)
                let emulated = GPUEmulation.dense(dense, x: type.pack(x, m: 3, cols: cols, paddedCols: dense.paddedCols), m: 3)
                XCTAssertLessThanOrEqual(relativeError(y, emulated.map(Double.init)), 1e-6, "dense \(type)")
                if gpu.cublasUnavailableReason == nil {
                    let yb = try GPUCuBLASLinear(w, rows: rows, cols: cols, type: type, on: gpu).forward(x, m: 3)
                    let ref = referenceProduct(dense.storedWeights, rows: rows, cols: cols, x: type.rounded(x), m: 3)
                    XCTAssertLessThanOrEqual(relativeError(yb, ref), 1e-3, "cuBLAS \(type)")
                }
            }
        }
    }

    func testMissingLibrariesAndSymbolsAreNamed() {
        XCTAssertThrowsError(try CUDADriver(candidates: ["libany4-test-no-such-cuda.so.1"])) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("CUDA driver") && text.contains("libany4-test-no-such-cuda.so.1"), text)
        }
        // A library that loads but is not the one asked for: the first missing symbol is named.
        XCTAssertThrowsError(try CUDADriver(candidates: ["libc.so.6"])) { error in
            XCTAssertTrue("\(error)".contains("symbol cuInit missing in libc.so.6"), "\(error)")
        }
        XCTAssertThrowsError(try NVRTC(candidates: ["libc.so.6"])) { error in
            XCTAssertTrue("\(error)".contains("symbol nvrtcVersion missing in libc.so.6"), "\(error)")
        }
        XCTAssertThrowsError(try NVRTC(candidates: ["libany4-test-no-such-nvrtc.so.12"])) { error in
            XCTAssertTrue("\(error)".contains("nvidia-cuda-nvrtc"), "the message says how to get it: \(error)")
        }
    }

    /// pip's nvidia-cuda-nvrtc wheel folder is searched in every Python's site-packages, and a
    /// library found there that does not load is reported with the loader's reason.
    func testPipNVRTCFolderIsSearched() throws {
        let prefix = try TestPaths.temporaryDirectory(for: self)
        let folder = prefix + "/python3.12/site-packages/nvidia/cuda_nvrtc/lib"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let fake = folder + "/libnvrtc.so.12"
        try Data("not a shared object".utf8).write(to: URL(fileURLWithPath: fake))
        let candidates = NVRTC.candidates(pythonPrefixes: [prefix])
        XCTAssertTrue(candidates.contains(fake), "\(candidates)")
        XCTAssertThrowsError(try NVRTC(candidates: [fake])) { error in
            XCTAssertTrue("\(error)".contains(fake), "\(error)")
        }
    }

    /// The cache key is a pure function of source, architecture, NVRTC version and options, the
    /// same on every run and machine (a golden value), and changes when any of them does.
    func testCubinCacheKeyIsStable() {
        let source = "__global__ void k() {}"
        let key = CubinCache.key(source: source, architecture: "sm_90", nvrtcVersion: "12.4", options: [])
        XCTAssertEqual(key, "adb10cc92e0c420d")
        XCTAssertEqual(key, CubinCache.key(source: source, architecture: "sm_90", nvrtcVersion: "12.4", options: []))
        let others = [
            CubinCache.key(source: source + " ", architecture: "sm_90", nvrtcVersion: "12.4", options: []),
            CubinCache.key(source: source, architecture: "sm_89", nvrtcVersion: "12.4", options: []),
            CubinCache.key(source: source, architecture: "sm_90", nvrtcVersion: "12.6", options: []),
            CubinCache.key(source: source, architecture: "sm_90", nvrtcVersion: "12.4", options: ["-lineinfo"]),
            CubinCache.key(source: source, architecture: "sm_90", nvrtcVersion: "12.4", options: ["a", "b"]),
            CubinCache.key(source: source, architecture: "sm_90", nvrtcVersion: "12.4", options: ["ab"])
        ]
        XCTAssertEqual(Set(others + [key]).count, others.count + 1)
        for k in others { XCTAssertEqual(k.count, 16) }
        XCTAssertEqual(CubinCache.fileName(source: "any4_gemm.cu", architecture: "sm_90", key: key), "any4_gemm-sm_90-adb10cc92e0c420d.cubin")
        // The key of the shipped kernel is what the backend uses; it must not depend on the run.
        XCTAssertEqual(
            CubinCache.key(source: GPUKernelSource.text, architecture: "sm_90", nvrtcVersion: "12.4", options: []),
            CubinCache.key(source: GPUKernelSource.text, architecture: "sm_90", nvrtcVersion: "12.4", options: []))
    }

    func testCubinCacheFolderAndFiles() throws {
        XCTAssertEqual(CubinCache.directory(environment: ["XDG_CACHE_HOME": "/x/cache", "HOME": "/home/u"]), "/x/cache/any4")
        XCTAssertEqual(
            CubinCache.directory(environment: ["XDG_CACHE_HOME": "relative", "HOME": "/home/u"]), "/home/u/.cache/any4",
            "a relative XDG_CACHE_HOME is ignored, as the XDG spec says")
        XCTAssertEqual(CubinCache.directory(environment: ["HOME": "/home/u"]), "/home/u/.cache/any4")
        XCTAssertNil(CubinCache.directory(environment: [:]))
        let root = try TestPaths.temporaryDirectory(for: self)
        let path = root + "/a/b/any4/k.cubin"
        XCTAssertNil(CubinCache.read(path))
        XCTAssertNil(CubinCache.write([1, 2, 3, 250], to: path))
        XCTAssertEqual(CubinCache.read(path), [1, 2, 3, 250])
    }
}
