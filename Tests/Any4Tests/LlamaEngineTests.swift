import Any4Core
import Any4Inference
import Any4Kernels
import Foundation
import XCTest

import TestSupport

/// The decoder against an independent float64 numpy forward pass over the same GGUF tensors
/// (Tests/Python/reference_llama.py, dequantized by the `gguf` package).
final class LlamaEngineTests: XCTestCase {
    /// "Once upon a time, there was a little girl who" in SmolLM2's vocabulary.
    static let prompt = [6403, 1980, 253, 655, 28, 665, 436, 253, 1838, 8180, 617]

    func engine(threads: Int = 0) throws -> LlamaEngine {
        var options = EngineOptions()
        options.threads = threads
        return try LlamaEngine(model: try Model.open(try TestPaths.requireModel(TestPaths.smolLM2)), options: options)
    }

    /// SmolLM2's head is Q8_0: with the q8 decode copy asked for, the prompt pass's last row runs
    /// on the copy (the same blocks) through the dense kernel, and its logits are bit for bit those
    /// of the head as held (decoded to f32 a tile at a time), at 1 and 2 threads; decode steps then
    /// use the copy's int8 path, which differs.
    func testPromptRowOnTheQ8CopyEqualsTheHeadAsHeld() throws {
        for threads in [1, 2] {
            var options = EngineOptions()
            options.threads = threads
            let model = try Model.open(try TestPaths.requireModel(TestPaths.smolLM2))
            let held = try LlamaEngine(model: model, options: options)
            options.decodeHead = .q8
            let copy = try LlamaEngine(model: model, options: options)
            let a = try held.forward(Self.prompt, cache: try held.makeCache(capacity: 32))
            XCTAssertEqual(copy.head.residentBytes, 0, "no copy before the first logits")
            let cache = try copy.makeCache(capacity: 32)
            let b = try copy.forward(Self.prompt, cache: cache)
            XCTAssertGreaterThan(copy.head.residentBytes, 0, "the prompt's last row made the q8 copy")
            XCTAssertEqual(a.count, 49152)
            XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "threads=\(threads)")
            let next = try copy.forward([1], cache: cache),
                heldNext = try held.forward(
                    [1],
                    cache: try {
                        let c = try held.makeCache(capacity: 32)
                        _ = try held.forward(Self.prompt, cache: c)
                        return c
                    }())
            XCTAssertNotEqual(next.map(\.bitPattern), heldNext.map(\.bitPattern), "a decode step uses the int8 path")
        }
    }

    /// Logits of every position, the greedy continuation and the perplexity window all checked
    /// against one reference run over the prompt and our continuation (32 tokens).
    func testLogitsGreedyAndPerplexityMatchNumpyReference() throws {
        let engine = try engine()
        let generated = try Generation.greedy(engine, prompt: Self.prompt, count: 21).tokens
        XCTAssertEqual(generated.count, 21)
        let sequence = Self.prompt + generated
        XCTAssertEqual(sequence.count, 32)

        let dir = try TestPaths.temporaryDirectory(for: self)
        let idsPath = dir + "/ids.json", outPath = dir + "/logits.bin"
        try "[\(sequence.map(String.init).joined(separator: ","))]".write(toFile: idsPath, atomically: true, encoding: .utf8)
        try Python.run("reference_llama.py", [TestPaths.smolLM2, idsPath, outPath], modules: ["numpy", "gguf"])
        let reference = try readFloat32File(outPath)
        let vocab = engine.config.vocab
        XCTAssertEqual(reference.count, sequence.count * vocab)

        // (a) Logits of every position, one batch pass (the GEMM path), max relative error ≤ 1e-3.
        let ours = try engine.forward(sequence, cache: engine.makeCache(capacity: 32), logits: .all)
        var worst = 0.0
        for t in 0..<sequence.count {
            let a = ours[(t * vocab)..<((t + 1) * vocab)], r = reference[(t * vocab)..<((t + 1) * vocab)]
            let scale = Double(r.map(abs).max()!)
            let diff = zip(a, r).map { Double(abs($0 - $1)) }.max()!
            worst = max(worst, diff / scale)
        }
        XCTAssertLessThanOrEqual(worst, 1e-3, "max relative logit error over \(sequence.count) positions")

        // (b) Each generated token is the reference's argmax given the tokens before it (unless the
        // reference's top two are within 1e-3 of each other, where rounding may pick either).
        for (j, token) in generated.enumerated() {
            let t = Self.prompt.count - 1 + j
            let row = Array(reference[(t * vocab)..<((t + 1) * vocab)])
            let sorted = row.enumerated().sorted { $0.element > $1.element }
            if sorted[0].element - sorted[1].element < 1e-3 { continue }
            XCTAssertEqual(token, sorted[0].offset, "generated token \(j) is not the reference's argmax")
        }

        // (c) One perplexity window of 32 scores positions 16..<31, as llama.cpp does.
        let ppl = try Perplexity.measure(engine, tokens: sequence, ctx: 32, bos: nil)
        var nll = 0.0
        for j in 16..<31 {
            nll += reference.withUnsafeBufferPointer {
                Perplexity.negativeLogLikelihood($0.baseAddress! + j * vocab, vocab, sequence[j + 1])
            }
        }
        XCTAssertEqual(ppl.tokens, 15)
        XCTAssertEqual(ppl.chunks, 1)
        XCTAssertEqual(ppl.ppl, exp(nll / 15), accuracy: exp(nll / 15) * 1e-3)
    }

    /// Decoding one token at a time through the KV cache (the small-batch kernels) gives the
    /// logits of the batch pass (the GEMM path), and greedy decoding is the same run to run and
    /// with one thread or two.
    /// (SmolLM2's Q4_1 layers load packed for the lookup kernel: its exact path, f32 activations,
    /// is what matches the GEMM; the fast path's int8 activations are checked in the next test.)
    func testIncrementalDecodingMatchesBatchAndIsDeterministic() throws {
        let engine = try engine()
        engine.options.kernel = .exact
        let sequence = Self.prompt + [6403, 1980]
        let batch = try engine.forward(sequence, cache: engine.makeCache(capacity: 16), logits: .all)
        let cache = try engine.makeCache(capacity: 16)
        let vocab = engine.config.vocab
        for (t, token) in sequence.enumerated() {
            let step = try engine.forward([token], cache: cache, logits: .last)
            let r = batch[(t * vocab)..<((t + 1) * vocab)]
            let scale = Double(r.map(abs).max()!)
            let diff = zip(step, r).map { Double(abs($0 - $1)) }.max()!
            XCTAssertLessThan(diff / scale, 1e-4, "position \(t)")
        }
        XCTAssertEqual(cache.length, sequence.count)
        XCTAssertThrowsError(try engine.forward(Array(repeating: 1, count: 4), cache: cache)) { error in
            XCTAssertEqual(error as? InferenceError, .contextOverflow(needed: 17, capacity: 16))
        }

        let first = try Generation.greedy(engine, prompt: Self.prompt, count: 16).tokens
        XCTAssertEqual(try Generation.greedy(engine, prompt: Self.prompt, count: 16).tokens, first)
        XCTAssertEqual(try Generation.greedy(try self.engine(threads: 1), prompt: Self.prompt, count: 16).tokens, first)
    }

    /// An f16 KV cache (keys and values rounded to f16 as stored) keeps each decode step's logits
    /// within 1e-3 of the largest (relative) of the f32 cache's, its decode-step byte count drops
    /// by the cache's half, and greedy decoding gives the f32 cache's tokens on this prompt (exact
    /// kernel, 16 tokens).
    func testF16KVCacheKeepsLogitsAndTokens() throws {
        let engine = try engine()
        engine.options.kernel = .exact
        let f32Bytes = engine.decodeStepBytes(position: 99)
        let f32Tokens = try Generation.greedy(engine, prompt: Self.prompt, count: 16).tokens
        let sequence = Self.prompt + f32Tokens
        let vocab = engine.config.vocab
        var f32Logits: [[Float]] = []
        let cache32 = try engine.makeCache(capacity: sequence.count)
        for token in sequence { f32Logits.append(try engine.forward([token], cache: cache32)) }

        engine.options.kvCache = .f16
        let c = engine.config
        XCTAssertEqual(f32Bytes - engine.decodeStepBytes(position: 99), 2 * c.layers * 100 * c.kvHeads * c.headDim * 2)
        let cache16 = try engine.makeCache(capacity: sequence.count)
        XCTAssertEqual(cache16.precision, .f16)
        var worst = 0.0
        for (t, token) in sequence.enumerated() {
            let step = try engine.forward([token], cache: cache16)
            XCTAssertEqual(step.count, vocab)
            let scale = Double(f32Logits[t].map(abs).max()!)
            worst = max(worst, zip(step, f32Logits[t]).map { Double(abs($0 - $1)) }.max()! / scale)
        }
        XCTAssertLessThan(worst, 1e-3)
        XCTAssertGreaterThan(worst, 0, "the f16 cache rounds: some logit must move")
        XCTAssertEqual(try Generation.greedy(engine, prompt: Self.prompt, count: 16).tokens, f32Tokens)
    }

    /// Quantizing in place swaps the selected layers for packed weights, leaves the rest alone,
    /// and keeps the model's predictions close (any4 at g128 on SmolLM2's Q4_1 weights).
    func testInPlaceQuantizationSwapsWeightsAndKeepsPredictions() throws {
        let engine = try engine()
        let before = try engine.forward(Self.prompt, cache: engine.makeCache(capacity: 16), logits: .all)
        let selection = LayerSelection(include: try Regex(#"^blk\.(0|1)\."#))
        let progress = Progress(total: 0)
        let results = try EngineQuantization.quantize(
            engine, format: try FormatRegistry.named("any4"),
            options: QuantizationOptions(), selection: selection, progress: progress)
        XCTAssertEqual(results.count, 14)
        // Progress counts weights: blocks 0 and 1 hold 2 × (576·(576+192+192+576) + 3·576·1536).
        XCTAssertEqual(progress.total, 2 * (576 * 1536 + 3 * 576 * 1536))
        XCTAssertEqual(progress.completed, progress.total)
        for (i, l) in engine.linears.enumerated() {
            let quantized = i < 14
            // Q4_1 layers load packed too (imported exactly); the Q8_0 head is read in place.
            XCTAssertEqual(l.packed != nil, l.name != "token_embd.weight", l.name)
            XCTAssertEqual(l.formatName, quantized ? "any4" : (l.name == "token_embd.weight" ? "Q8_0" : "Q4_1"), l.name)
        }
        let after = try engine.forward(Self.prompt, cache: engine.makeCache(capacity: 16), logits: .all)
        let vocab = engine.config.vocab
        var agree = 0
        for t in 0..<Self.prompt.count {
            let a = Generation.argmax(Array(before[(t * vocab)..<((t + 1) * vocab)]))
            let b = Generation.argmax(Array(after[(t * vocab)..<((t + 1) * vocab)]))
            if a == b { agree += 1 }
        }
        XCTAssertGreaterThanOrEqual(agree, Self.prompt.count - 2, "quantizing two blocks changed most predictions")
        XCTAssertNotEqual(before, after)

        // Decode steps run the quantized layers on the lookup kernel (q, k, v and gate, up grouped
        // into one call each): the exact path gives the GEMM's logits on the dequantized weights;
        // the fast path (int8 activations) stays close.
        // (SmolLM2's activations have outlier channels, so per-group int8 activations cost more
        // here than on Gaussian inputs: about 0.1 of the largest logit after two blocks.)
        for (path, tolerance) in [(KernelPath.exact, 1e-4), (.fast, 0.25)] {
            engine.options.kernel = path
            let cache = try engine.makeCache(capacity: 16)
            var worst = 0.0, sameArgmax = 0
            for (t, token) in Self.prompt.enumerated() {
                let step = try engine.forward([token], cache: cache, logits: .last)
                let r = Array(after[(t * vocab)..<((t + 1) * vocab)])
                let diff = zip(step, r).map { Double(abs($0 - $1)) }.max()!
                worst = max(worst, diff / Double(r.map(abs).max()!))
                if Generation.argmax(step) == Generation.argmax(r) { sameArgmax += 1 }
            }
            XCTAssertLessThan(worst, tolerance, "\(path) path")
            XCTAssertGreaterThanOrEqual(sameArgmax, Self.prompt.count - (path == .exact ? 0 : 2), "\(path) path")
        }
    }

    /// Plain calibration records every linear layer's input; sequential calibration sees the same
    /// block-0 inputs but different later ones (block 0 is quantized by then).
    func testCalibrationStatistics() throws {
        let engine = try engine()
        let stats = try EngineQuantization.calibrate(engine, sequences: [Self.prompt])
        XCTAssertEqual(stats.layers.count, 30 * 7, "every block linear; the head is not run during calibration")
        let q0 = try XCTUnwrap(stats.layer(forWeight: "blk.0.attn_q.weight"))
        XCTAssertEqual(q0.count, Float(Self.prompt.count))
        XCTAssertEqual(q0.mean.count, 576)
        for c in 0..<576 {
            XCTAssertGreaterThanOrEqual(q0.sqmean[c] * 1.0001 + 1e-12, q0.absmean[c] * q0.absmean[c], "Jensen: E[x²] ≥ E[|x|]²")
            XCTAssertGreaterThanOrEqual(q0.absmean[c] * 1.0001 + 1e-12, abs(q0.mean[c]))
        }
        // Same statistics for q, k and v of a block (one input).
        XCTAssertEqual(
            stats.layer(forWeight: "blk.3.attn_k.weight"),
            stats.layer(forWeight: "blk.3.attn_v.weight").map {
                var l = $0
                l.count = stats.layer(forWeight: "blk.3.attn_k.weight")!.count
                return l
            })

        let fresh = try self.engine()
        let progress = Progress(total: 0)
        let (results, sequential) = try EngineQuantization.quantizeSequentially(
            fresh, sequences: [Self.prompt], format: try FormatRegistry.named("any4"), options: QuantizationOptions(),
            statistic: .sqmean, selection: LayerSelection(include: try Regex(#"^blk\.(0|1|2)\."#)), progress: progress)
        XCTAssertEqual(results.count, 21)
        XCTAssertEqual(progress.total, 3 * (576 * 1536 + 3 * 576 * 1536), "weights, as quantize counts them")
        XCTAssertEqual(progress.completed, progress.total)
        XCTAssertEqual(sequential.layer(forWeight: "blk.0.attn_q.weight"), q0)
        let plain2 = stats.layer(forWeight: "blk.2.attn_q.weight")!, seq2 = sequential.layer(forWeight: "blk.2.attn_q.weight")!
        XCTAssertNotEqual(plain2.sqmean, seq2.sqmean, "block 2 should see the quantized blocks 0 and 1")
        XCTAssertEqual(sequential.layers.count, 30 * 7, "every block's inputs are recorded on the way")
    }
}
