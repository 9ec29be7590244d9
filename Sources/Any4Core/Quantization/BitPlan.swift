/// Bit budgets: the choices a plan makes per layer, what each costs and does, and the optimal mix.
///
/// `any4 plan` measures a ``SensitivityTable`` (for every planned layer and every
/// ``PlanCandidate``: the layer's stored bits and its predicted error contribution),
/// ``BitAllocation`` picks one candidate per layer minimising the summed error under a bit budget,
/// and a ``Recipe`` (JSON) records the table and the choice for `quantize --recipe` and the TUI.

// MARK: - Candidates

/// One way a plan may store a layer: a registry format at a group size ("any4:g128", "nf4:g64",
/// "mxfp4" for formats with a fixed block), or "keep" (left as stored in the source).
public struct PlanCandidate: Sendable, Hashable, CustomStringConvertible {
    /// A ``FormatRegistry`` name, or ``keepName``.
    public var format: String
    /// The group size; nil for keep and for formats that fix their own block.
    public var groupSize: Int?

    public static let keepName = "keep"
    public static let keep = PlanCandidate(uncheckedFormat: keepName, groupSize: nil)

    /// The default ladder of `any4 plan`: learned 2-, 3- and 4-bit tables at groups 64 and 128
    /// (2- and 3-bit codes stored dense, so they cost their bits), nf4 at 64 and 128 (the cheapest
    /// 4-bit codes: no table), int8, and keeping the layer as stored.
    public static let defaultLadder: [PlanCandidate] = [
        "any2:g64", "any2:g128", "any3:g64", "any3:g128", "any4:g64", "any4:g128", "nf4:g64", "nf4:g128", "int8:g128", "keep"
    ].map { try! PlanCandidate(spec: $0) }

    private init(uncheckedFormat format: String, groupSize: Int?) {
        self.format = format
        self.groupSize = groupSize
    }

    /// Parses "FORMAT[:gN]" or "keep". A format that takes a group size and is given none gets 128;
    /// a format with a fixed block (mxfp4, nvfp4, iq4_nl) takes no group.
    ///
    /// - Throws: ``QuantizationError/badOption(_:)`` or `.unknownFormat` naming the spec.
    public init(spec text: String) throws(QuantizationError) {
        let spec = text.trimmingWhitespace().lowercased()
        if spec == Self.keepName {
            self = .keep
            return
        }
        let parts = spec.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, let name = parts.first, !name.isEmpty else {
            throw .badOption("candidate \"\(text)\": expected FORMAT[:gN] (e.g. any4:g128) or keep")
        }
        let format = try FormatRegistry.named(String(name))
        var group: Int? = nil
        if parts.count == 2 {
            let g = parts[1]
            guard g.hasPrefix("g"), let n = Int(g.dropFirst()) else {
                throw .badOption("candidate \"\(text)\": the group is written gN (e.g. g128), got \"\(g)\"")
            }
            group = n
        }
        if let block = format.fixedBlockSize {
            if let group, group != block {
                throw .badOption("candidate \"\(text)\": \(format.name) fixes its block at \(block); write \(format.name)")
            }
            group = nil
        } else {
            group = group ?? 128
            var options = QuantizationOptions()
            options.groupSize = group!
            do throws(QuantizationError) { try options.validate() } catch {
                throw .badOption("candidate \"\(text)\": \(error)")
            }
        }
        self.init(uncheckedFormat: format.name, groupSize: group)
    }

    /// The text form, parsed back by ``init(spec:)``: "any4:g128", "mxfp4", "keep".
    public var spec: String { groupSize.map { "\(format):g\($0)" } ?? format }
    public var description: String { spec }
    public var isKeep: Bool { format == Self.keepName }

    /// The registry format (nil for keep).
    public var numericFormat: (any NumericFormat)? {
        isKeep ? nil : try? FormatRegistry.named(format)
    }

    /// `base` with this candidate's group size.
    public func options(base: QuantizationOptions) -> QuantizationOptions {
        var options = base
        if let groupSize { options.groupSize = groupSize }
        return options
    }

    /// Parses a comma-separated list ("any4:g128,nf4:g64,keep"); duplicates are refused.
    public static func list(_ text: String) throws(QuantizationError) -> [PlanCandidate] {
        var out: [PlanCandidate] = []
        for item in text.split(separator: ",") where !item.trimmingWhitespace().isEmpty {
            let c = try PlanCandidate(spec: String(item))
            guard !out.contains(c) else { throw .badOption("candidate \(c.spec) is listed twice") }
            out.append(c)
        }
        guard !out.isEmpty else { throw .badOption("no candidates in \"\(text)\"") }
        guard out.count <= BitAllocation.maxCandidates else {
            throw .badOption("at most \(BitAllocation.maxCandidates) candidates, got \(out.count)")
        }
        return out
    }
}

extension StringProtocol {
    fileprivate func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}

// MARK: - Sensitivity table

/// For each planned layer and each candidate: the layer's stored bits and its predicted
/// contribution to the model's error.
public struct SensitivityTable: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        /// Every stored bit of the layer in this candidate (codes, tables, scales, zeros, tensor scale).
        public var bits: Int
        /// Predicted error contribution (`any4 plan`: predicted KL divergence, nats per token).
        public var error: Double

        public init(bits: Int, error: Double) {
            self.bits = bits
            self.error = error
        }
    }

    /// Weight names, in model order.
    public var layers: [String]
    /// Logical weights per layer.
    public var parameters: [Int]
    public var candidates: [PlanCandidate]
    /// [layer][candidate]; nil where the candidate does not apply to the layer.
    public var entries: [[Entry?]]
    /// Bits of everything the plan does not choose for (embeddings, norms, a skipped head), as stored
    /// in the source; not part of the budget, reported beside it.
    public var otherBits: Int
    /// Weights of everything the plan does not choose for.
    public var otherParameters: Int
    /// What `error` measures, in words (shown by the UI and written in the recipe).
    public var errorMeasure: String

    public init(
        layers: [String], parameters: [Int], candidates: [PlanCandidate], entries: [[Entry?]],
        otherBits: Int = 0, otherParameters: Int = 0, errorMeasure: String = "predicted error"
    ) {
        precondition(layers.count == parameters.count && layers.count == entries.count, "one row per layer")
        precondition(entries.allSatisfy { $0.count == candidates.count }, "one entry per candidate")
        self.layers = layers
        self.parameters = parameters
        self.candidates = candidates
        self.entries = entries
        self.otherBits = otherBits
        self.otherParameters = otherParameters
        self.errorMeasure = errorMeasure
    }

    /// Σ parameters of the planned layers.
    public var plannedParameters: Int { parameters.reduce(0, +) }

    /// The budget in bits for `bitsPerWeight` over the planned layers (rounded down).
    public func budgetBits(bitsPerWeight: Double) -> Int {
        let bits = (bitsPerWeight * Double(plannedParameters)).rounded(.down)
        return bits >= Double(Int.max) ? Int.max : max(0, Int(bits))
    }

    /// Σ bits and Σ error of `choice` (one candidate index per layer; every chosen entry applies).
    public func totals(_ choice: [Int]) -> (bits: Int, error: Double) {
        precondition(choice.count == layers.count, "one choice per layer")
        var bits = 0, error = 0.0
        for (l, c) in choice.enumerated() {
            let e = entries[l][c]!
            bits += e.bits
            error += e.error
        }
        return (bits, error)
    }

    /// The smallest and largest bits per weight any choice reaches (nil if a layer has no entry).
    public var bitsPerWeightRange: ClosedRange<Double>? {
        var lo = 0, hi = 0
        for row in entries {
            let bits = row.compactMap { $0?.bits }
            guard let a = bits.min(), let b = bits.max() else { return nil }
            lo += a
            hi += b
        }
        let p = Double(max(plannedParameters, 1))
        return Double(lo) / p...Double(hi) / p
    }
}

// MARK: - Allocation

/// The optimal choice of one candidate per layer under a bit budget (multiple-choice knapsack).
public enum BitAllocation {
    /// At most this many candidates (a choice is stored in a byte).
    public static let maxCandidates = 255

    /// A solved allocation.
    public struct Solution: Sendable, Equatable {
        /// Candidate index per layer.
        public var choice: [Int]
        public var bits: Int
        public var error: Double
        /// The bit unit of the dynamic programme: the gcd of the costs when exact, else the
        /// discretisation step.
        public var unit: Int
        /// True when the choice is optimal for the budget; false when costs were rounded up to
        /// `unit` (then the choice fits the budget and its error is at most the optimum under
        /// `budget − slackBits`).
        public var exact: Bool
        /// layers × unit when not exact, else 0.
        public var slackBits: Int
    }

    /// The choice minimising Σ error under Σ bits ≤ `budgetBits`, or nil when no choice fits (or a
    /// layer has no applicable candidate).
    public static func solve(_ table: SensitivityTable, budgetBits: Int) -> [Int]? {
        solution(table, budgetBits: budgetBits)?.choice
    }

    /// The optimal choice, with how it was found.
    ///
    /// Each layer's costs are taken relative to its cheapest candidate, so the programme runs over
    /// the bits above the minimum only, in units of their gcd: then the dynamic programme
    /// (best error for each number of units, layer by layer) is exact. When that needs more than
    /// `maxCells` (layers × states, one byte each for the back-pointers), the costs are rounded up
    /// to a coarser unit U: the choice still fits the budget, and its error is at most the optimum
    /// under a budget smaller by layers × U bits (for an 8B model with 224 layers and the default
    /// cells, about 0.001 of the budget).
    public static func solution(
        _ table: SensitivityTable, budgetBits: Int, maxCells: Int = 96 << 20
    ) -> Solution? {
        let layerCount = table.layers.count
        guard table.candidates.count <= maxCandidates else { return nil }
        guard layerCount > 0 else { return Solution(choice: [], bits: 0, error: 0, unit: 1, exact: true, slackBits: 0) }
        // Per layer: the cheapest bits, the extra bits of each candidate over it.
        var base = [Int](repeating: 0, count: layerCount)
        var baseSum = 0
        var spanSum = 0
        for l in 0..<layerCount {
            let bits = table.entries[l].compactMap { $0?.bits }
            guard let lo = bits.min(), let hi = bits.max(), lo >= 0 else { return nil }
            base[l] = lo
            baseSum = baseSum.addingReportingOverflow(lo).partialValue
            spanSum = spanSum.addingReportingOverflow(hi - lo).partialValue
        }
        guard baseSum <= budgetBits else { return nil }
        let capacity = budgetBits - baseSum
        // Budget enough for every choice: the least error per layer.
        if capacity >= spanSum {
            var choice = [Int](repeating: 0, count: layerCount)
            for l in 0..<layerCount {
                var best = -1
                for (c, e) in table.entries[l].enumerated() {
                    guard let e else { continue }
                    if best < 0 || better(e, than: table.entries[l][best]!) { best = c }
                }
                choice[l] = best
            }
            let t = table.totals(choice)
            return Solution(choice: choice, bits: t.bits, error: t.error, unit: 1, exact: true, slackBits: 0)
        }
        var g = 0
        for l in 0..<layerCount {
            for e in table.entries[l] { if let e { g = gcd(g, e.bits - base[l]) } }
        }
        g = max(g, 1)
        let maxStates = max(2, maxCells / layerCount)
        var unit = g
        var exact = true
        if capacity / g + 1 > maxStates {
            exact = false
            // Rounded up to a multiple of g so that costs that were exact stay so.
            let u = (capacity + maxStates - 2) / (maxStates - 1)
            unit = (u + g - 1) / g * g
        }
        let states = capacity / unit + 1
        let candidateCount = table.candidates.count
        // cost[l][c] in units (rounded up), -1 where not applicable.
        var cost = [Int](repeating: -1, count: layerCount * candidateCount)
        for l in 0..<layerCount {
            for (c, e) in table.entries[l].enumerated() {
                if let e { cost[l * candidateCount + c] = (e.bits - base[l] + unit - 1) / unit }
            }
        }
        var value = [Double](repeating: 0, count: states)
        var next = [Double](repeating: .infinity, count: states)
        var back = [UInt8](repeating: 0, count: layerCount * states)
        for l in 0..<layerCount {
            for b in 0..<states { next[b] = .infinity }
            let row = l * states
            for c in 0..<candidateCount {
                let w = cost[l * candidateCount + c]
                guard w >= 0, w < states else { continue }
                let e = table.entries[l][c]!.error
                for b in w..<states {
                    let v = value[b - w] + e
                    if v < next[b] {
                        next[b] = v
                        back[row + b] = UInt8(c)
                    }
                }
            }
            swap(&value, &next)
        }
        guard value[states - 1].isFinite else { return nil }
        var choice = [Int](repeating: 0, count: layerCount)
        var b = states - 1
        for l in stride(from: layerCount - 1, through: 0, by: -1) {
            let c = Int(back[l * states + b])
            choice[l] = c
            b -= cost[l * candidateCount + c]
        }
        let t = table.totals(choice)
        return Solution(
            choice: choice, bits: t.bits, error: t.error, unit: unit, exact: exact,
            slackBits: exact ? 0 : layerCount * unit)
    }

    /// Lower error first, then fewer bits.
    private static func better(_ a: SensitivityTable.Entry, than b: SensitivityTable.Entry) -> Bool {
        a.error < b.error || (a.error == b.error && a.bits < b.bits)
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int {
        var (x, y) = (abs(a), abs(b))
        while y != 0 { (x, y) = (y, x % y) }
        return x
    }
}
