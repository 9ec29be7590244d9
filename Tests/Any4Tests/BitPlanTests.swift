import Any4Core
import TestSupport
import XCTest

final class BitPlanTests: XCTestCase {
    // MARK: - Candidates

    func testCandidateSpecs() throws {
        XCTAssertEqual(try PlanCandidate(spec: "any4:g128").spec, "any4:g128")
        XCTAssertEqual(try PlanCandidate(spec: " NF4:g64 ").spec, "nf4:g64")
        XCTAssertEqual(try PlanCandidate(spec: "int8").spec, "int8:g128", "a format that takes a group gets 128")
        XCTAssertEqual(try PlanCandidate(spec: "mxfp4").groupSize, nil, "fixed-block formats take no group")
        XCTAssertEqual(try PlanCandidate(spec: "mxfp4:g32").spec, "mxfp4")
        XCTAssertTrue(try PlanCandidate(spec: "keep").isKeep)
        for bad in ["", "any4:", "any4:128", "any4:g", "any4:g7", "any4:g0", "mxfp4:g64", "zz4:g64", "any4:g64:x", ":g64"] {
            XCTAssertThrowsError(try PlanCandidate(spec: bad), bad)
        }
        for c in PlanCandidate.defaultLadder { XCTAssertEqual(try PlanCandidate(spec: c.spec), c) }
        XCTAssertEqual(try PlanCandidate.list("any4:g128, keep").map(\.spec), ["any4:g128", "keep"])
        XCTAssertThrowsError(try PlanCandidate.list("any4:g128,any4"), "a duplicate (any4 is any4:g128)")
        XCTAssertThrowsError(try PlanCandidate.list(" , "))
    }

    // MARK: - Allocation

    /// A random table: `layers` layers, `candidates` candidates with integer bits in 1...maxBits,
    /// some entries not applicable.
    func randomTable(_ rng: inout SplitMix64, layers: Int, candidates: Int, maxBits: Int) -> SensitivityTable {
        var entries: [[SensitivityTable.Entry?]] = []
        for _ in 0..<layers {
            var row: [SensitivityTable.Entry?] = []
            for c in 0..<candidates {
                // Keep one entry per layer applicable.
                if c > 0, rng.next() % 5 == 0 {
                    row.append(nil)
                } else {
                    let bits = Int(rng.next() % UInt64(maxBits)) + 1
                    let error = Double(rng.next() % 1_000_000) / 1000
                    row.append(.init(bits: bits, error: error))
                }
            }
            entries.append(row)
        }
        return SensitivityTable(
            layers: (0..<layers).map { "l\($0)" }, parameters: [Int](repeating: 10, count: layers),
            candidates: (0..<candidates).map { try! PlanCandidate(spec: "any4:g\(2 * ($0 + 1))") }, entries: entries)
    }

    /// Every choice, the least error under the budget (ties: any), nil when none fits.
    func bruteForce(_ table: SensitivityTable, budget: Int) -> (choice: [Int], error: Double, second: Double)? {
        let layers = table.layers.count, candidates = table.candidates.count
        var best: ([Int], Double)? = nil
        var second = Double.infinity
        var choice = [Int](repeating: 0, count: layers)
        func visit(_ l: Int, bits: Int, error: Double) {
            if l == layers {
                guard bits <= budget else { return }
                if let b = best, error >= b.1 {
                    second = min(second, error)
                    return
                }
                if let b = best { second = min(second, b.1) }
                best = (choice, error)
                return
            }
            for c in 0..<candidates {
                guard let e = table.entries[l][c] else { continue }
                choice[l] = c
                visit(l + 1, bits: bits + e.bits, error: error + e.error)
            }
        }
        visit(0, bits: 0, error: 0)
        return best.map { ($0.0, $0.1, second) }
    }

    func testSolverEqualsBruteForce() {
        var rng = SplitMix64(seed: 17)
        var solved = 0, infeasible = 0, uniqueCompared = 0
        for trial in 0..<400 {
            let layers = 1 + Int(rng.next() % 6), candidates = 1 + Int(rng.next() % 5)
            let maxBits = [3, 20, 1000][trial % 3]
            let table = randomTable(&rng, layers: layers, candidates: candidates, maxBits: maxBits)
            let minimum = table.entries.reduce(0) { $0 + $1.compactMap { $0?.bits }.min()! }
            let maximum = table.entries.reduce(0) { $0 + $1.compactMap { $0?.bits }.max()! }
            // Budgets from below the minimum to above the maximum.
            let budget = minimum - 2 + Int(rng.next() % UInt64(maximum - minimum + 5))
            let reference = bruteForce(table, budget: budget)
            let solution = BitAllocation.solution(table, budgetBits: budget)
            guard let reference else {
                XCTAssertNil(solution, "trial \(trial): no choice fits \(budget) bits")
                infeasible += 1
                continue
            }
            guard let solution else {
                XCTFail("trial \(trial): solver found nothing, brute force \(reference)")
                continue
            }
            solved += 1
            XCTAssertTrue(solution.exact, "small integer costs are solved exactly")
            let totals = table.totals(solution.choice)
            XCTAssertLessThanOrEqual(totals.bits, budget, "trial \(trial): within the budget")
            XCTAssertEqual(totals.error, reference.error, accuracy: 1e-9, "trial \(trial): optimal")
            XCTAssertEqual(solution.error, totals.error, accuracy: 1e-12)
            XCTAssertEqual(solution.bits, totals.bits)
            if reference.second > reference.error + 1e-9 {
                XCTAssertEqual(solution.choice, reference.choice, "trial \(trial): the unique optimum")
                uniqueCompared += 1
            }
        }
        XCTAssertGreaterThanOrEqual(solved, 200)
        XCTAssertGreaterThan(infeasible, 5)
        XCTAssertGreaterThan(uniqueCompared, 150)
    }

    func testInfeasibleAndTrivialBudgets() throws {
        let c = try PlanCandidate.list("any2:g64,any3:g64,any3:g128,any4:g64,any4:g128,int8:g128,keep")
        let entries: [[SensitivityTable.Entry?]] = [
            [.init(bits: 10, error: 5), .init(bits: 20, error: 1), nil, nil, nil, nil, .init(bits: 40, error: 0)],
            [nil, .init(bits: 30, error: 2), nil, nil, nil, nil, .init(bits: 50, error: 0)]
        ]
        let table = SensitivityTable(layers: ["a", "b"], parameters: [10, 10], candidates: c, entries: entries)
        XCTAssertNil(BitAllocation.solve(table, budgetBits: 39), "the cheapest mix needs 40 bits")
        XCTAssertEqual(BitAllocation.solve(table, budgetBits: 40), [0, 1])
        XCTAssertEqual(BitAllocation.solve(table, budgetBits: 59), [1, 1])
        XCTAssertEqual(BitAllocation.solve(table, budgetBits: 1000), [6, 6], "ample budget: least error")
        var empty = table
        empty.entries[1] = [nil, nil, nil, nil, nil, nil, nil]
        XCTAssertNil(BitAllocation.solve(empty, budgetBits: 1000), "a layer with no applicable candidate")
    }

    /// Large costs: the discretised programme fits the budget and is within its stated slack of
    /// the optimum (checked against an exact solve).
    func testDiscretisedSolutionIsFeasibleAndBounded() {
        var rng = SplitMix64(seed: 5)
        for trial in 0..<30 {
            let table = randomTable(&rng, layers: 12, candidates: 4, maxBits: 20_003)
            let minimum = table.entries.reduce(0) { $0 + $1.compactMap { $0?.bits }.min()! }
            let maximum = table.entries.reduce(0) { $0 + $1.compactMap { $0?.bits }.max()! }
            let budget = minimum + (maximum - minimum) / 2
            guard let coarse = BitAllocation.solution(table, budgetBits: budget, maxCells: 12 * 500),
                let exact = BitAllocation.solution(table, budgetBits: budget, maxCells: 1 << 30),
                let tighter = BitAllocation.solution(table, budgetBits: budget - coarse.slackBits, maxCells: 1 << 30)
            else {
                XCTFail("trial \(trial): infeasible")
                continue
            }
            XCTAssertFalse(coarse.exact)
            XCTAssertTrue(exact.exact)
            XCTAssertLessThanOrEqual(coarse.bits, budget, "trial \(trial)")
            XCTAssertGreaterThanOrEqual(coarse.error, exact.error - 1e-9, "trial \(trial): never better than optimal")
            XCTAssertLessThanOrEqual(coarse.error, tighter.error + 1e-9, "trial \(trial): within the slack")
        }
    }

    // MARK: - Recipe

    func sampleRecipe() -> Recipe {
        let candidates = try! PlanCandidate.list("any4:g128,nf4:g64,mxfp4,keep")
        let table = SensitivityTable(
            layers: ["blk.0.attn_q.weight", "blk.0.ffn_down.weight"], parameters: [4096, 8192], candidates: candidates,
            entries: [
                [.init(bits: 18_000, error: 0.25), .init(bits: 17_408, error: 0.3), nil, .init(bits: 65_536, error: 0)],
                [.init(bits: 36_000, error: 1e-7), .init(bits: 34_816, error: 2.5), .init(bits: 34_816, error: 3), .init(bits: 131_072, error: 0)]
            ],
            otherBits: 1234, otherParameters: 77, errorMeasure: "predicted KL (nats/token)")
        return Recipe(table: table, choice: [3, 0], budgetBitsPerWeight: 4.25, model: "m.gguf")
    }

    func testRecipeRoundTrip() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let recipe = sampleRecipe()
        let path = dir + "/r.json"
        try recipe.write(to: path)
        let back = try Recipe.load(path)
        XCTAssertEqual(back, recipe)
        XCTAssertEqual(back.bits, 65_536 + 36_000)
        XCTAssertEqual(back.bitsPerWeight, Double(65_536 + 36_000) / 12_288, accuracy: 1e-12)
        XCTAssertEqual(back.predictedError, 1e-7, accuracy: 1e-20)
        XCTAssertEqual(back.modelBitsPerWeight, Double(65_536 + 36_000 + 1234) / Double(12_288 + 77), accuracy: 1e-12)
        XCTAssertEqual(back.candidate(forWeight: "blk.0.ffn_down.weight")?.spec, "any4:g128")
        // The derived fields a reader sees are the chosen entry's.
        let root = try JSONParser.parse(recipe.json, file: "r")
        XCTAssertEqual(root["layers"]?.array?[0]["bits"]?.int, 65_536)
        XCTAssertEqual(root["layers"]?.array?[1]["format"]?.string, "any4")
        XCTAssertEqual(root["layers"]?.array?[1]["group"]?.int, 128)
        XCTAssertEqual(root["totals"]?["bits"]?.int, 101_536)
    }

    func testRecipeErrorsNameTheEntry() throws {
        let good = sampleRecipe().json
        let cases: [(String, String, String)] = [
            ("\"choice\":\"keep\"", "\"choice\":\"int4:g32\"", "layers[0] (blk.0.attn_q.weight)"),
            ("[36000,1e-07]", "[36000,-1]", "layers[1].entries[0] (blk.0.ffn_down.weight, any4:g128)"),
            ("[17408,0.3]", "[17408.5,0.3]", "layers[0].entries[1] (blk.0.attn_q.weight, nf4:g64)"),
            ("\"mxfp4\",", "\"mxfp4:g64\",", "candidates[2]"),
            ("\"budgetBitsPerWeight\":4.25", "\"budgetBitsPerWeight\":-1", "budgetBitsPerWeight"),
            ("\"name\":\"blk.0.ffn_down.weight\"", "\"name\":\"blk.0.attn_q.weight\"", "layers[1]")
        ]
        for (from, to, subject) in cases {
            XCTAssertTrue(good.contains(from), from)
            let text = good.replacingOccurrences(of: from, with: to)
            XCTAssertThrowsError(try Recipe.parse(text, file: "r.json"), to) { error in
                let e = error as? FileFormatError
                XCTAssertEqual(e?.file, "r.json", to)
                XCTAssertEqual(e?.subject, subject, "\(to): \(error)")
            }
        }
        XCTAssertThrowsError(try Recipe.parse("{\"any4.recipe\": 2}", file: "r.json"))
        XCTAssertThrowsError(try Recipe.parse("[]", file: "r.json"))
        // A null entry may not be the choice.
        let nulled = good.replacingOccurrences(of: "[65536,0.0]", with: "null")
        XCTAssertThrowsError(try Recipe.parse(nulled, file: "r.json")) { error in
            XCTAssertEqual((error as? FileFormatError)?.subject, "layers[0] (blk.0.attn_q.weight)")
        }
        // Editing only "choice" changes the layer; derived fields follow.
        let edited = try Recipe.parse(good.replacingOccurrences(of: "\"choice\":\"keep\"", with: "\"choice\":\"nf4:g64\""), file: "r.json")
        XCTAssertEqual(edited.bits, 17_408 + 36_000)
    }
}
