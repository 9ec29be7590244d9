/// 1-D weighted k-means over one row of values (the any4 codebook learner).
///
/// Both solvers share one O(n) preparation step:
///  1. the row is sorted: for up to 2^16 values, two 8-bit LSD counting passes over a monotone
///     16-bit index of each value, round((x − min)·(2^16 − 1)/(max − min)), order it up to values
///     sharing an index, and an insertion step while gathering finishes (a few moves for spread-out
///     data). Longer rows, and rows whose values crowd into a sliver of their range, take an LSD
///     radix sort over the sign-flipped float bits (8 bits a pass, constant bytes skipped);
///  2. equal values are merged (weights add up); values whose total weight is zero are set aside,
///     since they never change an objective;
///  3. prefix sums of w, w·(x − μ) and w·(x − μ)² are built in Double, μ = the median value (the
///     shift keeps Σw x² − (Σw x)²/Σw from cancelling badly).
///
/// Cluster costs from these sums are accurate to about 1e-16 × Σw(x − μ)²: for rows in a sane
/// range (the any4 rows lie in [0, 15]) that is far below any difference that matters; for rows
/// whose values span many orders of magnitude (one far outlier and a tight crowd), the exact
/// solver is optimal only up to that rounding.
///
/// The clusters of an optimal or Lloyd-stable 1-D clustering are contiguous runs of the sorted
/// values, so a cluster is a pair of indices and its weight, mean and cost are O(1).
///
/// **Ties.** A value exactly at the midpoint of two consecutive centroids belongs to the lower
/// centroid, in seeding and in Lloyd's assignment step alike (midpoints are computed in Double).
public enum KMeans1D {
    public struct Result: Sendable, Equatable {
        /// k centroids, ascending. If the data has fewer than k distinct values, the extra centroids
        /// repeat existing ones (still ascending), so every value is reproduced exactly.
        public var centroids: [Float]
        /// Σ w_i (x_i − nearest centroid)², in Double.
        public var objective: Double
        /// Lloyd: iterations run; exact: 0.
        public var iterations: Int
        /// Lloyd: objective after seeding and after each iteration (non-increasing); exact: [objective].
        public var history: [Double]
    }

    /// Reusable buffers so that solving many rows does not allocate per row (one per thread).
    /// A workspace is not thread-safe: give each thread its own.
    public final class Workspace {
        public init() {}

        deinit {
            itemsA.deallocate()
            itemsB.deallocate()
            small.deallocate()
            smallB.deallocate()
            xo.deallocate()
            wo.deallocate()
            xs.deallocate()
            p0.deallocate()
            p1.deallocate()
            p2.deallocate()
            q0.deallocate()
            q1.deallocate()
            q2.deallocate()
            fA.deallocate()
            fB.deallocate()
            gBuf.deallocate()
            lastF.deallocate()
            lastB.deallocate()
            optF.deallocate()
            optB.deallocate()
            hist.deallocate()
            cent.deallocate()
            bnd.deallocate()
            cell.deallocate()
        }

        fileprivate var capN = 0  // buffers hold n values
        fileprivate var capK = 0  // and k clusters
        /// Sort items for the long-row path: float key << 32 | position in the row.
        fileprivate var itemsA = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        fileprivate var itemsB = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        /// The same for rows of at most 2^16 values: index << 16 | position.
        fileprivate var small = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        fileprivate var smallB = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        /// The row's values and weights (clamped at 0; 1 without weights) in ascending value order.
        fileprivate var xo = UnsafeMutablePointer<Float>.allocate(capacity: 1)
        fileprivate var wo = UnsafeMutablePointer<Float>.allocate(capacity: 1)
        /// Distinct values of positive weight, ascending.
        fileprivate var xs = UnsafeMutablePointer<Double>.allocate(capacity: 1)
        /// Prefix sums over xs: p0 = Σw, p1 = Σw(x−μ), p2 = Σw(x−μ)² (m + 1 entries).
        fileprivate var p0 = UnsafeMutablePointer<Double>.allocate(capacity: 1)
        fileprivate var p1 = UnsafeMutablePointer<Double>.allocate(capacity: 1)
        fileprivate var p2 = UnsafeMutablePointer<Double>.allocate(capacity: 1)
        /// The same over the values in descending order (the exact solver's backward half).
        fileprivate var q0 = UnsafeMutablePointer<Double>.allocate(capacity: 1)
        fileprivate var q1 = UnsafeMutablePointer<Double>.allocate(capacity: 1)
        fileprivate var q2 = UnsafeMutablePointer<Double>.allocate(capacity: 1)
        /// Dynamic-programming rows.
        fileprivate var fA = UnsafeMutablePointer<Double>.allocate(capacity: 1)
        fileprivate var fB = UnsafeMutablePointer<Double>.allocate(capacity: 1)
        fileprivate var gBuf = UnsafeMutablePointer<Double>.allocate(capacity: 1)
        fileprivate var lastF = UnsafeMutablePointer<Double>.allocate(capacity: 1)
        fileprivate var lastB = UnsafeMutablePointer<Double>.allocate(capacity: 1)
        /// Argmin tables, k + 1 rows of n + 1.
        fileprivate var optF = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        fileprivate var optB = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        /// Radix histograms.
        fileprivate var hist = UnsafeMutablePointer<UInt32>.allocate(capacity: 512)
        /// Lloyd state: centroids, cluster boundaries (k + 1), per-cluster costs.
        fileprivate var cent = UnsafeMutablePointer<Float>.allocate(capacity: 1)
        fileprivate var bnd = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        fileprivate var cell = UnsafeMutablePointer<Double>.allocate(capacity: 1)

        /// After `prepare`: distinct positive-weight values, all distinct values, μ.
        fileprivate var m = 0
        fileprivate var mAll = 0
        fileprivate var mu = 0.0

        fileprivate func reserve(n: Int, k: Int) {
            if n > capN {
                let c = Swift.max(n, capN * 3 / 2)
                func grow<T>(_ p: inout UnsafeMutablePointer<T>, _ count: Int) {
                    p.deallocate()
                    p = UnsafeMutablePointer<T>.allocate(capacity: count)
                }
                grow(&itemsA, c)
                grow(&itemsB, c)
                grow(&small, c)
                grow(&smallB, c)
                grow(&xo, c)
                grow(&wo, c)
                grow(&xs, c)
                grow(&p0, c + 1)
                grow(&p1, c + 1)
                grow(&p2, c + 1)
                grow(&q0, c + 1)
                grow(&q1, c + 1)
                grow(&q2, c + 1)
                grow(&fA, c + 1)
                grow(&fB, c + 1)
                grow(&gBuf, c + 1)
                grow(&lastF, c + 1)
                grow(&lastB, c + 1)
                capN = c
                capK = 0  // the argmin tables depend on capN too
            }
            if k > capK {
                let c = Swift.max(k, 16)
                optF.deallocate()
                optB.deallocate()
                cent.deallocate()
                bnd.deallocate()
                cell.deallocate()
                optF = .allocate(capacity: (c + 1) * (capN + 1))
                optB = .allocate(capacity: (c + 1) * (capN + 1))
                cent = .allocate(capacity: c)
                bnd = .allocate(capacity: c + 1)
                cell = .allocate(capacity: c)
                capK = c
            }
        }
    }

    // MARK: - Public entry points

    /// Restarts of ``lloyd`` by default: the best of 4 greedy-seeded runs. Measured on MiniLM's
    /// 36 encoder matrices (any4 g128, scripts/sklearn-compare.py): one run with plain k-means++
    /// seeding was below scikit-learn's k-means (the paper's method) on 35 of 36 matrices; see
    /// the README for the figures.
    public static let defaultRestarts = 2

    /// Candidates per seeding step by default: 2 + ⌊ln k⌋, as scikit-learn's greedy k-means++.
    public static func defaultTrials(k: Int) -> Int {
        var lnFloor = 0, power = 2.718281828459045  // ⌊ln k⌋: e^n is never an integer
        while Double(k) >= power {
            lnFloor += 1
            power *= 2.718281828459045
        }
        return 2 + lnFloor
    }

    /// Lloyd's algorithm with greedy k-means++ seeding from a seeded SplitMix64 generator, best
    /// of `restarts` runs.
    ///
    /// Seeding: the first centroid is a value drawn with probability ∝ w; each next one is the
    /// best of `trials` values drawn with probability ∝ w·D² (D = distance to the nearest
    /// centroid so far) — the one leaving the lowest total cost — located through the prefix sums
    /// in O(k + log n) (`trials` = 1: plain k-means++, one draw per centroid). Each iteration
    /// moves every centroid to the weighted mean of its cluster (rounded to Float; an empty
    /// cluster keeps its centroid) and reassigns (boundaries at the midpoints), in O(k log n).
    /// A run stops when no assignment changes or after `maxIterations`. The runs draw one after
    /// another from the same generator; the result (its centroids, iterations and history) is
    /// the run with the lowest objective, the first on a tie.
    public static func lloyd(
        _ values: UnsafeBufferPointer<Float>, weights: UnsafeBufferPointer<Float>?,
        k: Int, seed: UInt64, maxIterations: Int = 300, restarts: Int = defaultRestarts, trials: Int? = nil,
        workspace: Workspace
    ) -> Result {
        precondition(k >= 1, "k must be at least 1")
        precondition(weights == nil || weights!.count == values.count, "one weight per value")
        if values.isEmpty { return Result(centroids: [Float](repeating: 0, count: k), objective: 0, iterations: 0, history: [0]) }
        let ws = workspace
        prepare(values, weights, k: k, ws)
        if ws.m <= k { return lossless(n: values.count, k: k, ws) }
        var rng = SplitMix64(seed: seed)
        let perStep = trials ?? defaultTrials(k: k)
        var best: Result?
        for _ in 0..<Swift.max(1, restarts) {
            seedPlusPlus(k: k, trials: perStep, &rng, ws)
            var history: [Double] = []
            history.reserveCapacity(Swift.min(Swift.max(0, maxIterations), 96) + 1)
            let iterations = iterate(k: k, maxIterations: Swift.max(0, maxIterations), ws, history: &history)
            let objective = history[history.count - 1]
            if let b = best, !(objective < b.objective) { continue }
            best = Result(
                centroids: Array(UnsafeBufferPointer(start: ws.cent, count: k)),
                objective: objective, iterations: iterations, history: history)
        }
        return best!
    }

    /// Globally optimal weighted k-means (dynamic programming over sorted values).
    ///
    /// D[m][j] = min over i of D[m−1][i] + cost(i, j), the best cost of the j smallest distinct
    /// values in m clusters. Each layer is a row-minima problem on a Monge matrix, solved by
    /// divide and conquer over monotone argmins (run breadth-first: rows at stride 2^s, then at the
    /// odd multiples of 2^(s−1), …), with the previous layer's argmin as a further lower bound.
    /// An upper bound U (Lloyd from quantile seeds) prunes every state with D > U, which is exact
    /// because D[m][·] is non-decreasing; and the table is filled from both ends (k/2 layers over
    /// the ascending values, k − k/2 over the descending ones) and joined in the middle, so each
    /// half only explores the prefixes (suffixes) it can afford. Centroids are the cluster means
    /// rounded to Float; the objective is that of those centroids.
    public static func exact(
        _ values: UnsafeBufferPointer<Float>, weights: UnsafeBufferPointer<Float>?,
        k: Int, workspace: Workspace
    ) -> Result {
        precondition(k >= 1, "k must be at least 1")
        precondition(weights == nil || weights!.count == values.count, "one weight per value")
        if values.isEmpty { return Result(centroids: [Float](repeating: 0, count: k), objective: 0, iterations: 0, history: [0]) }
        let ws = workspace
        prepare(values, weights, k: k, ws)
        if ws.m <= k { return lossless(n: values.count, k: k, ws) }
        solveExact(k: k, ws)
        let obj = assignedObjective(k: k, ws)
        return Result(centroids: Array(UnsafeBufferPointer(start: ws.cent, count: k)), objective: obj, iterations: 0, history: [obj])
    }

    /// Σ w (x − nearest of `centroids`)² (centroids ascending); weights nil = all 1
    /// (all-zero weights count as all 1, as in the solvers).
    public static func objective(
        _ values: UnsafeBufferPointer<Float>, weights: UnsafeBufferPointer<Float>?,
        centroids: [Float]
    ) -> Double {
        if values.isEmpty { return 0 }
        if centroids.isEmpty { return .infinity }
        var c = centroids
        var ascending = true
        for i in 1..<Swift.max(1, c.count) where c[i - 1] > c[i] { ascending = false }
        if !ascending { c.sort() }
        var useWeights = false
        if let w = weights {
            for i in 0..<w.count where w[i] > 0 {
                useWeights = true
                break
            }
        }
        return c.withUnsafeBufferPointer { cp in
            let kc = cp.count
            var total = 0.0
            for i in 0..<values.count {
                let x = values[i]
                // First centroid ≥ x, then its lower neighbour.
                var lo = 0, hi = kc
                while lo < hi {
                    let mid = (lo &+ hi) >> 1
                    if cp[mid] < x { lo = mid &+ 1 } else { hi = mid }
                }
                var d = Double.infinity
                if lo < kc {
                    let e = Double(cp[lo]) - Double(x)
                    d = e * e
                }
                if lo > 0 {
                    let e = Double(x) - Double(cp[lo - 1])
                    d = Swift.min(d, e * e)
                }
                total += useWeights ? Double(Swift.max(weights![i], 0)) * d : d
            }
            return total
        }
    }

    // MARK: - Preparation: sort, merge, prefix sums

    @inline(__always) private static func orderKey(_ bits: UInt32) -> UInt32 {
        bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
    }

    /// Sorts, merges and builds the prefix sums (see the type's documentation).
    private static func prepare(_ values: UnsafeBufferPointer<Float>, _ weights: UnsafeBufferPointer<Float>?, k: Int, _ ws: Workspace) {
        let n = values.count
        ws.reserve(n: n, k: k)
        let xp = values.baseAddress!
        let wp = weights?.baseAddress
        sortRow(xp, wp, n: n, ws)
        // Shift for the prefix sums: the median value (any value amid the data will do).
        ws.mu = Double(ws.xo[n / 2])
        merge(n: n, ws)
        if ws.m == 0 {  // all weights zero: count them as ones
            ws.wo.initialize(repeating: 1, count: n)
            merge(n: n, ws)
        }
    }

    /// Leaves the values in ascending order in ws.xo, with their weights in ws.wo.
    private static func sortRow(_ xp: UnsafePointer<Float>, _ wp: UnsafePointer<Float>?, n: Int, _ ws: Workspace) {
        let xo = ws.xo, wo = ws.wo
        // Range, on the sign-folded bit patterns (signed-integer order = float order).
        var kmin = Int32.max, kmax = Int32.min
        xp.withMemoryRebound(to: Int32.self, capacity: n) { ip in
            for i in 0..<n {
                let s = ip[i]
                let key = s < 0 ? s ^ 0x7FFF_FFFF : s
                kmin = key < kmin ? key : kmin
                kmax = key > kmax ? key : kmax
            }
        }
        @inline(__always) func unfold(_ key: Int32) -> Float {
            Float(bitPattern: UInt32(bitPattern: key < 0 ? key ^ 0x7FFF_FFFF : key))
        }
        let mn = unfold(kmin), mx = unfold(kmax)
        @inline(__always) func weight(_ i: Int) -> Float {
            guard let wp else { return 1 }
            let w = wp[i]
            return w > 0 ? w : 0
        }
        if n < 24 || !(mx > mn) {
            for i in 0..<n {
                xo[i] = xp[i]
                wo[i] = weight(i)
            }
            if mx > mn { _ = insertionFix(xo, wo, n: n, budget: .max) }
            return
        }
        if n <= 1 << 16 {
            // Index f = round((x − min)·(2^16 − 1)/(max − min)), monotone in x: adding 2^52 leaves it
            // in the low mantissa bits (no traps). Items f << 16 | position, two 8-bit LSD passes.
            let base = Double(mn)
            let scale = 65535 / (Double(mx) - base)
            if scale.isFinite && scale > 0 {
                let a = ws.small, b = ws.smallB
                for i in 0..<n {
                    let f = UInt32(truncatingIfNeeded: ((Double(xp[i]) - base) * scale + 0x1p52).bitPattern) & 0xFFFF
                    b[i] = f << 16 | UInt32(truncatingIfNeeded: i)
                }
                let h0 = ws.hist, h1 = ws.hist + 256
                h0.initialize(repeating: 0, count: 512)
                for i in 0..<n {
                    let v = b[i]
                    h0[Int(truncatingIfNeeded: (v >> 16) & 0xFF)] &+= 1
                    h1[Int(truncatingIfNeeded: v >> 24)] &+= 1
                }
                var s0: UInt32 = 0, s1: UInt32 = 0
                for d in 0..<256 {
                    let c0 = h0[d], c1 = h1[d]
                    h0[d] = s0
                    h1[d] = s1
                    s0 &+= c0
                    s1 &+= c1
                }
                for i in 0..<n {
                    let v = b[i]
                    let d = Int(truncatingIfNeeded: (v >> 16) & 0xFF)
                    let o = h0[d]
                    h0[d] = o &+ 1
                    a[Int(o)] = v
                }
                for i in 0..<n {
                    let v = a[i]
                    let d = Int(truncatingIfNeeded: v >> 24)
                    let o = h1[d]
                    h1[d] = o &+ 1
                    b[Int(o)] = v
                }
                // Gather, fixing the order of values that share an index (insertion, rare).
                var moves = 0
                let budget = 2 &* n &+ 64
                var prev = -Float.infinity
                for t in 0..<n {
                    let id = Int(truncatingIfNeeded: b[t] & 0xFFFF)
                    let x = xp[id], w = weight(id)
                    if x < prev {
                        var j = t
                        while j > 0 && xo[j &- 1] > x {
                            xo[j] = xo[j &- 1]
                            wo[j] = wo[j &- 1]
                            j &-= 1
                        }
                        xo[j] = x
                        wo[j] = w
                        moves &+= t &- j
                        if moves > budget { break }
                    } else {
                        xo[t] = x
                        wo[t] = w
                        prev = x
                    }
                }
                if moves <= budget { return }
            }
        }
        // Large rows, or values crowded into a tiny part of their range: LSD radix sort on the float keys.
        var src = ws.itemsA, dst = ws.itemsB
        xp.withMemoryRebound(to: UInt32.self, capacity: n) { up in
            for i in 0..<n { src[i] = UInt64(orderKey(up[i])) << 32 | UInt64(truncatingIfNeeded: i) }
        }
        let hist = ws.hist
        for pass in 0..<4 {
            let shift = UInt64(32 + 8 * pass)
            hist.initialize(repeating: 0, count: 256)
            for i in 0..<n { hist[Int(truncatingIfNeeded: (src[i] >> shift) & 0xFF)] &+= 1 }
            if Int(hist[Int(truncatingIfNeeded: (src[0] >> shift) & 0xFF)]) == n { continue }
            var sum: UInt32 = 0
            for d in 0..<256 {
                let c = hist[d]
                hist[d] = sum
                sum &+= c
            }
            for i in 0..<n {
                let v = src[i]
                let d = Int(truncatingIfNeeded: (v >> shift) & 0xFF)
                let o = hist[d]
                hist[d] = o &+ 1
                dst[Int(o)] = v
            }
            swap(&src, &dst)
        }
        for t in 0..<n {
            let id = Int(truncatingIfNeeded: src[t] & 0xFFFF_FFFF)
            xo[t] = xp[id]
            wo[t] = weight(id)
        }
    }

    /// Insertion sort of (x, w) pairs by x, for nearly sorted input; false if it would take more
    /// than `budget` moves (the arrays are then a permutation of what they were).
    private static func insertionFix(_ xo: UnsafeMutablePointer<Float>, _ wo: UnsafeMutablePointer<Float>, n: Int, budget: Int) -> Bool {
        var moves = 0
        var prev = xo[0]
        var i = 1
        while i < n {
            let x = xo[i]
            if prev > x {
                let w = wo[i]
                var j = i
                while j > 0 && xo[j &- 1] > x {
                    xo[j] = xo[j &- 1]
                    wo[j] = wo[j &- 1]
                    j &-= 1
                }
                xo[j] = x
                wo[j] = w
                moves &+= i &- j
                if moves > budget { return false }
                prev = xo[i]
            } else {
                prev = x
            }
            i &+= 1
        }
        return true
    }

    /// Merges equal values of the sorted row: positive-weight ones go to xs with their prefix
    /// sums (m of them); mAll counts all distinct values.
    private static func merge(n: Int, _ ws: Workspace) {
        let xo = ws.xo, wo = ws.wo
        let xs = ws.xs, p0 = ws.p0, p1 = ws.p1, p2 = ws.p2
        let mu = ws.mu
        var m = 0, mAll = 1
        var s0 = 0.0, s1 = 0.0, s2 = 0.0
        p0[0] = 0
        p1[0] = 0
        p2[0] = 0
        var cur = xo[0]
        var cw = Double(wo[0])
        @inline(__always) func flush() {
            if cw > 0 {
                let x = Double(cur)
                let d = x - mu, wd = cw * d
                s0 += cw
                s1 += wd
                s2 += wd * d
                xs[m] = x
                m &+= 1
                p0[m] = s0
                p1[m] = s1
                p2[m] = s2
            }
        }
        var t = 1
        while t < n {
            let v = xo[t], w = Double(wo[t])
            t &+= 1
            if v == cur {
                cw += w
                continue
            }
            flush()
            mAll &+= 1
            cur = v
            cw = w
        }
        flush()
        ws.m = m
        ws.mAll = mAll
    }

    /// The answer when at most k distinct values have positive weight: every such value is a
    /// centroid (then zero-weight values, spread evenly, then repeats), objective 0.
    private static func lossless(n: Int, k: Int, _ ws: Workspace) -> Result {
        // Distinct values (ascending) and whether each has positive weight, from the sorted row.
        var distinct: [Float] = [], positive: [Bool] = []
        for t in 0..<n {
            let v = ws.xo[t]
            let pos = ws.wo[t] > 0
            if let last = distinct.last, last == v {
                if pos { positive[positive.count - 1] = true }
            } else {
                distinct.append(v)
                positive.append(pos)
            }
        }
        var c: [Float] = []
        if distinct.count <= k {
            c = distinct
        } else {
            var zeros: [Float] = []
            for (v, p) in zip(distinct, positive) { if p { c.append(v) } else { zeros.append(v) } }
            let need = k - c.count
            if need > 0 {  // zero-weight values cost nothing, but reproducing them is nicer
                for s in 0..<need { c.append(zeros[(s * zeros.count + zeros.count / 2) / need]) }
                c.sort()
            }
        }
        let d = c.count
        if d < k {  // repeat values, spread over the table (still ascending)
            let base = c
            c = (0..<k).map { base[$0 * d / k] }
        }
        return Result(centroids: c, objective: 0, iterations: 0, history: [0])
    }

    // MARK: - Lloyd

    /// Σ w (x − c)² over sorted distinct values lo..<hi, from the prefix sums (clamped at 0).
    @inline(__always) private static func clusterCost(_ ws: Workspace, _ lo: Int, _ hi: Int, _ c: Float) -> Double {
        if hi <= lo { return 0 }
        let d = Double(c) - ws.mu
        let s0 = ws.p0[hi] - ws.p0[lo], s1 = ws.p1[hi] - ws.p1[lo], s2 = ws.p2[hi] - ws.p2[lo]
        return Swift.max(0, s2 - 2 * d * s1 + d * d * s0)
    }

    /// Number of sorted distinct values ≤ key, within [lower, upper], starting from `hint`:
    /// a short linear walk, then galloping, then bisection.
    @inline(__always) private static func countAtMost(
        _ xs: UnsafeMutablePointer<Double>, _ key: Double,
        lower: Int, upper: Int, hint: Int
    ) -> Int {
        var h = hint < lower ? lower : (hint > upper ? upper : hint)
        var lo: Int, hi: Int
        if h < upper && xs[h] <= key {
            // Answer in (h, upper].
            h &+= 1
            if h == upper || xs[h] > key { return h }
            h &+= 1
            if h == upper || xs[h] > key { return h }
            lo = h &+ 1
            hi = upper
            var step = 2
            while true {
                let probe = h &+ step
                if probe >= upper { break }
                if xs[probe] <= key {
                    lo = probe &+ 1
                    step &<<= 1
                } else {
                    hi = probe
                    break
                }
            }
        } else {
            // Answer in [lower, h].
            if h == lower || xs[h &- 1] <= key { return h }
            h &-= 1
            if h == lower || xs[h &- 1] <= key { return h }
            hi = h &- 1
            lo = lower
            var step = 2
            while true {
                let probe = h &- step
                if probe < lower { break }
                if xs[probe] > key {
                    hi = probe
                    step &<<= 1
                } else {
                    lo = probe &+ 1
                    break
                }
            }
        }
        while lo < hi {
            let mid = (lo &+ hi) >> 1
            if xs[mid] <= key { lo = mid &+ 1 } else { hi = mid }
        }
        return lo
    }

    /// Greedy k-means++ (weighted D² sampling, scikit-learn's variant): each centroid after the
    /// first is the best of `trials` values drawn ∝ w·D² (the one leaving the lowest total cost;
    /// the first drawn on a tie); `trials` = 1 is plain k-means++. Leaves k ascending distinct
    /// centroids in ws.cent, their cluster boundaries in ws.bnd and cluster costs in ws.cell.
    /// Requires ws.m > k.
    private static func seedPlusPlus(k: Int, trials: Int, _ rng: inout SplitMix64, _ ws: Workspace) {
        let m = ws.m
        let xs = ws.xs, p0 = ws.p0, p1 = ws.p1, p2 = ws.p2, mu = ws.mu
        let cent = ws.cent, bnd = ws.bnd, cell = ws.cell
        // First centroid: ∝ w.
        do {
            let u = rng.nextUnit() * p0[m]
            var lo = 1, hi = m  // smallest j in [1, m] with p0[j] > u
            while lo < hi {
                let mid = (lo &+ hi) >> 1
                if p0[mid] > u { hi = mid } else { lo = mid &+ 1 }
            }
            cent[0] = Float(xs[lo &- 1])
            bnd[0] = 0
            bnd[1] = m
            cell[0] = clusterCost(ws, 0, m, cent[0])
        }
        var count = 1
        while count < k {
            var total = 0.0
            for t in 0..<count { total += cell[t] }
            var bestV: Float = 0, bestP = 0, bestDelta = Double.infinity
            for _ in 0..<Swift.max(1, trials) {
                var u = rng.nextUnit() * total
                var t = 0
                while t < count &- 1 && u >= cell[t] {
                    u -= cell[t]
                    t &+= 1
                }
                if !(cell[t] > 0) {  // rounding pushed us onto an empty cell: take the costliest
                    var best = 0
                    for s in 1..<count where cell[s] > cell[best] { best = s }
                    t = best
                    u = Swift.min(u, cell[t])
                }
                let lo = bnd[t], hi = bnd[t &+ 1]
                let c = cent[t]
                let d = Double(c) - mu
                let b0 = p0[lo], b1 = p1[lo], b2 = p2[lo]
                // Smallest j in (lo, hi] whose partial cost over lo..<j exceeds u; the pick is j − 1.
                var l = lo &+ 1, h = hi
                while l < h {
                    let j = (l &+ h) >> 1
                    let g = (p2[j] - b2) - 2 * d * (p1[j] - b1) + d * d * (p0[j] - b0)
                    if g > u { h = j } else { l = j &+ 1 }
                }
                var pick = l &- 1
                if Float(xs[pick]) == c {  // D² = 0, reachable only through rounding: take the far end
                    pick = Double(c) - xs[lo] >= xs[hi &- 1] - Double(c) ? lo : hi &- 1
                }
                let v = Float(xs[pick])
                let p = v < c ? t : t &+ 1
                if trials <= 1 {
                    bestV = v
                    bestP = p
                    break
                }
                let delta = insertionDelta(v, at: p, count: count, ws)
                if delta < bestDelta {
                    bestDelta = delta
                    bestV = v
                    bestP = p
                }
            }
            let v = bestV, p = bestP
            // Insert v at p.
            var s = count
            while s > p {
                cent[s] = cent[s &- 1]
                cell[s] = cell[s &- 1]
                s &-= 1
            }
            cent[p] = v
            s = count &+ 1
            while s > p &+ 1 {
                bnd[s] = bnd[s &- 1]
                s &-= 1
            }
            count &+= 1
            bnd[count] = m
            // Boundaries of the new pairs (p−1, p) and (p, p+1), then the three affected cells.
            if p > 0 {
                let key = (Double(cent[p &- 1]) + Double(cent[p])) * 0.5
                bnd[p] = countAtMost(xs, key, lower: bnd[p &- 1], upper: m, hint: bnd[p])
            }
            if p &+ 1 < count {
                let key = (Double(cent[p]) + Double(cent[p &+ 1])) * 0.5
                bnd[p &+ 1] = countAtMost(xs, key, lower: bnd[p], upper: m, hint: bnd[p &+ 1])
            }
            for q in Swift.max(0, p &- 1)...Swift.min(count &- 1, p &+ 1) {
                cell[q] = clusterCost(ws, bnd[q], bnd[q &+ 1], cent[q])
            }
        }
    }

    /// The change of the total cost if `v` became a centroid at index p of the `count` in ws
    /// (between cent[p − 1] and cent[p]): only the cells of its two neighbours change.
    @inline(__always) private static func insertionDelta(_ v: Float, at p: Int, count: Int, _ ws: Workspace) -> Double {
        let xs = ws.xs, cent = ws.cent, bnd = ws.bnd, cell = ws.cell
        let lo = p > 0 ? bnd[p &- 1] : 0
        let hi = p < count ? bnd[p &+ 1] : ws.m
        var before = 0.0, after = 0.0
        var left = lo
        if p > 0 {
            before += cell[p &- 1]
            let key = (Double(cent[p &- 1]) + Double(v)) * 0.5
            left = countAtMost(xs, key, lower: lo, upper: hi, hint: bnd[p])
            after += clusterCost(ws, lo, left, cent[p &- 1])
        }
        var right = hi
        if p < count {
            before += cell[p]
            let key = (Double(v) + Double(cent[p])) * 0.5
            right = countAtMost(xs, key, lower: left, upper: hi, hint: bnd[p])
            after += clusterCost(ws, right, hi, cent[p])
        }
        after += clusterCost(ws, left, right, v)
        return after - before
    }

    /// Lloyd iterations from the centroids and boundaries in ws (consistent with each other).
    /// Appends the starting objective and one objective per iteration; returns the iteration count.
    private static func iterate(k: Int, maxIterations: Int, _ ws: Workspace, history: inout [Double]) -> Int {
        let m = ws.m
        let xs = ws.xs, p0 = ws.p0, p1 = ws.p1, mu = ws.mu
        let cent = ws.cent, bnd = ws.bnd
        var obj = 0.0
        for t in 0..<k { obj += clusterCost(ws, bnd[t], bnd[t &+ 1], cent[t]) }
        history.append(obj)
        var iterations = 0
        while iterations < maxIterations {
            // Update: weighted means, rounded to Float, clamped into the cluster's range.
            for t in 0..<k {
                let lo = bnd[t], hi = bnd[t &+ 1]
                if hi <= lo { continue }
                let s0 = p0[hi] - p0[lo]
                if !(s0 > 0) { continue }
                let mean = mu + (p1[hi] - p1[lo]) / s0
                cent[t] = Float(Swift.min(Swift.max(mean, xs[lo]), xs[hi &- 1]))
            }
            iterations &+= 1
            // Assignment: boundaries at the midpoints (a value at a midpoint goes down).
            var changed = false
            for t in 1..<k {
                let key = (Double(cent[t &- 1]) + Double(cent[t])) * 0.5
                let nb = countAtMost(xs, key, lower: bnd[t &- 1], upper: m, hint: bnd[t])
                if nb != bnd[t] {
                    changed = true
                    bnd[t] = nb
                }
            }
            obj = 0
            for t in 0..<k { obj += clusterCost(ws, bnd[t], bnd[t &+ 1], cent[t]) }
            history.append(obj)
            if !changed { break }
        }
        return iterations
    }

    /// The objective of ws.cent with nearest assignment (boundaries recomputed into ws.bnd).
    private static func assignedObjective(k: Int, _ ws: Workspace) -> Double {
        let bnd = ws.bnd, cent = ws.cent
        bnd[0] = 0
        bnd[k] = ws.m
        for t in 1..<Swift.max(1, k) {
            let key = (Double(cent[t &- 1]) + Double(cent[t])) * 0.5
            bnd[t] = countAtMost(ws.xs, key, lower: bnd[t &- 1], upper: ws.m, hint: bnd[t])
        }
        var obj = 0.0
        for t in 0..<k { obj += clusterCost(ws, bnd[t], bnd[t &+ 1], cent[t]) }
        return obj
    }

    // MARK: - Exact

    /// One DP layer over rows s...e: f[j] = p2[j] + min over i in [lo(j), hi(j)] of
    /// g[i] − (p1[j]−p1[i])²/(p0[j]−p0[i]) (g = previous layer − p2), where the argmins are
    /// monotone in j. Row e is solved first (its range cut short once the previous layer's cost
    /// alone passes its best), then rows s...e−1 breadth-first over the implicit bisection tree,
    /// each row's range bounded by the argmins of its two nearest already-solved rows (ol at the
    /// left end, row e at the right), by the previous layer's argmin at that row and by j − 1
    /// (`or` is the last column).
    @inline(__always)
    private static func solveRows(
        _ s: Int, _ e: Int, ol: Int, or: Int,
        p0: UnsafeMutablePointer<Double>, p1: UnsafeMutablePointer<Double>, p2: UnsafeMutablePointer<Double>,
        g: UnsafeMutablePointer<Double>, f: UnsafeMutablePointer<Double>, opt: UnsafeMutablePointer<Int32>,
        prevOpt: UnsafeMutablePointer<Int32>
    ) {
        if e < s { return }
        // Row e first, over its whole range [max(ol, prevOpt[e]), min(or, e − 1)]: its argmin then
        // bounds every other row's from above. The scan stops at the first candidate i whose
        // previous-layer cost alone, D(i) = g[i] + p2[i], reaches the best total so far: D is
        // non-decreasing in i and the last cluster's cost is ≥ 0, so no later candidate is better.
        do {
            let j = e
            var lo = ol > Int(prevOpt[j]) ? ol : Int(prevOpt[j])
            let hi = or < j &- 1 ? or : j &- 1
            lo = lo < hi ? lo : hi
            let s0 = p0[j], s1 = p1[j], pj = p2[j]
            var best = Double.infinity, arg = lo
            var i = lo
            while i <= hi {
                let gi = g[i]
                if gi + p2[i] > (best + pj) * (1 + 1e-12) { break }
                let a = s0 - p0[i], b = s1 - p1[i]
                let v = gi - b * b / a
                if v < best {
                    best = v
                    arg = i
                }
                i &+= 1
            }
            f[j] = best + pj
            opt[j] = Int32(truncatingIfNeeded: arg)
        }
        let len = e &- s
        if len <= 0 { return }
        var stride = 1
        while stride &* 2 <= len { stride &*= 2 }
        let base = s &- 1  // row of tree position r is base + r, r in 1...len
        // Sentinels: the argmin bounds at the two ends, in the rows just outside s...e − 1 (row
        // s − 1 is the previous chunk's last row, whose argmin is ol already; row e is solved).
        opt[base] = Int32(truncatingIfNeeded: ol)
        let right = e
        while stride >= 1 {
            var r = stride
            let step = stride &* 2
            while r <= len {
                let j = base &+ r
                let jr = j &+ stride
                var lo = Int(opt[j &- stride])
                var hi = Int(opt[jr < right ? jr : right])
                let b = Int(prevOpt[j])
                lo = lo > b ? lo : b
                hi = hi < j &- 1 ? hi : j &- 1
                lo = lo < hi ? lo : hi
                // Candidates two at a time (the second clamped to hi), leftmost minimum kept with
                // selects: the only data-dependent branch is the loop's exit.
                let s0 = p0[j], s1 = p1[j]
                let vs0 = SIMD2<Double>(repeating: s0), vs1 = SIMD2<Double>(repeating: s1)
                var best = Double.infinity
                var arg = lo
                var i = lo
                repeat {
                    let i1 = i < hi ? i &+ 1 : hi
                    let a = vs0 - SIMD2(p0[i], p0[i1]), b = vs1 - SIMD2(p1[i], p1[i1])
                    let v = SIMD2(g[i], g[i1]) - b * b / a
                    let v0 = v[0], v1 = v[1]
                    let c0 = v0 < best
                    best = c0 ? v0 : best
                    arg = c0 ? i : arg
                    let c1 = v1 < best
                    best = c1 ? v1 : best
                    arg = c1 ? i1 : arg
                    i &+= 2
                } while i <= hi
                f[j] = best + p2[j]
                opt[j] = Int32(truncatingIfNeeded: arg)
                r &+= step
            }
            stride >>= 1
        }
    }

    /// Fills `layers` layers of the DP over the prefix sums (p0, p1, p2), keeping states ≤ ub.
    /// Layer L's rows are j ≤ L + slack (so the other clusters still get a value each).
    /// Leaves the last layer in `last` and returns its last row ≤ ub (or −1 if none).
    private static func forward(
        layers: Int, slack: Int, ub: Double,
        p0: UnsafeMutablePointer<Double>, p1: UnsafeMutablePointer<Double>, p2: UnsafeMutablePointer<Double>,
        bufA: UnsafeMutablePointer<Double>, bufB: UnsafeMutablePointer<Double>,
        g: UnsafeMutablePointer<Double>, last: UnsafeMutablePointer<Double>,
        opt: UnsafeMutablePointer<Int32>, rowStride: Int, lastRowMin: Int = 0
    ) -> Int {
        // Layer 1: one cluster over the first j values.
        var prev = layers == 1 ? last : bufA
        var rowMax = 1 &+ slack
        var prevLast = 0
        do {
            let z0 = p0[0], z1 = p1[0], z2 = p2[0]
            var j = 1
            while j <= rowMax {
                let s1 = p1[j] - z1
                let c = Swift.max(0, (p2[j] - z2) - s1 * s1 / (p0[j] - z0))
                prev[j] = c
                if c > ub { break }
                prevLast = j
                j &+= 1
            }
            if prevLast == 0 { return -1 }
            // Argmins are 0; written one row past the next layer's rows (its lower bounds).
            for r in 1...Swift.min(rowMax &+ 1, rowStride &- 1) { opt[rowStride &+ r] = 0 }
        }
        if layers == 1 { return prevLast }
        var layer = 1
        var growth = prevLast  // how far the reachable rows moved with the last layer
        while layer < layers {
            layer &+= 1
            let cur = layer == layers ? last : (prev == bufA ? bufB : bufA)
            rowMax = layer &+ slack
            for i in (layer &- 1)...prevLast { g[i] = prev[i] - p2[i] }
            let lopt = opt + layer &* rowStride
            let pOpt = opt + (layer &- 1) &* rowStride
            // Rows in chunks (sized from the previous layer's growth) until the cost passes ub.
            let first = layer == layers ? Swift.max(layer, Swift.min(lastRowMin, rowMax)) : layer
            var start = first
            var optLo = layer &- 1
            var end = Swift.min(rowMax, Swift.max(start, prevLast &+ growth &+ growth / 8 &+ 16))
            while true {
                solveRows(
                    start, end, ol: optLo, or: prevLast, p0: p0, p1: p1, p2: p2,
                    g: g, f: cur, opt: lopt, prevOpt: pOpt)
                if cur[end] > ub || end >= rowMax { break }
                optLo = Int(lopt[end])
                start = end &+ 1
                end = Swift.min(rowMax, end &+ Swift.max(32, growth / 4))
            }
            // Rows past `end` take the last argmin (a valid lower bound for the next layer).
            let fill = lopt[end]
            var r = end &+ 1
            while r <= Swift.min(rowMax &+ 1, rowStride &- 1) {
                lopt[r] = fill
                r &+= 1
            }
            var j = end
            while j >= first && cur[j] > ub { j &-= 1 }
            if j < first { return -1 }
            growth = Swift.max(1, j &- prevLast)
            prevLast = j
            prev = cur
        }
        return prevLast
    }

    /// Runs the exact DP and leaves the optimal centroids in ws.cent (ascending).
    private static func solveExact(k: Int, _ ws: Workspace) {
        let m = ws.m
        let cent = ws.cent, bnd = ws.bnd
        if k == 1 {
            bnd[0] = 0
            bnd[1] = m
            fillMeans(k: 1, ws)
            return
        }
        // Upper bound: Lloyd from weighted-quantile seeds (distinct values), a few iterations.
        do {
            var prevIdx = -1
            for t in 0..<k {
                let target = (Double(t) + 0.5) / Double(k) * ws.p0[m]
                var lo = 1, hi = m
                while lo < hi {
                    let mid = (lo &+ hi) >> 1
                    if ws.p0[mid] > target { hi = mid } else { lo = mid &+ 1 }
                }
                let idx = Swift.min(Swift.max(lo &- 1, prevIdx &+ 1), m &- k &+ t)
                cent[t] = Float(ws.xs[idx])
                prevIdx = idx
            }
            bnd[0] = 0
            bnd[k] = m
            for t in 1..<k {
                let key = (Double(cent[t &- 1]) + Double(cent[t])) * 0.5
                bnd[t] = countAtMost(ws.xs, key, lower: bnd[t &- 1], upper: m, hint: bnd[t &- 1])
            }
        }
        var scratch: [Double] = []
        scratch.reserveCapacity(24)
        _ = iterate(k: k, maxIterations: 20, ws, history: &scratch)
        let ub = scratch[scratch.count - 1]
        if solveByPenalty(k: k, ub: ub, ws) {
            fillMeans(k: k, ws)
            return
        }
        // Slack for rounding in the prefix-sum costs.
        var margin = ub * 1e-9 + Swift.max(0, ws.p2[m]) * 1e-12
        if !(margin > 0) { margin = .leastNormalMagnitude }
        if !solveExactBounded(k: k, ub: ub + margin, ws) {
            _ = solveExactBounded(k: k, ub: .infinity, ws)  // unreachable in exact arithmetic
        }
        fillMeans(k: k, ws)
    }

    /// Σ w (x − mean)² over the sorted distinct values lo..<hi, from the prefix sums.
    @inline(__always) private static func meanCost(_ ws: Workspace, _ lo: Int, _ hi: Int) -> Double {
        if hi <= lo { return 0 }
        let a = ws.p0[hi] - ws.p0[lo], b = ws.p1[hi] - ws.p1[lo]
        return Swift.max(0, (ws.p2[hi] - ws.p2[lo]) - b * b / a)
    }

    /// The exact optimum through a Lagrangian relaxation, when it lands on k clusters.
    ///
    /// For a price λ per cluster, G(j) = min over i < j of G(i) + cost(i, j) + λ (any number of
    /// clusters) is one pass over the values: the cluster costs are Monge, so a later start that
    /// beats an earlier one at some row beats it at every later row, and a queue of candidate
    /// starts with the rows each one wins (found by galloping, then bisection) gives every row its
    /// minimum. If the minimising clustering has exactly k clusters it is an optimal k-clustering:
    /// any k-clustering X has cost(X) + λk ≥ G(m). The price is first estimated from the clustering
    /// in ws (a good one): between the largest gain of splitting one of its clusters in two and
    /// the smallest cost of merging two neighbours; then moved on a coarse copy of the row (runs
    /// of ``coarseRun`` values) until it gives k clusters there, and from there on the row (up
    /// when the count is above k, down below, along the chord once both sides are known), at most
    /// 8 coarse and 6 full passes. Only a full pass certifies. Leaves the boundaries in
    /// ws.bnd and returns true on success; false leaves ws.bnd as it was (the caller runs the
    /// layered dynamic program; prices where no λ gives exactly k clusters exist, if rarely).
    private static func solveByPenalty(k: Int, ub: Double, _ ws: Workspace) -> Bool {
        let m = ws.m, bnd = ws.bnd
        // Price guesses from a cost model OPT(c) ≈ A/c² fitted to a known cost at c clusters: the
        // geometric mean of the k-interval's ends, A/k² − A/(k+1)² and A/(k−1)² − A/k².
        func guess(cost: Double, clusters c: Int) -> Double {
            let a = cost * Double(c) * Double(c), kk = Double(k)
            let lo = a / (kk * kk) - a / ((kk + 1) * (kk + 1))
            let hi = k > 1 ? a / ((kk - 1) * (kk - 1)) - a / (kk * kk) : 2 * lo
            return (lo * hi).squareRoot()
        }
        // The first guess from the clustering in ws (close to optimal): between the largest gain
        // of splitting one of its clusters in two and the smallest cost of merging two neighbours
        // (their geometric mean; neither re-optimises the other boundaries, so they bracket the
        // k-interval loosely from both sides).
        var gain = 0.0, merge = Double.infinity
        for t in 0..<k {
            let lo = bnd[t], hi = bnd[t &+ 1]
            if t &+ 1 < k {
                merge = Swift.min(merge, meanCost(ws, lo, bnd[t &+ 2]) - meanCost(ws, lo, hi) - meanCost(ws, hi, bnd[t &+ 2]))
            }
            if hi &- lo >= 2 {
                let whole = meanCost(ws, lo, hi)
                let step = Swift.max(1, (hi &- lo) / 32)
                var s = lo &+ 1
                while s < hi {
                    gain = Swift.max(gain, whole - meanCost(ws, lo, s) - meanCost(ws, s, hi))
                    s &+= step
                }
            }
        }
        var lambda = gain > 0 && merge.isFinite && merge > gain ? (gain * merge).squareRoot() : guess(cost: ub, clusters: k)
        guard lambda > 0, lambda.isFinite else { return false }
        // Passes over prefix sums P (mm values) at prices moved towards k's interval (up when the
        // count is above k, down below, then along the chord once both sides are known); the
        // price once a pass lands on exactly k clusters.
        func search(
            _ mm: Int, _ P0: UnsafeMutablePointer<Double>, _ P1: UnsafeMutablePointer<Double>, _ P2: UnsafeMutablePointer<Double>,
            from start: Double, passes: Int
        ) -> Double? {
            var lambda = start
            // The nearest counts seen above and below k, with their optimal costs value − λ·count.
            var above: (count: Int, cost: Double, lambda: Double)?, below: (count: Int, cost: Double, lambda: Double)?
            for _ in 0..<passes {
                let (count, value) = penalizedPass(lambda: lambda, m: mm, p0: P0, p1: P1, p2: P2, ws)
                if count == k { return lambda }
                let cost = value - lambda * Double(count)
                if count > k {
                    if above == nil || count <= above!.count { above = (count, cost, lambda) }
                } else if below == nil || count >= below!.count {
                    below = (count, cost, lambda)
                }
                if let a = above, let b = below {
                    // The chord of the convex OPT(c) between the two counts: its slope lies within the
                    // prices of the counts between (exactly k's when they are k ± 1).
                    let chord = (b.cost - a.cost) / Double(a.count - b.count)
                    lambda = chord > a.lambda && chord < b.lambda ? chord : (a.lambda * b.lambda).squareRoot()
                } else {
                    // From the model fitted to this count's optimal cost, kept on the right side.
                    let next = guess(cost: cost, clusters: count)
                    let r = Double(count) / Double(k)
                    lambda = (count > k) == (next > lambda) ? next : lambda * r * r * r
                }
                guard lambda > 0, lambda.isFinite else { return nil }
            }
            return nil
        }
        // The price on a coarse copy first: the values in runs of `coarseRun` (run t ends at
        // value (t + 1)·coarseRun, so its prefix sums are every coarseRun-th of the row's), whose
        // optimal clusterings are those of the row with boundaries on run ends; its k-interval
        // overlaps the row's nearly always, and its passes cost a twelfth. (Measured on the bench's
        // rows: full passes per row 1.69 → 1.05, coarse passes 1.6; solver time −16 %.)
        if m >= coarseRun &* k &* 4 {
            let cm = (m &+ coarseRun &- 1) / coarseRun
            let q0 = ws.q0, q1 = ws.q1, q2 = ws.q2  // scratch here (solveExactBounded refills them)
            for t in 0..<cm {
                q0[t] = ws.p0[t &* coarseRun]
                q1[t] = ws.p1[t &* coarseRun]
                q2[t] = ws.p2[t &* coarseRun]
            }
            q0[cm] = ws.p0[m]
            q1[cm] = ws.p1[m]
            q2[cm] = ws.p2[m]
            if let found = search(cm, q0, q1, q2, from: lambda, passes: 8) { lambda = found }
        }
        // The row itself: a pass that lands on k clusters certifies its clustering.
        guard search(m, ws.p0, ws.p1, ws.p2, from: lambda, passes: 6) != nil else { return false }
        var j = m
        var t = k
        var starts = [Int](repeating: 0, count: k &+ 1)
        starts[k] = m
        while t > 0 {
            j = Int(ws.optB[j])
            t &-= 1
            starts[t] = j
        }
        guard j == 0 else { return false }
        for t in 0...k { bnd[t] = starts[t] }
        return true
    }

    /// Values per run of ``solveByPenalty``'s coarse copy (8 and 16 were slower on the bench).
    static let coarseRun = 12

    /// One pass of the penalised dynamic program (see ``solveByPenalty``) over the m values whose
    /// prefix sums are p0, p1, p2: returns the number of clusters of its optimum and G(m), with
    /// each prefix's last-cluster start in ws.optB.
    private static func penalizedPass(
        lambda: Double, m: Int, p0: UnsafeMutablePointer<Double>, p1: UnsafeMutablePointer<Double>, p2: UnsafeMutablePointer<Double>,
        _ ws: Workspace
    ) -> (count: Int, value: Double) {
        let h = ws.fB  // G(j) − p2[j]
        let count = ws.optF, arg = ws.optB
        let queue = ws.small, from = ws.smallB  // candidate starts and the first row each one wins
        h[0] = -p2[0]
        count[0] = 0
        queue[0] = 0
        from[0] = 1
        var head = 0, tail = 1
        for j in 1...m {
            while tail &- head >= 2 && Int(from[head &+ 1]) <= j { head &+= 1 }
            let i = Int(queue[head])
            let a = p0[j] - p0[i], b = p1[j] - p1[i]
            h[j] = h[i] - b * b / a + lambda
            count[j] = count[i] &+ 1
            arg[j] = Int32(truncatingIfNeeded: i)
            if j == m { break }
            // Start j beats start c at row r ⇔ h[j] − bj²/aj ≤ h[c] − bc²/ac (a's > 0), compared
            // without dividing: δ·aj·ac ≤ bj²·ac − bc²·aj with δ = h[j] − h[c].
            let pj0 = p0[j], pj1 = p1[j], hj = h[j]
            @inline(__always) func wins(_ c: Int, _ delta: Double, _ r: Int) -> Bool {
                let r0 = p0[r], r1 = p1[r]
                let aj = r0 - pj0, bj = r1 - pj1, ac = r0 - p0[c], bc = r1 - p1[c]
                return delta * aj * ac <= bj * bj * ac - bc * bc * aj
            }
            var first = j &+ 1  // where j starts to win; m + 1: never
            while tail > head {
                let c = Int(queue[tail &- 1])
                let s = Swift.max(Int(from[tail &- 1]), j &+ 1)
                let delta = hj - h[c]
                if wins(c, delta, s) {  // j wins all of c's rows
                    tail &-= 1
                    first = s
                    continue
                }
                // The first row in (s, m] where j wins: gallop, then bisect.
                var lo = s, hi = m &+ 1, step = 1
                while lo &+ step <= m {
                    if wins(c, delta, lo &+ step) {
                        hi = lo &+ step
                        break
                    }
                    lo &+= step
                    step &<<= 1
                }
                if hi > m && lo < m && wins(c, delta, m) { hi = m }
                if hi <= m {
                    while hi &- lo > 1 {
                        let mid = (lo &+ hi) >> 1
                        if wins(c, delta, mid) { hi = mid } else { lo = mid }
                    }
                }
                first = hi
                break
            }
            if first <= m {
                queue[tail] = UInt32(truncatingIfNeeded: j)
                from[tail] = UInt32(truncatingIfNeeded: first)
                tail &+= 1
            }
        }
        return (Int(count[m]), h[m] + p2[m])
    }

    /// The DP with pruning bound ub; leaves cluster boundaries in ws.bnd. False if ub was too small.
    private static func solveExactBounded(k: Int, ub: Double, _ ws: Workspace) -> Bool {
        let m = ws.m
        // The descending values' "prefix sums": q[r] = −p[m − r], so that q[r′] − q[r] is the sum
        // over the r′ − r values below the top r, with the precision of the ascending sums.
        let p0 = ws.p0, p1 = ws.p1, p2 = ws.p2, q0 = ws.q0, q1 = ws.q1, q2 = ws.q2
        for r in 0...m {
            q0[r] = -p0[m &- r]
            q1[r] = -p1[m &- r]
            q2[r] = -p2[m &- r]
        }
        let a = k / 2, b = k &- a
        let stride = m &+ 1
        let lastA = forward(
            layers: a, slack: m &- k, ub: ub, p0: p0, p1: p1, p2: p2,
            bufA: ws.fA, bufB: ws.fB, g: ws.gBuf, last: ws.lastF, opt: ws.optF, rowStride: stride)
        if lastA < 0 { return false }
        // The backward half's last layer only needs suffixes that the forward half can complete.
        let lastB = forward(
            layers: b, slack: m &- k, ub: ub, p0: q0, p1: q1, p2: q2,
            bufA: ws.fA, bufB: ws.fB, g: ws.gBuf, last: ws.lastB, opt: ws.optB, rowStride: stride,
            lastRowMin: m &- lastA)
        if lastB < 0 { return false }
        // Join: the first j values in a clusters + the other m − j in b clusters.
        var best = Double.infinity, bestJ = -1
        let jLo = Swift.max(a, m &- lastB), jHi = Swift.min(lastA, m &- b)
        if jLo > jHi { return false }
        for j in jLo...jHi {
            let v = ws.lastF[j] + ws.lastB[m &- j]
            if v < best {
                best = v
                bestJ = j
            }
        }
        if bestJ < 0 || !(best <= ub) { return false }
        // Backtrack.
        let bnd = ws.bnd
        bnd[0] = 0
        bnd[k] = m
        bnd[a] = bestJ
        var j = bestJ
        var layer = a
        while layer > 1 {
            j = Int(ws.optF[layer &* stride &+ j])
            bnd[layer &- 1] = j
            layer &-= 1
        }
        var r = m &- bestJ
        layer = b
        while layer > 1 {
            r = Int(ws.optB[layer &* stride &+ r])
            bnd[k &- layer &+ 1] = m &- r
            layer &-= 1
        }
        return true
    }

    /// ws.cent[t] = weighted mean of cluster bnd[t]..<bnd[t+1], rounded to Float.
    private static func fillMeans(k: Int, _ ws: Workspace) {
        let bnd = ws.bnd, cent = ws.cent, xs = ws.xs
        for t in 0..<k {
            let lo = bnd[t], hi = bnd[t &+ 1]
            let s0 = ws.p0[hi] - ws.p0[lo]
            let mean = s0 > 0 ? ws.mu + (ws.p1[hi] - ws.p1[lo]) / s0 : xs[lo]
            cent[t] = Float(Swift.min(Swift.max(mean, xs[lo]), xs[hi &- 1]))
        }
    }
}
