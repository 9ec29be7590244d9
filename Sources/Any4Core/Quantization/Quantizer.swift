import Dispatch
import Synchronization

/// Quantizes weight matrices in any registered format, rows spread over all cores.
public enum Quantizer {
    /// Quantizes `weights` ([rows, cols], row-major).
    ///
    /// - Parameters:
    ///   - name: the tensor's name, for error messages.
    ///   - storage: the float dtype scales, zeros and LUTs are stored in (the model's dtype).
    ///   - channelWeights: per-input-channel statistic for `.calibration` weighting (`cols` values).
    ///   - progress: counts rows; cancelling it stops the work with `.cancelled`.
    /// - Throws: ``QuantizationError`` for bad options, a matrix without elements, non-finite
    ///   weights, a non-dividing group size under `strictGroups`, sizes that overflow or need more
    ///   memory than the machine can give (`.tooLarge`, naming the tensor and the value), a row
    ///   whose stored values overflow (`.overflow`, the lowest such row), or cancellation.
    public static func quantize(
        _ weights: [Float], rows: Int, cols: Int, name: String, format: any NumericFormat,
        options: QuantizationOptions, storage: DType = .f32,
        channelWeights: [Float]? = nil, progress: Progress? = nil
    ) throws(QuantizationError) -> QuantizedMatrix {
        try options.validate()
        let sizes = try OutputSizes(rows: rows, cols: cols, name: name, format: format, options: options)
        // Nothing to quantize: refused at once, never a loop over the other dimension.
        guard sizes.elements > 0 else {
            throw .badOption("\(name): shape [\(rows), \(cols)] holds no weights to quantize")
        }
        precondition(weights.count == sizes.elements, "weights do not match the shape")
        let groupSize = sizes.groupSize
        let layout = GroupLayout(columns: cols, size: groupSize)
        if options.strictGroups && layout.isRagged {
            throw .groupsDoNotDivide(tensor: name, width: cols, groupSize: groupSize)
        }
        if let bad = weights.firstIndex(where: { !$0.isFinite }) {
            throw .nonFinite(tensor: name, row: bad / cols, column: bad % cols, value: weights[bad])
        }
        if let channelWeights, channelWeights.count != cols {
            throw .badOption("\(name): calibration statistic has \(channelWeights.count) channels, the weight has \(cols) inputs")
        }
        do throws(SizeError) { try MemoryBudget.check(sizes.outputBytes, for: "quantizing \(name) [\(rows), \(cols)] to \(format.name)") } catch {
            throw .tooLarge(error)
        }
        let rounding = StorageRounding(format.scaleDType ?? (storage == .f16 || storage == .bf16 ? storage : .f32))
        let tableSize = sizes.tableSize
        let groups = layout.count
        var codes = [UInt8](repeating: 0, count: sizes.elements)
        var tables = format.perRowTable ? [Float](repeating: 0, count: sizes.tableEntries) : (format.sharedTable ?? [])
        var scales = [Float](repeating: 0, count: sizes.groupEntries)
        var zeros = format.hasZeros ? [Float](repeating: 0, count: sizes.groupEntries) : []
        var objectives = [Double](repeating: 0, count: format.perRowTable ? rows : 0)
        let tensorScale = weights.withUnsafeBufferPointer { format.tensorScale(of: $0) }
        // Dequantized weights are held in the model's dtype (a fake-quant file, a consumer that
        // dequantizes in F16), whatever dtype the format fixes for its scales.
        let valueRounding = StorageRounding(storage == .f16 || storage == .bf16 ? storage : .f32)
        let overflow = RowOverflow()

        let threads = options.threads > 0 ? options.threads : SystemInfo.processorCount
        let chunk = max(1, min(64, rows / (threads * 8)))
        let chunks = (rows + chunk - 1) / chunk
        let next = AtomicCounter()
        let cancelled = AtomicFlag()
        let channels = channelWeights ?? []
        channels.withUnsafeBufferPointer { channelPointer in
            let channelStatistic = channelWeights == nil ? nil : channelPointer
            weights.withUnsafeBufferPointer { w in
                codes.withUnsafeMutableBufferPointer { codesOut in
                    tables.withUnsafeMutableBufferPointer { tablesOut in
                        scales.withUnsafeMutableBufferPointer { scalesOut in
                            zeros.withUnsafeMutableBufferPointer { zerosOut in
                                objectives.withUnsafeMutableBufferPointer { objectivesOut in
                                    let shared = SharedBuffers(
                                        weights: w, channels: channelStatistic, codes: codesOut, tables: tablesOut,
                                        scales: scalesOut, zeros: zerosOut,
                                        objectives: objectivesOut)
                                    DispatchQueue.concurrentPerform(iterations: min(threads, chunks)) { _ in
                                        let workspace = QuantWorkspace()
                                        let scratchObjective = UnsafeMutablePointer<Double>.allocate(capacity: 1)
                                        defer { scratchObjective.deallocate() }
                                        while !cancelled.isSet {
                                            let c = next.increment()
                                            // Chunks are taken in order: past a failed row, none is needed.
                                            guard c < chunks, c * chunk < overflow.firstRow else { break }
                                            if progress?.isCancelled == true {
                                                cancelled.set()
                                                break
                                            }
                                            rowLoop: for r in (c * chunk)..<min((c + 1) * chunk, rows) {
                                                let job = RowJob(
                                                    row: r,
                                                    values: UnsafeBufferPointer(rebasing: shared.weights[(r * cols)..<((r + 1) * cols)]),
                                                    groups: layout,
                                                    codes: UnsafeMutableBufferPointer(rebasing: shared.codes[(r * cols)..<((r + 1) * cols)]),
                                                    scales: UnsafeMutableBufferPointer(rebasing: shared.scales[(r * groups)..<((r + 1) * groups)]),
                                                    zeros: shared.zeros.isEmpty
                                                        ? shared.zeros
                                                        : UnsafeMutableBufferPointer(rebasing: shared.zeros[(r * groups)..<((r + 1) * groups)]),
                                                    table: format.perRowTable
                                                        ? UnsafeMutableBufferPointer(rebasing: shared.tables[(r * tableSize)..<((r + 1) * tableSize)])
                                                        : shared.tables,
                                                    objective: shared.objectives.isEmpty ? scratchObjective : shared.objectives.baseAddress! + r,
                                                    channelWeights: shared.channels,
                                                    options: options, tensorScale: tensorScale, storage: rounding, workspace: workspace)
                                                format.quantizeRow(job)
                                                if let problem = RowOverflow.check(job, format: format, values: valueRounding) {
                                                    overflow.record(row: r, problem)
                                                    break rowLoop
                                                }
                                            }
                                            progress?.advance(by: min((c + 1) * chunk, rows) - c * chunk)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if cancelled.isSet { throw .cancelled }
        if let (row, problem) = overflow.first { throw .overflow(tensor: name, row: row, detail: problem) }
        var matrix = QuantizedMatrix(
            formatName: format.name, rows: rows, cols: cols, codeBits: format.codeBits, groupSize: groupSize,
            codes: codes, tables: tables, perRowTable: format.perRowTable, scales: scales, zeros: zeros,
            tensorScale: tensorScale, storage: rounding.dtype, scaleBits: format.scaleBits ?? rounding.bits,
            rowObjectives: objectives)
        if format.perRowTable {
            matrix.method = options.cluster.rawValue
            matrix.sampleWeight = options.sampleWeighting.name
        }
        return matrix
    }
}

extension Quantizer {
    /// The sizes of a quantized [rows, cols] matrix, each computed checked: elements (one code
    /// each), rows × groups scales (and zeros), rows × 2^b table entries for per-row tables, and the
    /// bytes of all the output buffers.
    public struct OutputSizes: Sendable, Equatable {
        public var groupSize: Int
        public var elements: Int
        public var groupsPerRow: Int
        public var groupEntries: Int
        public var tableSize: Int
        public var tableEntries: Int
        /// Codes (a byte each), tables, scales and zeros in f32, the k-means objectives, and the
        /// dequantized f32 matrix the error is measured on.
        public var outputBytes: Int

        public init(
            rows: Int, cols: Int, name: String, format: any NumericFormat,
            options: QuantizationOptions
        ) throws(QuantizationError) {
            do throws(SizeError) {
                guard rows >= 0, cols >= 0 else { throw SizeError("\(name): shape [\(rows), \(cols)]", .negative(min(rows, cols))) }
                groupSize = options.blockSize(for: format)
                guard groupSize > 0 else { throw SizeError("\(name): group size", .negative(groupSize)) }
                elements = try Sizes.product([rows, cols], "\(name): elements (rows × columns)")
                groupsPerRow = Sizes.groupCount(width: cols, size: groupSize)
                groupEntries = try Sizes.product([rows, groupsPerRow], "\(name): scales (rows × groups of \(groupSize))")
                tableSize = 1 << format.codeBits
                tableEntries =
                    format.perRowTable
                    ? try Sizes.product([rows, tableSize], "\(name): tables (rows × \(tableSize) entries)") : tableSize
                let floats = try Sizes.sum(
                    [tableEntries, groupEntries, format.hasZeros ? groupEntries : 0, elements],
                    "\(name): tables + scales + zeros + dequantized values")
                outputBytes = try Sizes.sum(
                    [
                        elements, try Sizes.product([floats, 4], "\(name): f32 outputs"),
                        format.perRowTable ? try Sizes.product([rows, 8], "\(name): objectives") : 0
                    ],
                    "\(name): output bytes")
            } catch {
                throw .tooLarge(error)
            }
        }
    }
}

/// Output buffers shared by the workers; each worker writes only its own rows.
private struct SharedBuffers: @unchecked Sendable {
    let weights: UnsafeBufferPointer<Float>
    let channels: UnsafeBufferPointer<Float>?
    let codes: UnsafeMutableBufferPointer<UInt8>
    let tables: UnsafeMutableBufferPointer<Float>
    let scales: UnsafeMutableBufferPointer<Float>
    let zeros: UnsafeMutableBufferPointer<Float>
    let objectives: UnsafeMutableBufferPointer<Double>
}

/// The check every quantized row passes: each scale, zero and table entry it stores is finite
/// in its dtype, and each of its weights dequantizes, as ``QuantizedMatrix`` does, to a value the
/// model's dtype holds. A row that fails is an error naming it, never NaN or ±inf written.
final class RowOverflow: @unchecked Sendable {
    private let lock = Mutex<(row: Int, problem: String)?>(nil)
    private let lowest = Atomic<Int>(Int.max)

    /// The lowest failed row so far (Int.max: none).
    var firstRow: Int { lowest.load(ordering: .relaxed) }

    var first: (Int, String)? { lock.withLock { $0.map { ($0.row, $0.problem) } } }

    func record(row: Int, _ problem: String) {
        lock.withLock { current in
            if current == nil || row < current!.row { current = (row, problem) }
        }
        lowest.min(row, ordering: .relaxed)
    }

    /// What overflows in the row `job` holds, or nil when every stored value is finite.
    static func check(_ job: RowJob, format: any NumericFormat, values: StorageRounding) -> String? {
        let dtype = job.storage.dtype.rawValue
        func weights(_ range: Range<Int>) -> String {
            var lo = Float.infinity, hi = -Float.infinity
            for c in range {
                lo = min(lo, job.values[c])
                hi = max(hi, job.values[c])
            }
            return "weights \(lo) … \(hi)"
        }
        let scaleName = format.scaleEncoding.name ?? dtype
        for g in 0..<job.groups.count where !job.scales[g].isFinite {
            let range = job.groups.range(g)
            return
                "group \(g) (columns \(range.lowerBound)..<\(range.upperBound), \(weights(range))): the scale is \(job.scales[g]) in \(scaleName); \(format.name) cannot store weights this large"
        }
        for g in 0..<job.zeros.count where !job.zeros[g].isFinite {
            let range = job.groups.range(g)
            return
                "group \(g) (columns \(range.lowerBound)..<\(range.upperBound), \(weights(range))): the zero is \(job.zeros[g]) in \(dtype); \(format.name) cannot store weights this large"
        }
        if format.perRowTable, let i = job.table.firstIndex(where: { !$0.isFinite }) {
            return "LUT entry \(i) is \(job.table[i]) in \(dtype)"
        }
        let t = job.table
        for g in 0..<job.groups.count {
            let s = job.scales[g]
            let z = job.zeros.isEmpty ? 0 : job.zeros[g]
            // The largest magnitude a weight of the group dequantizes to (rounding to the dtype is
            // monotonic, so checking it alone decides the group); NaN is kept as the worst.
            var worst: Float = 0
            var worstColumn = -1
            for c in job.groups.range(g) {
                let value = (t[Int(job.codes[c])] * s + z) * job.tensorScale
                if !(abs(value) <= worst) {
                    worst = abs(value)
                    worstColumn = c
                    if worst.isNaN { break }
                }
            }
            guard worstColumn >= 0, !values(worst).isFinite else { continue }
            let c = worstColumn
            let value = (t[Int(job.codes[c])] * s + z) * job.tensorScale
            var detail = "weight [\(job.row), \(c)] = \(job.values[c]) dequantizes to \(value)"
            if !value.isFinite { detail += " in F32" } else { detail += ", beyond \(values.dtype.rawValue)'s range" }
            detail += " (table \(t[Int(job.codes[c])]) × scale \(s)"
            if !job.zeros.isEmpty { detail += " + zero \(z)" }
            if job.tensorScale != 1 { detail += ", × tensor scale \(job.tensorScale)" }
            return detail + "); \(format.name) cannot store weights this large"
        }
        return nil
    }
}
