import Any4Core
import Foundation
import TestSupport
import XCTest

/// `any4 bench` prints the JSON it promises (small shapes, few runs: a smoke test of the
/// command, not a measurement).
final class BenchCLITests: XCTestCase {
    func testBenchJSONSchema() throws {
        let r = try runProcess(
            TestPaths.any4Binary,
            [
                "bench", "--shape", "96x200", "128x256", "--batch", "1,3",
                "--formats", "any4,int4,f16,blas", "--runs", "3", "--hot", "--json"
            ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONParser.parse(r.stdout, file: "stdout")
        XCTAssertGreaterThan(json["probe_gbps"]?.double ?? 0, 0)
        let results = try XCTUnwrap(json["results"]?.array)
        XCTAssertEqual(results.count, 2 * 2 * 5, "f32 is always measured as the baseline")
        for row in results where row["unavailable"] == nil {
            for key in ["format", "shape", "batch", "threads", "kernel", "median_us", "p10_us", "p90_us", "gflops", "gbps", "vs_f32", "rel_error"] {
                XCTAssertNotNil(row[key], key)
            }
            let format = row["format"]!.string!
            let error = row["rel_error"]!.double!
            XCTAssertLessThanOrEqual(error, ["any4", "int4"].contains(format) ? 2e-2 : 1e-5, "\(format) rel_error")
            XCTAssertLessThanOrEqual(row["p10_us"]!.double!, row["p90_us"]!.double!)
        }
        let bad = try runProcess(TestPaths.any4Binary, ["bench", "--shape", "12by4"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("OUTxIN"), bad.stderr)
    }
}
