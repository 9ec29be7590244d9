import Any4Core
import Any4Kernels
import CAny4Kernels

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads a model's tensors by name for the inference engine, with errors that name the file and
/// the tensor that is missing or misshapen. Matrices are not decoded: they are held as stored
/// (read in place from the mapped file) or, for a quantized checkpoint, as their quantized form.
package struct WeightLoader {
    let model: Model
    /// Advanced by each tensor's elements as it is loaded (and checked); cancels the load.
    let progress: Progress?
    /// Workers for the finiteness scan.
    let threads: Int
    /// Import GGUF Q4_0/Q4_1 matrices into the lookup kernel's layout (else decode tiles of them).
    let packBlocks: Bool

    package init(model: Model, progress: Progress? = nil, threads: Int = 0, packBlocks: Bool = true) {
        self.model = model
        self.progress = progress
        self.threads = threads > 0 ? threads : SystemInfo.processorCount
        self.packBlocks = packBlocks
    }

    func has(_ name: String) -> Bool { model.tensor(named: name) != nil }

    func tensor(_ name: String) throws -> ModelTensor {
        guard let t = model.tensor(named: name) else {
            throw FileFormatError(file: model.path, kind: .badShape, "the model has no tensor of this name", subject: name)
        }
        return t
    }

    private func checked(_ name: String, shape: [Int]) throws -> ModelTensor {
        if progress?.isCancelled == true { throw QuantizationError.cancelled }
        let t = try tensor(name)
        guard t.shape == shape else {
            throw FileFormatError(
                file: model.path, kind: .badShape,
                "shape \(t.shape) where the model's configuration implies \(shape)", subject: name)
        }
        try model.checkDecodable(t)
        return t
    }

    private func nonFinite(_ name: String, value: Float, at index: Int) -> FileFormatError {
        FileFormatError(file: model.path, kind: .badShape, "non-finite value \(value) at element \(index)", subject: name)
    }

    /// A (small) tensor's values in f32, checked against the expected shape: norm vectors, biases.
    func values(_ name: String, shape: [Int]) throws -> [Float] {
        let t = try checked(name, shape: shape)
        let v = try model.decode(t)
        if let bad = v.firstIndex(where: { !$0.isFinite }) { throw nonFinite(name, value: v[bad], at: bad) }
        progress?.advance(by: t.info.elementCount)
        return v
    }

    /// How the engine holds a [rows, cols] tensor: in place for f32/f16/bf16, decoded by tiles for
    /// other storages. Every value is checked finite: for a quantized layer by its tables and scales
    /// when they bound every value (``QuantizedMatrix/valuesProvablyFinite``), else a tile at a
    /// time (nothing kept).
    package func storage(_ name: String, rows: Int, cols: Int) throws -> WeightStorage {
        let t = try checked(name, shape: [rows, cols])
        let storage: WeightStorage
        if let q = try model.quantizedMatrix(t) {
            // A quantized checkpoint's layer: packed for the lookup kernel (or kept as the matrix),
            // checked before packing (the kernel's int8 table cannot hold a non-finite entry).
            if !q.valuesProvablyFinite { try checkFinite(name, .matrix(q), rows: rows, cols: cols) }
            storage = WeightStorage(q)
        } else if packBlocks, case .ggml(let type) = t.info.encoding, GGMLBlockImport.types.contains(type),
            let q = try? GGMLBlockImport.quantizedMatrix(t, of: model)
        {
            // GGUF Q4_0/Q4_1 blocks, imported exactly: the lookup kernel runs them.
            if !q.valuesProvablyFinite { try checkFinite(name, .matrix(q), rows: rows, cols: cols) }
            storage = WeightStorage(q)
        } else {
            let stored = StoredTensor(store: model.stores[t.fileIndex], info: t.info)
            switch t.info.encoding {
            case .plain(.f32), .ggml(.f32): storage = .dense(stored, .f32)
            case .plain(.f16), .ggml(.f16): storage = .dense(stored, .f16)
            case .plain(.bf16), .ggml(.bf16): storage = .dense(stored, .bf16)
            default: storage = .decoded(stored)
            }
            try checkFinite(name, storage, rows: rows, cols: cols)
        }
        progress?.advance(by: t.info.elementCount)
        return storage
    }

    /// Scans every value of `storage` a tile at a time; throws naming the first non-finite one.
    private func checkFinite(_ name: String, _ storage: WeightStorage, rows: Int, cols: Int) throws {
        let probe = Linear(name: name, storage: storage, rows: rows, cols: cols, bias: nil, formatName: "", bitsPerWeight: 0)
        let tileRows = Linear.tileRows(rows: rows, cols: cols, workers: threads)
        var firstBad = [Int](repeating: Int.max, count: (rows + tileRows - 1) / tileRows)
        var badValue = [Float](repeating: 0, count: firstBad.count)
        firstBad.withUnsafeMutableBufferPointer { bad in
            badValue.withUnsafeMutableBufferPointer { value in
                let out = UncheckedBox((bad.baseAddress!, value.baseAddress!))
                probe.forEachTile(threads: threads) { r0, r1, tile in
                    let n = (r1 - r0) * cols
                    for i in 0..<n where !tile[i].isFinite {
                        out.value.0[r0 / tileRows] = r0 * cols + i
                        out.value.1[r0 / tileRows] = tile[i]
                        break
                    }
                }
            }
        }
        if let slot = firstBad.indices.first(where: { firstBad[$0] != Int.max }) {
            throw nonFinite(name, value: badValue[slot], at: firstBad[slot])
        }
    }

    /// A tensor an engine is going to load, and the shape its configuration implies.
    struct Planned {
        var name: String
        var shape: [Int]
        var optional: Bool
        init(_ name: String, _ shape: [Int], optional: Bool = false) {
            self.name = name
            self.shape = shape
            self.optional = optional
        }
    }

    /// Process memory a tensor takes once loaded: vectors are decoded to f32; matrices are read in
    /// place from the mapped file (nothing), a quantized layer holds its parts.
    static func residentBytes(_ t: ModelTensor) throws -> Int {
        if t.shape.count <= 1 { return try Sizes.product([t.info.elementCount, 4], "\(t.name): f32 bytes") }
        if case .plain = t.info.encoding { return 0 }
        if case .ggml = t.info.encoding { return 0 }
        // A quantized layer: its parts (the packed layer holds the codes and small tables).
        return t.info.byteCount
    }

    /// Checks, before anything is loaded, that every planned tensor is there (unless optional)
    /// with its shape and a decodable type, and that what loading allocates — vectors in f32,
    /// quantized layers, one tile of f32 per worker — fits in the memory the machine can give: a
    /// mismatch anywhere in the model is found before any work.
    func check(_ plan: [Planned], for engine: String) throws {
        var bytes = 0
        var widest = 0
        for p in plan {
            guard let t = model.tensor(named: p.name) else {
                if p.optional { continue }
                throw FileFormatError(file: model.path, kind: .badShape, "the model has no tensor of this name", subject: p.name)
            }
            guard t.shape == p.shape else {
                throw FileFormatError(
                    file: model.path, kind: .badShape,
                    "shape \(t.shape) where the model's configuration implies \(p.shape)", subject: p.name)
            }
            try model.checkDecodable(t)
            bytes = try Sizes.sum([bytes, try Self.residentBytes(t)], "resident weights")
            widest = max(widest, t.info.rowLength)
        }
        // One tile per worker (≤ 4 MiB, or one row of the widest matrix).
        let tile = try Sizes.product([threads, max(1 << 20, widest), 4], "tile scratch")
        bytes = try Sizes.sum([bytes, tile], "resident weights and tiles")
        progress?.reset(
            total: plan.reduce(0) { $0 + (model.tensor(named: $1.name)?.info.elementCount ?? 0) },
            label: "loading \(engine)")
        try MemoryBudget.check(bytes, for: "loading \(model.path) into \(engine) (\(plan.count) tensors, matrices as stored)")
    }

    func optionalValues(_ name: String, shape: [Int]) throws -> [Float]? {
        has(name) ? try values(name, shape: shape) : nil
    }

    package func linear(_ name: String, rows: Int, cols: Int, bias: String? = nil) throws -> Linear {
        let s = try storage(name, rows: rows, cols: cols)
        let b = try bias.flatMap { try optionalValues($0, shape: [rows]) }
        let t = try tensor(name)
        let format = t.info.encoding.quantizedLayout?.format ?? t.info.encoding.description
        return Linear(
            name: name, storage: s, rows: rows, cols: cols, bias: b, formatName: format,
            bitsPerWeight: t.info.encoding.bitsPerElement)
    }
}

/// The elementwise and attention pieces of the forward passes, on [m, n] row-major activations.
enum Ops {
    /// RMS norm of each of m rows; 16 rows or more spread over `threads` (each row as one thread
    /// would do it).
    static func rmsNorm(_ x: inout [Float], m: Int, weight: [Float], eps: Float, threads: Int = 1) {
        let n = weight.count
        x.withUnsafeMutableBufferPointer { x in
            weight.withUnsafeBufferPointer { w in
                let args = UncheckedBox((x.baseAddress!, w.baseAddress!))
                parallelRows(m, threads: m >= 16 ? threads : 1) { k0, k1 in
                    let (x, w) = args.value
                    for k in k0..<k1 {
                        let row = x + k * n
                        var ss: Float = 0
                        for i in 0..<n { ss += row[i] * row[i] }
                        let inv = 1 / (ss / Float(n) + eps).squareRoot()
                        for i in 0..<n { row[i] = row[i] * inv * w[i] }
                    }
                }
            }
        }
    }

    static func layerNorm(_ x: inout [Float], m: Int, weight: [Float], bias: [Float], eps: Float) {
        let n = weight.count
        x.withUnsafeMutableBufferPointer { x in
            for k in 0..<m {
                let row = x.baseAddress! + k * n
                var mean: Float = 0
                for i in 0..<n { mean += row[i] }
                mean /= Float(n)
                var v: Float = 0
                for i in 0..<n {
                    let d = row[i] - mean
                    v += d * d
                }
                let inv = 1 / (v / Float(n) + eps).squareRoot()
                for i in 0..<n { row[i] = (row[i] - mean) * inv * weight[i] + bias[i] }
            }
        }
    }

    static func add(_ x: inout [Float], _ y: [Float]) {
        precondition(x.count == y.count)
        for i in 0..<x.count { x[i] += y[i] }
    }

    /// gate ← silu(gate) · up
    /// gate ← silu(gate) · up, element by element; a prompt pass's (16K elements or more) spread
    /// over `threads` in chunks (the same operations per element: the result does not depend on it).
    static func swiglu(_ gate: inout [Float], _ up: [Float], threads: Int = 1) {
        let n = gate.count
        gate.withUnsafeMutableBufferPointer { g in
            up.withUnsafeBufferPointer { u in
                let args = UncheckedBox((g.baseAddress!, u.baseAddress!))
                // A decode step's 1536-8192 values are worth two threads too (an expf each: 5-7 µs
                // for SmolLM2's 1536 on one core); the same value per element either way.
                let chunk = n >= 16384 ? 4096 : 256, chunks = (n + chunk - 1) / chunk
                parallelRows(chunks, threads: n >= 1024 ? threads : 1) { c0, c1 in
                    let (g, u) = args.value
                    for i in (c0 * chunk)..<min(n, c1 * chunk) {
                        let v = g[i]
                        g[i] = v / (1 + expf(-v)) * u[i]
                    }
                }
            }
        }
    }

    /// The exact (erf) GELU, as BERT uses.
    static func gelu(_ x: inout [Float]) {
        for i in 0..<x.count {
            let v = x[i]
            x[i] = 0.5 * v * (1 + erff(v * 0.70710678118654752))
        }
    }

    /// Causal (or full) multi-head attention with grouped-query heads.
    ///
    /// - q: [m, heads·hd] for the m query positions p0 ..< p0+m.
    /// - keys, values: [n, kvHeads·hd] rows for positions 0 ..< n (n ≥ p0 + m when causal).
    /// - Returns [m, heads·hd].
    /// - kvF16: keys and values are f16 (`UInt16` bit patterns), else f32.
    static func attention(
        q: [Float], m: Int, keys: UnsafeRawPointer, values: UnsafeRawPointer, kvF16: Bool = false, n: Int,
        heads: Int, kvHeads: Int, headDim hd: Int, causalFrom p0: Int?, threads: Int
    ) -> [Float] {
        var out = [Float](repeating: 0, count: m * heads * hd)
        let qDim = heads * hd, kvDim = kvHeads * hd, group = heads / kvHeads
        let scale = 1 / Float(hd).squareRoot()
        let avx = Int32(CPUFeatures.hasAVX2 ? 1 : 0)
        q.withUnsafeBufferPointer { q in
            out.withUnsafeMutableBufferPointer { out in
                let args = UncheckedBox((q.baseAddress!, out.baseAddress!, keys, values))
                // Work items are (position, head) pairs.
                parallelRows(m * heads, threads: m * heads >= 4 * threads ? threads : 1) { start, end in
                    let (q, out, keys, values) = args.value
                    var scratch = [Float](repeating: 0, count: n)
                    scratch.withUnsafeMutableBufferPointer { scratch in
                        for item in start..<end {
                            // Pair early and late positions so that contiguous ranges of
                            // items carry equal causal work.
                            let pair = item / heads, h = item % heads, kvh = h / group
                            let t = pair % 2 == 0 ? pair / 2 : m - 1 - pair / 2
                            let visible = p0.map { $0 + t + 1 } ?? n
                            if kvF16 {
                                let (k, v) = (keys.assumingMemoryBound(to: UInt16.self), values.assumingMemoryBound(to: UInt16.self))
                                any4_attend_f16(
                                    q + t * qDim + h * hd, k + kvh * hd, Int32(kvDim), v + kvh * hd, Int32(kvDim),
                                    Int32(visible), Int32(hd), scale, scratch.baseAddress, out + t * qDim + h * hd, avx)
                            } else {
                                let (k, v) = (keys.assumingMemoryBound(to: Float.self), values.assumingMemoryBound(to: Float.self))
                                any4_attend(
                                    q + t * qDim + h * hd, k + kvh * hd, Int32(kvDim), v + kvh * hd, Int32(kvDim),
                                    Int32(visible), Int32(hd), scale, scratch.baseAddress, out + t * qDim + h * hd, avx)
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

/// Rotary position embedding: frequencies (with Llama-3 or linear scaling) and the two pairings.
struct Rope {
    enum Pairing {
        /// (x[2i], x[2i+1]): GGML's "normal" rope, used by GGUF Llama files (the converter
        /// permutes q and k to it).
        case adjacent
        /// (x[i], x[i+d/2]): Hugging Face's rotate_half, also GGUF Qwen2's "neox" rope.
        case halves
    }

    let pairing: Pairing
    /// Rotated dimensions per head (≤ head dim).
    let dims: Int
    /// Angle per position for each pair: inverse frequencies.
    let inverseFrequencies: [Double]
    /// Positions are divided by this (linear scaling).
    let positionScale: Double

    init(pairing: Pairing, dims: Int, theta: Double, frequencyFactors: [Float]? = nil, positionScale: Double = 1) {
        self.pairing = pairing
        self.dims = dims
        var f = [Double]()
        for i in 0..<(dims / 2) {
            var inv = 1 / pow(theta, Double(2 * i) / Double(dims))
            if let factors = frequencyFactors { inv /= Double(factors[i]) }
            f.append(inv)
        }
        inverseFrequencies = f
        self.positionScale = positionScale
    }

    /// Llama 3's frequency factors (HF `rope_scaling.rope_type == "llama3"`).
    static func llama3Factors(dims: Int, theta: Double, factor: Double, low: Double, high: Double, original: Double) -> [Float] {
        (0..<(dims / 2)).map { i in
            let inv = 1 / pow(theta, Double(2 * i) / Double(dims))
            let wavelength = 2 * Double.pi / inv
            let lowWave = original / low, highWave = original / high
            if wavelength < highWave { return 1 }
            if wavelength > lowWave { return Float(factor) }
            let smooth = (original / wavelength - low) / (high - low)
            // inv_new = (1 - smooth)·inv/factor + smooth·inv  → factor_eff = 1 / ((1 - smooth)/factor + smooth)
            return Float(1 / ((1 - smooth) / factor + smooth))
        }
    }

    /// The cosines and sines of m positions' angles, [m, dims / 2] each: computed once per
    /// forward pass and used by every block (q and k).
    struct Angles {
        var cosines: [Float]
        var sines: [Float]
    }

    /// The angles of positions p0 ..< p0 + m.
    func angles(p0: Int, m: Int) -> Angles {
        let half = dims / 2
        var a = Angles(cosines: [Float](repeating: 0, count: m * half), sines: [Float](repeating: 0, count: m * half))
        for t in 0..<m {
            let pos = Double(p0 + t) / positionScale
            for i in 0..<half {
                let angle = pos * inverseFrequencies[i]
                a.cosines[t * half + i] = Float(cos(angle))
                a.sines[t * half + i] = Float(sin(angle))
            }
        }
        return a
    }

    /// Rotates `heads` heads of width `hd` in each of m rows of x ([m, heads·hd]), row t by the
    /// angles of its position (row t of `angles`).
    /// Rotates m positions' heads; 16 positions or more spread over `threads` (the same operations).
    func apply(_ x: inout [Float], m: Int, heads: Int, headDim hd: Int, angles: Angles, threads: Int = 1) {
        let half = dims / 2
        precondition(angles.cosines.count == m * half, "angles for \(angles.cosines.count / max(half, 1)) positions, not \(m)")
        let adjacent = pairing == .adjacent
        x.withUnsafeMutableBufferPointer { x in
            angles.cosines.withUnsafeBufferPointer { cosines in
                angles.sines.withUnsafeBufferPointer { sines in
                    let args = UncheckedBox((x.baseAddress!, cosines.baseAddress!, sines.baseAddress!))
                    parallelRows(m, threads: m >= 16 ? threads : 1) { t0, t1 in
                        let (x, cosines, sines) = args.value
                        for t in t0..<t1 {
                            let c = cosines + t * half, s = sines + t * half
                            for h in 0..<heads {
                                let v = x + t * heads * hd + h * hd
                                for i in 0..<half {
                                    let (j0, j1) = adjacent ? (2 * i, 2 * i + 1) : (i, i + half)
                                    let a = v[j0], b = v[j1]
                                    v[j0] = a * c[i] - b * s[i]
                                    v[j1] = a * s[i] + b * c[i]
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
