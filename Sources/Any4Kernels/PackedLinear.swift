import Any4Core
import CAny4Kernels
import Dispatch
import Glibc

/// Which lookup-GEMM path to run.
public enum KernelPath: String, Sendable, CaseIterable {
    /// Float LUT, float activations, f32 accumulation: the dequantized product up to rounding.
    case exact
    /// Per-row int8 LUT, int8 activations quantized per group, int32 accumulation within a group.
    case fast
}

/// A kernel family's variant: the portable scalar code, AVX2 (+ FMA + F16C), or AVX-512 with VNNI
/// (the fast lookup path and the int8 head; the other families run their AVX2 version there), and
/// with VBMI too (the one-row lookup path decodes its codes with vpermb; the same results).
public enum SIMDLevel: Int32, Sendable, Comparable, CaseIterable {
    case scalar = 0
    case avx2 = 1
    case avx512 = 2
    case avx512vbmi = 3

    public static func < (a: SIMDLevel, b: SIMDLevel) -> Bool { a.rawValue < b.rawValue }

    public var name: String {
        switch self {
        case .scalar: "scalar"
        case .avx2: "avx2"
        case .avx512: "avx512-vnni"
        case .avx512vbmi: "avx512-vbmi"
        }
    }
}

/// The CPU features the kernels use.
public enum CPUFeatures {
    /// AVX2 + FMA + F16C present (x86-64); otherwise the portable scalar kernels run.
    public static let hasAVX2: Bool = any4_cpu_has_avx2() != 0
    /// The best level this CPU runs.
    public static let best = SIMDLevel(rawValue: any4_cpu_simd_level()) ?? .scalar
    /// The level the kernels run by default: the best, or a lower one named by ANY4_SIMD (scalar,
    /// avx2, avx512 or avx512-vnni, avx512-vbmi), so that a benchmark can set two levels side by side. A level the CPU lacks is
    /// never chosen.
    public static let simd: SIMDLevel = {
        guard let name = getenv("ANY4_SIMD").map({ String(cString: $0).lowercased() }),
            let asked = SIMDLevel.allCases.first(where: { $0.name == name || $0.name.hasPrefix(name) })
        else { return best }
        return min(asked, best)
    }()
    /// Every level this CPU runs, lowest first (the tests hold each to the others).
    public static let levels: [SIMDLevel] = SIMDLevel.allCases.filter { $0 <= best }
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
    /// 8-group super-blocks at the start of each row (the rest is the tail of B-column blocks).
    public let superBlocks: Int
    /// The packed codes, in huge-page memory (the kernels stream them).
    let codes: HugePageBuffer<UInt8>
    let table: [Float]
    let tableStride: Int
    let tableI8: [Int8]
    let tableI8Scale: [Float]
    let tableI8ScaleStride: Int
    let scales: [Float]
    let zeros: [Float]?
    /// The fast path's scales and zeros: f16, each relative to a per-row factor (f16Factors[2r] for
    /// the scales, [2r + 1] for the zeros), so a row of small values keeps f16's full precision.
    let scalesF16: [UInt16]
    let zerosF16: [UInt16]?
    let f16Factors: [Float]
    /// The matrix's own tables, scales, zeros and tensor scale, for `dequantize(rows:into:)`
    /// (PackedLinear+Dequantize.swift).
    let dequant: DequantParameters

    /// The largest row count and width the kernels take: their C interface counts rows, columns
    /// and groups in `int`, and index arithmetic such as `2 * r + 1` or `(g + 1) * group_size` (at
    /// most the padded width plus a group of ≤ 65536) must stay inside it.
    public static let maxDimension = 1 << 30

    public typealias Unsupported = UnsupportedLayout

    public init(_ q: QuantizedMatrix) throws(Unsupported) {
        let kernel = "the lookup kernel"
        guard q.codeBits <= 4 else { throw Unsupported(kernel, .codeBits(q.codeBits)) }
        guard q.groupSize > 0, q.groupSize % 32 == 0, q.groupSize <= QuantizationOptions.maxGroupSize else {
            throw Unsupported(kernel, .groupSize(q.groupSize, rule: "a multiple of 32 and at most \(QuantizationOptions.maxGroupSize)"))
        }
        // Within these bounds every size below fits an Int32, and rows × padded bytes an Int.
        guard q.rows >= 0, q.cols >= 0, q.rows <= Self.maxDimension, q.cols <= Self.maxDimension else {
            throw Unsupported(kernel, .tooLarge(rows: q.rows, cols: q.cols, limit: Self.maxDimension))
        }
        formatName = q.formatName
        rows = q.rows
        cols = q.cols
        let block = q.groupSize % 64 == 0 ? 64 : 32
        blockCols = block
        colsPadded = (q.cols + block - 1) / block * block
        groupSize = q.groupSize
        groups = q.groupsPerRow
        // Whole super-blocks only: 8 groups of group_size columns each. A row whose group count is
        // a multiple of 8 with a short last group (960 columns at 128: 7.5 groups) has one fewer,
        // and its last groups go to the tail (counting the short group packed a super-block past
        // the row's bytes: a heap overflow).
        superBlocks = q.cols / (8 * q.groupSize)
        // Codes in the kernel layout (any4_kernels.h): 8-group super-blocks, then blocks of B columns.
        let rowBytes = colsPadded / 2
        let packed = HugePageBuffer<UInt8>(repeating: 0, count: rows * rowBytes)
        let (rowCount, colCount) = (q.rows, q.cols)
        var layout = any4_packed()
        layout.cols_padded = Int32(colsPadded)
        layout.block_cols = Int32(block)
        layout.group_size = Int32(q.groupSize)
        layout.super_blocks = Int32(superBlocks)
        packed.withUnsafeMutableBufferPointer { packed in
            q.codes.withUnsafeBufferPointer { codes in
                if let out = packed.baseAddress, let codes = codes.baseAddress {
                    any4_pack_codes(&layout, codes, Int32(colCount), out, 0, Int32(rowCount))
                }
            }
        }
        codes = packed
        // Tables padded to 16 entries (2- and 3-bit codes use the first 4 or 8).
        let n = q.tableSize
        let tableCount = q.perRowTable ? q.rows : 1
        // A per-row table with a zero term is centred: t[q]·s + z = (t[q] − o)·s + (z + o·s) with o
        // the middle of the row's table, so its int8 form spans the table's range rather than
        // twice its largest magnitude (a finer step where a learned table is lopsided).
        let centred = q.perRowTable && !q.zeros.isEmpty
        var offsets = [Float](repeating: 0, count: centred ? q.rows : 0)
        var t = [Float](repeating: 0, count: tableCount * 16)
        for i in 0..<tableCount {
            let row = q.tables[(i * n)..<((i + 1) * n)]
            if centred, let lo = row.min(), let hi = row.max() { offsets[i] = (lo + hi) / 2 }
            for j in 0..<n { t[i * 16 + j] = row[row.startIndex + j] - (centred ? offsets[i] : 0) }
        }
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
        if q.zeros.isEmpty {
            zeros = nil
        } else {
            var z = q.zeros
            if centred {
                for r in 0..<q.rows { for g in 0..<groups { z[r * groups + g] += offsets[r] * q.scales[r * groups + g] } }
            }
            zeros = q.tensorScale == 1 ? z : z.map { $0 * q.tensorScale }
        }
        let groupCount = q.groupsPerRow
        let s16 = PackedLinear.halves(scales, rows: rowCount, groups: groupCount)
        let z16 = zeros.map { PackedLinear.halves($0, rows: rowCount, groups: groupCount) }
        scalesF16 = s16.values
        zerosF16 = z16?.values
        var rowFactors = [Float](repeating: 0, count: 2 * rowCount)
        for r in 0..<rowCount {
            rowFactors[2 * r] = s16.factors[r]
            rowFactors[2 * r + 1] = z16?.factors[r] ?? 0
        }
        f16Factors = rowFactors
        dequant = DequantParameters(q)
    }

    /// Values of a rows × groups array as f16 bits relative to each row's largest magnitude, and
    /// those factors (1 for a row of zeros).
    static func halves(_ v: [Float], rows: Int, groups: Int) -> (values: [UInt16], factors: [Float]) {
        var values = [UInt16](repeating: 0, count: v.count)
        var factors = [Float](repeating: 1, count: rows)
        for r in 0..<rows {
            let row = v[(r * groups)..<((r + 1) * groups)]
            let f = row.reduce(Float(0)) { max($0, abs($1)) }
            if f > 0 { factors[r] = f }
            for (i, x) in row.enumerated() { values[r * groups + i] = Float16(x / factors[r]).bitPattern }
        }
        return (values, factors)
    }

    /// The factor f with table ≈ int8 × f: exact when the table is made of multiples of 1/d with
    /// d ∈ {1, 2, 4, 8, 16} that fit in int8 (int4, fp4, mxfp4, iq4_nl); otherwise the factor in
    /// [1, 1.25] × max|t|/127 with the least squared rounding error over the table (a learned LUT
    /// has no exact int8 form; the search cuts its rounding error roughly in half).
    /// (`any4_int8_factor`: C, and its search over 8 factors at a time with AVX2, ~50x the Swift
    /// loop this replaced, which KernelTests keeps as the definition to hold it to.)
    package static func int8Factor(_ t: [Float], useAVX2: Bool = CPUFeatures.hasAVX2) -> Float {
        any4_int8_factor(t, Int32(t.count), useAVX2 ? 1 : 0)
    }

    private init(copying other: PackedLinear) {
        formatName = other.formatName
        rows = other.rows
        cols = other.cols
        colsPadded = other.colsPadded
        blockCols = other.blockCols
        groupSize = other.groupSize
        groups = other.groups
        superBlocks = other.superBlocks
        codes = HugePageBuffer(copying: other.codes)
        table = other.table.withUnsafeBufferPointer { Array($0) }
        tableStride = other.tableStride
        tableI8 = other.tableI8.withUnsafeBufferPointer { Array($0) }
        tableI8Scale = other.tableI8Scale.withUnsafeBufferPointer { Array($0) }
        tableI8ScaleStride = other.tableI8ScaleStride
        scales = other.scales.withUnsafeBufferPointer { Array($0) }
        zeros = other.zeros.map { z in z.withUnsafeBufferPointer { Array($0) } }
        scalesF16 = other.scalesF16.withUnsafeBufferPointer { Array($0) }
        zerosF16 = other.zerosF16.map { z in z.withUnsafeBufferPointer { Array($0) } }
        f16Factors = other.f16Factors.withUnsafeBufferPointer { Array($0) }
        dequant = other.dequant
    }

    /// A copy with its own memory (benchmarks cycle through copies to defeat the cache).
    public func duplicate() -> PackedLinear { PackedLinear(copying: self) }

    /// Bytes held in memory: codes, both tables, and both forms of the scales and zeros.
    public var weightBytes: Int {
        streamedBytes(.exact) + streamedBytes(.fast) - codes.count
    }

    /// Bytes one call streams: codes, and the tables, scales and zeros that path reads.
    public func streamedBytes(_ path: KernelPath) -> Int {
        switch path {
        case .exact: codes.count + table.count * 4 + scales.count * 4 + (zeros?.count ?? 0) * 4
        case .fast:
            codes.count + tableI8.count + tableI8Scale.count * 4 + scalesF16.count * 2 + (zerosF16?.count ?? 0) * 2
                + f16Factors.count * 4
        }
    }

    /// y = x·Ŵᵀ (+ bias) for x of shape [m, cols]; returns [m, rows].
    public func forward(
        _ x: [Float], m: Int, path: KernelPath = .fast, threads: Int = 0, bias: [Float]? = nil,
        simd: SIMDLevel = CPUFeatures.simd
    ) -> [Float] {
        Self.forward([self], biases: [bias], x: x, m: m, path: path, threads: threads, simd: simd)[0]
    }

    /// Several layers over the same input (q, k and v; gate and up): the activations are prepared
    /// once and one parallel loop covers all their rows. The layers must share the input width and
    /// the group layout.
    public static func forward(
        _ layers: [PackedLinear], biases: [[Float]?], x: [Float], m: Int, path: KernelPath = .fast,
        threads: Int = 0, simd: SIMDLevel = CPUFeatures.simd
    ) -> [[Float]] {
        let first = layers[0]
        precondition(
            layers.allSatisfy {
                $0.cols == first.cols && $0.colsPadded == first.colsPadded
                    && $0.groupSize == first.groupSize && $0.blockCols == first.blockCols
                    && $0.superBlocks == first.superBlocks
            },
            "grouped layers must share their input layout")
        precondition(x.count == m * first.cols, "x must be [m, cols]")
        for (l, b) in zip(layers, biases) { precondition(b == nil || b!.count == l.rows, "bias must have one value per output") }
        let workers = threads > 0 ? threads : SystemInfo.processorCount
        let a = Activations(x, m: m, layout: first, path: path, simd: simd, threads: workers)
        // Every output is written by the kernels (each row range of each activation row), so the
        // buffers start uninitialized: a decode step makes a few hundred of these calls.
        let ys = layers.map { l in UnsafeMutablePointer<Float>.allocate(capacity: m * l.rows) }
        defer { for y in ys { y.deallocate() } }
        let offsets = layers.reduce(into: [0]) { $0.append($0.last! + $1.rows) }
        // The exact path has no AVX-512 version: its AVX2 one runs there.
        let level = path == .exact ? min(simd, .avx2).rawValue : simd.rawValue
        withKernels(layers[...], []) { kernels in
            withBiases(biases) { bs in
                a.withPointers { xp, xq, xs, gsum in
                    let args = UncheckedBox((kernels, ys, bs, xp, xq, xs, gsum))
                    parallelRows(offsets.last!, threads: workers) { start, end in
                        let (kernels, ys, bs, xp, xq, xs, gsum) = args.value
                        for (i, layer) in layers.enumerated() {
                            let r0 = max(start, offsets[i]) - offsets[i], r1 = min(end, offsets[i + 1]) - offsets[i]
                            guard r0 < r1 else { continue }
                            withUnsafePointer(to: kernels[i]) { k in
                                switch path {
                                case .exact:
                                    any4_lut_gemm_exact(k, xp, gsum, Int32(m), ys[i], Int32(layer.rows), bs[i], Int32(r0), Int32(r1), level)
                                case .fast:
                                    any4_lut_gemm_fast(k, xq, xs, gsum, Int32(m), ys[i], Int32(layer.rows), bs[i], Int32(r0), Int32(r1), level)
                                }
                            }
                        }
                    }
                }
            }
        }
        return zip(layers, ys).map { l, y in Array(UnsafeBufferPointer(start: y, count: m * l.rows)) }
    }

    /// The kernel's view of this layer, valid inside `body`.
    fileprivate func withKernel<R>(_ body: (any4_packed) -> R) -> R {
        codes.withUnsafeBufferPointer { codes in
            table.withUnsafeBufferPointer { table in
                tableI8.withUnsafeBufferPointer { tableI8 in
                    tableI8Scale.withUnsafeBufferPointer { f in
                        scales.withUnsafeBufferPointer { scales in
                            (zeros ?? []).withUnsafeBufferPointer { zeros in
                                scalesF16.withUnsafeBufferPointer { scalesF16 in
                                    (zerosF16 ?? []).withUnsafeBufferPointer { zerosF16 in
                                        f16Factors.withUnsafeBufferPointer { f16Factors in
                                            body(
                                                any4_packed(
                                                    codes: codes.baseAddress, table: table.baseAddress, table_stride: Int32(tableStride),
                                                    table_i8: tableI8.baseAddress, table_i8_scale: f.baseAddress,
                                                    table_i8_scale_stride: Int32(tableI8ScaleStride),
                                                    scales: scales.baseAddress, zeros: self.zeros == nil ? nil : zeros.baseAddress,
                                                    scales_f16: scalesF16.baseAddress, zeros_f16: self.zerosF16 == nil ? nil : zerosF16.baseAddress,
                                                    f16_factors: f16Factors.baseAddress,
                                                    rows: Int32(rows), cols_padded: Int32(colsPadded), block_cols: Int32(blockCols),
                                                    group_size: Int32(groupSize), groups: Int32(groups), super_blocks: Int32(superBlocks)))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    private static func withKernels<R>(_ layers: ArraySlice<PackedLinear>, _ done: [any4_packed], _ body: ([any4_packed]) -> R) -> R {
        guard let first = layers.first else { return body(done) }
        return first.withKernel { withKernels(layers.dropFirst(), done + [$0], body) }
    }

    private static func withBiases<R>(_ biases: [[Float]?], _ body: ([UnsafePointer<Float>?]) -> R) -> R {
        func pin(_ i: Int, _ bs: [UnsafePointer<Float>?]) -> R {
            guard i < biases.count else { return body(bs) }
            return (biases[i] ?? []).withUnsafeBufferPointer { b in pin(i + 1, bs + [b.isEmpty ? nil : b.baseAddress]) }
        }
        return pin(0, [])
    }

    /// The activations as a path reads them: padded to the kernel width, group sums, and for the
    /// fast path int8 codes (sum-preserving) and one scale per group.
    private struct Activations {
        var xp: [Float]
        var xq: [Int8]
        var xs: [Float]
        var gsum: [Float]

        /// `threads`: a batch of 16 rows or more is quantized a range of rows per worker (each row
        /// as one thread would quantize it).
        init(_ x: [Float], m: Int, layout l: PackedLinear, path: KernelPath, simd: SIMDLevel, threads: Int = 1) {
            if l.colsPadded == l.cols {
                xp = x
            } else {
                xp = [Float](repeating: 0, count: m * l.colsPadded)
                for k in 0..<m { for c in 0..<l.cols { xp[k * l.colsPadded + c] = x[k * l.cols + c] } }
            }
            let fast = path == .fast
            gsum = [Float](repeating: 0, count: m * l.groups)
            xq = [Int8](repeating: 0, count: fast ? m * l.colsPadded : 0)
            xs = [Float](repeating: 0, count: m * l.groups)
            if fast {
                let (cp, g, groups, avx) = (l.colsPadded, l.groupSize, l.groups, Int32(simd > .scalar ? 1 : 0))
                xp.withUnsafeBufferPointer { x in
                    xq.withUnsafeMutableBufferPointer { q in
                        xs.withUnsafeMutableBufferPointer { s in
                            gsum.withUnsafeMutableBufferPointer { sums in
                                let args = UncheckedBox((x.baseAddress!, q.baseAddress!, s.baseAddress!, sums.baseAddress!))
                                parallelRows(m, threads: m >= 16 ? threads : 1) { k0, k1 in
                                    let (x, q, s, sums) = args.value
                                    any4_quantize_activations(
                                        x + k0 * cp, Int32(k1 - k0), Int32(cp), Int32(g), Int32(groups), q + k0 * cp, s + k0 * groups,
                                        sums + k0 * groups, 1, avx)
                                }
                            }
                        }
                    }
                }
            } else {
                for k in 0..<m {
                    for g in 0..<l.groups {
                        var s: Float = 0
                        for c in (g * l.groupSize)..<min((g + 1) * l.groupSize, l.colsPadded) { s += xp[k * l.colsPadded + c] }
                        gsum[k * l.groups + g] = s
                    }
                }
            }
            // The AVX2 kernels read the super-blocks' activations in kernel order; the AVX-512 one
            // reads that order rearranged and offset (any4_fast_activations_wide), or from 16
            // activation rows on tiles of 16 rows built from the natural order
            // (any4_fast_activations_tiles, which carry their own scales and group sums).
            if simd > .scalar {
                l.withKernel { k in
                    withUnsafePointer(to: k) { k in
                        if fast && any4_fast_uses_tiles(k, Int32(m), Int32(simd.rawValue)) != 0 {
                            var tiles = [Int8](repeating: 0, count: any4_fast_tiles_bytes(k, Int32(m)))
                            any4_fast_activations_tiles(k, xq, xs, gsum, Int32(m), &tiles)
                            xq = tiles
                        } else if fast {
                            if l.superBlocks > 0 { xq = Self.reordered(xq, k, m) }
                            if simd >= .avx512 { any4_fast_activations_wide(k, &xq, Int32(m)) }
                        } else if l.superBlocks > 0 {
                            xp = Self.reordered(xp, k, m)
                        }
                    }
                }
            }
        }

        static func reordered<T: BitwiseCopyable>(_ a: [T], _ layout: UnsafePointer<any4_packed>, _ m: Int) -> [T] {
            guard let first = a.first else { return a }
            var out = [T](repeating: first, count: a.count)
            a.withUnsafeBytes { src in
                out.withUnsafeMutableBytes { dst in
                    any4_kernel_order(layout, src.baseAddress, dst.baseAddress, Int32(m), Int32(MemoryLayout<T>.stride))
                }
            }
            return out
        }

        func withPointers<R>(_ body: (UnsafePointer<Float>, UnsafePointer<Int8>?, UnsafePointer<Float>, UnsafePointer<Float>) -> R) -> R {
            xp.withUnsafeBufferPointer { xp in
                xq.withUnsafeBufferPointer { xq in
                    xs.withUnsafeBufferPointer { xs in
                        gsum.withUnsafeBufferPointer { gsum in
                            body(xp.baseAddress!, xq.baseAddress, xs.baseAddress!, gsum.baseAddress!)
                        }
                    }
                }
            }
        }
    }
}
