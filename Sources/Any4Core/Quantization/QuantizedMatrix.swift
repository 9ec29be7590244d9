/// A weight matrix [rows, cols] in a quantized format: codes, tables, per-group scales and zeros.
///
/// Element (r, c) in group g dequantizes to `(table_r[code] · scale[r, g] + zero[r, g]) · tensorScale`
/// where table_r is the row's LUT (any-b) or the format's fixed table, and zero is 0 for formats
/// without zeros.
public struct QuantizedMatrix: Sendable {
    public let formatName: String
    public let rows: Int
    public let cols: Int
    public let codeBits: Int
    /// Group (block) size; the last group of a row may be shorter when it does not divide `cols`.
    public let groupSize: Int
    /// One code per element, row-major (unpacked; ``packedCodes()`` gives the stored form).
    public var codes: [UInt8]
    /// How the codes are stored: ``CodePacking/written(codeBits:)`` for a new matrix, the
    /// layer's own packing for one read from a checkpoint.
    public var codePacking: CodePacking
    /// rows × 2^b entries when `perRowTable`, else the 2^b entries of the shared table.
    public var tables: [Float]
    public let perRowTable: Bool
    /// rows × groups.
    public var scales: [Float]
    /// rows × groups, or empty for formats without zeros.
    public var zeros: [Float]
    public var tensorScale: Float
    /// The float dtype scales, zeros and LUTs are stored in.
    public let storage: DType
    /// Bits of one stored scale (the storage dtype's, or 8 for E8M0/E4M3 scales).
    public let scaleBits: Int
    /// any-b: each row's weighted k-means objective in the group-scaled domain (empty otherwise,
    /// and after reading a checkpoint).
    public var rowObjectives: [Double]
    /// How the table was learned (the clustering, e.g. `lloyd`), "" for formats without a learned
    /// table; written in the checkpoint's per-layer metadata.
    public var method = ""
    /// The sample weighting of the table's k-means (e.g. `none`, `calib:…`), "" without a learned table.
    public var sampleWeight = ""
    /// Why the layer is stored in F32 although the default rule chose F16 (a scale F16 cannot
    /// hold; see ``QuantizationOptions/defaultStorageDType(source:)``), nil when it is not: a
    /// warning for the tools to show.
    public var storageFallback: String?

    public var groups: GroupLayout { GroupLayout(columns: cols, size: groupSize) }
    public var groupsPerRow: Int { groups.count }
    public var tableSize: Int { 1 << codeBits }

    /// The table used by row `r`.
    @inline(__always)
    public func tableOffset(row r: Int) -> Int { perRowTable ? r * tableSize : 0 }

    /// Dequantizes rows `rows` into `out` (room for rows.count × cols floats).
    public func dequantize(rows range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let g = groups
        let groupCount = g.count
        tables.withUnsafeBufferPointer { tab in
            for r in range {
                let t = tab.baseAddress! + tableOffset(row: r)
                let o = out + (r - range.lowerBound) * cols
                for group in 0..<groupCount {
                    let s = scales[r * groupCount + group]
                    let z = zeros.isEmpty ? 0 : zeros[r * groupCount + group]
                    for c in g.range(group) {
                        o[c] = (t[Int(codes[r * cols + c])] * s + z) * tensorScale
                    }
                }
            }
        }
    }

    /// True when every dequantized value is provably finite without dequantizing: every table
    /// entry, scale, zero and the tensor scale is finite and, per row and group, the bound
    /// (max |table| · |scale| + |zero|) · |tensorScale| — taken in f64 with room for f32's roundings
    /// — stays below Float's largest finite value. False means "not proven" (a value may still be
    /// finite): scan the values then. Costs O(tables + groups), not O(rows × cols).
    public var valuesProvablyFinite: Bool {
        guard tensorScale.isFinite, tables.allSatisfy(\.isFinite), scales.allSatisfy(\.isFinite),
            zeros.allSatisfy(\.isFinite)
        else { return false }
        let groupCount = groupsPerRow
        let limit = Double(Float.greatestFiniteMagnitude) * (1 - 1e-6)
        let ts = Double(abs(tensorScale))
        for r in 0..<rows {
            let o = tableOffset(row: r)
            var table = 0.0
            for i in 0..<tableSize { table = max(table, Double(abs(tables[o + i]))) }
            for g in 0..<groupCount {
                let z = zeros.isEmpty ? 0 : Double(abs(zeros[r * groupCount + g]))
                if (table * Double(abs(scales[r * groupCount + g])) + z) * ts >= limit { return false }
            }
        }
        return true
    }

    /// The whole matrix, dequantized.
    public func dequantized() -> [Float] {
        [Float](unsafeUninitializedCapacity: rows * cols) { buffer, count in
            dequantize(rows: 0..<rows, into: buffer.baseAddress!)
            count = rows * cols
        }
    }

    /// Storage bits per weight: every bit a checkpoint stores for the layer (its parts' bytes × 8,
    /// ``QuantizedLayout/bitsPerElement``) over rows × cols: the codes as stored in ``codePacking``
    /// (dense: `codeBits` each, a row padded to whole bytes; nibbles: 4 bits up to 4 bits, a byte
    /// above), every LUT entry, zero and float scale in ``storage`` (byte scales 8 bits), and the
    /// F32 tensor scale of a format that has one.
    public var bitsPerWeight: Double {
        let format = try? FormatRegistry.named(formatName)
        let bits = Self.storedBits(
            rows: rows, cols: cols, codeBits: codeBits, packing: codePacking, tableEntries: perRowTable ? tableSize : 0,
            groupsPerRow: groupsPerRow, scaleBits: scaleBits, hasZeros: !zeros.isEmpty, floatBits: storage.size * 8,
            tensorScale: format?.hasTensorScale == true || tensorScale != 1)
        return bits / (Double(rows) * Double(cols))
    }

    /// The stored bits of a [rows, cols] layer (``bitsPerWeight`` × rows × cols): codes packed in
    /// `packing` as ``packedCodes()`` stores them, `tableEntries` LUT entries per row and a zero per group in
    /// `floatBits`, a scale per group in `scaleBits`, and 32 for a tensor scale. In Double: a count
    /// times bits may pass Int's range where the count itself does not (exact below 2^53).
    public static func storedBits(
        rows: Int, cols: Int, codeBits: Int, packing: CodePacking, tableEntries: Int, groupsPerRow: Int, scaleBits: Int,
        hasZeros: Bool, floatBits: Int, tensorScale: Bool
    ) -> Double {
        let r = Double(rows)
        var bits = r * Double(packing.rowBytes(cols: cols, codeBits: codeBits)) * 8
        bits += r * Double(tableEntries) * Double(floatBits)
        bits += r * Double(groupsPerRow) * Double(scaleBits)
        if hasZeros { bits += r * Double(groupsPerRow) * Double(floatBits) }
        if tensorScale { bits += 32 }
        return bits
    }

    /// How many elements of each row use each code: rows × 2^b counts.
    public func codeUsage() -> [Int] {
        var counts = [Int](repeating: 0, count: rows * tableSize)
        for r in 0..<rows {
            for c in 0..<cols { counts[r * tableSize + Int(codes[r * cols + c])] += 1 }
        }
        return counts
    }

    /// The codes as `X.qweight` stores them: packed in ``codePacking`` (see ``CodePacking``).
    public func packedCodes() -> [UInt8] {
        codePacking.pack(codes, rows: rows, cols: cols, codeBits: codeBits)
    }

    public init(
        formatName: String, rows: Int, cols: Int, codeBits: Int, groupSize: Int, codes: [UInt8], tables: [Float],
        perRowTable: Bool, scales: [Float], zeros: [Float], tensorScale: Float, storage: DType, scaleBits: Int,
        rowObjectives: [Double] = [], codePacking: CodePacking? = nil
    ) {
        self.rowObjectives = rowObjectives
        self.codePacking = codePacking ?? .written(codeBits: codeBits)
        self.formatName = formatName
        self.rows = rows
        self.cols = cols
        self.codeBits = codeBits
        self.groupSize = groupSize
        self.codes = codes
        self.tables = tables
        self.perRowTable = perRowTable
        self.scales = scales
        self.zeros = zeros
        self.tensorScale = tensorScale
        self.storage = storage
        self.scaleBits = scaleBits
    }
}
