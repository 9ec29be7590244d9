import Any4Core
import XCTest

/// The any4 codebook learner: exact DP against brute force, Lloyd against the DP, and the edge
/// cases (few distinct values, n < k, equal values, zero weights, determinism).
final class KMeans1DTests: XCTestCase {
    private let ws = KMeans1D.Workspace()

    private func exact(_ x: [Float], _ w: [Float]?, k: Int) -> KMeans1D.Result {
        x.withUnsafeBufferPointer { xp in
            guard let w else { return KMeans1D.exact(xp, weights: nil, k: k, workspace: ws) }
            return w.withUnsafeBufferPointer { KMeans1D.exact(xp, weights: $0, k: k, workspace: ws) }
        }
    }

    private func lloyd(_ x: [Float], _ w: [Float]?, k: Int, seed: UInt64, maxIterations: Int = 300) -> KMeans1D.Result {
        x.withUnsafeBufferPointer { xp in
            guard let w else { return KMeans1D.lloyd(xp, weights: nil, k: k, seed: seed, maxIterations: maxIterations, workspace: ws) }
            return w.withUnsafeBufferPointer {
                KMeans1D.lloyd(xp, weights: $0, k: k, seed: seed, maxIterations: maxIterations, workspace: ws)
            }
        }
    }

    private func objective(_ x: [Float], _ w: [Float]?, _ c: [Float]) -> Double {
        x.withUnsafeBufferPointer { xp in
            guard let w else { return KMeans1D.objective(xp, weights: nil, centroids: c) }
            return w.withUnsafeBufferPointer { KMeans1D.objective(xp, weights: $0, centroids: c) }
        }
    }

    /// The optimum by enumeration of every split of the sorted values into at most k contiguous
    /// runs (equal values kept together; cluster costs about the Double means).
    private func bruteForce(_ x: [Float], _ w: [Float]?, k: Int) -> Double {
        var pairs: [(x: Double, w: Double)] = []
        for i in x.indices { pairs.append((Double(x[i]), Double(w?[i] ?? 1))) }
        if let w, !w.contains(where: { $0 > 0 }) { pairs = pairs.map { ($0.x, 1) } }
        pairs.sort { $0.x < $1.x }
        var xs: [Double] = [], ws: [Double] = []
        for p in pairs {
            if let last = xs.last, last == p.x {
                ws[ws.count - 1] += p.w
            } else {
                xs.append(p.x)
                ws.append(p.w)
            }
        }
        func cost(_ lo: Int, _ hi: Int) -> Double {
            var s0 = 0.0, s1 = 0.0
            for t in lo..<hi {
                s0 += ws[t]
                s1 += ws[t] * xs[t]
            }
            if s0 == 0 { return 0 }
            let mean = s1 / s0
            var c = 0.0
            for t in lo..<hi { c += ws[t] * (xs[t] - mean) * (xs[t] - mean) }
            return c
        }
        var best = Double.infinity
        func search(_ start: Int, _ clustersLeft: Int, _ acc: Double) {
            if start == xs.count {
                best = min(best, acc)
                return
            }
            if clustersLeft == 0 { return }
            let lastEnd = clustersLeft == 1 ? xs.count : xs.count - 1
            for end in (start + 1)...max(start + 1, lastEnd) where end <= xs.count {
                search(end, clustersLeft - 1, acc + cost(start, end))
            }
        }
        search(0, k, 0)
        return best
    }

    private func randomRow(_ rng: inout SplitMix64, n: Int, grid: Bool, zeroWeights: Bool) -> ([Float], [Float]) {
        var x = [Float](repeating: 0, count: n), w = [Float](repeating: 0, count: n)
        for i in 0..<n {
            x[i] = grid ? Float(rng.next() % 48) / 8 : Float(rng.nextUnit() * 15)
            w[i] = zeroWeights && rng.next() % 4 == 0 ? 0 : Float(0.1 + 2 * rng.nextUnit())
        }
        return (x, w)
    }

    private func assertAscending(_ c: [Float], _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        for i in 1..<max(1, c.count) where c[i - 1] > c[i] {
            XCTFail("centroids not ascending: \(c) \(message)", file: file, line: line)
            return
        }
    }

    // MARK: - Exact

    func testExactMatchesBruteForce() {
        var rng = SplitMix64(seed: 11)
        for trial in 0..<400 {
            let n = 1 + Int(rng.next() % 12)
            let k = 1 + Int(rng.next() % 4)
            let (x, w) = randomRow(&rng, n: n, grid: trial % 3 == 0, zeroWeights: trial % 5 == 1)
            let weights: [Float]? = trial % 4 == 3 ? nil : w
            let expected = bruteForce(x, weights, k: k)
            let result = exact(x, weights, k: k)
            let tag = "trial \(trial): x \(x) w \(String(describing: weights)) k \(k)"
            XCTAssertEqual(result.centroids.count, k, tag)
            assertAscending(result.centroids, tag)
            XCTAssertEqual(result.objective, expected, accuracy: 1e-9 * expected + 1e-12, tag)
            XCTAssertEqual(result.objective, objective(x, weights, result.centroids), accuracy: 1e-9 * expected + 1e-12, tag)
            XCTAssertEqual(result.iterations, 0)
            XCTAssertEqual(result.history, [result.objective])
        }
    }

    func testExactIsNeverWorseThanLloyd() {
        var rng = SplitMix64(seed: 12)
        var strictlyBetter = 0
        for trial in 0..<40 {
            let n = 40 + Int(rng.next() % 300)
            let k = [2, 3, 4, 8, 16][trial % 5]
            var x = [Float](repeating: 0, count: n), w = [Float](repeating: 0, count: n)
            for i in 0..<n {
                x[i] = Float(rng.nextStudentT4())
                w[i] = Float(0.5 + rng.nextUnit())
            }
            let weights: [Float]? = trial % 2 == 0 ? w : nil
            let e = exact(x, weights, k: k)
            let tag = "trial \(trial) n \(n) k \(k)"
            assertAscending(e.centroids, tag)
            XCTAssertEqual(e.objective, objective(x, weights, e.centroids), accuracy: 1e-9 * e.objective, tag)
            for seed in 0..<3 as Range<UInt64> {
                let l = lloyd(x, weights, k: k, seed: seed)
                XCTAssertLessThanOrEqual(e.objective, l.objective * (1 + 1e-9), tag)
                if e.objective < l.objective * (1 - 1e-6) { strictlyBetter += 1 }
            }
        }
        XCTAssertGreaterThan(strictlyBetter, 0, "Lloyd should sometimes stop at a local optimum")
    }

    // MARK: - Lloyd

    func testLloydHistoryIsNonIncreasing() {
        var rng = SplitMix64(seed: 13)
        for trial in 0..<40 {
            let n = 20 + Int(rng.next() % 500)
            let k = [2, 4, 8, 16][trial % 4]
            let (x, w) = randomRow(&rng, n: n, grid: trial % 3 == 0, zeroWeights: trial % 3 == 1)
            let r = lloyd(x, w, k: k, seed: UInt64(trial))
            let tag = "trial \(trial) n \(n) k \(k)"
            XCTAssertEqual(r.centroids.count, k, tag)
            assertAscending(r.centroids, tag)
            XCTAssertEqual(r.history.count, r.iterations + 1, tag)
            XCTAssertEqual(r.objective, r.history.last!, tag)
            XCTAssertLessThanOrEqual(r.iterations, 300, tag)
            for i in 1..<r.history.count {
                XCTAssertLessThanOrEqual(r.history[i], r.history[i - 1] * (1 + 1e-12) + 1e-12, "\(tag) step \(i)")
            }
            XCTAssertEqual(r.objective, objective(x, w, r.centroids), accuracy: 1e-9 * r.objective + 1e-12, tag)
        }
    }

    func testLloydIterationLimit() {
        var rng = SplitMix64(seed: 14)
        let (x, w) = randomRow(&rng, n: 300, grid: false, zeroWeights: false)
        let seeded = lloyd(x, w, k: 8, seed: 1, maxIterations: 0)
        XCTAssertEqual(seeded.iterations, 0)
        XCTAssertEqual(seeded.history.count, 1)
        for c in seeded.centroids { XCTAssertTrue(x.contains(c), "k-means++ seeds are data values") }
        XCTAssertEqual(Set(seeded.centroids).count, 8, "seeds are distinct")
        let two = lloyd(x, w, k: 8, seed: 1, maxIterations: 2)
        XCTAssertLessThanOrEqual(two.iterations, 2)
        XCTAssertEqual(Array(two.history.prefix(1)), seeded.history)
    }

    func testLloydTieGoesToLowerCentroid() {
        // Seeds {0, 2} put 1 exactly on the midpoint: it joins the lower centroid.
        let x: [Float] = [2, 0, 1]
        var seen = 0
        for seed in 0..<32 as Range<UInt64> where lloyd(x, nil, k: 2, seed: seed, maxIterations: 0).centroids == [0, 2] {
            seen += 1
            let r = lloyd(x, nil, k: 2, seed: seed)
            XCTAssertEqual(r.centroids, [0.5, 2], "seed \(seed)")
            XCTAssertEqual(r.history, [1, 0.5], "seed \(seed)")
            XCTAssertEqual(r.iterations, 1, "seed \(seed)")
        }
        XCTAssertGreaterThan(seen, 0)
    }

    func testLloydIsDeterministic() {
        var rng = SplitMix64(seed: 15)
        let (x, w) = randomRow(&rng, n: 600, grid: false, zeroWeights: true)
        let a = lloyd(x, w, k: 16, seed: 42)
        XCTAssertEqual(a, lloyd(x, w, k: 16, seed: 42), "same seed, same result")
        XCTAssertEqual(a, lloyd(x, w, k: 16, seed: 42, maxIterations: 300), "the default limit is 300")
        // A fresh workspace, after other sizes have been through this one, changes nothing.
        _ = lloyd(Array(x.prefix(37)), nil, k: 3, seed: 1)
        let fresh = x.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { KMeans1D.lloyd(xp, weights: $0, k: 16, seed: 42, workspace: KMeans1D.Workspace()) }
        }
        XCTAssertEqual(a, fresh)
        let others = (0..<8 as Range<UInt64>).map { lloyd(x, w, k: 16, seed: $0).centroids }
        XCTAssertGreaterThan(Set(others.map { $0.map(\.bitPattern) }).count, 1, "different seeds can differ")
        XCTAssertEqual(exact(x, w, k: 16), exact(x, w, k: 16))
    }

    // MARK: - Edge cases

    func testLosslessWithAtMostKDistinctValues() {
        var rng = SplitMix64(seed: 16)
        for trial in 0..<60 {
            let k = [1, 2, 4, 8, 16][trial % 5]
            let distinct = 1 + Int(rng.next() % UInt64(k))
            let palette = (0..<distinct).map { _ in Float(rng.nextUnit() * 30 - 15) }
            let n = 1 + Int(rng.next() % 200)
            let x = (0..<n).map { _ in palette[Int(rng.next() % UInt64(distinct))] }
            let w: [Float]? = trial % 2 == 0 ? nil : (0..<n).map { _ in Float(rng.nextUnit() + 0.01) }
            for r in [exact(x, w, k: k), lloyd(x, w, k: k, seed: UInt64(trial))] {
                let tag = "trial \(trial) k \(k) distinct \(distinct) n \(n): \(r.centroids)"
                XCTAssertEqual(r.objective, 0, tag)
                XCTAssertEqual(r.centroids.count, k, tag)
                assertAscending(r.centroids, tag)
                for v in x { XCTAssertTrue(r.centroids.contains(v), tag) }
                XCTAssertEqual(objective(x, w, r.centroids), 0, tag)
            }
        }
    }

    func testFewerValuesThanClusters() {
        let x: [Float] = [3, -1, 7.5]
        for (r, k) in [(exact(x, nil, k: 16), 16), (lloyd(x, nil, k: 16, seed: 0), 16), (exact(x, [1, 2, 3], k: 4), 4)] {
            XCTAssertEqual(r.centroids.count, k)
            XCTAssertEqual(r.objective, 0)
            assertAscending(r.centroids, "\(r.centroids)")
            for v in x { XCTAssertTrue(r.centroids.contains(v)) }
            XCTAssertEqual(Set(r.centroids), Set(x), "extra centroids repeat existing values")
        }
        let single = exact([5], nil, k: 4)
        XCTAssertEqual(single.centroids, [5, 5, 5, 5])
        XCTAssertEqual(single.objective, 0)
    }

    func testAllEqualValues() {
        let x = [Float](repeating: 2.25, count: 500)
        for r in [exact(x, nil, k: 16), lloyd(x, nil, k: 16, seed: 9), exact(x, x, k: 1)] {
            XCTAssertEqual(Set(r.centroids), [2.25])
            XCTAssertEqual(r.objective, 0)
        }
        // Signed zeros are equal values.
        let zeros: [Float] = (0..<100).map { $0 % 3 == 0 ? -0.0 : 0.0 }
        XCTAssertEqual(exact(zeros, nil, k: 2).objective, 0)
        XCTAssertEqual(lloyd(zeros, nil, k: 2, seed: 1).objective, 0)
    }

    func testZeroWeights() {
        // Zero-weight values cost nothing and need no centroid of their own.
        let x: [Float] = [0, 1, 2, 100, 101, 0, 1]
        let w: [Float] = [1, 1, 1, 0, 0, 2, 3]
        for r in [exact(x, w, k: 3), lloyd(x, w, k: 3, seed: 4)] {
            XCTAssertEqual(r.objective, 0)
            XCTAssertEqual(r.centroids, [0, 1, 2])
        }
        // With room to spare they are reproduced too.
        let roomy = exact(x, w, k: 6)
        XCTAssertEqual(roomy.objective, 0)
        for v in x { XCTAssertTrue(roomy.centroids.contains(v)) }
        // A zero weight leaves the optimum of the other values unchanged.
        var rng = SplitMix64(seed: 17)
        let (y, v) = randomRow(&rng, n: 200, grid: false, zeroWeights: false)
        var yz = y, vz = v
        for i in stride(from: 0, to: 200, by: 7) {
            yz.append(y[i] + 40)
            vz.append(0)
        }
        XCTAssertEqual(exact(yz, vz, k: 8).objective, exact(y, v, k: 8).objective, accuracy: 1e-9 * exact(y, v, k: 8).objective)
        // All weights zero count as all ones.
        let allZero = [Float](repeating: 0, count: y.count)
        XCTAssertEqual(exact(y, allZero, k: 8), exact(y, nil, k: 8))
        XCTAssertEqual(lloyd(y, allZero, k: 8, seed: 3), lloyd(y, nil, k: 8, seed: 3))
        XCTAssertEqual(objective(y, allZero, [1, 2]), objective(y, nil, [1, 2]))
    }

    func testObjectiveFunction() {
        let x: [Float] = [0, 1, 2.5, 4, 10]
        let w: [Float] = [1, 2, 1, 0.5, 3]
        let c: [Float] = [1, 4]
        // Nearest: 0→1, 1→1, 2.5→1 or 4 (tie, same cost), 4→4, 10→4.
        let weighted: Double = 1 + 2.25 + 3 * 36
        let plain: Double = 1 + 2.25 + 36
        let one: Double = 1 + 2.25 + 9 + 81
        XCTAssertEqual(objective(x, w, c), weighted)
        XCTAssertEqual(objective(x, nil, c), plain)
        XCTAssertEqual(objective(x, nil, [1]), one)
    }

    func testHardInputs() {
        // Negative values, a far outlier (values crowded in a sliver of the range: the sort's
        // fallback path), huge magnitudes, and a row longer than 2^16 values.
        var rng = SplitMix64(seed: 18)
        var rows: [[Float]] = []
        rows.append((0..<300).map { _ in Float(rng.nextGaussian()) })
        rows.append((0..<300).map { $0 == 0 ? 5e4 : Float(rng.nextUnit()) })
        rows.append((0..<300).map { _ in Float(rng.nextGaussian()) * 1e30 })
        rows.append((0..<66_000).map { _ in Float(rng.nextStudentT4()) })
        for (i, x) in rows.enumerated() {
            let k = i == 3 ? 4 : 6
            let e = exact(x, nil, k: k)
            let l = lloyd(x, nil, k: k, seed: 2, maxIterations: 30)
            assertAscending(e.centroids, "row \(i)")
            assertAscending(l.centroids, "row \(i)")
            XCTAssertLessThanOrEqual(e.objective, l.objective * (1 + 1e-9), "row \(i)")
            XCTAssertEqual(e.objective, objective(x, nil, e.centroids), accuracy: 1e-9 * e.objective, "row \(i)")
            XCTAssertEqual(l.objective, objective(x, nil, l.centroids), accuracy: 1e-9 * l.objective, "row \(i)")
        }
    }
}
