/// Formats with a fixed 16-entry table and one absmax-derived scale per block, no zero:
/// nf4, fp4 (E2M1), fp4-bnb (bitsandbytes' FP4 table) and iq4_nl (llama.cpp's table).
///
/// Dequantization is table[q] · scale. nf4 and fp4-bnb use normalised tables (max 1) with
/// scale = absmax; fp4 uses the E2M1 values (max 6) with scale = absmax / 6. Codes are the nearest
/// entry to w / scale: ties take the lower index (nf4, fp4-bnb, iq4_nl) or the even code (fp4, as
/// IEEE rounding would). A block whose absmax is 0 gets scale 0 and the code of 0.
public struct TableFormat: NumericFormat {
    public let name: String
    public let summary: String
    public let table: [Float]
    /// The table value the block's absmax maps to.
    public let tableMax: Float
    public let tiesToEven: Bool
    public let fixedBlockSize: Int?
    /// iq4_nl searches for the best block scale instead of using absmax alone.
    let searchesScale: Bool
    /// Whether a block's scale is its absmax over ``tableMax`` alone (all but iq4_nl), so that the
    /// block's levels follow from its range.
    public var scalesByAbsmax: Bool { !searchesScale }

    public var codeBits: Int { 4 }
    public var sharedTable: [Float]? { table }
    /// iq4_nl keeps ggml's F16 block scale; the others store scales in the model's dtype.
    public var scaleDType: DType? { searchesScale ? .f16 : nil }

    /// NormalFloat4 (QLoRA / bitsandbytes `get_4bit_type("nf4")`).
    public static let nf4 = TableFormat(
        name: "nf4", summary: "NormalFloat4 table, absmax scale per group (QLoRA)",
        table: [
            -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
            -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
            0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
            0.7229568362236023, 1.0
        ],
        tableMax: 1, tiesToEven: false, fixedBlockSize: nil, searchesScale: false)

    /// E2M1 in IEEE code order: bit 3 sign, bits 2–1 exponent, bit 0 mantissa.
    public static let e2m1: [Float] = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]

    public static let fp4 = TableFormat(
        name: "fp4", summary: "E2M1 floats, scale absmax/6 per group",
        table: e2m1, tableMax: 6, tiesToEven: true, fixedBlockSize: nil, searchesScale: false)

    /// bitsandbytes' FP4 table: {0, 0.0625, 8, 12, 4, 6, 2, 3}/12 and negatives (its own code order).
    public static let fp4bnb = TableFormat(
        name: "fp4-bnb", summary: "bitsandbytes FP4 table, absmax scale per group",
        table: [0, 0.0625, 8, 12, 4, 6, 2, 3, -0.0, -0.0625, -8, -12, -4, -6, -2, -3].map { $0 / 12 },
        tableMax: 1, tiesToEven: false, fixedBlockSize: nil, searchesScale: false)

    public static let iq4nl = TableFormat(
        name: "iq4_nl", summary: "llama.cpp IQ4_NL non-linear table, block 32, searched scale",
        table: GGMLType.iq4nlValues.map(Float.init), tableMax: 127, tiesToEven: false, fixedBlockSize: 32,
        searchesScale: true)

    public func quantizeRow(_ job: RowJob) {
        table.withUnsafeBufferPointer { t in
            for g in 0..<job.groups.count {
                let range = job.groups.range(g)
                let scale = searchesScale ? searchedScale(job.values, range, t, job.storage) : absmaxScale(job.values, range, job.storage)
                job.scales[g] = scale
                let inverse: Float = scale == 0 ? 0 : 1 / scale
                for c in range {
                    job.codes[c] = UInt8(TableSearch.nearest(job.values[c] * inverse, t, tiesToEven: tiesToEven))
                }
            }
        }
    }

    func absmaxScale(_ values: UnsafeBufferPointer<Float>, _ range: Range<Int>, _ storage: StorageRounding) -> Float {
        var amax: Float = 0
        for c in range { amax = max(amax, abs(values[c])) }
        return storage(amax / tableMax)
    }

    /// llama.cpp-style scale search for a non-symmetric table: the element of largest magnitude is
    /// mapped to the table's end (and 7 neighbouring entries either side), codes are assigned, the
    /// least-squares scale for those codes is taken, and the candidate with the lowest squared
    /// error wins. Unweighted (llama.cpp can weight by an importance matrix).
    func searchedScale(
        _ values: UnsafeBufferPointer<Float>, _ range: Range<Int>, _ t: UnsafeBufferPointer<Float>,
        _ storage: StorageRounding
    ) -> Float {
        var signedMax: Float = 0
        for c in range where abs(values[c]) > abs(signedMax) { signedMax = values[c] }
        guard signedMax != 0 else { return 0 }
        var bestScale: Float = 0
        var bestError = Float.infinity
        // A candidate the storage dtype (F16) cannot hold never wins; when every one overflows,
        // the overflowed value is returned for the row check to report (not a silent 0).
        var overflowed: Float?
        for step in -7...7 {
            let scale = signedMax / (t[0] + Float(step))
            guard scale.isFinite, scale != 0 else { continue }
            let inverse = 1 / scale
            var sumXQ: Float = 0, sumQQ: Float = 0
            for c in range {
                let q = t[TableSearch.nearest(values[c] * inverse, t)]
                sumXQ += values[c] * q
                sumQQ += q * q
            }
            guard sumQQ > 0 else { continue }
            let refined = storage(sumXQ / sumQQ)
            guard refined.isFinite else {
                overflowed = refined
                continue
            }
            guard refined != 0 else { continue }
            let inv = 1 / refined
            var error: Float = 0
            for c in range {
                let d = values[c] - refined * t[TableSearch.nearest(values[c] * inv, t)]
                error += d * d
            }
            if error < bestError {
                bestError = error
                bestScale = refined
            }
        }
        if bestScale == 0, let overflowed { return overflowed }
        return bestScale
    }
}
