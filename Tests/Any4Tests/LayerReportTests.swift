import Any4Core
import XCTest

/// The results model's JSON and CSV encoders (used by `quantize --json`, `compare --json` and the
/// TUI's export).
final class LayerReportTests: XCTestCase {
    static let quantized = LayerReport(
        name: "model.layers.0.mlp.up_proj.weight", shape: [688, 256], format: "any4",
        outcome: .init(
            sqnrDB: 20.5, mse: 8.0e-05, maxAbsError: 0.125, bitsPerWeight: 5.5, seconds: 0.25,
            outputRelativeError: 0.09, kmeansObjective: 12.5, kmeansObjectiveFirst64: 1.5))
    static let float = LayerReport(unquantized: "lm_head.weight", shape: [2048, 256])
    /// A layer whose figures are not finite (an exact quantization has SQNR ∞; a NaN weight makes every figure NaN).
    static let odd = LayerReport(
        name: "odd", shape: [2, 4], format: "int4",
        outcome: .init(sqnrDB: .infinity, mse: .nan, maxAbsError: -.infinity, bitsPerWeight: 4.5, seconds: 1))

    func parse(_ value: JSONValue) throws -> JSONValue { try JSONParser.parse(value.serialized, file: "t.json") }

    func testJSONKeysOrderAndParsesBack() throws {
        let all = LayerReports([Self.quantized, Self.float]).json(LayerReport.Field.table)
        let parsed = try parse(all)
        let layers = try XCTUnwrap(parsed.array)
        XCTAssertEqual(
            layers[0].members?.map(\.key),
            ["name", "shape", "format", "sqnr_db", "mse", "max_abs_error", "output_rel_error", "bits_per_weight", "seconds"])
        XCTAssertEqual(layers[0]["shape"]?.array?.compactMap(\.int), [688, 256])
        XCTAssertEqual(layers[0]["sqnr_db"]?.double, 20.5)
        XCTAssertEqual(layers[0]["mse"]?.double, 8.0e-05)
        XCTAssertEqual(layers[0]["seconds"]?.double, 0.25)
        XCTAssertEqual(layers[1].members?.map(\.key), ["name", "shape", "format"], "a float layer has no figures")
        XCTAssertEqual(layers[1]["format"]?.string, "float")
        XCTAssertEqual(
            Self.quantized.json(LayerReport.Field.quantize).members?.map(\.key),
            ["name", "shape", "sqnr_db", "mse", "max_abs_error", "bits_per_weight", "seconds"])
        XCTAssertEqual(
            Self.quantized.json(LayerReport.Field.comparison).members?.map(\.key),
            ["sqnr_db", "mse", "max_abs_error", "bits_per_weight", "seconds", "kmeans_objective", "kmeans_objective_first64"])
    }

    func testNumbersAreWrittenAsTheCommandsAlwaysHave() {
        XCTAssertEqual(
            Self.quantized.json(LayerReport.Field.quantize).serialized,
            #"{"name":"model.layers.0.mlp.up_proj.weight","shape":[688,256],"sqnr_db":20.5,"mse":8e-05,"#
                + #""max_abs_error":0.125,"bits_per_weight":5.5,"seconds":0.25}"#)
    }

    func testAbsentAndNonFiniteValues() throws {
        // Non-finite figures are JSON null (the serializer's rule) and Swift's nan/inf in CSV.
        let json = Self.odd.json(LayerReport.Field.table)
        XCTAssertEqual(
            json.serialized,
            #"{"name":"odd","shape":[2,4],"format":"int4","sqnr_db":null,"mse":null,"max_abs_error":null,"#
                + #""output_rel_error":null,"bits_per_weight":4.5,"seconds":1.0}"#)
        XCTAssertNotNil(try? parse(json))
        XCTAssertEqual(Self.odd.csv(LayerReport.Field.table), "odd,2x4,int4,inf,nan,-inf,,4.5,1.0")
        // An unmeasured output error is null (the export's column is always there); missing
        // k-means objectives (no learned table) are left out.
        XCTAssertEqual(
            Self.odd.json(LayerReport.Field.comparison).members?.map(\.key),
            ["sqnr_db", "mse", "max_abs_error", "bits_per_weight", "seconds"])
    }

    func testCSVColumnsLineUpWithTheHeader() {
        let fields = LayerReport.Field.table
        let csv = LayerReports([Self.quantized, Self.float, Self.odd]).csv(fields)
        XCTAssertTrue(csv.hasSuffix("\n"))
        let lines = csv.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        XCTAssertEqual(lines.first, "layer,shape,format,sqnr_db,mse,max_abs_error,output_rel_error,bits_per_weight,seconds")
        for line in lines {
            XCTAssertEqual(line.split(separator: ",", omittingEmptySubsequences: false).count, fields.count, String(line))
        }
        XCTAssertEqual(lines[1], "model.layers.0.mlp.up_proj.weight,688x256,any4,20.5,8e-05,0.125,0.09,5.5,0.25")
        XCTAssertEqual(lines[2], "lm_head.weight,2048x256,float,,,,,,")
    }

    func testSummaryFigures() {
        let a = LayerReport(
            name: "a", shape: [2, 4], format: "nf4",
            outcome: .init(sqnrDB: 10, mse: 0, maxAbsError: 0, bitsPerWeight: 4, seconds: 1))
        let b = LayerReport(
            name: "b", shape: [6, 4], format: "nf4",
            outcome: .init(sqnrDB: 20, mse: 0, maxAbsError: 0, bitsPerWeight: 5, seconds: 2))
        let reports = LayerReports([b, Self.float, a])
        XCTAssertEqual(reports.parameters, 32, "float layers do not count")
        XCTAssertEqual(reports.meanSQNR, 15)
        XCTAssertEqual(reports.bitsPerWeight, (4.0 * 8 + 5.0 * 24) / 32, "weighted by weights")
        XCTAssertEqual(reports.worst?.name, "a")
        XCTAssertEqual(LayerReports([LayerReport]()).bitsPerWeight, 0)
    }

    func testComparisonJSONAndSummary() throws {
        func report(_ format: String, _ sqnr: Double, objective: Double? = nil) -> LayerReport {
            LayerReport(
                name: "l", shape: [2, 4], format: format,
                outcome: .init(
                    sqnrDB: sqnr, mse: 0, maxAbsError: 0, bitsPerWeight: 4.5, seconds: 1,
                    kmeansObjective: objective, kmeansObjectiveFirst64: objective))
        }
        let comparison = LayerComparison(
            labels: ["any4", "int4"],
            rows: [
                .init(name: "l0", shape: [2, 4], results: [report("any4", 20, objective: 3), report("int4", 18)]),
                .init(name: "l1", shape: [2, 4], results: [report("any4", 19, objective: 2), report("int4", 19)])
            ])
        let layers = try XCTUnwrap(try parse(comparison.layersJSON()).array)
        XCTAssertEqual(layers[0].members?.map(\.key), ["name", "shape", "results"])
        XCTAssertEqual(layers[0]["results"]?.members?.map(\.key), ["any4", "int4"])
        XCTAssertEqual(layers[0]["results"]?["any4"]?["kmeans_objective"]?.double, 3)
        XCTAssertNil(layers[0]["results"]?["int4"]?["kmeans_objective"])
        let summary = try parse(comparison.summaryJSON())
        XCTAssertEqual(summary.members?.map(\.key), ["any4", "int4"])
        XCTAssertEqual(summary["any4"]?.members?.map(\.key), ["mean_sqnr_db", "wins", "mean_bits_per_weight", "seconds"])
        XCTAssertEqual(summary["any4"]?["mean_sqnr_db"]?.double, 19.5)
        XCTAssertEqual(summary["any4"]?["wins"]?.int, 2, "ties count for each")
        XCTAssertEqual(summary["int4"]?["wins"]?.int, 1)
        XCTAssertEqual(summary["int4"]?["seconds"]?.double, 2)
    }
}
