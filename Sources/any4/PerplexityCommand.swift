import Any4Core
import Any4Inference
import ArgumentParser
import Foundation

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ppl",
        abstract: "Perplexity of a decoder on a text, computed as llama.cpp's perplexity tool does; KL divergence from a reference.",
        discussion: """
            The text's tokens are cut into non-overlapping windows of --ctx tokens; each window runs from \
            an empty cache (its first token replaced by BOS when the model adds one) and its second half \
            is scored. Prints the running estimate per window; --json prints one object at the end: \
            {"ppl", "tokens" (scored), "chunks", ...}. MODEL: a .gguf file or a Hugging Face model folder (a decoder).

            --kl-divergence BASE compares MODEL's next-token distributions (after --format, if given) with \
            BASE's on the same windows: mean KL(P_base ‖ Q_model) per scored token ± standard error, its \
            percentiles, how often the two agree on the most likely token, both perplexities and ln(ppl ratio) \
            (in --json under "kl_divergence"). BASE is the unquantized model (its distributions are computed \
            first; when BASE is MODEL itself with --format, before quantizing it), or a reference file written \
            by `ppl BASE --save-logits FILE` (then --text may be left out: the file holds the windows' tokens). \
            A reference keeps every scored token's log-probabilities over the whole vocabulary as 16-bit codes \
            (2 × vocab + 12 bytes per token: 98 KB for SmolLM2) and the divergence it gives stays within 1e-3 of \
            the full-precision one.
            """)

    @OptionGroup var modelArgument: ModelArgument

    @Option(help: "The text file (optional with --kl-divergence FILE: the reference's windows are used).")
    var text: String?

    @Option(parsing: .unconditional, help: "Window length in tokens: 8 up to the model's context (at most 1048576; default 512).")
    var ctx: Int?

    @Option(parsing: .unconditional, help: "Use at most this many windows (0: all).")
    var chunks = 0

    @Option(
        name: .customLong("kl-divergence"),
        help: ArgumentHelp(
            "Compare with BASE: the unquantized model (a .gguf file or a folder) or a reference file from --save-logits.",
            valueName: "base"))
    var klBase: String?

    @Option(
        name: .customLong("save-logits"),
        help: ArgumentHelp(
            "Write the model's next-token distributions on the windows to FILE, a reference for a later --kl-divergence FILE.",
            valueName: "file"))
    var saveLogits: String?

    @OptionGroup var engineQuantization: EngineQuantizationGroup

    @OptionGroup var jsonOutput: JSONOutputOption

    /// Numeric options checked as the command line is parsed (status 2 naming the option).
    func validate() throws {
        if let ctx { try requireRange("--ctx", ctx, 8...maxContextTokens) }
        guard chunks >= 0 else { throw usageError("--chunks must be 0 (all windows) or more, got \(chunks)") }
        if klBase != nil && saveLogits != nil {
            throw usageError("--save-logits writes MODEL's distributions and --kl-divergence compares them: run them apart")
        }
        if text == nil && klBase == nil { throw usageError("--text is needed (it may be left out only with --kl-divergence FILE)") }
    }

    /// Whether `path` names a reference file rather than a model: a regular file with the
    /// reference's magic, or any regular file that is neither a .gguf nor a .safetensors (so that a
    /// damaged reference is reported as one).
    static func isReferencePath(_ path: String) -> Bool {
        if DivergenceReference.isReferenceFile(path) { return true }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue else { return false }
        let lower = path.lowercased()
        return !(lower.hasSuffix(".gguf") || lower.hasSuffix(".safetensors"))
    }

    /// Whether two paths are the same file or folder on disk.
    static func sameFile(_ a: String, _ b: String) -> Bool {
        var x = stat(), y = stat()
        return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino
    }

    func run() throws {
        let json = jsonOutput.json
        let model = try openModel(modelArgument.model)
        let referenceFile = klBase.map(Self.isReferencePath) ?? false
        var loaded: DivergenceReference? = nil
        if let klBase, referenceFile { loaded = try reportingFileErrors { try DivergenceReference.load(klBase) } }
        if let loaded, let ctx, ctx != loaded.windows.ctx {
            throw usageError("\(klBase!): the reference has windows of \(loaded.windows.ctx) tokens; --ctx is \(ctx)")
        }
        let ctx = self.ctx ?? loaded?.windows.ctx ?? 512
        if let saveLogits { try reportingFileErrors { try OutputGuard.check(saveLogits, inputs: model.inputFiles + [text].compactMap { $0 }) } }

        // A base model other than MODEL: its reference first, then it is dropped before MODEL loads.
        let tokenizer = try loadTokenizer(model)
        var windows: ScoringWindows
        var textTokens: Int
        if let text {
            let tokens = tokenizer.encode(try readText(text, what: "text"), addSpecialTokens: false)
            guard tokens.count >= ctx else {
                throw usageError("\(text): \(tokens.count) tokens, fewer than one window of --ctx \(ctx)")
            }
            textTokens = tokens.count
            windows = try reportingInferenceErrors {
                try ScoringWindows(tokens: tokens, ctx: ctx, bos: tokenizer.leadingBOS, limit: chunks)
            }
        } else {
            windows = loaded!.windows
            textTokens = windows.tokens.count
            if chunks > 0 && chunks != windows.count {
                throw usageError("\(klBase!): the reference has \(windows.count) windows; --chunks \(chunks) needs --text")
            }
        }
        var reference = loaded
        let baseIsModel = klBase.map { !referenceFile && Self.sameFile($0, model.path) } ?? false
        if let klBase, !referenceFile, !baseIsModel {
            let base = try openModel(klBase)
            guard let baseEngine = try loadEngine(base, options: engineQuantization.engineOptions()) as? LlamaEngine else {
                throw usageError("\(base.path): the base of a KL divergence must be a decoder")
            }
            reference = try computeReference(baseEngine, windows: windows, quiet: json)
        }

        let engine = try loadEngine(model, options: engineQuantization.engineOptions())
        guard let llama = engine as? LlamaEngine else {
            throw usageError("\(model.path): perplexity needs a decoder; \(model.config.architecture ?? "this model") is an encoder (try embed-eval)")
        }
        guard ctx <= llama.config.contextLength else {
            throw usageError("--ctx \(ctx) is longer than the model's context of \(llama.config.contextLength) tokens")
        }
        if baseIsModel { reference = try computeReference(llama, windows: windows, quiet: json) }
        if let reference, let mismatch = reference.mismatch(engine: llama, windows: windows) {
            throw usageError("\(mismatch)")
        }
        let quantized = try engineQuantization.apply(to: engine, tokenizer: tokenizer, quiet: json)
        let bos = windows.bos
        if !json {
            print(
                "\(textTokens) tokens, \(windows.count) windows of \(ctx)\(bos != nil ? ", BOS first" : "")"
                    + (quantized.map { ", \($0)" } ?? ", weights as stored"))
        }
        let progress = Progress(total: 0, label: "perplexity")
        var running: [String] = []
        if let saveLogits {
            let bytes = try runProgressJob(progress, interrupted: "interrupted") {
                try reportingFileErrors {
                    try reportingInferenceErrors {
                        try DivergenceReference.save(llama, windows: windows, to: saveLogits, weights: quantized ?? "as stored", progress: progress)
                    }
                }
            }
            let saved = try reportingFileErrors { try DivergenceReference.load(saveLogits) }
            let nll = (0..<saved.count).reduce(0.0) { $0 + saved.nll($1) } / Double(saved.count)
            if json {
                print(
                    JSONValue.object([
                        ("ppl", JSONValue(exp(nll))), ("tokens", JSONValue(saved.count)), ("chunks", JSONValue(windows.count)),
                        ("ctx", JSONValue(ctx)), ("nll", JSONValue(nll)), ("text_tokens", JSONValue(textTokens)),
                        ("weights", .string(quantized ?? "as stored")), ("seconds", JSONValue(progress.elapsed)),
                        ("saved_logits", .string(saveLogits)), ("bytes", JSONValue(bytes)),
                        ("bytes_per_token", JSONValue(DivergenceReference.recordBytes(vocab: saved.vocab)))
                    ]).serialized)
            } else {
                print(
                    "perplexity \(Formatting.fixed(exp(nll), 4)) over \(saved.count) scored tokens in \(windows.count) windows "
                        + "(\(Formatting.fixed(progress.elapsed, 1)) s)")
                print(
                    "wrote \(saveLogits): \(Formatting.bytes(bytes)), \(DivergenceReference.recordBytes(vocab: saved.vocab)) bytes per scored token")
            }
            return
        }
        if let reference {
            let d = try runProgressJob(progress, interrupted: "interrupted") {
                try reportingInferenceErrors {
                    try Divergence.measure(llama, against: reference, progress: progress) { done, kl in
                        progress.setLabel("KL divergence [\(done)] \(Formatting.fixed(kl, 6))")
                    }
                }
            }
            report(d, reference: reference, windows: windows, textTokens: textTokens, weights: quantized ?? "as stored", json: json)
            return
        }
        let result = try runProgressJob(progress, interrupted: "interrupted") {
            try reportingInferenceErrors {
                try Perplexity.measure(llama, tokens: windows.tokens, ctx: ctx, bos: bos, progress: progress) { done, estimate in
                    // The running estimate shows in the progress line; the whole series, as llama.cpp
                    // prints it, comes at the end.
                    progress.setLabel("perplexity [\(done)] \(Formatting.fixed(estimate, 4))")
                    running.append("[\(done)]\(Formatting.fixed(estimate, 4))")
                }
            }
        }
        if json {
            print(
                JSONValue.object([
                    ("ppl", JSONValue(result.ppl)), ("tokens", JSONValue(result.tokens)), ("chunks", JSONValue(result.chunks)),
                    ("ctx", JSONValue(ctx)), ("nll", JSONValue(result.nll)), ("text_tokens", JSONValue(textTokens)),
                    ("weights", .string(quantized ?? "as stored")), ("seconds", JSONValue(result.seconds))
                ]).serialized)
        } else {
            print(running.joined(separator: ","))
            print(
                "perplexity \(Formatting.fixed(result.ppl, 4)) over \(result.tokens) scored tokens in \(result.chunks) windows "
                    + "(\(Formatting.fixed(result.seconds, 1)) s)")
        }
    }

    /// The reference distributions of `engine` on `windows`: in memory up to 1 GiB, else in a
    /// temporary file (mapped, and removed at once).
    func computeReference(_ engine: LlamaEngine, windows: ScoringWindows, quiet: Bool) throws -> DivergenceReference {
        guard engine.config.contextLength >= windows.ctx else {
            throw usageError("--ctx \(windows.ctx) is longer than the base model's context of \(engine.config.contextLength) tokens")
        }
        let progress = Progress(total: 0, label: "reference distributions")
        let bytes = DivergenceReference.byteCount(model: .init(engine), windows: windows) ?? Int.max
        if !quiet {
            printError("any4: reference distributions of \(engine.model.path): \(windows.scoredTokens) tokens, \(Formatting.bytes(bytes))")
        }
        return try runProgressJob(progress, interrupted: "interrupted") {
            try reportingFileErrors {
                try reportingInferenceErrors {
                    if bytes <= 1 << 30 { return try DivergenceReference.compute(engine, windows: windows, progress: progress) }
                    let path = NSTemporaryDirectory() + "/any4-reference-\(getpid())-\(UUID().uuidString).kld"
                    defer { unlink(path) }
                    try DivergenceReference.save(engine, windows: windows, to: path, progress: progress)
                    return try DivergenceReference.load(path)
                }
            }
        }
    }

    func report(_ d: Divergence, reference: DivergenceReference, windows: ScoringWindows, textTokens: Int, weights: String, json: Bool) {
        let base = klBase ?? reference.source
        let p = d.percentiles
        if json {
            var fields: [(String, JSONValue)] = [
                ("base", .string(base)), ("reference_model", .string(reference.model.path)),
                ("reference_weights", .string(reference.model.weights))
            ]
            fields += [("mean", JSONValue(d.meanKL)), ("stderr", JSONValue(d.klStandardError))]
            fields += [("min", JSONValue(p.min)), ("median", JSONValue(p.median)), ("p90", JSONValue(p.p90))]
            fields += [("p95", JSONValue(p.p95)), ("p99", JSONValue(p.p99)), ("p99_9", JSONValue(p.p999)), ("max", JSONValue(p.max))]
            fields += [("top1_agreement", JSONValue(d.top1Agreement)), ("top1_stderr", JSONValue(d.top1StandardError))]
            fields += [("reference_ppl", JSONValue(d.referencePPL)), ("ppl", JSONValue(d.ppl))]
            fields += [("ln_ppl_ratio", JSONValue(d.lnPPLRatio)), ("ln_ppl_ratio_stderr", JSONValue(d.lnPPLRatioStandardError))]
            fields += [("mean_delta_p", JSONValue(d.meanDeltaP)), ("rms_delta_p", JSONValue(d.rmsDeltaP))]
            fields += [("tokens", JSONValue(d.tokens)), ("reference_bytes_per_token", JSONValue(reference.recordBytes))]
            let kl = JSONValue.object(fields.map { (key: $0.0, value: $0.1) })
            print(
                JSONValue.object([
                    ("ppl", JSONValue(d.ppl)), ("tokens", JSONValue(d.tokens)), ("chunks", JSONValue(windows.count)),
                    ("ctx", JSONValue(windows.ctx)), ("nll", JSONValue(log(d.ppl))), ("text_tokens", JSONValue(textTokens)),
                    ("weights", .string(weights)), ("seconds", JSONValue(d.seconds)), ("kl_divergence", kl)
                ]).serialized)
            return
        }
        func f(_ v: Double) -> String { Formatting.fixed(v, 6) }
        print(
            "perplexity \(Formatting.fixed(d.ppl, 4)) over \(d.tokens) scored tokens in \(windows.count) windows "
                + "(\(Formatting.fixed(d.seconds, 1)) s)")
        print("KL divergence from \(base)\(reference.model.weights == "as stored" ? "" : " (\(reference.model.weights))"):")
        print("  reference ppl      \(Formatting.fixed(d.referencePPL, 4))")
        print("  ppl                \(Formatting.fixed(d.ppl, 4))")
        print("  ln(ppl ratio)      \(f(d.lnPPLRatio)) ± \(f(d.lnPPLRatioStandardError))")
        print("  mean KL            \(f(d.meanKL)) ± \(f(d.klStandardError))")
        print("  KL median          \(f(p.median))")
        print("  KL p90             \(f(p.p90))")
        print("  KL p95             \(f(p.p95))")
        print("  KL p99             \(f(p.p99))")
        print("  KL p99.9           \(f(p.p999))")
        print("  KL max             \(f(p.max))")
        print("  same top token     \(Formatting.fixed(100 * d.top1Agreement, 3)) ± \(Formatting.fixed(100 * d.top1StandardError, 3)) %")
        print("  Δp next token      mean \(Formatting.fixed(100 * d.meanDeltaP, 3)) %, rms \(Formatting.fixed(100 * d.rmsDeltaP, 3)) %")
    }
}
