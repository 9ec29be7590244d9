import Any4Core
import Foundation
import TestSupport
import XCTest

/// `any4 info` and `bench --device`: without a GPU they say why and the rest works unchanged.
final class GPUCLITests: XCTestCase {
    /// Whether this machine has a usable GPU backend, as `info --json` reports it.
    func gpuAvailable() throws -> Bool {
        let r = try runProcess(TestPaths.any4Binary, ["info", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONParser.parse(r.stdout, file: "stdout")
        return try XCTUnwrap(json["gpu"]?["available"]?.bool)
    }

    func testInfoReportsTheMachineAndWhyThereIsNoGPU() throws {
        let r = try runProcess(TestPaths.any4Binary, ["info", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONParser.parse(r.stdout, file: "stdout")
        XCTAssertNotNil(json["cpu"]?["avx2"]?.bool)
        XCTAssertGreaterThan(json["cpu"]?["cores"]?.int ?? 0, 0)
        XCTAssertNotNil(json["openblas"])
        let gpu = try XCTUnwrap(json["gpu"])
        for key in ["driver", "devices", "nvrtc", "cublas", "cache_directory"] { XCTAssertNotNil(gpu[key], key) }
        let text = try runProcess(TestPaths.any4Binary, ["info"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("CPU: ") && text.stdout.contains("OpenBLAS: ") && text.stdout.contains("NVRTC: "), text.stdout)
        if gpu["available"]?.bool == false {
            let why = try XCTUnwrap(gpu["unavailable"]?.string)
            XCTAssertFalse(why.isEmpty)
            XCTAssertTrue(text.stdout.contains("GPU: not available: " + why), text.stdout)
        } else {
            XCTAssertFalse(gpu["devices"]?.array?.isEmpty ?? true)
        }
    }

    func testBenchOnTheGPUWithoutOneExitsTwoWithTheReason() throws {
        guard try !gpuAvailable() else { throw XCTSkip("this machine has a GPU") }
        let r = try runProcess(TestPaths.any4Binary, ["bench", "--device", "gpu", "--shape", "64x256", "--batch", "1", "--runs", "1"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("--device gpu: no GPU backend: "), r.stderr)
        XCTAssertTrue(r.stdout.isEmpty, r.stdout)
    }

    func testBenchOnAllDevicesRunsTheCPURowsAndSaysWhyNotTheGPU() throws {
        let gpu = try gpuAvailable()
        let r = try runProcess(
            TestPaths.any4Binary,
            [
                "bench", "--device", "all", "--shape", "64x256", "--batch", "1,3",
                "--formats", "any4,bf16", "--runs", "3", "--hot", "--json"
            ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONParser.parse(r.stdout, file: "stdout")
        let rows = try XCTUnwrap(json["results"]?.array)
        let cpuRows = rows.filter { $0["device"]?.string == "cpu" }
        XCTAssertEqual(cpuRows.count, 2 * 3, "f32 is always measured as the CPU baseline")
        for row in cpuRows { XCTAssertNil(row["unavailable"], "\(row)") }
        if gpu {
            XCTAssertNotNil(json["gpu_probe_gbps"]?.double)
            let gpuRows = rows.filter { $0["device"]?.string == "gpu" }
            XCTAssertEqual(gpuRows.count, 2 * 3, "cuBLAS is always measured as the GPU baseline")
            for row in gpuRows where row["unavailable"] == nil {
                XCTAssertLessThanOrEqual(row["rel_error"]?.double ?? 1, 1e-3, "\(row)")
                XCTAssertNotNil(row["vs_cublas"])
            }
        } else {
            XCTAssertEqual(rows.count, cpuRows.count)
            XCTAssertFalse(json["gpu_unavailable"]?.string?.isEmpty ?? true)
            XCTAssertTrue(r.stderr.contains("GPU rows skipped: "), r.stderr)
        }
        let bad = try runProcess(TestPaths.any4Binary, ["bench", "--device", "tpu"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("--device"), bad.stderr)
    }
}
