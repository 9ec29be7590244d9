import Any4Core
import CAny4Kernels

/// A dense layer's weights as int8 with one f32 scale per 32 columns (the Q8_0 scheme), run by
/// the int8 × int8 kernel on activations quantized the same way: the decode-step copy of a dense
/// LM head (`DecodeHead.q8`).
package struct Q8Linear: Sendable {
    let rows: Int
    let cols: Int
    /// rows × cols int8 codes, row-major.
    let codes: [Int8]
    /// rows × cols / 32 block scales: w ≈ code × scale.
    let scales: [Float]

    /// Quantizes f32 weights (rows × cols, row-major; cols a multiple of 32), rows spread over
    /// `threads` workers.
    package init(_ weights: [Float], rows: Int, cols: Int, threads: Int) {
        precondition(weights.count == rows * cols && cols % 32 == 0, "weights must be [rows, cols], cols % 32 == 0")
        self.rows = rows
        self.cols = cols
        var codes = [Int8](repeating: 0, count: rows * cols)
        var scales = [Float](repeating: 0, count: rows * cols / 32)
        weights.withUnsafeBufferPointer { w in
            codes.withUnsafeMutableBufferPointer { c in
                scales.withUnsafeMutableBufferPointer { s in
                    let args = UncheckedBox((w.baseAddress!, c.baseAddress!, s.baseAddress!))
                    parallelRows(rows, threads: threads) { r0, r1 in
                        let (w, c, s) = args.value
                        any4_q8_quantize_rows(w, Int32(cols), c, s, Int32(r0), Int32(r1))
                    }
                }
            }
        }
        self.codes = codes
        self.scales = scales
    }

    /// y[m, rows] = x[m, cols]·Wᵀ (+ bias), with x quantized to int8 per 32 columns.
    package func forward(_ x: [Float], m: Int, threads: Int, bias: [Float]?, useAVX2: Bool = CPUFeatures.hasAVX2) -> [Float] {
        var y = [Float](repeating: 0, count: m * rows)
        let avx = Int32(useAVX2 ? 1 : 0)
        let blocks = cols / 32, rows = rows, cols = cols
        var xq = [Int8](repeating: 0, count: m * cols)
        var xs = [Float](repeating: 0, count: m * blocks), sums = xs
        any4_quantize_activations(x, Int32(m), Int32(cols), 32, Int32(blocks), &xq, &xs, &sums, 0, avx)
        codes.withUnsafeBufferPointer { c in
            scales.withUnsafeBufferPointer { s in
                xq.withUnsafeBufferPointer { xq in
                    xs.withUnsafeBufferPointer { xs in
                        y.withUnsafeMutableBufferPointer { y in
                            let args = UncheckedBox((c.baseAddress!, s.baseAddress!, xq.baseAddress!, xs.baseAddress!, y.baseAddress!))
                            parallelRows(rows, threads: threads) { r0, r1 in
                                let (c, s, xq, xs, y) = args.value
                                any4_q8_gemm(c, s, Int32(cols), xq, xs, Int32(m), y, Int32(rows), Int32(r0), Int32(r1), avx)
                            }
                        }
                    }
                }
            }
        }
        if let bias { for k in 0..<m { for r in 0..<rows { y[k * rows + r] += bias[r] } } }
        return y
    }
}
