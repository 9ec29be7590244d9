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

    /// A grouped shape (A+B+CxIN) runs the 4-bit formats as one grouped call over layers quantized
    /// each on its own, and its output -- gathered back to [m, A+B+C] -- matches the f64 product of
    /// the stacked dequantized weights at every batch (a part or activation row out of place would
    /// give an error near 1); q8 runs the int8 decode-head kernel; each shape gets its own probe.
    func testBenchGroupedShapesAndQ8() throws {
        let r = try runProcess(
            TestPaths.any4Binary,
            [
                "bench", "--shape", "64+32+32x256", "--batch", "1,3", "--format", "any4,int4,q8",
                "--runs", "3", "--cycle-mib", "2", "--probe-each-shape", "--rounds", "2", "--json"
            ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONParser.parse(r.stdout, file: "stdout")
        let results = try XCTUnwrap(json["results"]?.array)
        XCTAssertEqual(results.count, 2 * 4, "f32 and three formats at two batches")
        var seen = Set<String>()
        for row in results {
            XCTAssertNil(row["unavailable"], "\(row)")
            let format = try XCTUnwrap(row["format"]?.string)
            seen.insert(format)
            XCTAssertEqual(row["shape"]?.array?.compactMap(\.double), [128, 256])
            XCTAssertEqual(row["parts"]?.array?.compactMap(\.double), [64, 32, 32])
            XCTAssertGreaterThan(row["row_probe_gbps"]?.double ?? 0, 0)
            let rounds = row["round_median_us"]?.array?.compactMap(\.double) ?? []
            XCTAssertEqual(rounds.count, 2)
            XCTAssertTrue(rounds.allSatisfy { $0 > 0 }, "\(rounds)")
            XCTAssertEqual(row["round_probe_gbps"]?.array?.compactMap(\.double).filter { $0 > 0 }.count, 2)
            let error = try XCTUnwrap(row["rel_error"]?.double)
            XCTAssertLessThanOrEqual(error, format == "f32" ? 1e-5 : 3e-2, "\(format) rel_error")
            XCTAssertEqual(row["kernel"]?.string, format == "f32" ? "dense" : (format == "q8" ? "q8" : "fast"))
        }
        XCTAssertEqual(seen, ["f32", "any4", "int4", "q8"])
        for (shape, message) in [("64+x256", "OUTxIN"), ("0+4x8", "got 0"), ("1073741824+1x8", "add up to")] {
            let bad = try runProcess(TestPaths.any4Binary, ["bench", "--shape", shape])
            XCTAssertEqual(bad.status, 2, shape)
            XCTAssertTrue(bad.stderr.contains(message), "\(shape): \(bad.stderr)")
        }
        let alone = try runProcess(
            TestPaths.any4Binary, ["bench", "--shape", "64x64", "--format", "int4", "--batch", "1", "--runs", "1", "--no-baseline", "--json"])
        XCTAssertEqual(alone.status, 0, alone.stderr)
        let aloneRows = try XCTUnwrap(JSONParser.parse(alone.stdout, file: "stdout")["results"]?.array)
        XCTAssertEqual(aloneRows.map { $0["format"]?.string }, ["int4"], "--no-baseline: no f32 row")
        XCTAssertEqual(aloneRows.first?["vs_f32"], .null)
        let cycle = try runProcess(TestPaths.any4Binary, ["bench", "--shape", "64x64", "--cycle-mib", "0"])
        XCTAssertEqual(cycle.status, 2)
        XCTAssertTrue(cycle.stderr.contains("--cycle-mib"), cycle.stderr)
    }
}
