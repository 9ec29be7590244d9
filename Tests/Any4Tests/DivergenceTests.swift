import Any4Core
import Any4Inference
import Foundation
import XCTest

import TestSupport

/// KL divergence against a reference (issue #17, item 3): the compact reference's divergence
/// against the full-precision one computed here from both models' logits, in memory and through
/// a file, on SmolLM2.
final class DivergenceTests: XCTestCase {
    /// KL(softmax(p) ‖ softmax(q)) in f64, written apart from the library's.
    static func referenceKL(_ p: ArraySlice<Float>, _ q: ArraySlice<Float>) -> Double {
        func logSoftmax(_ v: ArraySlice<Float>) -> [Double] {
            let x = v.map(Double.init)
            let m = x.max()!
            let z = m + log(x.reduce(0) { $0 + exp($1 - m) })
            return x.map { $0 - z }
        }
        let lp = logSoftmax(p), lq = logSoftmax(q)
        return zip(lp, lq).reduce(0) { $0 + exp($1.0) * ($1.0 - $1.1) }
    }

    /// All scored positions' logits of every window, in order.
    static func logits(_ engine: LlamaEngine, _ windows: ScoringWindows) throws -> [Float] {
        var out: [Float] = []
        for c in 0..<windows.count {
            let cache = try engine.makeCache(capacity: windows.ctx)
            let l = try engine.forward(windows.window(c), cache: cache, logits: .from(windows.firstScored))
            out += l.prefix(windows.scoredPerWindow * engine.config.vocab)
        }
        return out
    }

    func testCompactReferenceMatchesFullPrecisionKLInMemoryAndThroughAFileOnSmolLM2() throws {
        let model = try Model.open(try TestPaths.requireModel(TestPaths.smolLM2))
        let engine = try LlamaEngine(model: model)
        let tokenizer = try Tokenizers.load(for: model)
        let text = try String(contentsOfFile: TestPaths.packageRoot + "/assets/calibration.txt", encoding: .utf8)
        let windows = try ScoringWindows(tokens: tokenizer.encode(text, addSpecialTokens: false), ctx: 64, bos: tokenizer.leadingBOS, limit: 3)
        XCTAssertEqual(windows.count, 3)
        XCTAssertEqual(windows.scoredTokens, 3 * 31)
        let vocab = engine.config.vocab

        let base = try Self.logits(engine, windows)
        let reference = try DivergenceReference.compute(engine, windows: windows)
        XCTAssertEqual(reference.byteCount, DivergenceReference.byteCount(model: .init(engine), windows: windows))

        // Against itself: exactly 0, full agreement, and the perplexity the perplexity tool gives.
        let same = try Divergence.measure(engine, against: reference)
        XCTAssertEqual(same.kl, [Double](repeating: 0, count: windows.scoredTokens))
        XCTAssertEqual(same.top1Agreement, 1)
        XCTAssertEqual(same.lnPPLRatio, 0)
        let ppl = try Perplexity.measure(engine, tokens: windows.tokens, ctx: 64, bos: windows.bos)
        XCTAssertEqual(same.ppl, ppl.ppl, accuracy: 1e-12 * ppl.ppl)
        XCTAssertEqual(same.referencePPL, ppl.ppl, accuracy: 1e-12 * ppl.ppl)

        // nf4 on blocks 0-9: the compact divergence against the full-precision one per token.
        _ = try EngineQuantization.quantize(
            engine, format: try FormatRegistry.named("nf4"), options: QuantizationOptions(),
            selection: LayerSelection(include: try Regex(#"^blk\.[0-9]\."#)))
        let quantized = try Self.logits(engine, windows)
        let d = try Divergence.measure(engine, against: reference)
        var exact: [Double] = [], agree = 0, lnRatio = 0.0
        for t in 0..<windows.scoredTokens {
            let p = base[(t * vocab)..<((t + 1) * vocab)], q = quantized[(t * vocab)..<((t + 1) * vocab)]
            exact.append(Self.referenceKL(p, q))
            if p.firstIndex(of: p.max()!) == q.firstIndex(of: q.max()!) { agree += 1 }
            let next = windows.tokens[(t / 31) * 64 + 32 + t % 31 + 1]
            func nll(_ v: ArraySlice<Float>) -> Double {
                let x = v.map(Double.init), m = x.max()!
                return m + log(x.reduce(0) { $0 + exp($1 - m) }) - Double(v[v.startIndex + next])
            }
            lnRatio += nll(q) - nll(p)
        }
        let exactMean = exact.reduce(0, +) / Double(exact.count)
        XCTAssertGreaterThan(exactMean, 1e-3, "nf4 on every layer moves the distributions")
        XCTAssertEqual(d.meanKL, exactMean, accuracy: 1e-3)
        let worst = zip(d.kl, exact).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(worst, 1e-3, "per-token error of the compact reference")
        print("nf4 SmolLM2 KL: compact \(d.meanKL), full \(exactMean), |mean error| \(abs(d.meanKL - exactMean)), worst token \(worst)")
        XCTAssertEqual(d.top1Agreement, Double(agree) / Double(exact.count))
        XCTAssertLessThan(d.top1Agreement, 1)
        XCTAssertEqual(d.lnPPLRatio, lnRatio / Double(exact.count), accuracy: 1e-9)
        XCTAssertEqual(Divergence.exactKL(base, quantized, count: vocab), exact[0], accuracy: 1e-9)
        XCTAssertEqual(d.percentiles.max, d.kl.max())
        XCTAssertEqual(d.percentiles.median, Divergence.quantile(d.kl.sorted(), 0.5))

        // Through a file: the same bytes, the same divergence.
        let dir = try TestPaths.temporaryDirectory(for: self)
        let path = dir + "/smol.kld"
        try reference.write(to: path)
        let loaded = try DivergenceReference.load(path)
        XCTAssertEqual(loaded.windows, windows)
        XCTAssertEqual(loaded.vocab, vocab)
        XCTAssertEqual(try Divergence.measure(engine, against: loaded).kl, d.kl)
        XCTAssertNil(loaded.mismatch(engine: engine, windows: windows))
        let other = try ScoringWindows(tokens: Array(windows.tokens.dropFirst()), ctx: 64, bos: windows.bos, limit: 2)
        XCTAssertEqual(loaded.mismatch(engine: engine, windows: other)?.message.hasSuffix("has 3 windows of 64; the text and --chunks give 2"), true)
    }

    /// The reference file's structure: a truncated file names the record and byte where it ends,
    /// trailing bytes and a foreign magic are refused; a tiny engine keeps it fast.
    func testReferenceFileRefusesTruncationTrailingBytesAndForeignFiles() throws {
        let python = try Python.require(["numpy", "tokenizers"])
        let dir = try TestPaths.temporaryDirectory(for: self)
        let gen = try runProcess(python, [TestPaths.packageRoot + "/scripts/make-synthetic-llama.py", "--size", "tiny", dir + "/tiny", "--seed", "5"])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let engine = try LlamaEngine(model: try Model.open(dir + "/tiny"))
        let windows = try ScoringWindows(tokens: (0..<96).map { ($0 * 37) % 4000 }, ctx: 32, bos: nil, limit: 0)
        let path = dir + "/tiny.kld"
        let size = try DivergenceReference.save(engine, windows: windows, to: path)
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(bytes.count, size)
        XCTAssertTrue(DivergenceReference.isReferenceFile(path))
        // save (streamed) and compute (in memory) write the same bytes.
        let memory = dir + "/memory.kld"
        try DivergenceReference.compute(engine, windows: windows).write(to: memory)
        XCTAssertEqual(try Array(Data(contentsOf: URL(fileURLWithPath: memory))), bytes)
        XCTAssertEqual(try Divergence.measure(engine, against: try DivergenceReference.load(path)).meanKL, 0)

        let record = DivergenceReference.recordBytes(vocab: 4096)
        for cut in [10, 40, size - 3 * 15 * record - 5, size - record - 1, size - 1] {
            let t = dir + "/cut.kld"
            try (Data(bytes.prefix(cut))).write(to: URL(fileURLWithPath: t))
            XCTAssertThrowsError(try DivergenceReference.load(t), "cut at \(cut)") { error in
                let e = error as? FileFormatError
                XCTAssertEqual(e?.kind, .truncated, "\(error)")
                XCTAssertEqual(e?.offset, cut, "\(error)")
                XCTAssertTrue("\(error)".contains("\(cut)"), "\(error)")
            }
        }
        let last = dir + "/last.kld"
        try (Data(bytes.prefix(size - 1))).write(to: URL(fileURLWithPath: last))
        XCTAssertThrowsError(try DivergenceReference.load(last)) { error in
            XCTAssertTrue("\(error)".contains("record \(3 * 15 - 1) of \(3 * 15)"), "\(error)")
        }
        let long = dir + "/long.kld"
        try (Data(bytes + [0, 0])).write(to: URL(fileURLWithPath: long))
        XCTAssertThrowsError(try DivergenceReference.load(long)) { XCTAssertTrue("\($0)".contains("2 bytes after the last record"), "\($0)") }
        var foreign = bytes
        foreign[0] = 0x41
        let bad = dir + "/bad.kld"
        try (Data(foreign)).write(to: URL(fileURLWithPath: bad))
        XCTAssertFalse(DivergenceReference.isReferenceFile(bad))
        XCTAssertThrowsError(try DivergenceReference.load(bad)) { XCTAssertEqual(($0 as? FileFormatError)?.kind, .badMagic) }
    }

    /// The statistics of known per-token figures.
    func testStatisticsOfKnownValues() {
        let kl = (0..<101).map { Double($0) / 100 }
        let d = Divergence(
            kl: kl, referenceNLL: [Double](repeating: 1, count: 101), nll: [Double](repeating: 1.5, count: 101),
            sameTop: (0..<101).map { $0 % 4 != 0 })
        XCTAssertEqual(d.meanKL, 0.5, accuracy: 1e-12)
        XCTAssertEqual(d.percentiles.median, 0.5, accuracy: 1e-12)
        XCTAssertEqual(d.percentiles.p90, 0.9, accuracy: 1e-12)
        XCTAssertEqual(d.percentiles.p99, 0.99, accuracy: 1e-12)
        XCTAssertEqual(d.percentiles.p999, 0.999, accuracy: 1e-12)
        XCTAssertEqual(d.percentiles.max, 1)
        XCTAssertEqual(d.top1Agreement, 75.0 / 101, accuracy: 1e-12)
        XCTAssertEqual(d.lnPPLRatio, 0.5, accuracy: 1e-12)
        XCTAssertEqual(d.lnPPLRatioStandardError, 0, accuracy: 1e-12)
        XCTAssertEqual(d.ppl / d.referencePPL, exp(0.5), accuracy: 1e-12)
        // Sample standard deviation of 0, 0.01, ..., 1 over √n.
        let sd = (kl.reduce(0) { $0 + ($1 - 0.5) * ($1 - 0.5) } / 100).squareRoot()
        XCTAssertEqual(d.klStandardError, sd / 101.0.squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(Divergence.quantile([1, 2, 3, 4], 0.5), 2.5)
    }
}
