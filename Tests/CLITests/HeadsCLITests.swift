import Any4Core
import Foundation
import TestSupport
import XCTest

/// Heads are skipped by default (issue #17): on MiniLM the BERT pooler, a [CLS] head its
/// mean-pooled embeddings do not use, is left as stored like an LM head, so any4 g128 stores
/// exactly 4.75 bits per weight over its 36 encoder matrices, the output
/// names what it skipped, and `--skip '^$'` quantizes the pooler too.
final class HeadsCLITests: XCTestCase {
    func any4(_ arguments: [String]) throws -> ProcessResult { try runProcess(TestPaths.any4Binary, arguments) }

    func testMiniLMAny4G128SkipsThePoolerAndStoresAtMost4_75Bits() throws {
        let model = try TestPaths.requireModel(TestPaths.miniLM)
        let dir = try TestPaths.temporaryDirectory(for: self)
        let r = try any4(["quantize", model, "--format", "any4", "--out", dir + "/q", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try JSONParser.parse(r.stdout, file: "stdout")
        XCTAssertEqual(report["skipped_heads"]?.array?.compactMap(\.string), ["pooler.dense.weight"])
        let layers = try XCTUnwrap(report["layers"]?.array)
        XCTAssertEqual(layers.count, 36)
        XCTAssertFalse(layers.contains { $0["name"]?.string == "pooler.dense.weight" })
        // Bits from the checkpoint's own bytes: every quantized layer's parts over its weights.
        let inspect = try any4(["inspect", dir + "/q", "--json"])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        let stored = try JSONParser.parse(inspect.stdout, file: "inspect")
        var bytes = 0, params = 0
        for t in stored["tensors"]?.array ?? [] where t["format"]?.string == "any4" {
            bytes += t["bytes"]?.int ?? 0
            params += t["params"]?.int ?? 0
        }
        XCTAssertEqual(params, 6 * (4 * 384 * 384 + 2 * 384 * 1536), "36 encoder matrices")
        // Rows 384 wide (q, k, v, o, intermediate: 2/3 of the weights): 4 + 16·16/384 + 32·3/384 = 4.9167;
        // 1536 wide (output): 4 + 256/1536 + 32·12/1536 = 4.4167; together exactly 4.75.
        XCTAssertEqual(Double(bytes * 8) / Double(params), 4.75, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(stored["quantized_bits_per_weight"]?.double), 4.75, accuracy: 1e-9)
        // The text output says what it left and how to include it.
        let text = try any4(["quantize", model, "--format", "int4", "--layers", "encoder\\.layer\\.0\\.output", "--out", dir + "/t"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(
            text.stdout.contains("left as stored (heads are skipped by default; --skip '^$' quantizes them): pooler.dense.weight"), text.stdout)
        // --skip '^$' skips nothing: the pooler is quantized.
        let all = try any4(["quantize", model, "--format", "int4", "--layers", "pooler", "--skip", "^$", "--out", dir + "/p", "--json"])
        XCTAssertEqual(all.status, 0, all.stderr)
        let pooled = try JSONParser.parse(all.stdout, file: "stdout")
        XCTAssertEqual(pooled["layers"]?.array?.compactMap { $0["name"]?.string }, ["pooler.dense.weight"])
        XCTAssertEqual(pooled["skipped_heads"]?.array?.count, 0)
    }
}
