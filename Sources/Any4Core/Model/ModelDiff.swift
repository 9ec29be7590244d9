import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The distribution of the differences d = b − a of one tensor, gathered in one pass in any order
/// of blocks (every count is an integer sum, and the signed histogram's range follows the maximum
/// alone, so the result does not depend on the order or the number of workers).
public struct DifferenceHistogram: Sendable, Equatable {
    /// Bins of the signed histogram (a multiple of 4: doubling the range merges bin pairs into the middle half).
    public static let bins = 64
    /// Sub-bins per octave of the magnitude histogram (quantiles within 2^(1/4) ≈ 19%).
    static let perOctave = 4
    static let minExponent = -150, maxExponent = 128

    /// The signed histogram covers [−range, range] in ``bins`` equal bins; `range` is the smallest
    /// power of two ≥ max |d| (0 while every difference is 0: then all counts sit in the middle bin).
    public private(set) var range: Double = 0
    public private(set) var counts = [Int](repeating: 0, count: DifferenceHistogram.bins)
    /// Differences exactly 0.
    public private(set) var zeros = 0
    /// |d| > 0 binned by octave and quarter octave: index (e − minExponent) · perOctave + sub for
    /// |d| ∈ [2^e · (1 + sub/4), 2^e · (1 + (sub+1)/4)).
    private var magnitude = [Int](
        repeating: 0, count: (DifferenceHistogram.maxExponent - DifferenceHistogram.minExponent + 1) * DifferenceHistogram.perOctave)

    public init() {}

    /// Finite differences counted.
    public var total: Int { counts.reduce(0, +) }

    mutating func add(_ d: Double) {
        let m = abs(d)
        if m == 0 {
            zeros += 1
        } else {
            let e = Int(m.exponent)
            let index =
                e < Self.minExponent
                ? 0
                : e > Self.maxExponent
                    ? magnitude.count - 1
                    : (e - Self.minExponent) * Self.perOctave + min(Int((m.significand - 1) * Double(Self.perOctave)), Self.perOctave - 1)
            magnitude[index] += 1
            if m > range { grow(to: m) }
        }
        counts[bin(d)] += 1
    }

    /// The signed bin of `d` at the current range.
    private func bin(_ d: Double) -> Int {
        guard range > 0 else { return Self.bins / 2 }
        let b = Int(((d + range) / (2 * range) * Double(Self.bins)).rounded(.down))
        return min(max(b, 0), Self.bins - 1)
    }

    /// Widens the range to the smallest power of two ≥ `m`: doubling merges bin pairs into the
    /// middle half (from 0, where every count is a zero in the middle bin, the range is just set).
    private mutating func grow(to m: Double) {
        guard m > range else { return }
        let target = m.significand == 1 ? m : Double(sign: .plus, exponent: m.exponent + 1, significand: 1)
        if range > 0 {
            while range < target {
                var merged = [Int](repeating: 0, count: Self.bins)
                for i in 0..<Self.bins { merged[Self.bins / 4 + i / 2] += counts[i] }
                counts = merged
                range *= 2
            }
        }
        range = target
    }

    /// Adds `other`'s counts, both at the larger range (a range of 0 holds only zeros, in the
    /// middle bin, which is 0's bin at every range).
    mutating func merge(_ other: DifferenceHistogram) {
        var other = other
        if other.range > range { grow(to: other.range) } else if other.range > 0 { other.grow(to: range) }
        for i in 0..<Self.bins { counts[i] += other.counts[i] }
        zeros += other.zeros
        for i in magnitude.indices { magnitude[i] += other.magnitude[i] }
    }

    /// The `p`-quantile of |d| (0 ≤ p ≤ 1): the upper edge of the quarter-octave bin it falls in
    /// (0 when it falls on exact zeros); nil without values.
    public func quantile(_ p: Double) -> Double? {
        let n = total
        guard n > 0 else { return nil }
        let rank = max(1, Int((p * Double(n)).rounded(.up)))
        var seen = zeros
        if seen >= rank { return 0 }
        for (i, c) in magnitude.enumerated() where c > 0 {
            seen += c
            if seen >= rank {
                let e = i / Self.perOctave + Self.minExponent, sub = i % Self.perOctave
                return Double(sign: .plus, exponent: e, significand: 1) * (1 + Double(sub + 1) / Double(Self.perOctave))
            }
        }
        return nil
    }

    /// The signed bins' lower edges and counts, for a plot: [−range + i · 2·range/bins].
    public func edges() -> [Double] { (0...Self.bins).map { -range + Double($0) * 2 * range / Double(Self.bins) } }
}

/// How far tensor b is from tensor a: sums over every element, with a as the reference.
public struct DifferenceStats: Sendable, Equatable {
    public var elements = 0
    /// Σ a² and Σ (b − a)² over the finite pairs.
    public var signal = 0.0
    public var noise = 0.0
    public var maxAbs = 0.0
    /// Pairs where a or b is NaN or infinite (left out of every other figure).
    public var nonFinite = 0
    public var histogram = DifferenceHistogram()

    public init() {}

    /// ‖b − a‖ / ‖a‖ (0 when both are 0, ∞ when only a is).
    public var relativeError: Double { signal > 0 ? (noise / signal).squareRoot() : (noise > 0 ? .infinity : 0) }
    /// 10 · log10(Σa² / Σ(b − a)²) in dB: ∞ when b equals a (as ``ErrorMetrics/sqnrDB``).
    public var sqnrDB: Double { ErrorMetrics.sqnrDB(signal: signal, noise: noise) }
    public var mse: Double { elements - nonFinite > 0 ? noise / Double(elements - nonFinite) : 0 }
    /// b equals a everywhere (bit patterns aside: −0 = 0).
    public var identical: Bool { noise == 0 && nonFinite == 0 }

    /// Adds `count` pairs (Double sums in element order).
    package mutating func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        var s = 0.0, n = 0.0, worst = maxAbs
        for i in 0..<count {
            let x = a[i], y = b[i]
            guard x.isFinite, y.isFinite else {
                nonFinite += 1
                continue
            }
            let w = Double(x), d = Double(y) - w
            s += w * w
            n += d * d
            if abs(d) > worst { worst = abs(d) }
            histogram.add(d)
        }
        elements += count
        signal += s
        noise += n
        maxAbs = worst
    }

    /// Adds another block's counts; sums in the order the blocks are merged.
    public mutating func merge(_ other: DifferenceStats) {
        elements += other.elements
        signal += other.signal
        noise += other.noise
        maxAbs = max(maxAbs, other.maxAbs)
        nonFinite += other.nonFinite
        histogram.merge(other.histogram)
    }
}

/// One tensor name present in both models, and how they differ there.
public struct TensorDifference: Sendable {
    public enum Outcome: Sendable {
        case compared(DifferenceStats)
        /// The shapes differ ([out, in] as both models see them): nothing to compare element-wise.
        case shapeMismatch
        /// Decoding one side failed (an undecodable type, a bad code, a size beyond memory).
        case failed(String)
    }

    public var name: String
    public var shapeA: [Int]
    public var shapeB: [Int]
    /// How each side stores it: `bf16`, `q4_1`, `any4 g128 …`.
    public var encodingA: String
    public var encodingB: String
    public var outcome: Outcome

    public var stats: DifferenceStats? {
        if case .compared(let s) = outcome { return s }
        return nil
    }

    /// The problem, for a tensor that was not compared.
    public var problem: String? {
        switch outcome {
        case .compared: nil
        case .shapeMismatch: "shape \(Formatting.shape(shapeA)) vs \(Formatting.shape(shapeB))"
        case .failed(let why): why
        }
    }

    /// Worst first: the lowest SQNR, then the largest max error; tensors not compared last, by name.
    public static func worstFirst(_ x: TensorDifference, _ y: TensorDifference) -> Bool {
        switch (x.stats, y.stats) {
        case let (a?, b?):
            if a.sqnrDB != b.sqnrDB { return a.sqnrDB < b.sqnrDB }
            if a.maxAbs != b.maxAbs { return a.maxAbs > b.maxAbs }
            return Model.naturalLess(x.name, y.name)
        case (_?, nil): return true
        case (nil, _?): return false
        case (nil, nil): return Model.naturalLess(x.name, y.name)
        }
    }
}

/// Two models side by side, tensor by tensor (`any4 diff A B`, the TUI's `--diff`).
public struct ModelDiff: Sendable {
    public let a: Model
    public let b: Model
    /// Tensor names present in both, in A's order, with each side's tensor.
    public let pairs: [(a: ModelTensor, b: ModelTensor)]
    public let onlyInA: [ModelTensor]
    public let onlyInB: [ModelTensor]

    /// Pairs the tensors of `a` and `b` by name (a quantized layer of a checkpoint is its
    /// virtual `X.weight`, so an original and its checkpoint pair up).
    ///
    /// - Throws: ``FileFormatError`` naming `b` when the models declare different architectures
    ///   (`general.architecture`, `model_type`), or share no tensor name.
    public init(_ a: Model, _ b: Model) throws {
        self.a = a
        self.b = b
        if let x = a.config.architecture, let y = b.config.architecture, x != y {
            throw FileFormatError(
                file: b.path, kind: .unsupported, "architecture \(y) differs from \(a.path)'s \(x): diff compares two models of one architecture")
        }
        var byName: [String: ModelTensor] = [:]
        for t in b.tensors { byName[t.name] = t }
        let namesA = Set(a.tensors.map(\.name))
        pairs = a.tensors.compactMap { t in byName[t.name].map { (t, $0) } }
        onlyInA = a.tensors.filter { byName[$0.name] == nil }
        onlyInB = b.tensors.filter { !namesA.contains($0.name) }
        if pairs.isEmpty && !(a.tensors.isEmpty && b.tensors.isEmpty) {
            throw FileFormatError(
                file: b.path, kind: .unsupported,
                "no tensor name in common with \(a.path) (\(a.tensors.count) and \(b.tensors.count) tensors): not two models of one architecture and naming"
            )
        }
    }

    /// Elements decoded per block of rows (a row at least; about a million: 4 MiB per side and worker).
    public static let blockElements = 1 << 20

    /// Compares pair `index`: both sides decoded a block of rows at a time (never the whole
    /// tensor), blocks spread over `threads` workers; `progress` advances by the rows done and,
    /// when cancelled, stops the work (``QuantizationError/cancelled``).
    public func measure(_ index: Int, threads: Int = SystemInfo.processorCount, progress: Progress? = nil) throws -> TensorDifference {
        let (ta, tb) = pairs[index]
        var result = TensorDifference(
            name: ta.name, shapeA: ta.shape, shapeB: tb.shape, encodingA: ta.info.encoding.description,
            encodingB: tb.info.encoding.description, outcome: .shapeMismatch)
        guard ta.shape == tb.shape else {
            progress?.advance(by: ta.info.rowCount)
            return result
        }
        do {
            result.outcome = .compared(try Self.measure(ta, of: a, tb, of: b, threads: threads, progress: progress))
        } catch QuantizationError.cancelled {
            throw QuantizationError.cancelled
        } catch {
            result.outcome = .failed("\(error)")
        }
        return result
    }

    /// ``DifferenceStats`` of `tb` (of `mb`) against `ta` (of `ma`), two tensors of one shape.
    /// Blocks are summed in row order whatever the number of workers.
    public static func measure(
        _ ta: ModelTensor, of ma: Model, _ tb: ModelTensor, of mb: Model, threads: Int = SystemInfo.processorCount,
        blockElements: Int = ModelDiff.blockElements, progress: Progress? = nil
    ) throws -> DifferenceStats {
        precondition(ta.shape == tb.shape, "shapes differ")
        try ma.checkDecodable(ta)
        try mb.checkDecodable(tb)
        let rows = ta.info.rowCount, length = ta.info.rowLength
        let step = max(1, blockElements / max(length, 1))
        let blocks = (rows + step - 1) / step
        guard blocks > 0 else { return DifferenceStats() }
        // Each block's sums go to its own slot (summed in block order after); each worker keeps
        // its own histogram and maximum (integer counts: any order gives the same).
        let slots = UnsafeMutableBufferPointer<(Double, Double)>.allocate(capacity: blocks)
        slots.initialize(repeating: (0, 0))
        defer { slots.deallocate() }
        let workers = max(1, min(threads, blocks))
        let partial = Mutex<(stats: DifferenceStats, error: (any Error)?)>((DifferenceStats(), nil))
        let next = AtomicCounter()
        let shared = UncheckedBox(slots)
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            var mine = DifferenceStats()
            var failure: (any Error)?
            while true {
                let k = next.increment()
                if k >= blocks { break }
                if progress?.isCancelled == true {
                    failure = QuantizationError.cancelled
                    break
                }
                let r0 = k * step, r1 = min(rows, r0 + step)
                do {
                    let x = try ma.decodeRows(ta, rows: r0..<r1)
                    let y = try mb.decodeRows(tb, rows: r0..<r1)
                    var block = DifferenceStats()
                    x.withUnsafeBufferPointer { xp in
                        y.withUnsafeBufferPointer { yp in block.add(xp.baseAddress!, yp.baseAddress!, count: xp.count) }
                    }
                    shared.value[k] = (block.signal, block.noise)
                    block.signal = 0
                    block.noise = 0
                    mine.merge(block)
                    progress?.advance(by: r1 - r0)
                } catch {
                    failure = error
                    break
                }
            }
            partial.withLock {
                $0.stats.merge(mine)
                if $0.error == nil, let failure { $0.error = failure }
            }
        }
        var (stats, error) = partial.withLock { ($0.stats, $0.error) }
        if let error { throw error }
        stats.signal = 0
        stats.noise = 0
        for (s, n) in slots {
            stats.signal += s
            stats.noise += n
        }
        return stats
    }

    /// Every pair compared, in A's order; `progress` (total: the rows of every pair) advances as
    /// they go, and `each` hears of every result as it is made.
    public func run(
        threads: Int = SystemInfo.processorCount, progress: Progress? = nil,
        each: (TensorDifference) -> Void = { _ in }
    ) throws -> [TensorDifference] {
        var out: [TensorDifference] = []
        for i in pairs.indices {
            progress?.setLabel("diff \(i + 1)/\(pairs.count) \(pairs[i].a.name)")
            let d = try measure(i, threads: threads, progress: progress)
            each(d)
            out.append(d)
        }
        return out
    }

    /// Rows of every pair: the total of ``run(threads:progress:each:)``'s progress.
    public var totalRows: Int { pairs.reduce(0) { $0 + $1.a.info.rowCount } }
}
