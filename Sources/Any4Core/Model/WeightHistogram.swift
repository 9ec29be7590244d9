/// A histogram of weights as the explorer shows it: a whole tensor's raw values, or one row with
/// the learned table (codebook) of its any-b quantization, in the row's group-scaled domain or raw.
public struct WeightHistogram: Sendable {
    public var counts: [Int]
    public var low: Float
    public var high: Float
    /// The row's learned table in the histogram's domain (empty for a whole tensor).
    public var codebook: [Float]
    /// How many weights of the row use each code (empty for a whole tensor).
    public var usage: [Int]
    /// Raw min and max of the row's first group (where reference grids are placed), for a row.
    public var firstGroup: (low: Float, high: Float)?

    /// No values: no bins, the domain [0, 1].
    public static let empty = WeightHistogram()

    private init() {
        counts = []
        low = 0
        high = 1
        codebook = []
        usage = []
        firstGroup = nil
    }

    /// Values without a codebook, binned over their own range.
    public init(values: [Float], bins: Int) {
        let h = Histogram(values, bins: bins)
        counts = h.counts
        low = h.low
        high = h.high
        codebook = []
        usage = []
        firstGroup = nil
    }

    /// One row (`values`) with `q`, its quantization (one row, a per-row-table format).
    ///
    /// Scaled: each weight w of group g becomes (w − z_g) / s_g + 2^(b−1) — the centred table's
    /// offset (``GroupScaling/offset(bits:)``), which puts codes on [0, 2^b − 1] — binned over
    /// [−0.5, 2^b − 0.5], with the table shifted by the same offset. Raw: the weights over their
    /// range, with the table as the first group dequantizes it.
    public init(row values: [Float], quantized q: QuantizedMatrix, scaled: Bool, bins: Int) {
        precondition(q.rows == 1 && q.cols == values.count, "one quantized row of the values' width")
        usage = q.codeUsage()
        let g0 = q.groups.range(0)
        firstGroup = (values[g0].min() ?? 0, values[g0].max() ?? 0)
        let h: Histogram
        if scaled {
            let offset = GroupScaling.offset(bits: q.codeBits)
            var scaledValues = [Float](repeating: 0, count: values.count)
            let groups = q.groups
            for g in 0..<groups.count {
                let s = q.scales[g], z = q.zeros.isEmpty ? 0 : q.zeros[g]
                for c in groups.range(g) { scaledValues[c] = (values[c] - z) / s + offset }
            }
            h = Histogram(scaledValues, bins: bins, low: -0.5, high: Float(q.tableSize) - 0.5)
            codebook = q.tables.map { $0 + offset }
        } else {
            h = Histogram(values, bins: bins)
            codebook = q.tables.map { $0 * q.scales[0] + (q.zeros.isEmpty ? 0 : q.zeros[0]) }
        }
        counts = h.counts
        low = h.low
        high = h.high
    }

    /// A whole tensor's raw values, taking every `rowStep`-th row when it holds more than
    /// `maxValues` values (so that large tensors stay quick).
    public static func sampled(
        _ tensor: ModelTensor, of model: Model, bins: Int,
        maxValues: Int = 2_000_000
    ) throws -> (histogram: WeightHistogram, rowStep: Int) {
        let rowCount = tensor.info.rowCount
        let step = max(1, tensor.info.elementCount / maxValues)
        var values: [Float] = []
        var r = 0
        while r < rowCount {
            values += try model.decodeRows(tensor, rows: r..<(r + 1))
            r += step
        }
        return (WeightHistogram(values: values, bins: bins), step)
    }
}

/// A fixed format's levels drawn under a row's histogram, placed with the row's first group: the
/// formats whose levels follow from a group's range alone — 4-bit integers over [min, max], and
/// the table formats whose scale is the group's absmax.
public struct ReferenceGrid: Sendable, Equatable {
    public let format: any NumericFormat

    /// The format's grid, or nil when its levels do not follow from a group's range alone (learned
    /// tables, searched or power-of-two scales, other widths).
    public init?(_ format: any NumericFormat) {
        switch format {
        case let f as IntFormat where f.codeBits == 4: break
        case let f as TableFormat where f.scalesByAbsmax: break
        default: return nil
        }
        self.format = format
    }

    public var name: String { format.name }

    /// The grids the explorer offers, from the registry's offered formats in their order (int4, nf4, fp4).
    public static let all: [ReferenceGrid] = FormatRegistry.offered.compactMap(ReferenceGrid.init)

    public static func == (a: ReferenceGrid, b: ReferenceGrid) -> Bool { a.name == b.name }

    /// The grid's values for a first group spanning [low, high] (none when low ≥ high): raw, or
    /// in the group-scaled domain of int4 (levels 0…15) when `scaled`.
    public func values(low: Float, high: Float, scaled: Bool) -> [Float] {
        guard high > low else { return [] }
        let levels: Float = 15  // int4's top code: the grids share its scaled domain
        let raw: [Float]
        switch format {
        case let f as IntFormat:
            // The asymmetric levels over the group's range: table entry q − 2^(b−1) at step (max − min)/15.
            let offset = GroupScaling.offset(bits: f.codeBits)
            raw = (f.sharedTable ?? []).map { low + ($0 + offset) * (high - low) / levels }
        case let t as TableFormat:
            let amax = max(abs(low), abs(high))
            raw = t.table.map { $0 * amax / t.tableMax }
        default:
            raw = []
        }
        return scaled ? raw.map { ($0 - low) / ((high - low) / levels) } : raw
    }
}
