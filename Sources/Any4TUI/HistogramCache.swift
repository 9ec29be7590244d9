import Any4Core
import Foundation

/// The histogram view's data for a tensor (or one row): the core's histogram and the line that
/// says what it shows. Its figures read through (`data.counts`, `data.codebook`, ...).
@dynamicMemberLookup
public struct HistogramData: Sendable {
    public var histogram: WeightHistogram
    public var note: String
    /// The line above the codebook's values (nil: the any4 codebook the view computes at the form's group).
    public var codebookCaption: String?

    public subscript<T>(dynamicMember path: KeyPath<WeightHistogram, T>) -> T { histogram[keyPath: path] }
}

public final class HistogramCache: @unchecked Sendable {
    private var cache: [String: HistogramData] = [:]
    private let lock = NSLock()
    public init() {}

    public func data(model: Model, tensor: ModelTensor, row: Int?, scaled: Bool, bins: Int, groupSize: Int) -> HistogramData {
        let key = "\(tensor.name)|\(row.map(String.init) ?? "all")|\(scaled)|\(bins)|\(groupSize)"
        if let hit = lock.withLock({ cache[key] }) { return hit }
        let data = compute(model: model, tensor: tensor, row: row, scaled: scaled, bins: bins, groupSize: groupSize)
        lock.withLock {
            if cache.count > 64 { cache.removeAll() }
            cache[key] = data
        }
        return data
    }

    /// A row of a checkpoint's quantized layer as stored: its codes binned in the group-scaled
    /// domain (each weight sits on its code's table entry) against the row's stored table ▲, or
    /// its dequantized values raw; never quantized again.
    func stored(_ layout: QuantizedLayout, model: Model, tensor: ModelTensor, row: Int, scaled: Bool, bins: Int) throws -> HistogramData {
        var q = try model.quantizedMatrix(tensor, rows: row..<(row + 1))!
        // The group-scaled domain is the table's (a tensor scale multiplies every value after it).
        if scaled { q.tensorScale = 1 }
        let h = WeightHistogram(row: q.dequantized(), quantized: q, scaled: scaled, bins: bins)
        let table = layout.perRowTable ? "the row's stored LUT" : "the format's table"
        let note =
            scaled
            ? "row \(row) in the group-scaled domain [0, \(q.tableSize - 1)] (group \(layout.groupSize)): stored \(layout.format) codes; ▲ = \(table)"
            : "row \(row), stored values (dequantized); ▲ = \(table) in its first group"
        let caption =
            "stored \(layout.format) g\(layout.groupSize) · \(Formatting.fixed(layout.bitsPerElement, 2)) bits/w: \(layout.perRowTable ? "its LUT" : "table") and weights per code:"
        return HistogramData(histogram: h, note: note, codebookCaption: caption)
    }

    func compute(model: Model, tensor: ModelTensor, row: Int?, scaled: Bool, bins: Int, groupSize: Int) -> HistogramData {
        do {
            if let row, tensor.shape.count == 2 {
                // AppState keeps the row inside the selected tensor; a stale one is a note, not a trap.
                guard row >= 0, row < tensor.info.rowCount else {
                    return HistogramData(
                        histogram: .empty, note: "row \(row) is not in this tensor (\(tensor.info.rowCount) rows)")
                }
                if let layout = tensor.info.encoding.quantizedLayout {
                    return try stored(layout, model: model, tensor: tensor, row: row, scaled: scaled, bins: bins)
                }
                let values = try model.decodeRows(tensor, rows: row..<(row + 1))
                guard values.allSatisfy(\.isFinite) else {
                    var h = WeightHistogram.empty
                    h.counts = Histogram(values, bins: bins).counts
                    return HistogramData(histogram: h, note: "row has non-finite values: no codebook")
                }
                var options = QuantizationOptions()
                options.groupSize = groupSize
                options.threads = 1
                let q = try Quantizer.quantize(
                    values, rows: 1, cols: values.count, name: tensor.name,
                    format: FormatRegistry.named("any4"), options: options)
                let h = WeightHistogram(row: values, quantized: q, scaled: scaled, bins: bins)
                let note =
                    scaled
                    ? "row \(row) in the group-scaled domain [0, \(q.tableSize - 1)] (group \(q.groupSize)); ▲ = its any4 codebook"
                    // Raw domain: the codebook of the row's first group.
                    : "row \(row), raw values; ▲ = any4 codebook of its first group"
                return HistogramData(histogram: h, note: note)
            }
            // Whole tensor (sampled rows beyond 2M values keep it quick).
            let (h, step) = try WeightHistogram.sampled(tensor, of: model, bins: bins)
            return HistogramData(
                histogram: h, note: step > 1 ? "whole tensor, every \(step)th row" : "whole tensor, raw values")
        } catch {
            return HistogramData(histogram: .empty, note: "\(error)")
        }
    }
}
