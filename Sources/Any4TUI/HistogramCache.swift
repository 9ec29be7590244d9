import Any4Core
import Foundation

/// The histogram view's data for a tensor (or one row): the core's histogram and the line that
/// says what it shows. Its figures read through (`data.counts`, `data.codebook`, ...).
@dynamicMemberLookup
public struct HistogramData: Sendable {
    public var histogram: WeightHistogram
    public var note: String

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

    func compute(model: Model, tensor: ModelTensor, row: Int?, scaled: Bool, bins: Int, groupSize: Int) -> HistogramData {
        do {
            if let row, tensor.shape.count == 2 {
                // AppState keeps the row inside the selected tensor; a stale one is a note, not a trap.
                guard row >= 0, row < tensor.info.rowCount else {
                    return HistogramData(
                        histogram: .empty, note: "row \(row) is not in this tensor (\(tensor.info.rowCount) rows)")
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
