/// The GPU kernels of any4_gemm.cu run on the CPU, lane by lane, in the kernels' own order:
/// the same loads from the same layout, the same shuffles, the same f32 fused multiply-adds and
/// the same warp reduction. On a machine without a GPU this is what proves the layout; on one
/// with a GPU the device's results must equal it up to nothing (same operations, same order).
///
/// Straightforward and slow by design: it is the scalar twin the tests hold the layout to.
public enum GPUEmulation {
    /// `any4_lut_{type}_m*`: y[m, rows] (f32) for activations `x` packed by
    /// ``GPUActivationType/pack(_:m:cols:paddedCols:)``.
    public static func lookup(_ l: GPULookupLayout, x: [UInt16], m: Int, type: GPUActivationType) -> [Float] {
        precondition(x.count == m * l.paddedCols, "x must be [m, paddedCols]")
        precondition(m >= 1 && m <= GPUGeometry.maxBatch, "the kernels take 1...16 activation rows")
        let wordsPerRow = l.paddedCols / 8
        let chunks = l.paddedCols / GPUGeometry.chunkColumns
        let tail = (l.paddedCols / GPUGeometry.sliceColumns) % 4
        var y = [Float](repeating: 0, count: m * l.rows)
        var acc = [Float](repeating: 0, count: GPUGeometry.lanes * GPUGeometry.rowsPerWarp * m)
        // Every warp: rows row0, row0 + 1.
        for row0 in stride(from: 0, to: l.rows, by: GPUGeometry.rowsPerWarp) {
            let warpRows = (0..<GPUGeometry.rowsPerWarp).map { row0 + $0 }
            // Lane l's table register of each row: entry l % 16.
            let registers = warpRows.map { r in (0..<GPUGeometry.lanes).map { lane in l.table[r * l.tableStride + (lane & 15)] } }
            for i in acc.indices { acc[i] = 0 }
            // The shuffles need every lane's word of a slice at once: walk slice by slice, all lanes.
            func slice(_ words: [[UInt32]], _ sliceIndex: Int) {
                for lane in 0..<GPUGeometry.lanes {
                    let col0 = sliceIndex * GPUGeometry.sliceColumns + lane * 8
                    let g = col0 / l.groupSize
                    for (ri, r) in warpRows.enumerated() {
                        let word = words[ri][lane]
                        // __shfl_sync(FULL_MASK, table, src): the low 5 bits pick the lane.
                        var t = [Float](repeating: 0, count: 8)
                        for i in 0..<8 {
                            let src = Int((word >> UInt32(4 * i)) & 31)
                            t[i] = registers[ri][src]
                        }
                        let scale = l.scaleZero[(r * l.paddedGroups + g) * 2]
                        let zero = l.scaleZero[(r * l.paddedGroups + g) * 2 + 1]
                        for k in 0..<m {
                            var xs: Float = 0
                            var p: Float = 0
                            for i in 0..<8 {
                                let xi = type.value(x[k * l.paddedCols + col0 + i])
                                xs += xi
                                p = p.addingProduct(t[i], xi)
                            }
                            let a = (lane * GPUGeometry.rowsPerWarp + ri) * m + k
                            acc[a] = acc[a].addingProduct(scale, p)
                            acc[a] = acc[a].addingProduct(zero, xs)
                        }
                    }
                }
            }
            // Whole chunks: lane l's uint4 at index c·32 + l holds its words of slices 4c … 4c+3.
            for c in 0..<chunks {
                for j in 0..<4 {
                    let words = warpRows.map { r in
                        (0..<GPUGeometry.lanes).map { lane in l.codes[r * wordsPerRow + (c * 32 + lane) * 4 + j] }
                    }
                    slice(words, c * 4 + j)
                }
            }
            // Tail slices: one word per lane, slice-major.
            for t in 0..<tail {
                let words = warpRows.map { r in
                    (0..<GPUGeometry.lanes).map { lane in l.codes[r * wordsPerRow + chunks * 128 + t * 32 + lane] }
                }
                slice(words, chunks * 4 + t)
            }
            for (ri, r) in warpRows.enumerated() where r < l.rows {
                for k in 0..<m {
                    let lanes = (0..<GPUGeometry.lanes).map { acc[($0 * GPUGeometry.rowsPerWarp + ri) * m + k] }
                    y[k * l.rows + r] = warpSum(lanes)
                }
            }
        }
        return y
    }

    /// `any4_dense_{type}_m*`: y[m, rows] (f32); weights and activations in `w.type`.
    public static func dense(_ w: GPUDenseLayout, x: [UInt16], m: Int) -> [Float] {
        precondition(x.count == m * w.paddedCols, "x must be [m, paddedCols]")
        let slices = w.paddedCols / GPUGeometry.sliceColumns
        var y = [Float](repeating: 0, count: m * w.rows)
        for r in 0..<w.rows {
            for k in 0..<m {
                var lanes = [Float](repeating: 0, count: GPUGeometry.lanes)
                for lane in 0..<GPUGeometry.lanes {
                    var a: Float = 0
                    for s in 0..<slices {
                        let col0 = s * GPUGeometry.sliceColumns + lane * 8
                        for i in 0..<8 {
                            a = a.addingProduct(
                                w.type.value(w.weights[r * w.paddedCols + col0 + i]),
                                w.type.value(x[k * w.paddedCols + col0 + i]))
                        }
                    }
                    lanes[lane] = a
                }
                y[k * w.rows + r] = warpSum(lanes)
            }
        }
        return y
    }

    /// The butterfly of `v += __shfl_xor_sync(FULL_MASK, v, o)` for o = 16, 8, 4, 2, 1: lane 0's
    /// result (every lane ends with the same bits, f32 addition being commutative).
    static func warpSum(_ lanes: [Float]) -> Float {
        var v = lanes
        for offset in [16, 8, 4, 2, 1] {
            v = (0..<GPUGeometry.lanes).map { v[$0] + v[$0 ^ offset] }
        }
        return v[0]
    }
}
