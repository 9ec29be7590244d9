import Any4Core

/// `any4 bench --kmeans`: the exact 1-D k-means against Lloyd on one seeded Student-t(5) × 0.02
/// matrix, any4 at one group size (k = 16, sample weight = the group scale, f16 tables).
///
/// Each round times, interleaved (the order alternating between rounds): the whole matrix
/// quantized with `--cluster lloyd` and with `--cluster exact` (Quantizer, `threads` workers), and
/// the k-means alone on `solverRows` group-scaled rows (one thread): exact, Lloyd as the default
/// runs it, and one plain k-means++ Lloyd run (the default before restarts and greedy seeding).
/// Ratios are exact over Lloyd within the same round; the summary gives their median and spread.
/// Before timing, `verifyRows` rows are solved by a plain O(k·n²) dynamic program without any
/// pruning or bounds (an independent reference optimum) and compared with the exact solver.
public enum KMeansBenchmark {
    public struct Configuration: Sendable {
        public var rows = 4096
        public var cols = 4096
        public var groupSize = 128
        public var rounds = 5
        public var threads = 0
        public var seed: UInt64 = 0
        public var solverRows = 256
        public var verifyRows = 2
        public init() {}
    }

    /// A seeded [rows, cols] matrix of Student-t(5) × 0.02 values (SplitMix64: z / sqrt(χ²₅/5)).
    public static func studentT5(rows: Int, cols: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<(rows * cols)).map { _ in
            let z = rng.nextGaussian()
            var chi2 = 0.0
            for _ in 0..<5 {
                let g = rng.nextGaussian()
                chi2 += g * g
            }
            return Float(0.02 * z / (chi2 / 5).squareRoot())
        }
    }

    /// The optimum by the textbook dynamic program over the sorted distinct values (O(k·m²), no
    /// pruning, no monotone-argmin shortcuts), with costs from Double prefix sums about the mean.
    public static func referenceOptimum(_ x: [Float], _ w: [Float], k: Int) -> Double {
        let pairs = zip(x, w).map { (Double($0), Double(max($1, 0))) }.sorted { $0.0 < $1.0 }
        var xs: [Double] = [], ws: [Double] = []
        for (v, wt) in pairs where wt > 0 {
            if let last = xs.last, last == v {
                ws[ws.count - 1] += wt
            } else {
                xs.append(v)
                ws.append(wt)
            }
        }
        let m = xs.count
        if m <= k { return 0 }
        let mean = zip(xs, ws).reduce(0) { $0 + $1.0 * $1.1 } / ws.reduce(0, +)
        var p0 = [0.0], p1 = [0.0], p2 = [0.0]
        for (v, wt) in zip(xs, ws) {
            let d = v - mean
            p0.append(p0.last! + wt)
            p1.append(p1.last! + wt * d)
            p2.append(p2.last! + wt * d * d)
        }
        var prev = [Double](repeating: .infinity, count: m + 1)
        prev[0] = 0
        var cur = prev
        for layer in 1...k {
            cur[0] = layer == 0 ? 0 : .infinity
            for j in 1...m {
                var best = Double.infinity
                for i in 0..<j where prev[i] < .infinity {
                    let a = p0[j] - p0[i], b = p1[j] - p1[i]
                    let v = prev[i] + max(0, (p2[j] - p2[i]) - b * b / a)
                    if v < best { best = v }
                }
                cur[j] = best
            }
            swap(&prev, &cur)
        }
        return prev[m]
    }

    static func median(_ v: [Double]) -> Double {
        let s = v.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func stats(_ v: [Double]) -> JSONValue {
        .object([
            ("median", JSONValue(median(v))), ("min", JSONValue(v.min() ?? 0)), ("max", JSONValue(v.max() ?? 0)),
            ("rounds", .array(v.map { JSONValue($0) }))
        ])
    }

    public static func run(_ config: Configuration, log: (String) -> Void = { _ in }) throws -> JSONValue {
        let rows = config.rows, cols = config.cols
        let weights = studentT5(rows: rows, cols: cols, seed: config.seed)
        let format = AnyFormat(bits: 4)
        let k = 16
        var options = QuantizationOptions()
        options.groupSize = config.groupSize
        options.threads = config.threads
        options.seed = config.seed

        // The group-scaled rows the solvers see, as any4 prepares them (f16 scales and zeros).
        let groups = GroupLayout(columns: cols, size: config.groupSize)
        let solverRows = min(config.solverRows, rows)
        var scaled = [Float](repeating: 0, count: solverRows * cols)
        var sampleWeights = [Float](repeating: 0, count: solverRows * cols)
        var scales = [Float](repeating: 0, count: groups.count), zeros = scales
        weights.withUnsafeBufferPointer { all in
            scaled.withUnsafeMutableBufferPointer { sc in
                sampleWeights.withUnsafeMutableBufferPointer { sw in
                    scales.withUnsafeMutableBufferPointer { s in
                        zeros.withUnsafeMutableBufferPointer { z in
                            for r in 0..<solverRows {
                                AnyFormat.scaleRow(
                                    UnsafeBufferPointer(rebasing: all[(r * cols)..<((r + 1) * cols)]), groups: groups, bits: 4,
                                    storage: StorageRounding(.f16), weighting: .scale, channelWeights: nil, scales: s, zeros: z,
                                    scaled: UnsafeMutableBufferPointer(rebasing: sc[(r * cols)..<((r + 1) * cols)]),
                                    weights: UnsafeMutableBufferPointer(rebasing: sw[(r * cols)..<((r + 1) * cols)]))
                            }
                        }
                    }
                }
            }
        }
        let ws = KMeans1D.Workspace()
        func row<T>(_ r: Int, _ body: (UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>) -> T) -> T {
            scaled.withUnsafeBufferPointer { sc in
                sampleWeights.withUnsafeBufferPointer { sw in
                    body(
                        UnsafeBufferPointer(rebasing: sc[(r * cols)..<((r + 1) * cols)]),
                        UnsafeBufferPointer(rebasing: sw[(r * cols)..<((r + 1) * cols)]))
                }
            }
        }

        // Optimality against the reference dynamic program.
        var verified: [JSONValue] = []
        var worstRelative = 0.0
        for r in 0..<min(config.verifyRows, solverRows) {
            log("kmeans bench: reference optimum of row \(r)")
            let reference = referenceOptimum(
                Array(scaled[(r * cols)..<((r + 1) * cols)]), Array(sampleWeights[(r * cols)..<((r + 1) * cols)]), k: k)
            let exact = row(r) { KMeans1D.exact($0, weights: $1, k: k, workspace: ws).objective }
            let relative = abs(exact - reference) / max(reference, .leastNormalMagnitude)
            worstRelative = max(worstRelative, relative)
            verified.append(
                .object([
                    ("row", JSONValue(r)), ("exact", JSONValue(exact)), ("reference", JSONValue(reference)),
                    ("relative_difference", JSONValue(relative))
                ]))
        }

        enum Solver: CaseIterable { case exact, lloyd, plain }
        func solve(_ solver: Solver) -> (seconds: Double, objective: Double) {
            var total = 0.0
            let start = Clock.now
            for r in 0..<solverRows {
                total += row(r) { x, w in
                    switch solver {
                    case .exact: KMeans1D.exact(x, weights: w, k: k, workspace: ws).objective
                    case .lloyd: KMeans1D.lloyd(x, weights: w, k: k, seed: UInt64(r), workspace: ws).objective
                    case .plain: KMeans1D.lloyd(x, weights: w, k: k, seed: UInt64(r), restarts: 1, trials: 1, workspace: ws).objective
                    }
                }
            }
            return (Clock.now - start, total)
        }
        func quantize(_ cluster: ClusterMethod) throws -> (seconds: Double, objective: Double) {
            var o = options
            o.cluster = cluster
            let start = Clock.now
            let q = try Quantizer.quantize(
                weights, rows: rows, cols: cols, name: "bench", format: format, options: o, storage: .f16)
            return (Clock.now - start, q.rowObjectives.reduce(0, +))
        }

        var matrixLloyd: [Double] = [], matrixExact: [Double] = [], matrixRatio: [Double] = []
        var solverTimes: [Solver: [Double]] = [:]
        var solverObjective: [Solver: Double] = [:]
        var solverRatio: [Double] = [], solverRatioPlain: [Double] = []
        var objectives: (lloyd: Double, exact: Double) = (0, 0)
        for round in 0..<config.rounds {
            log("kmeans bench: round \(round + 1) of \(config.rounds)")
            let order: [ClusterMethod] = round % 2 == 0 ? [.lloyd, .exact] : [.exact, .lloyd]
            var t: [ClusterMethod: Double] = [:]
            for cluster in order {
                let (seconds, objective) = try quantize(cluster)
                t[cluster] = seconds
                if cluster == .lloyd { objectives.lloyd = objective } else { objectives.exact = objective }
            }
            matrixLloyd.append(t[.lloyd]!)
            matrixExact.append(t[.exact]!)
            matrixRatio.append(t[.exact]! / t[.lloyd]!)
            let solverOrder: [Solver] = round % 2 == 0 ? [.lloyd, .plain, .exact] : [.exact, .plain, .lloyd]
            var s: [Solver: Double] = [:]
            for solver in solverOrder {
                let (seconds, objective) = solve(solver)
                s[solver] = seconds
                solverTimes[solver, default: []].append(seconds / Double(solverRows) * 1e6)
                solverObjective[solver] = objective
            }
            solverRatio.append(s[.exact]! / s[.lloyd]!)
            solverRatioPlain.append(s[.exact]! / s[.plain]!)
        }
        return .object([
            ("matrix", .string("\(rows)x\(cols) Student-t(5) x 0.02, seed \(config.seed)")),
            ("format", .string("any4")), ("group_size", JSONValue(config.groupSize)), ("table_dtype", .string("f16")),
            ("threads", JSONValue(config.threads > 0 ? config.threads : SystemInfo.processorCount)),
            ("rounds", JSONValue(config.rounds)),
            (
                "quantize_seconds",
                .object([
                    ("lloyd", stats(matrixLloyd)), ("exact", stats(matrixExact)), ("exact_over_lloyd", stats(matrixRatio))
                ])
            ),
            (
                "kmeans_objective",
                .object([
                    ("lloyd", JSONValue(objectives.lloyd)), ("exact", JSONValue(objectives.exact)),
                    ("lloyd_over_exact", JSONValue(objectives.lloyd / max(objectives.exact, .leastNormalMagnitude)))
                ])
            ),
            (
                "solver_microseconds_per_row",
                .object([
                    ("rows", JSONValue(solverRows)),
                    ("lloyd", stats(solverTimes[.lloyd] ?? [])), ("lloyd_plain", stats(solverTimes[.plain] ?? [])),
                    ("exact", stats(solverTimes[.exact] ?? [])), ("exact_over_lloyd", stats(solverRatio)),
                    ("exact_over_lloyd_plain", stats(solverRatioPlain)),
                    (
                        "objective",
                        .object([
                            ("lloyd", JSONValue(solverObjective[.lloyd] ?? 0)),
                            ("lloyd_plain", JSONValue(solverObjective[.plain] ?? 0)),
                            ("exact", JSONValue(solverObjective[.exact] ?? 0))
                        ])
                    )
                ])
            ),
            (
                "optimality",
                .object([
                    ("reference", .string("O(k n^2) dynamic program without pruning")),
                    ("rows", .array(verified)), ("max_relative_difference", JSONValue(worstRelative)),
                    ("ok", .bool(worstRelative <= 1e-9))
                ])
            )
        ])
    }
}
