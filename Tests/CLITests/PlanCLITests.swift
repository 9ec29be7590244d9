import Any4Core
import Foundation
import TestSupport
import XCTest

/// `any4 plan` end to end on SmolLM2's first two blocks: plan → quantize --recipe → the
/// checkpoint's per-layer formats and stored bits are the plan's.
final class PlanCLITests: XCTestCase {
    func any4(_ arguments: [String]) throws -> ProcessResult { try runProcess(TestPaths.any4Binary, arguments) }

    func testPlanRecipeQuantizesToThePlannedFormatsAndBits() throws {
        let model = try TestPaths.requireModel(TestPaths.smolLM2)
        let dir = try TestPaths.temporaryDirectory(for: self)
        let recipePath = dir + "/recipe.json"
        // File bytes and planned bits must agree exactly, for 2- and 3-bit (dense) codes too.
        let plan = try any4([
            "plan", model, "--layers", #"^blk\.(0|1)\."#, "--candidates", "any3:g128,any4:g64,any4:g128,nf4:g64,int8:g128,keep",
            "--budget", "4.9", "--tokens", "48", "--probe-tokens", "24", "--sample-rows", "64", "--probe-seconds", "60",
            "--out", recipePath, "--json"
        ])
        XCTAssertEqual(plan.status, 0, plan.stderr)
        let report = try JSONParser.parse(plan.stdout, file: "stdout")
        XCTAssertEqual(report["probedLayers"]?.int, 14)
        let recipe = try Recipe.load(recipePath)
        XCTAssertEqual(recipe.table.layers.count, 14)
        XCTAssertLessThanOrEqual(recipe.bitsPerWeight, 4.9)
        XCTAssertEqual(report["bitsPerWeight"]?.double ?? 0, recipe.bitsPerWeight, accuracy: 1e-12)
        let chosen = Set(recipe.choice)
        XCTAssertGreaterThan(chosen.count, 1, "a budget between the candidates mixes them: \(recipe.choice)")
        // Optimal: no single layer's change to another candidate lowers the error within the budget.
        let budgetBits = recipe.table.budgetBits(bitsPerWeight: 4.9)
        for l in recipe.table.layers.indices {
            for (c, e) in recipe.table.entries[l].enumerated() {
                guard let e, c != recipe.choice[l] else { continue }
                let now = recipe.table.entries[l][recipe.choice[l]]!
                if recipe.bits - now.bits + e.bits <= budgetBits {
                    XCTAssertGreaterThanOrEqual(e.error, now.error - 1e-15, "layer \(l) candidate \(c)")
                }
            }
        }

        // A GGUF checkpoint keeps the kept layers in their Q4_1 blocks (the bits "keep" counts); a
        // safetensors one widens them, and says so.
        let out = dir + "/q.gguf"
        let q = try any4(["quantize", model, "--recipe", recipePath, "--out", out, "--json"])
        XCTAssertEqual(q.status, 0, q.stderr)
        XCTAssertFalse(q.stderr.contains("warning"), q.stderr)
        if recipe.choice.contains(4) {
            let widened = try any4(["quantize", model, "--recipe", recipePath, "--out", dir + "/q.safetensors"])
            XCTAssertEqual(widened.status, 0, widened.stderr)
            XCTAssertTrue(widened.stderr.contains("warning: the recipe keeps"), widened.stderr)
        }
        let inspect = try any4(["inspect", out, "--json"])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        var text = inspect.stdout
        let info = try text.withUTF8 { try JSONParser.parse(UnsafeRawBufferPointer($0), file: "stdout", rejectDuplicateKeys: false) }
        var tensors: [String: JSONValue] = [:]
        for t in info["tensors"]?.array ?? [] { if let name = t["name"]?.string { tensors[name] = t } }
        var storedBits = 0
        for (l, name) in recipe.table.layers.enumerated() {
            let c = recipe.candidate(ofLayer: l)
            let t = try XCTUnwrap(tensors[name], name)
            if c.isKeep {
                XCTAssertNil(t["format"]?.string, "\(name) is kept as stored")
                XCTAssertEqual(t["dtype"]?.string, "Q4_1", name)
            } else {
                XCTAssertEqual(t["format"]?.string, c.format, name)
                XCTAssertEqual(t["group_size"]?.int, c.groupSize, name)
            }
            storedBits += try XCTUnwrap(t["bytes"]?.int) * 8
        }
        XCTAssertEqual(storedBits, recipe.bits, "the checkpoint stores the planned bits")

        // A recipe for other layers is refused naming the file and the layer.
        let other = recipePath.replacingOccurrences(of: "recipe.json", with: "other.json")
        try recipe.json.replacingOccurrences(of: "blk.1.ffn_up.weight", with: "blk.99.ffn_up.weight").write(
            toFile: other, atomically: true, encoding: .utf8)
        let bad = try any4(["quantize", model, "--recipe", other, "--out", dir + "/bad.safetensors"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("other.json") && bad.stderr.contains("blk.99.ffn_up.weight"), bad.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad.safetensors"))
        let both = try any4(["quantize", model, "--recipe", recipePath, "--format", "any4", "--out", dir + "/x.safetensors"])
        XCTAssertEqual(both.status, 2)
    }
}
