import CAny4Kernels
import Dispatch

/// Which lookup-GEMM path to run.
public enum KernelPath: String, Sendable, CaseIterable {
    /// Float LUT, float activations, f32 accumulation: the dequantized product up to rounding.
    case exact
    /// Per-row int8 LUT, int8 activations quantized per group, int32 accumulation within a group.
    case fast
}

/// The CPU features the kernels use.
public enum CPUFeatures {
    /// AVX2 + FMA + F16C present (x86-64); otherwise the portable scalar kernels run.
    public static let hasAVX2: Bool = any4_cpu_has_avx2() != 0
}

/// A 4-bit quantized linear layer laid out for the lookup-GEMM kernels: y = x·Ŵᵀ (+ bias).
///
/// Serves every 4-bit format of the quantization core: any4 reads its per-row LUT; int4, nf4,
/// fp4, fp4-bnb, iq4_nl and mxfp4 run the same kernel with their fixed table. Requires a group
/// size that is a multiple of 32 (nvfp4's blocks of 16 are not supported here).
public final class PackedLinear: @unchecked Sendable {
    public let formatName: String
    public let rows: Int
    public let cols: Int
    public let colsPadded: Int
    /// Columns per packed block: 64 when the group size allows, else 32.
    public let blockCols: Int
    public let groupSize: Int
    public let groups: Int
    let codes: [UInt8]
    let table: [Float]
    let tableStride: Int
    let tableI8: [Int8]
    let tableI8Scale: [Float]
    let tableI8ScaleStride: Int
    let scales: [Float]
    let zeros: [Float]?

    public enum Unsupported: Error, CustomStringConvertible {
        case codeBits(Int), groupSize(Int)
        public var description: String {
            switch self {
            case .codeBits(let b): "the lookup kernel takes 4-bit (or narrower) codes, not \(b)-bit"
            case .groupSize(let g): "the lookup kernel needs a group size that is a multiple of 32, not \(g)"
            }
        }
    }

    public init(_ q: QuantizedMatrix) throws(Unsupported) {
        guard q.codeBits <= 4 else { throw .codeBits(q.codeBits) }
        guard q.groupSize % 32 == 0 else { throw .groupSize(q.groupSize) }
        formatName = q.formatName
        rows = q.rows
        cols = q.cols
        let block = q.groupSize % 64 == 0 ? 64 : 32
        blockCols = block
        colsPadded = (q.cols + block - 1) / block * block
        groupSize = q.groupSize
        groups = q.groupsPerRow
        // Codes in the kernel layout: per block of B columns, byte j = col j | col j+B/2 << 4.
        let rowBytes = colsPadded / 2
        let half = block / 2
        var packed = [UInt8](repeating: 0, count: rows * rowBytes)
        for r in 0..<rows {
            for c in 0..<cols {
                let code = q.codes[r * cols + c] & 0xF
                let i = r * rowBytes + (c / block) * half + (c % block) % half
                packed[i] |= (c % block) < half ? code : code << 4
            }
        }
        codes = packed
        // Tables padded to 16 entries (2- and 3-bit codes use the first 4 or 8).
        let n = q.tableSize
        let tableCount = q.perRowTable ? q.rows : 1
        var t = [Float](repeating: 0, count: tableCount * 16)
        for i in 0..<tableCount { for j in 0..<n { t[i * 16 + j] = q.tables[i * n + j] } }
        table = t
        tableStride = q.perRowTable ? 16 : 0
        var i8 = [Int8](repeating: 0, count: t.count)
        var factors = [Float](repeating: 1, count: tableCount)
        for i in 0..<tableCount {
            let entries = Array(t[(i * 16)..<((i + 1) * 16)])
            let f = PackedLinear.int8Factor(entries)
            factors[i] = f
            for j in 0..<16 { i8[i * 16 + j] = Int8((entries[j] / f).rounded()) }
        }
        tableI8 = i8
        tableI8Scale = factors
        tableI8ScaleStride = q.perRowTable ? 1 : 0
        scales = q.tensorScale == 1 ? q.scales : q.scales.map { $0 * q.tensorScale }
        zeros = q.zeros.isEmpty ? nil : (q.tensorScale == 1 ? q.zeros : q.zeros.map { $0 * q.tensorScale })
    }

    /// The factor f with table ≈ int8 × f: exact when the table is made of multiples of 1/d with
    /// d ∈ {1, 2, 4, 8, 16} that fit in int8 (int4, fp4, mxfp4, iq4_nl); otherwise the factor in
    /// [1, 1.25] × max|t|/127 with the least squared rounding error over the table (a learned LUT
    /// has no exact int8 form; the search cuts its rounding error roughly in half).
    static func int8Factor(_ t: [Float]) -> Float {
        let amax = t.map(abs).max() ?? 0
        guard amax > 0 else { return 1 }
        for d: Float in [1, 2, 4, 8, 16] where amax * d <= 127 {
            if t.allSatisfy({ ($0 * d).rounded() == $0 * d }) { return 1 / d }
        }
        var best = amax / 127, bestError = Float.infinity
        for j in 0..<128 {
            let f = amax / 127 * (1 + Float(j) / 512)
            var error: Float = 0
            for v in t { let d = v - f * (v / f).rounded(); error += d * d }
            if error < bestError { bestError = error; best = f }
        }
        return best
    }

    private init(copying other: PackedLinear) {
        formatName = other.formatName
        rows = other.rows
        cols = other.cols
        colsPadded = other.colsPadded
        blockCols = other.blockCols
        groupSize = other.groupSize
        groups = other.groups
        codes = other.codes.withUnsafeBufferPointer { Array($0) }
        table = other.table.withUnsafeBufferPointer { Array($0) }
        tableStride = other.tableStride
        tableI8 = other.tableI8.withUnsafeBufferPointer { Array($0) }
        tableI8Scale = other.tableI8Scale.withUnsafeBufferPointer { Array($0) }
        tableI8ScaleStride = other.tableI8ScaleStride
        scales = other.scales.withUnsafeBufferPointer { Array($0) }
        zeros = other.zeros.map { z in z.withUnsafeBufferPointer { Array($0) } }
    }

    /// A copy with its own memory (benchmarks cycle through copies to defeat the cache).
    public func duplicate() -> PackedLinear { PackedLinear(copying: self) }

    /// Bytes held in memory: codes, both tables, scales and zeros.
    public var weightBytes: Int {
        codes.count + table.count * 4 + tableI8.count + tableI8Scale.count * 4 + scales.count * 4 + (zeros?.count ?? 0) * 4
    }

    /// Bytes one call streams: codes, scales, zeros and the tables that path reads.
    public func streamedBytes(_ path: KernelPath) -> Int {
        let tables = path == .fast ? tableI8.count + tableI8Scale.count * 4 : table.count * 4
        return codes.count + tables + scales.count * 4 + (zeros?.count ?? 0) * 4
    }

    /// y = x·Ŵᵀ (+ bias) for x of shape [m, cols]; returns [m, rows].
    public func forward(_ x: [Float], m: Int, path: KernelPath = .fast, threads: Int = 0, bias: [Float]? = nil,
                        useAVX2: Bool = CPUFeatures.hasAVX2) -> [Float] {
        precondition(x.count == m * cols, "x must be [m, cols]")
        precondition(bias == nil || bias!.count == rows, "bias must have one value per output")
        var y = [Float](repeating: 0, count: m * rows)
        let workers = threads > 0 ? threads : SystemInfo.processorCount
        // Pad activations to the kernel width (padding columns are zero).
        var xp: [Float]
        if colsPadded == cols {
            xp = x
        } else {
            xp = [Float](repeating: 0, count: m * colsPadded)
            for k in 0..<m { for c in 0..<cols { xp[k * colsPadded + c] = x[k * cols + c] } }
        }
        var gsum = [Float](repeating: 0, count: m * groups)
        var xq = [Int8](repeating: 0, count: path == .fast ? m * colsPadded : 0)
        var xs = [Float](repeating: 0, count: m * groups)
        if path == .fast {
            any4_quantize_activations(xp, Int32(m), Int32(colsPadded), Int32(groupSize), Int32(groups), &xq, &xs, &gsum)
        } else {
            for k in 0..<m {
                for g in 0..<groups {
                    var s: Float = 0
                    for c in (g * groupSize)..<min((g + 1) * groupSize, colsPadded) { s += xp[k * colsPadded + c] }
                    gsum[k * groups + g] = s
                }
            }
        }
        let avx = Int32(useAVX2 ? 1 : 0)
        codes.withUnsafeBufferPointer { codes in
        table.withUnsafeBufferPointer { table in
        tableI8.withUnsafeBufferPointer { tableI8 in
        tableI8Scale.withUnsafeBufferPointer { f in
        scales.withUnsafeBufferPointer { scales in
        (zeros ?? []).withUnsafeBufferPointer { zeros in
        xp.withUnsafeBufferPointer { xp in
        xq.withUnsafeBufferPointer { xq in
        xs.withUnsafeBufferPointer { xs in
        gsum.withUnsafeBufferPointer { gsum in
        y.withUnsafeMutableBufferPointer { y in
        (bias ?? []).withUnsafeBufferPointer { bias in
            var w = any4_packed(
                codes: codes.baseAddress, table: table.baseAddress, table_stride: Int32(tableStride),
                table_i8: tableI8.baseAddress, table_i8_scale: f.baseAddress, table_i8_scale_stride: Int32(tableI8ScaleStride),
                scales: scales.baseAddress, zeros: self.zeros == nil ? nil : zeros.baseAddress,
                rows: Int32(rows), cols_padded: Int32(colsPadded), block_cols: Int32(blockCols),
                group_size: Int32(groupSize), groups: Int32(groups))
            let args = UncheckedBox((xp.baseAddress, xq.baseAddress, xs.baseAddress, gsum.baseAddress, y.baseAddress,
                                     self.rowsBias(bias), m))
            withUnsafePointer(to: &w) { wp in
                let packed = UncheckedBox(wp)
                parallelRows(rows, threads: workers) { start, end in
                    let (xp, xq, xs, gsum, y, bias, m) = args.value
                    switch path {
                    case .exact:
                        any4_lut_gemm_exact(packed.value, xp, gsum, Int32(m), y, Int32(self.rows), bias, Int32(start), Int32(end), avx)
                    case .fast:
                        any4_lut_gemm_fast(packed.value, xq, xs, gsum, Int32(m), y, Int32(self.rows), bias, Int32(start), Int32(end), avx)
                    }
                }
            }
        }}}}}}}}}}}}
        return y
    }

    private func rowsBias(_ bias: UnsafeBufferPointer<Float>) -> UnsafePointer<Float>? {
        bias.isEmpty ? nil : bias.baseAddress
    }
}
