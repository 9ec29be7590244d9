/// GGUF Q4_0 and Q4_1 blocks as a ``QuantizedMatrix`` whose dequantization is ggml's decode
/// (``GGMLType/dequantize(_:count:into:)``) bit for bit, so the lookup kernels run such a tensor
/// as stored (no f32 copy, no requantization).
///
/// A block is 32 columns with f16 `d` (and f16 `m` for Q4_1); element j of a block is the low nibble
/// of byte j, element j + 16 its high nibble. ggml decodes
///   Q4_1: w = d·q + m,   Q4_0: w = d·(q − 8),
/// and a quantized matrix dequantizes `(table[q]·s + z)·tensorScale` in f32, each step rounded
/// (here tensorScale = 1, and y·1 = y). The mapping:
///   * Q4_0 → `int4` at group 32 (table q − 8), scales d, zeros −0: (q − 8)·d + (−0) is (q − 8)·d
///     for every value including a −0 product (−0 + −0 = −0, whereas adding +0, as a matrix
///     without zeros does, would turn it into +0: ggml's d·0 is −0 for a negative d). Exact always.
///   * Q4_1 → `int4` at group 32, scales d, zeros z = m + 8·d (in f32), when that gives ggml's bits
///     for all 16 codes of every block: (q − 8)·d is exact in f32 (an f16 times a 4-bit integer),
///     so where m + 8·d is exact too, (q − 8)·d + z and d·q + m are one rounding of the same real
///     number. It is not where d and m lie more than ~2^13 apart, and the sign of a zero can differ
///     (m = −0): a tensor with such a block instead becomes
///   * Q4_1 → `any4` at group 32 with every row's table 0, 1, …, 15, scales d, zeros m: q·d + m is
///     ggml's d·q + m for every block, at the cost of a table per row (and, in a PackedLinear, the
///     centred copy of the zeros: about 1 more bit per weight at group 32).
/// Each block is checked for all 16 codes against ggml's formula before int4 is chosen, so the
/// result is exact in both cases. Storage dtype F16 when every scale and zero is an f16 value (the
/// blocks' own dtype; 0…15 and −8…7 are exact in it), else F32 (int4's m + 8·d).
public enum GGMLBlockImport {
    /// The block types imported here.
    public static let types: Set<GGMLType> = [.q4_0, .q4_1]

    /// Columns per block (the group size of the imported matrix).
    public static let blockSize = 32

    /// The tensor `info` (rows × cols, the innermost dimension a multiple of 32) of the file whose
    /// bytes are `store`, as a quantized matrix. Throws a ``FileFormatError`` naming the file, the
    /// tensor and its offset for a type not imported here, a width not a multiple of 32, or a byte
    /// count or range that does not match the shape.
    public static func quantizedMatrix(_ info: TensorInfo, from store: ByteStore) throws(FileFormatError) -> QuantizedMatrix {
        func fail(_ kind: FileFormatError.Kind, _ message: String) -> FileFormatError {
            FileFormatError(file: store.name, kind: kind, message, offset: info.offset, subject: info.name)
        }
        guard case .ggml(let type) = info.encoding, types.contains(type) else {
            throw fail(.unsupported, "\(info.encoding) blocks are not imported as a quantized matrix (Q4_0 and Q4_1 are)")
        }
        guard info.shape.count == 2 else { throw fail(.badShape, "a \(type.name) matrix must have 2 dimensions, not \(info.shape)") }
        let (rows, cols) = (info.shape[0], info.shape[1])
        guard rows >= 0, cols >= 0, cols % blockSize == 0 else {
            throw fail(.badShape, "a \(type.name) row of \(cols) columns is not a whole number of \(blockSize)-column blocks")
        }
        let (blocks, overflow) = rows.multipliedReportingOverflow(by: cols / blockSize)
        let (bytes, overflow2) = blocks.multipliedReportingOverflow(by: type.typeSize)
        guard !overflow, !overflow2, bytes == info.byteCount else {
            throw fail(
                .badShape,
                "\(rows) × \(cols) \(type.name) needs \(rows) × \(cols / blockSize) blocks of \(type.typeSize) bytes, not \(info.byteCount) bytes")
        }
        guard info.offset >= 0, info.offset <= store.bytes.count, bytes <= store.bytes.count - info.offset else {
            throw fail(.truncated, "\(bytes) bytes of \(type.name) blocks run past the end of the file (\(store.bytes.count) bytes)")
        }
        let data =
            bytes == 0
            ? UnsafeRawBufferPointer(start: nil, count: 0) : UnsafeRawBufferPointer(rebasing: store.bytes[info.offset..<(info.offset + bytes)])
        return quantizedMatrix(blocks: data, type: type, rows: rows, cols: cols)
    }

    /// A tensor of `model` (in the file it lives in), as ``quantizedMatrix(_:from:)``.
    public static func quantizedMatrix(_ tensor: ModelTensor, of model: Model) throws(FileFormatError) -> QuantizedMatrix {
        try quantizedMatrix(tensor.info, from: model.stores[tensor.fileIndex])
    }

    /// Blocks of `type` (Q4_0 or Q4_1) for a rows × cols matrix (cols a multiple of 32), row-major,
    /// exactly rows × cols / 32 blocks, as a quantized matrix.
    public static func quantizedMatrix(blocks data: UnsafeRawBufferPointer, type: GGMLType, rows: Int, cols: Int) -> QuantizedMatrix {
        precondition(types.contains(type), "\(type.name) is not imported")
        precondition(rows >= 0 && cols >= 0 && cols % blockSize == 0, "cols must be a multiple of \(blockSize)")
        let groups = cols / blockSize, count = rows * groups
        precondition(data.count == count * type.typeSize, "expected \(count) blocks of \(type.typeSize) bytes")
        let asymmetric = type == .q4_1
        let header = asymmetric ? 4 : 2
        var codes = [UInt8](repeating: 0, count: rows * cols)
        var scales = [Float](repeating: 0, count: count)
        var mins = [Float](repeating: asymmetric ? 0 : -0.0, count: count)
        if let base = data.baseAddress {
            codes.withUnsafeMutableBufferPointer { codes in
                for b in 0..<count {
                    let block = base + b * type.typeSize
                    scales[b] = half(block, 0)
                    if asymmetric { mins[b] = half(block, 2) }
                    // Block b is row b / groups, columns 32·(b % groups) ..< +32: codes index b·32 on.
                    let out = codes.baseAddress! + b * blockSize
                    for j in 0..<16 {
                        let q = block.load(fromByteOffset: header + j, as: UInt8.self)
                        out[j] = q & 0xF
                        out[j + 16] = q >> 4
                    }
                }
            }
        }
        let int4Table = (0..<16).map { Float($0 - 8) }
        func matrix(_ format: String, _ tables: [Float], perRow: Bool, _ zeros: [Float]) -> QuantizedMatrix {
            let f16 = (scales + zeros).allSatisfy { Float(Float16($0)).bitPattern == $0.bitPattern }
            return QuantizedMatrix(
                formatName: format, rows: rows, cols: cols, codeBits: 4, groupSize: blockSize, codes: codes, tables: tables,
                perRowTable: perRow, scales: scales, zeros: zeros, tensorScale: 1, storage: f16 ? .f16 : .f32,
                scaleBits: f16 ? 16 : 32)
        }
        guard asymmetric else { return matrix("int4", int4Table, perRow: false, mins) }
        if let zeros = int4Zeros(scales: scales, mins: mins) { return matrix("int4", int4Table, perRow: false, zeros) }
        let counting = [Float]((0..<rows).flatMap { _ in (0..<16).map(Float.init) })
        return matrix("any4", counting, perRow: true, mins)
    }

    /// Q4_1's blocks as int4 zeros m + 8·d, or nil if for some block and code (q − 8)·d + (m + 8·d)
    /// is not d·q + m bit for bit.
    static func int4Zeros(scales: [Float], mins: [Float]) -> [Float]? {
        var zeros = [Float](repeating: 0, count: scales.count)
        for b in 0..<scales.count {
            let (d, m) = (scales[b], mins[b])
            let z = m + 8 * d
            for q in 0..<16 {
                let ggml = d * Float(q) + m
                let int4 = (Float(q - 8) * d + z) * 1
                guard ggml.bitPattern == int4.bitPattern else { return nil }
            }
            zeros[b] = z
        }
        return zeros
    }

    @inline(__always)
    static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        Float(Float16(bitPattern: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))))
    }
}
