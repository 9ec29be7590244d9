import Any4Core
import Any4Kernels
import CAny4Kernels

/// How the inference engine runs its linear layers.
public struct EngineOptions: Sendable {
    /// Worker threads (0: all cores).
    public var threads = 0
    /// The lookup kernel's path for quantized layers at small batch (decode): `.fast` (int8
    /// activations) or `.exact` (f32 activations, the dequantized product up to rounding).
    public var kernel: KernelPath = .fast
    /// From this many activation rows on, a layer runs as f32 GEMMs (OpenBLAS when present) over
    /// tiles of its rows decoded to f32 — dequantized for a quantized layer, so the numbers are the
    /// format's — instead of the lookup kernel.
    public var gemmRows = 8
    /// Use OpenBLAS for large batches when it can be loaded.
    public var useBLAS = true
    /// Load GGUF Q4_0/Q4_1 matrices into the lookup kernel's layout (imported exactly; decode steps
    /// then run the lookup kernel on `kernel`'s path). Off: decode tiles of the blocks as stored.
    public var packBlocks = true
    /// How a dense LM head runs in decode steps (fewer than 4 rows): it is the largest layer a step
    /// streams, so a narrower copy nearly halves (f16) or quarters (q8) its time. Batches of 4 or
    /// more rows (prefill, perplexity) always use the weights as held.
    public var decodeHead: DecodeHead = .f32
    /// The precision of a decoder's KV cache (``LlamaEngine/makeCache(capacity:)``).
    public var kvCache: KVPrecision = .f32

    public init() {}

    public var workers: Int { threads > 0 ? threads : SystemInfo.processorCount }
}

/// The storage of a dense LM head's decode-step copy.
public enum DecodeHead: String, Sendable, CaseIterable {
    /// The weights as held (no copy).
    case f32
    /// An f16 copy (none for weights already stored in 16 bits: f16 or bf16).
    case f16
    /// int8 with one f32 scale per 32 columns, times activations quantized the same way (the
    /// Q8_0 scheme; SmolLM2's GGUF head is stored so, which this reproduces exactly).
    case q8
}

/// Running sums of a linear layer's input activations, per input channel (for calibration).
final class ActivationSums: @unchecked Sendable {
    var sum: [Double]
    var absSum: [Double]
    var sqSum: [Double]
    var rows = 0

    init(channels: Int) {
        sum = [Double](repeating: 0, count: channels)
        absSum = sum
        sqSum = sum
    }

    func add(_ x: UnsafePointer<Float>, m: Int) {
        let n = sum.count
        sum.withUnsafeMutableBufferPointer { sum in
            absSum.withUnsafeMutableBufferPointer { absSum in
                sqSum.withUnsafeMutableBufferPointer { sqSum in
                    for k in 0..<m {
                        let row = x + k * n
                        for c in 0..<n {
                            let v = Double(row[c])
                            sum[c] += v
                            absSum[c] += abs(v)
                            sqSum[c] += v * v
                        }
                    }
                }
            }
        }
        rows += m
    }

    var layer: CalibrationStats.Layer {
        let d = Double(max(rows, 1))
        return CalibrationStats.Layer(
            mean: sum.map { Float($0 / d) }, absmean: absSum.map { Float($0 / d) },
            sqmean: sqSum.map { Float($0 / d) }, count: Float(rows))
    }
}

/// One linear layer of a running model: y = x·Wᵀ (+ b) with W [rows, cols] held as its model file
/// stores it (read in place from the mapped file) or quantized (packed for the lookup kernel).
/// No f32 copy of W is kept: batched passes decode a bounded tile of rows at a time. Quantizing a
/// model swaps each layer's storage in place.
public final class Linear: @unchecked Sendable {
    /// The weight tensor's name in the model file (calibration and selection use it).
    public let name: String
    public let rows: Int
    public let cols: Int
    public let bias: [Float]?
    /// How the weights are held.
    package private(set) var storage: WeightStorage
    /// What the weights are: the file's encoding ("q4_1", "f32") or the format quantized to.
    public private(set) var formatName: String
    /// Bits per weight of the current storage (codes + scales + zeros + tables).
    public private(set) var bitsPerWeight: Double
    /// A narrower copy of dense weights for bandwidth-bound decode steps (the LM head).
    private var decodeCopy: DecodeCopy?
    private enum DecodeCopy {
        case f16([UInt16])
        case q8(Q8Linear)
    }
    var sums: ActivationSums?

    /// The quantized weights in the lookup kernel's layout, when quantized to a ≤4-bit format
    /// whose group size is a multiple of 32.
    public var packed: PackedLinear? { storage.packedLinear }

    package init(name: String, storage: WeightStorage, rows: Int, cols: Int, bias: [Float]?, formatName: String, bitsPerWeight: Double) {
        self.name = name
        self.rows = rows
        self.cols = cols
        self.bias = bias
        self.storage = storage
        self.formatName = formatName
        self.bitsPerWeight = bitsPerWeight
    }

    /// Replaces the weights by `q` (the lookup kernel's layout when it can run it).
    public func replace(with q: QuantizedMatrix) {
        // A permanent replacement ends a temporary one: there is nothing to restore after it.
        displaced = nil
        install(q)
    }

    private func install(_ q: QuantizedMatrix) {
        precondition(q.rows == rows && q.cols == cols, "quantized matrix does not match \(name)")
        storage = WeightStorage(q)
        formatName = q.formatName
        bitsPerWeight = q.bitsPerWeight
        decodeCopy = nil
    }

    /// The weights ``replaceTemporarily(with:)`` displaced, until ``restoreOriginal()``.
    private var displaced: (storage: WeightStorage, formatName: String, bitsPerWeight: Double, decodeCopy: DecodeCopy?)?

    /// Whether the weights are a temporary replacement (``replaceTemporarily(with:)``).
    public var isReplaced: Bool { displaced != nil }

    /// Holds `q` in place of the weights until ``restoreOriginal()`` puts the weights back as they
    /// were (storage, format name, bits, decode-step copy). Replacing again before restoring
    /// replaces the replacement; the original stays the one restored.
    public func replaceTemporarily(with q: QuantizedMatrix) {
        if displaced == nil { displaced = (storage, formatName, bitsPerWeight, decodeCopy) }
        install(q)
    }

    /// Puts back the weights ``replaceTemporarily(with:)`` displaced (nothing when none were).
    public func restoreOriginal() {
        guard let d = displaced else { return }
        storage = d.storage
        formatName = d.formatName
        bitsPerWeight = d.bitsPerWeight
        decodeCopy = d.decodeCopy
        displaced = nil
    }

    /// The f32 values of rows `rows` written to `out` (row-major, `cols` each).
    package func fillRows(_ rows: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        precondition(rows.lowerBound >= 0 && rows.upperBound <= self.rows, "rows out of range")
        storage.fillRows(rows, into: out)
    }

    /// The whole weight matrix in f32: a transient copy, for quantizing one layer at a time.
    public func decodedWeights() -> [Float] {
        [Float](unsafeUninitializedCapacity: rows * cols) { buffer, count in
            if let base = buffer.baseAddress { storage.fillRows(0..<rows, into: base) }
            count = rows * cols
        }
    }

    /// Bytes the layer holds in process memory: quantized storage and decode-step copies (weights
    /// read in place from the mapped file count nothing).
    public var residentBytes: Int {
        var bytes = storage.residentBytes
        switch decodeCopy {
        case .f16(let h)?: bytes += h.count * 2
        case .q8(let q)?: bytes += q.storedBytes
        case nil: break
        }
        return bytes
    }

    /// Bytes one decode step (a product with a single activation row) reads of this layer's
    /// weights: the decode-step copy when there is one, else the storage as it is read — stored
    /// bytes in place (every block of a decoded type), or what the lookup kernel's `path` streams.
    public func decodeStepBytes(path: KernelPath) -> Int {
        switch decodeCopy {
        case .f16(let h)?: return h.count * 2
        case .q8(let q)?: return q.storedBytes
        case nil: break
        }
        switch storage {
        case .dense(let t, _), .decoded(let t): return t.info.byteCount
        case .packed(let p): return p.streamedBytes(path)
        case .matrix(let q): return q.residentBytes
        }
    }

    /// The weights when they are GGUF Q8_0 blocks read in place: their q8 copy imports the blocks
    /// as they are, so it holds exactly these weights.
    private var storedQ8_0: StoredTensor? {
        if case .decoded(let t) = storage, t.info.encoding == .ggml(.q8_0) { t } else { nil }
    }

    /// Makes (or drops) the decode-step copy of dense weights, filled a tile of rows at a time.
    func prepareDecodeCopy(_ kind: DecodeHead, threads: Int) {
        if case .packed = storage {
            decodeCopy = nil
            return
        }
        switch (kind, decodeCopy) {
        case (.f32, _): decodeCopy = nil
        case (.f16, .f16?): break
        case (.q8, .q8?): break
        case (.q8, _) where storedQ8_0 != nil:
            // Q8_0 blocks as stored (the copy holds the same weights; see forward's prompt rows).
            let t = storedQ8_0!
            decodeCopy = .q8(Q8Linear(q8_0: UnsafeRawBufferPointer(start: t.base, count: t.info.byteCount), rows: rows, cols: cols))
        case (.q8, _) where cols % 32 == 0:
            // Quantized a tile of rows at a time: no f32 copy of the whole layer is made.
            decodeCopy = .q8(Q8Linear(rows: rows, cols: cols) { tile in forEachTile(threads: threads) { tile($0, $1, $2) } })
        case (.f16, _):
            // Weights stored in 16 bits already stream at f16's width: no copy.
            if case .dense(_, let s) = storage, s != .f32 {
                decodeCopy = nil
                return
            }
            var half = [UInt16](repeating: 0, count: rows * cols)
            half.withUnsafeMutableBufferPointer { half in
                let out = UncheckedBox(half.baseAddress!)
                forEachTile(threads: threads) { r0, r1, tile in
                    for i in 0..<((r1 - r0) * self.cols) { out.value[r0 * self.cols + i] = Float16(tile[i]).bitPattern }
                }
            }
            decodeCopy = .f16(half)
        default: decodeCopy = nil
        }
    }

    /// Starts (or stops) recording input statistics.
    func record(_ on: Bool) { sums = on ? ActivationSums(channels: cols) : nil }

    /// The outputs of several layers over the same input (q, k, v; gate, up). Packed layers at
    /// small batch share one activation preparation and one parallel loop.
    static func forward(_ layers: [Linear], _ x: [Float], m: Int, options: EngineOptions) -> [[Float]] {
        let packed = layers.compactMap(\.packed)
        if m < options.gemmRows, packed.count == layers.count, layers.allSatisfy({ $0.sums == nil }),
            packed.allSatisfy({
                $0.colsPadded == packed[0].colsPadded && $0.groupSize == packed[0].groupSize
                    && $0.blockCols == packed[0].blockCols
            })
        {
            return PackedLinear.forward(
                packed, biases: layers.map(\.bias), x: x, m: m, path: options.kernel,
                threads: options.workers)
        }
        return layers.map { $0.forward(x, m: m, options: options) }
    }

    /// y[m, rows] = x[m, cols]·Wᵀ (+ bias). `decodeStep: false` keeps a small batch off the
    /// decode-step copy (the last row of a prompt pass).
    package func forward(_ x: [Float], m: Int, options: EngineOptions, decodeStep: Bool = true) -> [Float] {
        precondition(x.count == m * cols, "\(name): input is not [m, \(cols)]")
        if let sums { x.withUnsafeBufferPointer { sums.add($0.baseAddress!, m: m) } }
        let threads = options.workers
        let useAVX2 = CPUFeatures.hasAVX2
        // A prompt pass's last row(s) on a Q8_0 head with its q8 copy (imported block for block, so
        // the same weights): the dense kernel over the copy's code × scale gives the decoded
        // weights' product bit for bit, without decoding the whole head to f32 for one row.
        if !decodeStep, m < 4, m < options.gemmRows || !options.useBLAS, storedQ8_0 != nil, case .q8(let q8)? = decodeCopy {
            return withBias(q8.forwardExact(x, m: m, threads: threads), m: m)
        }
        if decodeStep, m < 4, let decodeCopy {
            switch decodeCopy {
            case .f16(let half):
                return half.withUnsafeBytes {
                    DenseLinear.forward(
                        $0.baseAddress!, storage: .f16, rows: rows, cols: cols, x: x, m: m, bias: bias,
                        workers: threads, useAVX2: useAVX2)
                }
            case .q8(let q8):
                return q8.forward(x, m: m, threads: threads, bias: bias)
            }
        }
        let blas = m >= options.gemmRows && options.useBLAS ? OpenBLAS.shared : nil
        switch storage {
        case .packed(let p) where m < options.gemmRows:
            return p.forward(x, m: m, path: options.kernel, threads: threads, bias: bias)
        case .dense(let t, let s) where blas == nil:
            // The dense kernel converts f16/bf16 as it streams: run it on the mapped bytes.
            return DenseLinear.forward(
                t.base, storage: s, rows: rows, cols: cols, x: x, m: m, bias: bias, workers: threads, useAVX2: useAVX2)
        case .dense(let t, .f32) where Int(bitPattern: t.base) % MemoryLayout<Float>.alignment == 0:
            // f32 in place: OpenBLAS reads the mapped bytes directly.
            let w = UnsafeBufferPointer(start: t.base.assumingMemoryBound(to: Float.self), count: rows * cols)
            return withBias(blas!.forwardSliced(w, rows: rows, cols: cols, x: x, m: m, threads: threads), m: m)
        default:
            return tiled(x, m: m, threads: threads, blas: blas, useAVX2: useAVX2)
        }
    }

    private func withBias(_ y: [Float], m: Int) -> [Float] {
        guard let bias else { return y }
        var y = y
        for k in 0..<m { for r in 0..<rows { y[k * rows + r] += bias[r] } }
        return y
    }

    /// Rows per tile: at most ~4 MiB of f32 (a whole number of 16-row panels when more than 16),
    /// and small enough that every worker gets one.
    package static func tileRows(rows: Int, cols: Int, workers: Int) -> Int {
        let byBytes = max(1, (1 << 20) / max(cols, 1))
        let perWorker = (rows + max(workers, 1) - 1) / max(workers, 1)
        var n = min(byBytes, perWorker)
        if n > 16 { n = n / 16 * 16 }
        return max(1, min(n, rows))
    }

    /// Runs `body(r0, r1, tile)` on every tile of rows, the tile holding their f32 values, tiles
    /// spread over `threads` workers (each with one scratch tile).
    package func forEachTile(threads: Int, _ body: (Int, Int, UnsafeMutablePointer<Float>) -> Void) {
        let rows = rows, cols = cols
        let tileRows = Self.tileRows(rows: rows, cols: cols, workers: threads)
        let tiles = (rows + tileRows - 1) / tileRows
        let storage = storage
        withoutActuallyEscaping(body) { body in
            let box = UncheckedBox(body)
            parallelRows(tiles, threads: threads) { t0, t1 in
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: tileRows * cols)
                defer { scratch.deallocate() }
                for t in t0..<t1 {
                    let r0 = t * tileRows, r1 = min(rows, r0 + tileRows)
                    storage.fillRows(r0..<r1, into: scratch)
                    box.value(r0, r1, scratch)
                }
            }
        }
    }

    /// y = x·Wᵀ over tiles of W decoded to f32: each tile by a single-threaded OpenBLAS sgemm (or
    /// the dense kernel without BLAS) writing its columns of y.
    private func tiled(_ x: [Float], m: Int, threads: Int, blas: OpenBLAS?, useAVX2: Bool) -> [Float] {
        var y = [Float](repeating: 0, count: m * rows)
        let rows = rows, cols = cols
        let avx = Int32(useAVX2 ? 1 : 0)
        blas?.useOneThread()
        x.withUnsafeBufferPointer { x in
            y.withUnsafeMutableBufferPointer { y in
                let args = UncheckedBox((x.baseAddress!, y.baseAddress!))
                forEachTile(threads: threads) { r0, r1, tile in
                    let (x, y) = args.value
                    if let blas {
                        blas.product(tile, rows: r1 - r0, cols: cols, x: x, m: m, y: y + r0, ldy: rows)
                    } else {
                        any4_dense_gemm(tile, 0, Int32(cols), x, Int32(m), y + r0, Int32(rows), nil, 0, Int32(r1 - r0), avx)
                    }
                }
            }
        }
        return withBias(y, m: m)
    }
}

/// How the weights of a linear layer (or of an embedding) are held while a model runs: as the
/// model file stores them, never widened to a resident f32 copy. Every storage can write the f32
/// values of a range of its rows (``fillRows(_:into:)``), which the batched passes and the
/// embedding lookup use a bounded tile at a time.
package enum WeightStorage: @unchecked Sendable {
    /// f32, f16 or bf16 elements (a plain dtype or ggml F32/F16/BF16) read in place from the model's
    /// memory-mapped file; the small-batch kernel runs on them directly.
    case dense(StoredTensor, DenseLinear.Storage)
    /// Any other decodable storage (ggml blocks, f64, integers): decoded a tile of rows at a time.
    case decoded(StoredTensor)
    /// Quantized in the lookup kernel's layout (packed codes, tables, scales, zeros); batched
    /// passes dequantize tiles from it.
    case packed(PackedLinear)
    /// Quantized in a layout the lookup kernel does not run (8-bit codes, groups that are not a
    /// multiple of 32, ...): the matrix itself, dequantized a tile at a time.
    case matrix(QuantizedMatrix)

    /// A quantized matrix: packed for the lookup kernel when it can run it, else kept as it is.
    package init(_ q: QuantizedMatrix) {
        if let p = try? PackedLinear(q) { self = .packed(p) } else { self = .matrix(q) }
    }

    /// Writes the f32 values of rows `rows` (each `cols` long) to `out`, row-major: the stored
    /// values decoded exactly as `TensorInfo.decode`, or the quantized ones exactly as
    /// `QuantizedMatrix.dequantize`.
    package func fillRows(_ rows: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        switch self {
        case .dense(let t, _), .decoded(let t): t.fillRows(rows, into: out)
        case .packed(let p): p.dequantize(rows: rows, into: out)
        case .matrix(let q): q.dequantize(rows: rows, into: out)
        }
    }

    /// Bytes this storage holds in process memory (not counting the mapped file).
    package var residentBytes: Int {
        switch self {
        case .dense, .decoded: 0
        case .packed(let p): p.storedBytes
        case .matrix(let q): q.residentBytes
        }
    }

    var packedLinear: PackedLinear? {
        if case .packed(let p) = self { return p }
        return nil
    }
}

/// A tensor read in place from its model file, kept alive by holding the file's store.
package struct StoredTensor: @unchecked Sendable {
    package let store: ByteStore
    package let info: TensorInfo

    package init(store: ByteStore, info: TensorInfo) {
        precondition(info.offset >= 0 && info.offset + info.byteCount <= store.count, "tensor outside its file")
        self.store = store
        self.info = info
    }

    var cols: Int { info.rowLength }
    /// The first byte of the tensor's data.
    var base: UnsafeRawPointer { store.bytes.baseAddress! + info.offset }

    func fillRows(_ rows: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        info.decode(from: store, elements: (rows.lowerBound * cols)..<(rows.upperBound * cols), into: out)
    }
}

extension QuantizedMatrix {
    /// Bytes of the arrays the matrix holds.
    var residentBytes: Int { codes.count + (tables.count + scales.count + zeros.count) * 4 }
}
