import Any4Core
import CAny4Kernels

/// A dense layer's weights as int8 with one f32 scale per 32 columns (the Q8_0 scheme), run by
/// the int8 × int8 kernel on activations quantized the same way: the decode-step copy of a dense
/// LM head (`DecodeHead.q8`).
package struct Q8Linear: Sendable {
    let rows: Int
    let cols: Int
    /// rows × cols int8 codes, row-major (on huge pages: the decode step streams them).
    let codes: HugePageBuffer<Int8>
    /// rows × cols / 32 block scales: w ≈ code × scale.
    let scales: HugePageBuffer<Float>

    /// Quantizes f32 weights (rows × cols, row-major; cols a multiple of 32), rows spread over
    /// `threads` workers.
    package init(_ weights: [Float], rows: Int, cols: Int, threads: Int) {
        precondition(weights.count == rows * cols, "weights must be [rows, cols]")
        self = weights.withUnsafeBufferPointer { w in
            let base = UncheckedBox(w.baseAddress!)
            return Q8Linear(rows: rows, cols: cols) { tile in
                parallelRows(rows, threads: threads) { r0, r1 in tile(r0, r1, base.value + r0 * cols) }
            }
        }
    }

    /// Quantizes weights handed over a tile of rows at a time, so that no f32 copy of the whole
    /// matrix need exist: `forEachTile` calls its argument with (r0, r1, the f32 rows r0..<r1),
    /// possibly from several threads at once on disjoint rows, covering every row once.
    package init(rows: Int, cols: Int, forEachTile: ((Int, Int, UnsafePointer<Float>) -> Void) -> Void) {
        precondition(rows >= 0 && cols % 32 == 0, "cols must be a multiple of 32")
        self.rows = rows
        self.cols = cols
        let codes = HugePageBuffer<Int8>(repeating: 0, count: rows * cols)
        let scales = HugePageBuffer<Float>(repeating: 0, count: rows * cols / 32)
        codes.withUnsafeMutableBufferPointer { c in
            scales.withUnsafeMutableBufferPointer { s in
                let args = UncheckedBox((c.baseAddress!, s.baseAddress!))
                forEachTile { r0, r1, tile in
                    let (c, s) = args.value
                    any4_q8_quantize_rows(tile, Int32(cols), c + r0 * cols, s + r0 * (cols / 32), 0, Int32(r1 - r0))
                }
            }
        }
        self.codes = codes
        self.scales = scales
    }

    /// A GGUF Q8_0 tensor run as stored: each block's 32 int8 values as they are, its f16 scale
    /// widened to f32 (exact), no f32 copy of the weights. Throws a ``FileFormatError`` naming the
    /// file, tensor and offset for another type, a shape that is not [rows, cols] with cols a
    /// multiple of 32, or a byte count or range that does not match it.
    package init(_ info: TensorInfo, from store: ByteStore) throws(FileFormatError) {
        func fail(_ kind: FileFormatError.Kind, _ message: String) -> FileFormatError {
            FileFormatError(file: store.name, kind: kind, message, offset: info.offset, subject: info.name)
        }
        guard info.encoding == .ggml(.q8_0) else { throw fail(.unsupported, "\(info.encoding) is not Q8_0") }
        guard info.shape.count == 2, info.shape[0] >= 0, info.shape[1] >= 0, info.shape[1] % 32 == 0 else {
            throw fail(.badShape, "a Q8_0 matrix must be [rows, cols] with cols a multiple of 32, not \(info.shape)")
        }
        let (rows, cols) = (info.shape[0], info.shape[1])
        let (blocks, o1) = rows.multipliedReportingOverflow(by: cols / 32)
        let (bytes, o2) = blocks.multipliedReportingOverflow(by: GGMLType.q8_0.typeSize)
        guard !o1, !o2, bytes == info.byteCount else {
            throw fail(.badShape, "\(rows) × \(cols) Q8_0 needs \(rows) × \(cols / 32) blocks of 34 bytes, not \(info.byteCount) bytes")
        }
        guard info.offset >= 0, info.offset <= store.bytes.count, bytes <= store.bytes.count - info.offset else {
            throw fail(.truncated, "\(bytes) bytes of Q8_0 blocks run past the end of the file (\(store.bytes.count) bytes)")
        }
        let data =
            bytes == 0
            ? UnsafeRawBufferPointer(start: nil, count: 0) : UnsafeRawBufferPointer(rebasing: store.bytes[info.offset..<(info.offset + bytes)])
        self.init(q8_0: data, rows: rows, cols: cols)
    }

    /// Raw Q8_0 blocks (`f16 d; i8 qs[32]`, 34 bytes per 32 columns) of a rows × cols matrix, row-major.
    package init(q8_0 data: UnsafeRawBufferPointer, rows: Int, cols: Int) {
        precondition(rows >= 0 && cols >= 0 && cols % 32 == 0, "cols must be a multiple of 32")
        let count = rows * cols / 32, size = GGMLType.q8_0.typeSize
        precondition(data.count == count * size, "expected \(count) Q8_0 blocks")
        self.rows = rows
        self.cols = cols
        let codes = HugePageBuffer<Int8>(repeating: 0, count: rows * cols)
        let scales = HugePageBuffer<Float>(repeating: 0, count: count)
        if let base = data.baseAddress {
            codes.withUnsafeMutableBufferPointer { codes in
                scales.withUnsafeMutableBufferPointer { scales in
                    for b in 0..<count {
                        let block = base + b * size
                        scales[b] = Float(Float16(bitPattern: UInt16(littleEndian: block.loadUnaligned(as: UInt16.self))))
                        UnsafeMutableRawPointer(codes.baseAddress! + b * 32).copyMemory(from: block + 2, byteCount: 32)
                    }
                }
            }
        }
        self.codes = codes
        self.scales = scales
    }

    /// Rows `range` as f32 into `out` (range.count × cols): code · scale, which for a layer made
    /// from Q8_0 blocks is ggml's decode bit for bit.
    package func dequantize(rows range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows \(range) outside 0..<\(rows)")
        codes.withUnsafeBufferPointer { c in
            scales.withUnsafeBufferPointer { s in
                for r in range {
                    let o = out + (r - range.lowerBound) * cols
                    for b in 0..<(cols / 32) {
                        let d = s[r * (cols / 32) + b], base = r * cols + b * 32
                        for j in 0..<32 { o[b * 32 + j] = Float(c[base + j]) * d }
                    }
                }
            }
        }
    }

    /// Bytes held: the int8 values and the f32 block scales.
    package var storedBytes: Int { codes.count + scales.count * 4 }

    /// y[m, rows] = x[m, cols]·Wᵀ with x as it is (f32): the dense kernel on code × scale, which is
    /// exact in f32, so the result is bit for bit that of the dense kernel on the weights decoded
    /// to f32 (the prompt pass's last row of a Q8_0 head, at a fraction of decoding the head).
    package func forwardExact(_ x: [Float], m: Int, threads: Int, useAVX2: Bool = CPUFeatures.hasAVX2) -> [Float] {
        precondition(x.count == m * cols, "x must be [m, cols]")
        var y = [Float](repeating: 0, count: m * rows)
        let avx = Int32(useAVX2 ? 1 : 0), rows = rows, cols = cols
        codes.withUnsafeBufferPointer { c in
            scales.withUnsafeBufferPointer { s in
                x.withUnsafeBufferPointer { x in
                    y.withUnsafeMutableBufferPointer { y in
                        var view = any4_q8_view(codes: c.baseAddress, scales: s.baseAddress)
                        withUnsafePointer(to: &view) { v in
                            let args = UncheckedBox((UnsafeRawPointer(v), x.baseAddress!, y.baseAddress!))
                            parallelRows(rows, threads: threads) { r0, r1 in
                                let (v, x, y) = args.value
                                any4_dense_gemm(v, 3, Int32(cols), x, Int32(m), y, Int32(rows), nil, Int32(r0), Int32(r1), avx)
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    /// y[m, rows] = x[m, cols]·Wᵀ (+ bias), with x quantized to int8 per 32 columns.
    package func forward(_ x: [Float], m: Int, threads: Int, bias: [Float]?, simd: SIMDLevel = CPUFeatures.simd) -> [Float] {
        var y = [Float](repeating: 0, count: m * rows)
        let level = simd.rawValue
        let blocks = cols / 32, rows = rows, cols = cols
        var xq = [Int8](repeating: 0, count: m * cols)
        var xs = [Float](repeating: 0, count: m * blocks), sums = xs
        any4_quantize_activations(x, Int32(m), Int32(cols), 32, Int32(blocks), &xq, &xs, &sums, 0, simd > .scalar ? 1 : 0)
        if simd >= .avx512 { any4_offset_activations(&xq, xq.count) }
        codes.withUnsafeBufferPointer { c in
            scales.withUnsafeBufferPointer { s in
                xq.withUnsafeBufferPointer { xq in
                    xs.withUnsafeBufferPointer { xs in
                        y.withUnsafeMutableBufferPointer { y in
                            let args = UncheckedBox((c.baseAddress!, s.baseAddress!, xq.baseAddress!, xs.baseAddress!, y.baseAddress!))
                            parallelRows(rows, threads: threads) { r0, r1 in
                                let (c, s, xq, xs, y) = args.value
                                any4_q8_gemm(c, s, Int32(cols), xq, xs, Int32(m), y, Int32(rows), Int32(r0), Int32(r1), level)
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
