import Any4Core

/// The activation type the GPU kernels read: IEEE half or bfloat16 (f32 accumulation either way).
public enum GPUActivationType: String, Sendable, CaseIterable {
    case f16, bf16

    /// The 16-bit pattern of `x` in this type (round to nearest even).
    @inline(__always)
    public func bits(_ x: Float) -> UInt16 {
        switch self {
        case .f16: Float16(x).bitPattern
        case .bf16: bfloat16Bits(x)
        }
    }

    /// A 16-bit pattern back to f32, as the kernel converts it (exactly).
    @inline(__always)
    public func value(_ bits: UInt16) -> Float {
        switch self {
        case .f16: Float(Float16(bitPattern: bits))
        case .bf16: Float(bitPattern: UInt32(bits) << 16)
        }
    }

    /// `x` rounded to this type and back.
    public func rounded(_ x: [Float]) -> [Float] { x.map { value(bits($0)) } }

    /// Activations [m, cols] as the kernels read them: [m, paddedCols] in this type, zero past cols.
    public func pack(_ x: [Float], m: Int, cols: Int, paddedCols: Int) -> [UInt16] {
        precondition(x.count == m * cols, "x must be [m, cols]")
        var out = [UInt16](repeating: 0, count: m * paddedCols)
        for k in 0..<m { for c in 0..<cols { out[k * paddedCols + c] = bits(x[k * cols + c]) } }
        return out
    }
}

/// Shared geometry of the GPU kernels (any4_gemm.cu): 32 lanes a warp, 2 rows a warp, 4 warps
/// a block; a row is read in slices of 256 columns (8 per lane) and chunks of 4 slices.
public enum GPUGeometry {
    public static let lanes = 32
    public static let rowsPerWarp = 2
    public static let warpsPerBlock = 4
    public static let threadsPerBlock = 128
    public static let sliceColumns = 256
    public static let chunkColumns = 1024
    /// Batch sizes the kernels are built for; a call takes the smallest that holds m.
    public static let batchTiles = [1, 2, 4, 8, 16]
    public static let maxBatch = 16

    /// Columns padded to whole slices.
    public static func paddedCols(_ cols: Int) -> Int { (cols + sliceColumns - 1) / sliceColumns * sliceColumns }
    /// Rows padded to whole warps' rows.
    public static func paddedRows(_ rows: Int) -> Int { (rows + rowsPerWarp - 1) / rowsPerWarp * rowsPerWarp }
    /// Blocks for `rows` output rows.
    public static func blocks(rows: Int) -> Int {
        let perBlock = rowsPerWarp * warpsPerBlock
        return (rows + perBlock - 1) / perBlock
    }
    /// The batch tile an m-row call runs with.
    public static func batchTile(_ m: Int) -> Int? { batchTiles.first { $0 >= m } }

    /// The batch tile for m activation rows, or an error outside 1…16.
    static func tile(for m: Int) throws(GPUError) -> Int {
        guard m >= 1, let tile = batchTile(m) else { throw GPUError("the GPU kernels take 1…16 activation rows, not \(m)") }
        return tile
    }
}

/// A 4-bit quantized matrix arranged for the GPU lookup kernel (`any4_lut_*` in any4_gemm.cu).
///
/// - `codes`: UInt32 words, `paddedRows × paddedCols/8`. A row is cut into slices of 256
///   columns; in slice s, lane l owns one word holding columns `s·256 + l·8 + i` in bits
///   `4i…4i+3`. Four slices make a chunk of 1024 columns stored lane-major: word
///   `c·128 + l·4 + j` is slice `4c + j`, so lane l loads its four words of chunk c as one
///   16-byte `uint4` and the warp's 32 loads cover 512 contiguous bytes. Slices after the last
///   whole chunk follow slice-major: word `chunks·128 + t·32 + l`.
/// - `table`: the 16-entry table per row (`tableStride` 16; any-b), or the format's one shared
///   table (`tableStride` 0; int4, nf4, fp4, …). 2- and 3-bit tables fill the first 4 or 8.
/// - `scaleZero`: `(scale, zero)` f32 pairs, `paddedRows × paddedGroups`, for group
///   `column / groupSize`; the tensor scale is folded in; pairs past a row's groups are (0, 0).
/// Padding rows and columns hold code 0 and zero scales; the activations are zero past `cols`.
public struct GPULookupLayout: Sendable {
    public let formatName: String
    public let rows: Int
    public let cols: Int
    public let paddedRows: Int
    public let paddedCols: Int
    public let groupSize: Int
    public let paddedGroups: Int
    public let codes: [UInt32]
    public let table: [Float]
    public let tableStride: Int
    public let scaleZero: [Float]

    public typealias Unsupported = UnsupportedLayout

    public init(_ q: QuantizedMatrix) throws(Unsupported) {
        let kernel = "the GPU lookup kernel"
        guard q.codeBits <= 4 else { throw Unsupported(kernel, .codeBits(q.codeBits)) }
        guard q.groupSize > 0, q.groupSize % 8 == 0 else { throw Unsupported(kernel, .groupSize(q.groupSize, rule: "a multiple of 8")) }
        formatName = q.formatName
        rows = q.rows
        cols = q.cols
        paddedRows = GPUGeometry.paddedRows(q.rows)
        paddedCols = GPUGeometry.paddedCols(q.cols)
        groupSize = q.groupSize
        paddedGroups = (paddedCols + q.groupSize - 1) / q.groupSize
        let wordsPerRow = paddedCols / 8
        var words = [UInt32](repeating: 0, count: paddedRows * wordsPerRow)
        for r in 0..<q.rows {
            for c in 0..<q.cols {
                let (word, shift) = Self.position(column: c, paddedCols: paddedCols)
                words[r * wordsPerRow + word] |= UInt32(q.codes[r * q.cols + c] & 0xF) << UInt32(shift)
            }
        }
        codes = words
        let n = q.tableSize
        let tableRows = q.perRowTable ? paddedRows : 1
        var t = [Float](repeating: 0, count: tableRows * 16)
        for i in 0..<(q.perRowTable ? q.rows : 1) { for j in 0..<n { t[i * 16 + j] = q.tables[i * n + j] } }
        table = t
        tableStride = q.perRowTable ? 16 : 0
        let groups = q.groupsPerRow
        var sz = [Float](repeating: 0, count: paddedRows * paddedGroups * 2)
        for r in 0..<q.rows {
            for g in 0..<groups {
                sz[(r * paddedGroups + g) * 2] = q.scales[r * groups + g] * q.tensorScale
                sz[(r * paddedGroups + g) * 2 + 1] = (q.zeros.isEmpty ? 0 : q.zeros[r * groups + g]) * q.tensorScale
            }
        }
        scaleZero = sz
    }

    /// The same layout with other codes (tests: a scrambled layout must not pass).
    package init(copying other: GPULookupLayout, codes: [UInt32]) {
        precondition(codes.count == other.codes.count, "codes must keep their count")
        formatName = other.formatName
        rows = other.rows
        cols = other.cols
        paddedRows = other.paddedRows
        paddedCols = other.paddedCols
        groupSize = other.groupSize
        paddedGroups = other.paddedGroups
        self.codes = codes
        table = other.table
        tableStride = other.tableStride
        scaleZero = other.scaleZero
    }

    /// Where column c's code lives in its row: the word index and the bit shift.
    public static func position(column c: Int, paddedCols: Int) -> (word: Int, shift: Int) {
        let slice = c / GPUGeometry.sliceColumns
        let lane = (c % GPUGeometry.sliceColumns) / 8
        let chunks = paddedCols / GPUGeometry.chunkColumns
        let word =
            slice < 4 * chunks
            ? (slice / 4) * 128 + lane * 4 + slice % 4
            : chunks * 128 + (slice - 4 * chunks) * 32 + lane
        return (word, 4 * (c % 8))
    }

    /// The code of (r, c), read back from the layout.
    public func code(row r: Int, column c: Int) -> UInt8 {
        let (word, shift) = Self.position(column: c, paddedCols: paddedCols)
        return UInt8((codes[r * (paddedCols / 8) + word] >> UInt32(shift)) & 0xF)
    }

    /// Bytes on the device: codes, tables, scales and zeros.
    public var deviceBytes: Int { codes.count * 4 + table.count * 4 + scaleZero.count * 4 }

    /// Bytes one call streams from memory (the shared table counts once).
    public var streamedBytes: Int { deviceBytes }
}

/// A dense matrix for the GPU dense kernel (`any4_dense_*`): `paddedRows × paddedCols` values
/// in the activation type, row-major, zero padding; lane l reads columns `s·256 + l·8 … + 7` of
/// slice s as one 16-byte load.
public struct GPUDenseLayout: Sendable {
    public let rows: Int
    public let cols: Int
    public let paddedRows: Int
    public let paddedCols: Int
    public let type: GPUActivationType
    public let weights: [UInt16]

    public init(_ w: [Float], rows: Int, cols: Int, type: GPUActivationType) {
        precondition(w.count == rows * cols, "weights must be [rows, cols]")
        self.rows = rows
        self.cols = cols
        self.type = type
        paddedRows = GPUGeometry.paddedRows(rows)
        paddedCols = GPUGeometry.paddedCols(cols)
        var out = [UInt16](repeating: 0, count: paddedRows * paddedCols)
        for r in 0..<rows { for c in 0..<cols { out[r * paddedCols + c] = type.bits(w[r * cols + c]) } }
        weights = out
    }

    /// The weights as the kernel reads them, [rows, cols] in f32.
    public var storedWeights: [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        for r in 0..<rows { for c in 0..<cols { out[r * cols + c] = type.value(weights[r * paddedCols + c]) } }
        return out
    }

    public var deviceBytes: Int { weights.count * 2 }
}
