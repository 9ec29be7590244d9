import Any4Core
import Any4Inference
import Any4Kernels
import Foundation
import XCTest

import TestSupport

/// The engine holds weights as stored (no f32 copy): every storage's products against an f64
/// product of independently decoded weights, whole models against their f32-widened twins, and
/// the process memory a load and a quantization on load take.
final class EngineStorageTests: XCTestCase {
    /// Options for the small-batch path (m = 1) and the batched one (m = 16), with and without BLAS.
    static func optionSets() -> [(String, EngineOptions)] {
        var out: [(String, EngineOptions)] = []
        for blas in [true, false] {
            var o = EngineOptions()
            o.threads = 2
            o.useBLAS = blas
            o.kernel = .exact
            out.append((blas ? "blas" : "no-blas", o))
        }
        return out
    }

    /// ‖y − ref‖∞ / ‖ref‖∞ of one layer's product at m = 1 and m = 16.
    func assertProduct(
        _ layer: Linear, reference w: [Float], tolerance: Double, _ label: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        var rng = SplitMix64(seed: 11)
        for m in [1, 16] {
            let x = (0..<(m * layer.cols)).map { _ in Float(rng.nextGaussian()) }
            let ref = referenceProduct(w, rows: layer.rows, cols: layer.cols, x: x, m: m, bias: layer.bias)
            let scale = ref.map(abs).max()!
            for (name, options) in Self.optionSets() {
                let y = layer.forward(x, m: m, options: options)
                XCTAssertEqual(y.count, m * layer.rows)
                let worst = zip(y, ref).map { abs(Double($0) - $1) }.max()!
                XCTAssertLessThanOrEqual(worst / scale, tolerance, "\(label) m=\(m) \(name)", file: file, line: line)
            }
        }
    }

    /// f32, f16 and bf16 read in place, each against the f64 product of the values it stores.
    func testDenseStoragesMatchReference() throws {
        let rows = 70, cols = 96  // rows not a multiple of the tile's 16-row panels
        var rng = SplitMix64(seed: 3)
        let w = (0..<(rows * cols)).map { _ in Float(rng.nextGaussian()) }
        var entries: [SafeTensorsWriter.Entry] = []
        for dtype in [DType.f32, .f16, .bf16] { entries.append(.init(name: "w_\(dtype.rawValue)", shape: [rows, cols], floats: w, as: dtype)) }
        // An odd-length tensor first puts the others at offsets that are only element-aligned.
        entries.append(.init(name: "a_odd", dtype: .u8, shape: [3], bytes: [1, 2, 3]))
        let model = try Model.inMemory(safetensors: try SafeTensorsWriter.image(entries), name: "dense")
        let loader = WeightLoader(model: model, threads: 2)
        for dtype in [DType.f32, .f16, .bf16] {
            let t = try XCTUnwrap(model.tensor(named: "w_\(dtype.rawValue)"))
            let stored = t.info.decodeAll(from: model.stores[0])
            if dtype != .f32 { XCTAssertNotEqual(stored, w, "\(dtype) rounds") }
            let layer = try loader.linear(t.name, rows: rows, cols: cols)
            XCTAssertEqual(layer.residentBytes, 0, "\(dtype): read in place")
            XCTAssertEqual(layer.decodedWeights(), stored, "\(dtype): fillRows is the stored values")
            assertProduct(layer, reference: stored, tolerance: 1e-5, dtype.rawValue)
        }
    }

    /// Every ggml type the reader decodes, written by Python's gguf package, against
    /// gguf.quants.dequantize's values.
    func testGGMLBlockStoragesMatchReference() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        try Python.run("gguf_fixtures.py", [dir], modules: ["gguf", "numpy"])
        let model = try Model.open(dir + "/blocks.gguf")
        let loader = WeightLoader(model: model, threads: 2)
        var types = Set<String>()
        for t in model.tensors where t.shape.count == 2 {
            let reference = try readFloat32File(dir + "/\(t.name).f32")
            let layer = try loader.linear(t.name, rows: t.shape[0], cols: t.shape[1])
            XCTAssertEqual(layer.decodedWeights(), reference, t.name)
            assertProduct(layer, reference: reference, tolerance: 1e-5, t.name)
            types.insert(t.info.encoding.description)
        }
        XCTAssertTrue(types.isSuperset(of: ["Q8_0", "Q4_0", "Q4_1", "Q6_K", "BF16"]), "\(types)")
    }

    /// Quantized layers: packed (lookup kernel) and unpackable (kept as the matrix), against the
    /// product of `QuantizedMatrix.dequantized()`.
    func testQuantizedStoragesMatchReference() throws {
        let rows = 40, cols = 256
        var rng = SplitMix64(seed: 5)
        let w = (0..<(rows * cols)).map { _ in Float(rng.nextGaussian()) }
        let model = try Model.inMemory(
            safetensors: try SafeTensorsWriter.image([.init(name: "w", shape: [rows, cols], floats: w)]), name: "q")
        for (format, group, packed) in [("any4", 128, true), ("int4", 64, true), ("int8", 128, false), ("any4", 16, false)] {
            var options = QuantizationOptions()
            options.groupSize = group
            let q = try Quantizer.quantize(w, rows: rows, cols: cols, name: "w", format: try FormatRegistry.named(format), options: options)
            let layer = try WeightLoader(model: model, threads: 2).linear("w", rows: rows, cols: cols)
            layer.replace(with: q)
            XCTAssertEqual(layer.packed != nil, packed, "\(format) g\(group)")
            XCTAssertEqual(layer.decodedWeights(), q.dequantized(), "\(format) g\(group)")
            XCTAssertGreaterThan(layer.residentBytes, 0)
            assertProduct(layer, reference: q.dequantized(), tolerance: 1e-5, "\(format) g\(group)")
        }
    }

    // MARK: Whole models

    struct TinyLlama {
        var hidden = 64, layers = 2, heads = 4, kvHeads = 2, intermediate = 128, vocab = 96

        var config: String {
            """
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": \(hidden),
             "num_hidden_layers": \(layers), "num_attention_heads": \(heads), "num_key_value_heads": \(kvHeads),
             "intermediate_size": \(intermediate), "vocab_size": \(vocab), "max_position_embeddings": 64,
             "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true}
            """
        }

        /// Name, shape and the dtype each tensor is stored as (a mix: tied bf16 embedding, f16
        /// attention, f32 output projection, bf16 MLP up, f32 down).
        func tensors() -> [(String, [Int], DType)] {
            let d = hidden, kv = kvHeads * (hidden / heads)
            var out: [(String, [Int], DType)] = [("model.embed_tokens.weight", [vocab, d], .bf16), ("model.norm.weight", [d], .f32)]
            for i in 0..<layers {
                let p = "model.layers.\(i)."
                out += [
                    (p + "input_layernorm.weight", [d], .f32), (p + "post_attention_layernorm.weight", [d], .f32),
                    (p + "self_attn.q_proj.weight", [d, d], .f16), (p + "self_attn.k_proj.weight", [kv, d], .f16),
                    (p + "self_attn.v_proj.weight", [kv, d], .bf16), (p + "self_attn.o_proj.weight", [d, d], .f32),
                    (p + "mlp.gate_proj.weight", [intermediate, d], .bf16), (p + "mlp.up_proj.weight", [intermediate, d], .bf16),
                    (p + "mlp.down_proj.weight", [d, intermediate], .f32)
                ]
            }
            return out
        }

        /// Writes the model to `dir` (stored dtypes as `tensors()`, or all f32 with the same values
        /// when `widened`, or `override`'s f32 values for the tensors it names).
        func write(to dir: String, widened: Bool = false, override: [String: [Float]] = [:]) throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try config.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
            var rng = SplitMix64(seed: 21)
            var entries: [SafeTensorsWriter.Entry] = []
            for (name, shape, dtype) in tensors() {
                let n = shape.reduce(1, *)
                var v = (0..<n).map { _ in Float(rng.nextGaussian()) * (shape.count == 1 ? 0.1 : 0.25) + (shape.count == 1 ? 1 : 0) }
                // The values the dtype holds, so that the widened twin stores exactly them.
                v = v.map {
                    switch dtype {
                    case .f16: Float(Float16($0))
                    case .bf16: Float(bitPattern: UInt32(bfloat16Bits($0)) << 16)
                    default: $0
                    }
                }
                if let o = override[name] {
                    entries.append(.init(name: name, shape: shape, floats: o))
                } else {
                    entries.append(.init(name: name, shape: shape, floats: v, as: widened ? .f32 : dtype))
                }
            }
            try SafeTensorsWriter.write(entries, to: dir + "/model.safetensors")
        }
    }

    static let tokens = [1, 5, 9, 17, 33, 2, 64, 90, 7, 7, 12, 40, 41, 42, 3, 88]

    func logits(_ engine: LlamaEngine, incremental: Bool) throws -> [Float] {
        let cache = try engine.makeCache(capacity: 32)
        if !incremental { return try engine.forward(Self.tokens, cache: cache, logits: .all) }
        return try Self.tokens.flatMap { try engine.forward([$0], cache: cache, logits: .last) }
    }

    func maxRelative(_ a: [Float], _ b: [Float]) -> Double {
        XCTAssertEqual(a.count, b.count)
        let scale = Double(b.map(abs).max()!)
        return zip(a, b).map { Double(abs($0 - $1)) }.max()! / scale
    }

    /// A model of mixed f32/f16/bf16 tensors gives the logits of its f32 twin (same values), at
    /// m = 16 (tiles + GEMM) and m = 1 (the dense kernel on the mapped bytes), with and without BLAS.
    func testMixedDtypeModelMatchesItsF32Twin() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let tiny = TinyLlama()
        try tiny.write(to: dir + "/mixed")
        try tiny.write(to: dir + "/f32", widened: true)
        for (label, options) in Self.optionSets() {
            let mixed = try LlamaEngine(model: try Model.open(dir + "/mixed"), options: options)
            let f32 = try LlamaEngine(model: try Model.open(dir + "/f32"), options: options)
            XCTAssertEqual(mixed.head.formatName, "BF16", "tied head on the embedding as stored")
            for incremental in [false, true] {
                let a = try logits(mixed, incremental: incremental), b = try logits(f32, incremental: incremental)
                XCTAssertLessThanOrEqual(maxRelative(a, b), 1e-5, "\(label) incremental \(incremental)")
            }
            // The two paths agree with each other too.
            XCTAssertLessThanOrEqual(maxRelative(try logits(mixed, incremental: true), try logits(mixed, incremental: false)), 1e-4, label)
        }
    }

    /// Quantizing on load gives the logits of a checkpoint holding the dequantized weights in f32
    /// (what `--fake-quant` writes): the batched passes run the format's exact values.
    func testQuantizationOnLoadMatchesFakeQuantizedTwin() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let tiny = TinyLlama()
        try tiny.write(to: dir + "/mixed")
        var options = EngineOptions()
        options.threads = 2
        options.kernel = .exact
        let engine = try LlamaEngine(model: try Model.open(dir + "/mixed"), options: options)
        var q = QuantizationOptions()
        q.groupSize = 32
        let results = try EngineQuantization.quantize(engine, format: try FormatRegistry.named("any4"), options: q)
        XCTAssertEqual(results.count, 14, "7 linears per block (the tied head is not selected)")
        var fake: [String: [Float]] = [:]
        for l in engine.linears where l.packed != nil {
            // Independently: the quantized matrix the layer was given, dequantized by Core.
            fake[l.name] = l.decodedWeights()
        }
        XCTAssertEqual(fake.count, 14)
        try tiny.write(to: dir + "/fake", override: fake)
        let twin = try LlamaEngine(model: try Model.open(dir + "/fake"), options: options)
        XCTAssertLessThanOrEqual(maxRelative(try logits(engine, incremental: false), try logits(twin, incremental: false)), 1e-5)
        // Decode steps on the exact lookup kernel: the same up to rounding.
        XCTAssertLessThanOrEqual(maxRelative(try logits(engine, incremental: true), try logits(twin, incremental: false)), 1e-4)
    }

    /// The q8 decode copy of the tied bf16 head (built a tile of rows at a time): decode-step logits
    /// within int8 rounding of the head as stored, the prompt pass untouched, and its bytes counted.
    func testQ8HeadCopyServesDecodeStepsOnly() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let tiny = TinyLlama()
        try tiny.write(to: dir + "/mixed")
        var options = EngineOptions()
        options.threads = 2
        let stored = try LlamaEngine(model: try Model.open(dir + "/mixed"), options: options)
        options.decodeHead = .q8
        let q8 = try LlamaEngine(model: try Model.open(dir + "/mixed"), options: options)
        XCTAssertEqual(try logits(q8, incremental: false), try logits(stored, incremental: false), "prompt passes use the head as stored")
        let a = try logits(q8, incremental: true), b = try logits(stored, incremental: true)
        XCTAssertNotEqual(a, b, "decode steps use the q8 copy")
        XCTAssertLessThanOrEqual(maxRelative(a, b), 2e-2)
        XCTAssertEqual(q8.head.residentBytes, tiny.vocab * tiny.hidden + tiny.vocab * tiny.hidden / 32 * 4)
        XCTAssertEqual(stored.head.residentBytes, 0, "the bf16 head is read in place")
    }

    /// The bytes a decode step reads (`run --json`'s bytes_per_token) add up, computed here from
    /// the tensor shapes and dtypes alone: each weight matrix as stored, then packed after any4 on
    /// load (codes at half a byte per weight plus what the fast path reads per row and group), one
    /// embedding row, and the f32 keys and values of every cached position.
    func testDecodeStepBytesCountWeightsEmbeddingRowAndCache() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let tiny = TinyLlama()
        try tiny.write(to: dir + "/mixed")
        var options = EngineOptions()
        options.threads = 2
        let engine = try LlamaEngine(model: try Model.open(dir + "/mixed"), options: options)
        let kvWidth = tiny.kvHeads * (tiny.hidden / tiny.heads)
        func size(_ d: DType) -> Int { d == .f32 ? 4 : 2 }
        var stored = 0
        for (name, shape, dtype) in tiny.tensors() where shape.count == 2 && name != "model.embed_tokens.weight" {
            stored += shape[0] * shape[1] * size(dtype)
        }
        let head = tiny.vocab * tiny.hidden * 2  // tied: the bf16 embedding read in place
        let row = tiny.hidden * 2
        func cache(_ p: Int) -> Int { 2 * tiny.layers * (p + 1) * kvWidth * 4 }
        XCTAssertEqual(engine.decodeStepBytes(position: 0), stored + head + row + cache(0))
        XCTAssertEqual(engine.decodeStepBytes(position: 9), stored + head + row + cache(9))

        var q = QuantizationOptions()
        q.groupSize = 32
        _ = try EngineQuantization.quantize(engine, format: try FormatRegistry.named("any4"), options: q)
        var packed = 0
        for (name, shape, _) in tiny.tensors() where shape.count == 2 && name.contains("layers.") {
            let (rows, cols) = (shape[0], shape[1])
            let groups = rows * ((cols + 31) / 32)
            // Codes (4 bits), an int8 table + its f32 scale per row, f16 scales and zeros per group,
            // and a per-row f32 factor for each of the f16 scales and zeros (the fast path's layout).
            let layer = try XCTUnwrap(engine.linears.first { $0.name == name }?.packed, name)
            packed += layer.streamedBytes(.fast)
            XCTAssertEqual(layer.streamedBytes(.fast), rows * cols / 2 + rows * (16 + 4) + groups * (2 + 2) + rows * 2 * 4, name)
        }
        XCTAssertEqual(engine.decodeStepBytes(position: 3), packed + head + row + cache(3))
        XCTAssertLessThan(
            packed, stored / 2, "4-bit codes with their per-row and per-group overhead at 64-wide rows: under half the 16/32-bit weights")
    }

    /// A quantized checkpoint (the any4 layers' parts in safetensors) loads its layers packed for
    /// the lookup kernel and gives the logits of the same matrices swapped in on load.
    func testQuantizedCheckpointLoadsPacked() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let tiny = TinyLlama()
        try tiny.write(to: dir + "/mixed")
        let source = try Model.open(dir + "/mixed")
        var q = QuantizationOptions()
        q.groupSize = 32
        let format = try FormatRegistry.named("any4")
        var matrices: [String: QuantizedMatrix] = [:]
        for t in source.tensors where t.isLinear && t.name.contains("layers.") {
            matrices[t.name] = try XCTUnwrap(ModelQuantization.quantize(t, of: source, format: format, options: q).matrix)
        }
        XCTAssertEqual(matrices.count, 14)
        try FileManager.default.createDirectory(atPath: dir + "/ckpt", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: dir + "/mixed/config.json", toPath: dir + "/ckpt/config.json")
        try QuantizedCheckpoint.write(
            model: source, quantized: matrices, description: .init(format: format, options: q), fakeQuant: false,
            to: dir + "/ckpt/model.safetensors")
        var options = EngineOptions()
        options.threads = 2
        options.kernel = .exact
        let loaded = try LlamaEngine(model: try Model.open(dir + "/ckpt"), options: options)
        let swapped = try LlamaEngine(model: source, options: options)
        for l in swapped.linears { if let m = matrices[l.name] { l.replace(with: m) } }
        for l in loaded.linears where l.name.contains("layers.") {
            XCTAssertNotNil(l.packed, l.name)
            XCTAssertEqual(l.formatName, "any4", l.name)
            XCTAssertEqual(l.decodedWeights(), matrices[l.name]!.dequantized(), l.name)
        }
        for incremental in [false, true] {
            XCTAssertLessThanOrEqual(
                maxRelative(try logits(loaded, incremental: incremental), try logits(swapped, incremental: incremental)), 1e-6,
                "incremental \(incremental)")
        }
    }

    /// Loading a quantized layer checks its values are finite from its tables and scales alone when
    /// they bound every value, and scans the values otherwise: a checkpoint whose table holds an
    /// infinity, or whose scale makes a product overflow to one, is refused naming the layer.
    func testQuantizedLayersAreCheckedFiniteByTheirBoundOrByAScan() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let tiny = TinyLlama()
        try tiny.write(to: dir + "/mixed")
        let source = try Model.open(dir + "/mixed")
        var q = QuantizationOptions()
        q.groupSize = 32
        let format = try FormatRegistry.named("any4")
        let name = "model.layers.1.mlp.down_proj.weight"  // stored f32: its tables and scales are f32
        let t = try XCTUnwrap(source.tensor(named: name))
        let good = try XCTUnwrap(ModelQuantization.quantize(t, of: source, format: format, options: q).matrix)
        XCTAssertTrue(good.valuesProvablyFinite)
        var infinite = good
        infinite.tables[3 * 16 + 5] = .infinity
        XCTAssertFalse(infinite.valuesProvablyFinite)
        // Finite parts whose product overflows: not proven, and the values do hold an infinity.
        var overflow = good
        overflow.scales[7] = Float.greatestFiniteMagnitude / 2
        XCTAssertFalse(overflow.valuesProvablyFinite)
        XCTAssertTrue(overflow.dequantized().contains { !$0.isFinite })
        for (label, matrix) in [("table", infinite), ("overflow", overflow)] {
            let out = dir + "/" + label
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: dir + "/mixed/config.json", toPath: out + "/config.json")
            try QuantizedCheckpoint.write(
                model: source, quantized: [name: matrix], description: .init(format: format, options: q), fakeQuant: false,
                to: out + "/model.safetensors")
            XCTAssertThrowsError(try LlamaEngine(model: try Model.open(out))) { error in
                XCTAssertTrue("\(error)".contains(name) && "\(error)".contains("non-finite"), "\(label): \(error)")
            }
        }
    }

    // MARK: Memory

    static func rssAnon() throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("RssAnon:") }),
            let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { throw XCTSkip("no RssAnon in /proc/self/status") }
        return kb * 1024
    }

    /// A model of 72 MB of bf16 weights loads and runs a 16-token pass with far less anonymous
    /// memory than its 144 MB of f32: scratch, KV cache and norms only; quantized to any4 on load
    /// it holds its codes, tables and scales.
    func testLoadAndQuantizeTakeBoundedAnonymousMemory() throws {
        guard FileManager.default.fileExists(atPath: "/proc/self/status") else { throw XCTSkip("needs /proc") }
        let dir = try TestPaths.temporaryDirectory(for: self)
        var tiny = TinyLlama()
        (tiny.hidden, tiny.layers, tiny.heads, tiny.kvHeads, tiny.intermediate, tiny.vocab) = (1024, 4, 8, 4, 2816, 8192)
        let tensors = tiny.tensors()
        // All bf16, written without holding them twice.
        var entries: [SafeTensorsWriter.Entry] = []
        var rng = SplitMix64(seed: 1)
        var params = 0, widestLinear = 0
        for (name, shape, _) in tensors {
            let n = shape.reduce(1, *)
            if shape.count == 2 {
                params += n
                if !name.contains("embed") { widestLinear = max(widestLinear, n) }
            }
            var bytes = [UInt8](repeating: 0, count: n * 2)
            for i in 0..<n {
                let v = shape.count == 1 ? 1 : Float(rng.nextGaussian()) * 0.02
                let b = bfloat16Bits(v)
                bytes[2 * i] = UInt8(b & 0xFF)
                bytes[2 * i + 1] = UInt8(b >> 8)
            }
            entries.append(.init(name: name, dtype: .bf16, shape: shape, bytes: bytes))
        }
        XCTAssertGreaterThanOrEqual(params * 2, 64 << 20, "at least 64 MB of bf16 weights")
        try FileManager.default.createDirectory(atPath: dir + "/big", withIntermediateDirectories: true)
        try tiny.config.write(toFile: dir + "/big/config.json", atomically: true, encoding: .utf8)
        try SafeTensorsWriter.write(entries, to: dir + "/big/model.safetensors")
        entries = []

        var options = EngineOptions()
        options.threads = 2
        let before = try Self.rssAnon()
        let engine = try LlamaEngine(model: try Model.open(dir + "/big"), options: options)
        let cache = try engine.makeCache(capacity: 16)
        _ = try engine.forward(Array(0..<16), cache: cache, logits: .last)
        let loaded = try Self.rssAnon() - before
        let kv = 2 * tiny.layers * 16 * (tiny.kvHeads * tiny.hidden / tiny.heads) * 4
        let tiles = options.threads * (4 << 20)
        let slack = 24 << 20
        let bound = 16 * tiny.hidden * 4 + widestLinear * 4 + tiles + kv + slack
        XCTAssertLessThan(loaded, bound, "anonymous memory after load + 16 tokens: \(loaded) bytes (f32 weights would be \(params * 4))")
        XCTAssertLessThan(bound, params * 4 / 2, "the bound is meaningful")

        var q = QuantizationOptions()
        q.threads = 2
        let results = try EngineQuantization.quantize(engine, format: try FormatRegistry.named("any4"), options: q)
        XCTAssertEqual(results.count, 7 * tiny.layers)
        cache.reset()
        _ = try engine.forward(Array(0..<16), cache: cache, logits: .last)
        let quantized = try Self.rssAnon() - before
        let quantizedParams = params - tiny.vocab * tiny.hidden
        // Packed codes (½ byte) + per-128 scales in f32 and f16 + per-row tables (16 × f32 twice —
        // the kernel's and the dequantization's —, 16 × int8, scales) per weight row, plus each
        // layer's codes rounded up to whole 2 MiB huge pages.
        let packedLayers = engine.linears.filter { $0.packed != nil }
        let rowsTotal = packedLayers.reduce(0) { $0 + $1.rows }
        let held = quantizedParams / 2 + quantizedParams / 128 * 6 + rowsTotal * (2 * 16 * 4 + 16 + 8) + packedLayers.count * (2 << 20)
        let quantizedBound = held + 2 * widestLinear * 4 + tiles + kv + slack
        print(
            "EngineStorageTests: RssAnon +\(loaded >> 20) MiB after load and 16 tokens (bound \(bound >> 20) MiB), +\(quantized >> 20) MiB after any4 (bound \(quantizedBound >> 20) MiB); f32 weights \((params * 4) >> 20) MiB"
        )
        XCTAssertLessThan(quantized, quantizedBound, "anonymous memory after any4 on load: \(quantized) bytes")
        XCTAssertLessThan(quantized, params * 4, "less than the f32 weights")
    }
}
