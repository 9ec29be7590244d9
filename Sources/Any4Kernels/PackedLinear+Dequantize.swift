import Any4Core
import CAny4Kernels

/// What a packed layer's dequantization reads besides its codes: the quantized matrix's own tables,
/// scales, zeros and tensor scale. The kernels' copies cannot serve: a per-row table with zeros is
/// centred (its zeros moved to match), a tensor scale is folded into the scales and zeros, and the
/// fast path's are int8 and f16. Arrays the kernels hold unchanged share their storage with these
/// (copy on write): without a tensor scale, the scales are held once, and so are the zeros of a
/// shared-table format.
struct DequantParameters: Sendable {
    /// tableSize entries per row (perRowTable), else the one shared table.
    let tables: [Float]
    let tableSize: Int
    let perRowTable: Bool
    /// rows × groups.
    let scales: [Float]
    /// rows × groups, or empty.
    let zeros: [Float]
    let tensorScale: Float

    init(_ q: QuantizedMatrix) {
        tables = q.tables
        tableSize = q.tableSize
        perRowTable = q.perRowTable
        scales = q.scales
        zeros = q.zeros
        tensorScale = q.tensorScale
    }
}

extension PackedLinear {
    /// Rows `range` as f32 into `out` (room for range.count × cols floats, row-major): bit for bit
    /// what `QuantizedMatrix.dequantize(rows:into:)` gives for the matrix this layer was built
    /// from, from the packed codes and the matrix's own tables, scales and zeros (no f32 copy of
    /// the weights is kept). Any thread may call it; it allocates nothing.
    public func dequantize(rows range: Range<Int>, into out: UnsafeMutablePointer<Float>, useAVX2: Bool = CPUFeatures.hasAVX2) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows \(range) outside 0..<\(rows)")
        guard !range.isEmpty, cols > 0 else { return }
        let d = dequant
        codes.withUnsafeBufferPointer { codes in
            d.tables.withUnsafeBufferPointer { tables in
                d.scales.withUnsafeBufferPointer { scales in
                    d.zeros.withUnsafeBufferPointer { zeros in
                        var layout = any4_packed(
                            codes: codes.baseAddress, table: nil, table_stride: 0, table_i8: nil, table_i8_scale: nil,
                            table_i8_scale_stride: 0, scales: nil, zeros: nil, scales_f16: nil, zeros_f16: nil, f16_factors: nil,
                            rows: Int32(rows), cols_padded: Int32(colsPadded), block_cols: Int32(blockCols),
                            group_size: Int32(groupSize), groups: Int32(groups), super_blocks: Int32(superBlocks))
                        withUnsafePointer(to: &layout) { layout in
                            var args = any4_dequant_args(
                                layout: layout, cols: Int32(cols), table: tables.baseAddress, table_size: Int32(d.tableSize),
                                table_stride: Int32(d.perRowTable ? d.tableSize : 0), scales: scales.baseAddress,
                                zeros: d.zeros.isEmpty ? nil : zeros.baseAddress, tensor_scale: d.tensorScale)
                            any4_dequantize(&args, out, Int32(range.lowerBound), Int32(range.upperBound), useAVX2 ? 1 : 0)
                        }
                    }
                }
            }
        }
    }

    /// The whole matrix, dequantized (rows × cols).
    public func dequantized(useAVX2: Bool = CPUFeatures.hasAVX2) -> [Float] {
        [Float](unsafeUninitializedCapacity: rows * cols) { buffer, count in
            if let base = buffer.baseAddress { dequantize(rows: 0..<rows, into: base, useAVX2: useAVX2) }
            count = rows * cols
        }
    }

    /// Bytes this layer holds in memory: the packed codes as allocated (huge-page buffers are
    /// rounded up to whole 2 MiB pages, others to 64 bytes), the kernels' tables, scales and zeros
    /// in both paths' forms, and the dequantization's tables, scales and zeros where they do not
    /// share the kernels' storage. (Array headers and allocator rounding are not counted.)
    public var storedBytes: Int {
        func bytes<T>(_ a: [T]) -> Int { a.count * MemoryLayout<T>.stride }
        func shared(_ a: [Float], _ b: [Float]?) -> Bool {
            guard let b, !a.isEmpty, a.count == b.count else { return a.isEmpty }
            return a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in pa.baseAddress == pb.baseAddress } }
        }
        let codeBytes = max(codes.count, 1)
        let page = codeBytes >= 2 << 20 ? 2 << 20 : 64
        var total = (codeBytes + page - 1) / page * page
        total += bytes(table) + bytes(tableI8) + bytes(tableI8Scale) + bytes(scales) + bytes(zeros ?? [])
        total += bytes(scalesF16) + bytes(zerosF16 ?? []) + bytes(f16Factors)
        total += bytes(dequant.tables)
        if !shared(dequant.scales, scales) { total += bytes(dequant.scales) }
        if !shared(dequant.zeros, zeros) { total += bytes(dequant.zeros) }
        return total
    }
}
