import Dispatch
import Synchronization

/// Quantizes weight matrices in any registered format, rows spread over all cores.
public enum Quantizer {
    /// Quantizes `weights` ([rows, cols], row-major).
    ///
    /// - Parameters:
    ///   - name: the tensor's name, for error messages.
    ///   - storage: the float dtype LUTs, float scales and zeros are stored in, when the caller fixes
    ///     it; nil: `options.storageDType`, else the default rule for `source`
    ///     (``QuantizationOptions/storageDType(source:)``).
    ///   - source: the model's float dtype (F32 for GGUF block types): the default rule's input,
    ///     and the dtype dequantized weights must fit (a fake-quant file holds them in it).
    ///   - channelWeights: per-input-channel statistic for `.calibration` weighting (`cols` values).
    ///   - progress: counts rows; cancelling it stops the work with `.cancelled`.
    /// - Throws: ``QuantizationError`` for bad options, a matrix without elements, non-finite
    ///   weights, a non-dividing group size under `strictGroups`, sizes that overflow or need more
    ///   memory than the machine can give (`.tooLarge`, naming the tensor and the value), a row
    ///   whose stored values overflow (`.overflow`, the lowest such row) or whose scale F16 holds
    ///   only as a subnormal (`.underflow`) in a dtype the caller chose, or cancellation. Under the
    ///   default rule, a layer F16 cannot hold is quantized again with F32 tables and scales, and
    ///   the matrix says why (``QuantizedMatrix/storageFallback``).
    public static func quantize(
        _ weights: [Float], rows: Int, cols: Int, name: String, format: any NumericFormat,
        options: QuantizationOptions, storage: DType? = nil, source: DType = .f32,
        channelWeights: [Float]? = nil, progress: Progress? = nil
    ) throws(QuantizationError) -> QuantizedMatrix {
        let chosen = storage ?? options.storageDType
        let dtype = chosen ?? options.storageDType(source: source)
        let first = try attempt(
            weights, rows: rows, cols: cols, name: name, format: format, options: options, dtype: dtype,
            source: source, channelWeights: channelWeights, progress: progress)
        guard let refusal = first.refusal else { return first.matrix! }
        // The default rule falls back to F32 for a layer F16 cannot hold; a chosen dtype never
        // changes, nor does a format's own scale dtype (iq4_nl's F16, as ggml stores it).
        guard chosen == nil, dtype == .f16, format.scaleDType == nil else { throw refusal.error }
        progress?.advance(by: -first.advanced)
        let second = try attempt(
            weights, rows: rows, cols: cols, name: name, format: format, options: options, dtype: .f32,
            source: source, channelWeights: channelWeights, progress: progress)
        guard var matrix = second.matrix else { throw second.refusal!.error }
        matrix.storageFallback = "\(name): row \(refusal.row): \(refusal.detail); stored in F32, not the default F16"
        return matrix
    }

    /// One run of the quantizer in `dtype`: the matrix, or the lowest row whose stored values
    /// the dtype cannot hold, with the rows `progress` was advanced by.
    private struct Attempt {
        var matrix: QuantizedMatrix?
        var refusal: (row: Int, detail: String, error: QuantizationError)?
        var advanced: Int
    }

    private static func attempt(
        _ weights: [Float], rows: Int, cols: Int, name: String, format: any NumericFormat,
        options: QuantizationOptions, dtype: DType, source: DType,
        channelWeights: [Float]?, progress: Progress?
    ) throws(QuantizationError) -> Attempt {
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
        let rounding = StorageRounding(format.scaleDType ?? dtype)
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
        let valueRounding = StorageRounding(source == .f16 || source == .bf16 ? source : .f32)
        let overflow = RowOverflow()

        let threads = options.threads > 0 ? options.threads : SystemInfo.processorCount
        let chunk = max(1, min(64, rows / (threads * 8)))
        let reportEvery = 0.05
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
                                            // Rows are reported as they are done, at most every
                                            // `reportEvery` seconds (a chunk of slow rows — iq4_nl's
                                            // search, k-means on long rows — takes ~1 s).
                                            var reported = 0
                                            var lastReport = progress == nil ? 0 : Clock.now
                                            rowLoop: for r in (c * chunk)..<min((c + 1) * chunk, rows) {
                                                if let progress, r > c * chunk {
                                                    let now = Clock.now
                                                    if now - lastReport >= reportEvery {
                                                        progress.advance(by: r - c * chunk - reported)
                                                        reported = r - c * chunk
                                                        lastReport = now
                                                        if progress.isCancelled {
                                                            cancelled.set()
                                                            break rowLoop
                                                        }
                                                    }
                                                }
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
                                                    overflow.record(row: r, RowProblem(detail: problem, underflow: false))
                                                    break rowLoop
                                                }
                                                if let problem = RowOverflow.checkUnderflow(job, format: format) {
                                                    overflow.record(row: r, RowProblem(detail: problem, underflow: true))
                                                    break rowLoop
                                                }
                                            }
                                            progress?.advance(by: min((c + 1) * chunk, rows) - c * chunk - reported)
                                            overflow.advanced.add(min((c + 1) * chunk, rows) - c * chunk, ordering: .relaxed)
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
        if let (row, problem) = overflow.first {
            let error: QuantizationError =
                problem.underflow
                ? .underflow(tensor: name, row: row, detail: problem.detail) : .overflow(tensor: name, row: row, detail: problem.detail)
            return Attempt(matrix: nil, refusal: (row, problem.detail, error), advanced: overflow.advanced.load(ordering: .relaxed))
        }
        var matrix = QuantizedMatrix(
            formatName: format.name, rows: rows, cols: cols, codeBits: format.codeBits, groupSize: groupSize,
            codes: codes, tables: tables, perRowTable: format.perRowTable, scales: scales, zeros: zeros,
            tensorScale: tensorScale, storage: rounding.dtype, scaleBits: format.scaleBits ?? rounding.bits,
            rowObjectives: objectives)
        if format.perRowTable {
            matrix.method = options.cluster.rawValue
            matrix.sampleWeight = options.sampleWeighting.name
        }
        return Attempt(matrix: matrix, refusal: nil, advanced: rows)
    }
}

extension Quantizer {
    /// The bits a [rows, cols] matrix quantized in `format` under `options` stores, with LUTs,
    /// zeros and float scales in `storage` (a format's own scale encoding kept), without
    /// quantizing: exactly ``QuantizedMatrix/bitsPerWeight`` × rows × cols of the matrix
    /// ``quantize(_:rows:cols:name:format:options:storage:source:channelWeights:progress:)``
    /// returns in that dtype (a layer the default rule moves to F32 stores more; see
    /// ``QuantizedMatrix/storageFallback``). `ModelQuantization.storageDType(of:options:)` gives
    /// `storage` for a model's tensor.
    ///
    /// - Throws: ``QuantizationError`` for bad options or sizes that overflow.
    public static func storedBits(
        rows: Int, cols: Int, format: any NumericFormat, options: QuantizationOptions, storage: DType
    ) throws(QuantizationError) -> Int {
        try options.validate()
        let sizes = try OutputSizes(rows: rows, cols: cols, name: "[\(rows), \(cols)]", format: format, options: options)
        let floatBits = StorageRounding(format.scaleDType ?? storage).bits
        let bits = QuantizedMatrix.storedBits(
            rows: rows, cols: cols, codeBits: format.codeBits, packing: .written(codeBits: format.codeBits),
            tableEntries: format.perRowTable ? sizes.tableSize : 0,
            groupsPerRow: sizes.groupsPerRow, scaleBits: format.scaleBits ?? floatBits, hasZeros: format.hasZeros,
            floatBits: floatBits, tensorScale: format.hasTensorScale)
        guard bits < 0x1p53 else {
            throw .tooLarge(SizeError("[\(rows), \(cols)] in \(format.name): stored bits", .overflow(terms: [rows, cols], operation: "×")))
        }
        return Int(bits)
    }

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
    private let lock = Mutex<(row: Int, problem: RowProblem)?>(nil)
    private let lowest = Atomic<Int>(Int.max)
    /// The rows the progress was advanced by.
    let advanced = Atomic<Int>(0)

    /// The lowest failed row so far (Int.max: none).
    var firstRow: Int { lowest.load(ordering: .relaxed) }

    var first: (Int, RowProblem)? { lock.withLock { $0.map { ($0.row, $0.problem) } } }

    func record(row: Int, _ problem: RowProblem) {
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

    /// A group of the row `job` holds whose scale F16 keeps only as a subnormal or zero (below
    /// 2^−14, so with fewer than F16's 11 significant bits, up to all of them lost) while its
    /// weights are not constant (a range above the 1e-6 floor of int-b and any-b; a nonzero
    /// absmax for the others). Only for scales stored in the storage dtype, and only in F16: BF16
    /// and F32 reach F32's range.
    static func checkUnderflow(_ job: RowJob, format: any NumericFormat) -> String? {
        guard job.storage.dtype == .f16, format.scaleEncoding == .float, format.scaleDType == nil else { return nil }
        let least = job.storage.leastNormal
        for g in 0..<job.groups.count where abs(job.scales[g]) < least {
            let range = job.groups.range(g)
            var lo = Float.infinity, hi = -Float.infinity, amax: Float = 0
            for c in range {
                lo = min(lo, job.values[c])
                hi = max(hi, job.values[c])
                amax = max(amax, abs(job.values[c]))
            }
            let constant = format.hasZeros ? Double(hi) - Double(lo) <= 1e-6 : amax == 0
            if constant { continue }
            return
                "group \(g) (columns \(range.lowerBound)..<\(range.upperBound), weights \(lo) … \(hi)): the scale \(job.scales[g]) is below F16's normal range (\(least)), so F16 keeps it with fewer than 11 significant bits; store this layer in bf16 or f32"
        }
        return nil
    }
}

/// A row the storage dtype cannot hold: what overflows, or which scale underflows F16.
struct RowProblem: Sendable {
    var detail: String
    var underflow: Bool
}
