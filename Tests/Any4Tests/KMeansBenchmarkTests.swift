import Any4Bench
import Any4Core
import XCTest

/// `any4 bench --kmeans` on a small matrix: the JSON it promises, the optimality check it runs
/// (exact = the unpruned reference DP), and the reference DP itself against brute force.
final class KMeansBenchmarkTests: XCTestCase {
    func testSmallRunReportsRatiosAndOptimality() throws {
        var config = KMeansBenchmark.Configuration()
        config.rows = 48
        config.cols = 512
        config.rounds = 2
        config.threads = 2
        config.solverRows = 8
        config.verifyRows = 2
        let json = try KMeansBenchmark.run(config)
        XCTAssertEqual(json["optimality"]?["ok"]?.bool, true, json.serialized)
        XCTAssertLessThanOrEqual(try XCTUnwrap(json["optimality"]?["max_relative_difference"]?.double), 1e-9)
        for key in ["lloyd", "exact", "exact_over_lloyd"] {
            let s = try XCTUnwrap(json["quantize_seconds"]?[key])
            XCTAssertEqual(s["rounds"]?.array?.count, 2, key)
            XCTAssertGreaterThan(s["median"]?.double ?? 0, 0, key)
            XCTAssertLessThanOrEqual(s["min"]!.double!, s["max"]!.double!, key)
        }
        let objective = try XCTUnwrap(json["kmeans_objective"])
        XCTAssertLessThanOrEqual(objective["exact"]!.double!, objective["lloyd"]!.double! * (1 + 1e-9))
        let solver = try XCTUnwrap(json["solver_microseconds_per_row"]?["objective"])
        XCTAssertLessThanOrEqual(solver["exact"]!.double!, solver["lloyd"]!.double! * (1 + 1e-9))
        XCTAssertLessThanOrEqual(solver["lloyd"]!.double!, solver["lloyd_plain"]!.double! * 1.02)
    }

    func testReferenceOptimumMatchesEnumeration() {
        var rng = SplitMix64(seed: 21)
        for trial in 0..<60 {
            let n = 2 + Int(rng.next() % 9), k = 1 + Int(rng.next() % 4)
            let x = (0..<n).map { _ in Float(rng.next() % 12) / 4 }
            let w = (0..<n).map { _ in Float(0.25 + rng.nextUnit()) }
            // Every assignment of the sorted distinct values to ≤ k contiguous runs.
            var pairs: [(Double, Double)] = []
            for (v, wt) in zip(x, w).sorted(by: { $0.0 < $1.0 }) {
                if let last = pairs.last, last.0 == Double(v) {
                    pairs[pairs.count - 1].1 += Double(wt)
                } else {
                    pairs.append((Double(v), Double(wt)))
                }
            }
            func cost(_ lo: Int, _ hi: Int) -> Double {
                let s0 = pairs[lo..<hi].reduce(0) { $0 + $1.1 }, mean = pairs[lo..<hi].reduce(0) { $0 + $1.0 * $1.1 } / s0
                return pairs[lo..<hi].reduce(0) { $0 + $1.1 * ($1.0 - mean) * ($1.0 - mean) }
            }
            var best = Double.infinity
            func search(_ start: Int, _ left: Int, _ acc: Double) {
                if start == pairs.count { return best = min(best, acc) }
                guard left > 0 else { return }
                for end in (start + 1)...pairs.count { search(end, left - 1, acc + cost(start, end)) }
            }
            search(0, k, 0)
            XCTAssertEqual(KMeansBenchmark.referenceOptimum(x, w, k: k), best, accuracy: 1e-9 * best + 1e-12, "trial \(trial)")
        }
    }
}

/// The exact solver (penalised passes, with the layered program as fallback) against the
/// reference dynamic program on rows long enough for every path: smooth, heavy-tailed, tied
/// values on a grid, zero weights and large k.
final class ExactKMeansReferenceTests: XCTestCase {
    func testExactMatchesReferenceDynamicProgram() {
        var rng = SplitMix64(seed: 31)
        let ws = KMeans1D.Workspace()
        for trial in 0..<36 {
            let n = 150 + Int(rng.next() % 450)
            let k = [2, 3, 5, 8, 16, 16, 16, 32][trial % 8]
            var x = [Float](repeating: 0, count: n), w = [Float](repeating: 1, count: n)
            for i in 0..<n {
                switch trial % 4 {
                case 0: x[i] = Float(rng.nextUnit() * 15)
                case 1: x[i] = Float(rng.nextStudentT4())
                case 2: x[i] = Float(rng.next() % 40) / 4  // ties
                default: x[i] = Float(rng.nextGaussian()) * (rng.next() % 8 == 0 ? 10 : 1)
                }
                w[i] = trial % 3 == 0 ? 1 : (rng.next() % 6 == 0 ? 0 : Float(0.2 + rng.nextUnit()))
            }
            let reference = KMeansBenchmark.referenceOptimum(x, w, k: k)
            let result = x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { KMeans1D.exact(xp, weights: $0, k: k, workspace: ws) } }
            XCTAssertEqual(result.objective, reference, accuracy: 1e-9 * reference + 1e-12, "trial \(trial) n \(n) k \(k)")
        }
    }

    /// Rows of at least 4·12·k distinct values, where the price is first found on the coarse copy
    /// (runs of 12 values) before the full passes: still the reference optimum.
    func testExactMatchesReferenceOnLongRows() {
        var rng = SplitMix64(seed: 77)
        let ws = KMeans1D.Workspace()
        for trial in 0..<8 {
            let k = [4, 8, 16, 16][trial % 4]
            let n = 12 * 4 * k + 40 + Int(rng.next() % 300)
            var x = [Float](repeating: 0, count: n), w = [Float](repeating: 1, count: n)
            for i in 0..<n {
                switch trial % 3 {
                case 0: x[i] = Float(rng.nextStudentT4())
                case 1: x[i] = Float(rng.nextUnit() * 15)
                default: x[i] = Float(rng.nextGaussian()) * (rng.next() % 8 == 0 ? 10 : 1)
                }
                w[i] = trial % 2 == 0 ? 1 : Float(0.2 + rng.nextUnit())
            }
            let reference = KMeansBenchmark.referenceOptimum(x, w, k: k)
            let result = x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { KMeans1D.exact(xp, weights: $0, k: k, workspace: ws) } }
            XCTAssertEqual(result.objective, reference, accuracy: 1e-9 * reference + 1e-12, "trial \(trial) n \(n) k \(k)")
        }
    }
}
