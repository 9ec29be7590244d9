import Any4Core
import Any4Inference
import Foundation

/// What the quantized layers cost the whole model, measured in the background while the UI runs:
/// for a decoder the KL divergence of its next-token distributions from the unquantized model's
/// and its perplexity (``Divergence``), for an encoder the cosine of its sentence embeddings with
/// the unquantized model's (``EmbeddingComparison``), on a short text (the calibration prompt by
/// default). Each quantized layer gets its own figure — the model with that layer alone quantized
/// — and the model as it stands gets one with every quantized layer in place.
///
/// The engine is loaded, and the unquantized reference computed, once (at the first job); layers
/// are swapped in and out with ``TransformerEngine/replaceWeight(name:with:)`` for each pass. One
/// worker thread does the passes; a job that starts (``hold()``) cancels the running pass, and the
/// work left resumes when the job ends (``update(_:)``). Nothing here blocks the caller.
public final class ModelEvaluator: @unchecked Sendable {
    /// The figures of one pass.
    public struct Figures: Sendable, Equatable {
        /// Decoders: mean KL(unquantized ‖ quantized) per scored token (nats), its standard
        /// error, perplexity on the text, and how often the top token agrees with the reference's.
        public var kl: Double?
        public var klStandardError: Double?
        public var ppl: Double?
        public var top1: Double?
        /// Encoders: the mean and the lowest cosine between each sentence's embedding and the
        /// unquantized model's.
        public var cosine: Double?
        public var worstCosine: Double?
        public var seconds: Double

        /// What the Model tab sorts by, larger is worse: the KL, or 1 − the mean cosine.
        public var cost: Double { kl ?? (1 - (cosine ?? 1)) }

        init(_ d: Divergence) {
            kl = d.meanKL
            klStandardError = d.klStandardError
            ppl = d.ppl
            top1 = d.top1Agreement
            seconds = d.seconds
        }

        init(_ c: EmbeddingComparison, seconds: Double) {
            cosine = c.mean
            worstCosine = c.worst?.cosine
            self.seconds = seconds
        }
    }

    /// A quantized layer as the evaluator takes it; a new quantization of a layer has a new
    /// version (its figures are measured again).
    public struct Layer: Sendable {
        public var matrix: QuantizedMatrix
        public var format: String
        public var version: Int

        public init(matrix: QuantizedMatrix, format: String, version: Int) {
            self.matrix = matrix
            self.format = format
            self.version = version
        }
    }

    /// The model with one layer alone quantized.
    public struct LayerCost: Sendable, Equatable {
        public var format: String
        public var figures: Figures
        var version: Int
    }

    /// The model as it stands: every quantized layer in place.
    public struct ModelCost: Sendable, Equatable {
        public var layers: Int
        public var figures: Figures
        /// The change of ``Figures/cost`` since the model was last measured (nil the first time).
        public var change: Double?
        var versions: [String: Int]
    }

    public enum Phase: Sendable, Equatable {
        /// Nothing to measure (no layer quantized yet, or every figure is up to date).
        case idle
        /// Loading the engine, computing the reference or measuring: ``Snapshot/label`` says which.
        case running
        /// A job runs: the figures left are measured when it ends.
        case paused
        /// The model cannot be measured here (the reason, for the screen).
        case unavailable(String)
        /// The last pass failed (the error).
        case failed(String)
    }

    /// What the UI shows, read under the lock.
    public struct Snapshot: Sendable {
        public var phase: Phase
        /// What runs now, and its progress (nil when nothing runs).
        public var label: String
        public var progress: Any4Core.Progress?
        /// The unquantized model on the text (decoders: its perplexity).
        public var reference: Figures?
        /// The text and how much of it is measured ("assets/calibration.txt, 128 tokens").
        public var source: String
        public var layers: [String: LayerCost]
        public var model: ModelCost?
        /// Quantized layers whose own figure is not measured yet.
        public var pending: Int
        /// True for a decoder (KL, perplexity), false for an encoder (cosine).
        public var decoder: Bool
    }

    public let model: Model
    /// The text's file.
    public let textPath: String
    /// Tokens a decoder is measured on (the text's first ones); nil: ``defaultTokens`` for a model
    /// of up to a billion parameters, fewer for a larger one (``tokens(parameters:)``).
    public let maxTokens: Int?
    let decoder: Bool

    private let lock = NSLock()
    private var wanted: [String: Layer] = [:]
    private var layerCosts: [String: LayerCost] = [:]
    private var modelCost: ModelCost?
    private var phase: Phase = .idle
    private var label = ""
    private var progress: Any4Core.Progress?
    /// Cancels the running pass (a new one per pass).
    private var token = Any4Core.Progress(total: 0)
    private var running = false
    private var held = false
    private var closed = false
    private var reference: Figures?
    private var source: String
    /// Layers the engine has no linear layer for (an embedding): never measured.
    private var skipped: Set<String> = []
    /// The engine and the reference (touched by the worker only, once set).
    private var prepared: Prepared?
    private enum Prepared {
        case decoder(LlamaEngine, DivergenceReference)
        case encoder(BertEngine, sequences: [[Int]], embeddings: [[Float]])
    }

    /// Tokens a decoder is measured on by default: one window of the text's first 128 tokens
    /// (about half a second per pass on SmolLM2-135M with two cores).
    public static let defaultTokens = 128

    /// The tokens a model of `parameters` is measured on by default: ``defaultTokens`` up to a
    /// billion parameters, then as many as keep a pass's arithmetic at a billion-parameter model's
    /// (16 for 8B: a pass is bound by reading the weights anyway), at least 16.
    public static func tokens(parameters: Int) -> Int {
        parameters <= 1_000_000_000 ? defaultTokens : max(16, Int(Double(defaultTokens) * 1e9 / Double(parameters)))
    }

    /// An evaluator for `model`, or nil with the reason when the engine does not run its
    /// architecture (the demo model, a bare tensor file).
    public static func make(for model: Model, textPath: String? = nil, maxTokens: Int? = nil) -> (ModelEvaluator?, String?) {
        let arch = model.config.architecture ?? "none"
        if model.format == .demo { return (nil, "the demo model has no engine: open a Llama or BERT model") }
        guard arch == "bert" || LlamaEngine.architectures.contains(arch) else {
            return (nil, "the engine does not run architecture \"\(arch)\"")
        }
        return (ModelEvaluator(model: model, textPath: textPath ?? CalibrationPrompt.defaultPath(), maxTokens: maxTokens), nil)
    }

    init(model: Model, textPath: String, maxTokens: Int?) {
        self.model = model
        self.textPath = textPath
        self.maxTokens = maxTokens.map { max(8, $0) }
        decoder = model.config.architecture != "bert"
        source = textPath
    }

    public func snapshot() -> Snapshot {
        lock.withLock {
            Snapshot(
                phase: phase, label: label, progress: phase == .running ? progress : nil, reference: reference, source: source,
                layers: currentCostsLocked, model: modelCost,
                pending: wanted.filter { layerCosts[$0.key]?.version != $0.value.version && !skipped.contains($0.key) }.count,
                decoder: decoder)
        }
    }

    /// The per-layer costs (for the Model tab's sort).
    public var costs: [String: Double] { lock.withLock { currentCostsLocked.mapValues(\.figures.cost) } }

    /// The figures of layers as they are now quantized (not those of an earlier quantization).
    private var currentCostsLocked: [String: LayerCost] { layerCosts.filter { wanted[$0.key]?.version == $0.value.version } }

    /// Whether a pass runs (or the worker is about to start one).
    public var isBusy: Bool { lock.withLock { running } }

    /// Weights up to this size are loaded, and the reference computed, as soon as the UI starts
    /// (``prepare()``), so that the first layer's figures come right after its quantization;
    /// larger models wait for the first job (loading reads and checks every weight).
    public static let eagerBytes = 1 << 30

    /// Loads the engine and computes the reference now, in the background, when the model is
    /// small enough (``eagerBytes``); later otherwise.
    public func prepare() {
        let weights = model.tensors.reduce(0) { $0 + $1.info.byteCount }
        guard weights <= Self.eagerBytes else { return }
        lock.withLock {
            guard !closed, prepared == nil, case .idle = phase else { return }
            startLocked()
        }
    }

    /// A job starts: the running pass stops (its work stays to do). The engine and the reference
    /// are prepared meanwhile the first time, so the figures come soon after the job ends.
    public func hold() {
        lock.withLock {
            guard !closed else { return }
            held = true
            if case .running = phase, prepared != nil { token.cancel() }
            if prepared == nil, case .idle = phase { startLocked() }
            if hasWorkLocked, phase == .idle { phase = .paused }
        }
    }

    /// A job ended: `layers` are the quantized layers as they stand. Measures what changed.
    public func update(_ layers: [String: Layer]) {
        lock.withLock {
            guard !closed else { return }
            held = false
            wanted = layers
            // A pass on an older set of layers is stale: start again with these (the engine's
            // loading goes on).
            if running, prepared != nil { token.cancel() }
            if case .failed = phase { phase = .idle }
            if case .paused = phase { phase = .idle }
            startLocked()
        }
    }

    /// Stops the running pass for good (the UI is leaving) and waits up to `timeout` seconds for
    /// the worker to leave.
    @discardableResult
    public func close(timeout: Double) -> Bool {
        lock.withLock {
            closed = true
            held = true
            token.cancel()
        }
        let deadline = Clock.now + timeout
        while isBusy {
            if Clock.now >= deadline { return false }
            Thread.sleep(forTimeInterval: 0.005)
        }
        return true
    }

    private var hasWorkLocked: Bool {
        if case .unavailable = phase { return false }
        if wanted.isEmpty { return false }
        if wanted.contains(where: { layerCosts[$0.key]?.version != $0.value.version && !skipped.contains($0.key) }) { return true }
        return modelCost?.versions != measurable.mapValues(\.version)
    }

    /// The wanted layers the engine can hold.
    private var measurable: [String: Layer] { wanted.filter { !skipped.contains($0.key) } }

    private func startLocked() {
        guard !running else { return }
        if case .unavailable = phase { return }
        if case .failed = phase { return }
        guard prepared == nil || (!held && hasWorkLocked) else { return }
        running = true
        phase = .running
        DispatchQueue.global(qos: .utility).async { [self] in work() }
    }

    /// One step of work under the lock: what to do next, or nil (the worker leaves).
    private enum Step {
        case prepare
        case layer(String, Layer)
        case model([String: Layer])
    }

    private func nextStepLocked() -> Step? {
        if prepared == nil { return .prepare }
        guard !held else { return nil }
        let stale = measurable.filter { layerCosts[$0.key]?.version != $0.value.version }
            .sorted { $0.value.version > $1.value.version }
        let all = measurable
        let modelStale = !all.isEmpty && modelCost?.versions != all.mapValues(\.version)
        // One new layer: its own figure first (what the user just did); many (all, a recipe):
        // the model first, then each layer's, newest first.
        if all.count == 1, let only = all.first, stale.isEmpty, modelStale,
            let own = layerCosts[only.key], own.version == only.value.version
        {
            modelCost = ModelCost(
                layers: 1, figures: own.figures, change: modelCost.map { own.figures.cost - $0.figures.cost },
                versions: all.mapValues(\.version))
            return nextStepLocked()
        }
        if stale.count > 1, modelStale { return .model(all) }
        if let first = stale.first { return .layer(first.key, first.value) }
        if modelStale { return .model(all) }
        return nil
    }

    private func work() {
        while true {
            let next: (Step, Any4Core.Progress)? = lock.withLock {
                guard let step = nextStepLocked() else {
                    running = false
                    if case .running = phase { phase = held && hasWorkLocked ? .paused : .idle }
                    label = ""
                    return nil
                }
                token = Any4Core.Progress(total: 0)
                let p = Any4Core.Progress(total: 0, parent: token)
                progress = p
                phase = .running
                switch step {
                case .prepare: label = "loading the engine"
                case .layer(let name, let l): label = "\(name) alone as \(l.format)"
                case .model(let all): label = "the model with \(all.count) quantized layer\(all.count == 1 ? "" : "s")"
                }
                return (step, p)
            }
            guard let (step, p) = next else { return }
            do {
                switch step {
                case .prepare:
                    try prepare(p)
                case .layer(let name, let layer):
                    guard hasLinear(name) else {
                        lock.withLock { _ = skipped.insert(name) }
                        continue
                    }
                    let figures = try measure([name: layer], p)
                    lock.withLock {
                        if wanted[name]?.version == layer.version {
                            layerCosts[name] = LayerCost(format: layer.format, figures: figures, version: layer.version)
                        }
                    }
                case .model(let layers):
                    let figures = try measure(layers, p)
                    lock.withLock {
                        modelCost = ModelCost(
                            layers: layers.count, figures: figures, change: modelCost.map { figures.cost - $0.figures.cost },
                            versions: layers.mapValues(\.version))
                    }
                }
            } catch QuantizationError.cancelled {
                // A job started, or the layers changed: the loop takes what is wanted now.
                continue
            } catch let error as Unavailable {
                lock.withLock {
                    phase = .unavailable(error.reason)
                    running = false
                    label = ""
                }
                return
            } catch {
                lock.withLock {
                    phase = .failed("\(error)")
                    running = false
                    label = ""
                }
                return
            }
        }
    }

    /// Why the model cannot be measured here.
    struct Unavailable: Error { var reason: String }

    /// Loads the engine and the tokenizer, and measures the unquantized model on the text.
    private func prepare(_ progress: Any4Core.Progress) throws {
        // The weights are read in place from the mapped files on every pass: they must stay in
        // memory, or each pass reads them from disk again.
        let weights = model.tensors.reduce(0) { $0 + $1.info.byteCount }
        if let available = MemoryBudget.available(), weights > available.bytes {
            throw Unavailable(
                reason:
                    "the model's \(Formatting.bytes(weights)) of weights exceed the \(Formatting.bytes(available.bytes)) of memory available (\(available.source))"
            )
        }
        let tokenizer: any TextTokenizer
        do {
            tokenizer = try Tokenizers.load(for: model)
        } catch {
            throw Unavailable(reason: "no tokenizer: \(error)")
        }
        let text: String
        do {
            text = try String(contentsOfFile: textPath, encoding: .utf8)
        } catch {
            throw Unavailable(reason: "cannot read the text \(textPath)")
        }
        progress.reset(total: model.parameterCount, label: "loading the engine")
        let options = EngineOptions()
        let engine: any TransformerEngine
        do {
            engine = try Engines.load(model, options: options, progress: progress)
        } catch QuantizationError.cancelled {
            throw QuantizationError.cancelled
        } catch {
            throw Unavailable(reason: "the engine cannot load the model: \(error)")
        }
        lock.withLock { label = "the unquantized reference" }
        let started = Clock.now
        if let llama = engine as? LlamaEngine {
            let tokens = tokenizer.encode(text, addSpecialTokens: false)
            let ctx = min(tokens.count, maxTokens ?? Self.tokens(parameters: model.parameterCount), llama.config.contextLength)
            let windows: ScoringWindows
            do {
                windows = try ScoringWindows(tokens: tokens, ctx: ctx, bos: tokenizer.leadingBOS, firstScored: 0, limit: 1)
            } catch {
                throw Unavailable(reason: "\(textPath): \(error)")
            }
            let reference = try Self.observingBlocks(llama, windows: windows.count, progress) {
                try DivergenceReference.compute(llama, windows: windows, weights: "as stored", progress: $0)
            }
            // The reference's own perplexity: the same pass's negative log-likelihoods.
            let nll = (0..<reference.count).map(reference.nll)
            var figures = Figures(Divergence(kl: nll.map { _ in 0 }, referenceNLL: nll, nll: nll, sameTop: nll.map { _ in true }))
            figures.seconds = Clock.now - started
            lock.withLock {
                prepared = .decoder(llama, reference)
                self.reference = figures
                source = "\((textPath as NSString).lastPathComponent), \(windows.scoredTokens + 1) tokens"
            }
        } else if let bert = engine as? BertEngine {
            let sequences = try CalibrationPrompt.sequences(text, source: textPath, engine: bert, tokenizer: tokenizer)
            guard !sequences.isEmpty else { throw Unavailable(reason: "\(textPath) has no paragraph to embed") }
            progress.reset(total: sequences.count, label: "the unquantized reference")
            let embeddings = try EmbeddingComparison.embeddings(bert, sequences, progress: progress)
            lock.withLock {
                prepared = .encoder(bert, sequences: sequences, embeddings: embeddings)
                reference = Figures(EmbeddingComparison(reference: embeddings, quantized: embeddings), seconds: Clock.now - started)
                source = "\((textPath as NSString).lastPathComponent), \(sequences.count) paragraphs"
            }
        } else {
            throw Unavailable(reason: "the engine runs this model neither as a decoder nor as an encoder")
        }
    }

    /// Runs `body` with `progress` counting the blocks of its passes over `windows` windows (a
    /// pass of an 8B model takes seconds: the bar moves block by block, and a cancelled
    /// `progress` stops the pass at the next block). `body` gets a progress of its own (its
    /// windows), cancelled with `progress`.
    static func observingBlocks<T>(
        _ engine: LlamaEngine, windows: Int, _ progress: Any4Core.Progress, _ body: (Any4Core.Progress) throws -> T
    ) throws -> T {
        // Each window: its blocks, then the head (counted when the next window starts, or at the end).
        progress.reset(total: windows * (engine.config.layers + 1), label: progress.label)
        engine.blockObserver = { i in
            if progress.isCancelled { throw QuantizationError.cancelled }
            progress.advance(by: i == 0 && progress.completed > 0 ? 2 : 1)
        }
        defer { engine.blockObserver = nil }
        let result = try body(Any4Core.Progress(total: 0, parent: progress))
        progress.advance()
        return result
    }

    /// Whether the engine runs the weight `name` as a linear layer (an embedding it does not).
    private func hasLinear(_ name: String) -> Bool {
        switch prepared {
        case .decoder(let e, _)?: e.linear(named: name) != nil
        case .encoder(let e, _, _)?: e.linear(named: name) != nil
        case nil: false
        }
    }

    /// The model with `layers` in place of its weights (put back after).
    private func measure(_ layers: [String: Layer], _ progress: Any4Core.Progress) throws -> Figures {
        guard let prepared else { throw QuantizationError.cancelled }
        let engine: any TransformerEngine =
            switch prepared {
            case .decoder(let e, _): e
            case .encoder(let e, _, _): e
            }
        var swapped: [String] = []
        defer { for name in swapped { engine.restoreWeight(name: name) } }
        for (name, layer) in layers where hasLinear(name) {
            try engine.replaceWeight(name: name, with: layer.matrix)
            swapped.append(name)
        }
        switch prepared {
        case .decoder(let llama, let reference):
            return Figures(
                try Self.observingBlocks(llama, windows: reference.windows.count, progress) {
                    try Divergence.measure(llama, against: reference, progress: $0)
                })
        case .encoder(let bert, let sequences, let embeddings):
            let started = Clock.now
            progress.reset(total: sequences.count, label: "embedding")
            let now = try EmbeddingComparison.embeddings(bert, sequences, progress: progress)
            return Figures(EmbeddingComparison(reference: embeddings, quantized: now), seconds: Clock.now - started)
        }
    }
}

// MARK: - Drawing

extension Renderer {
    /// A pass's figures in one line: "KL 2.31e-3 ± 4.1e-4 · ppl 14.21 · top-1 97.7%" (decoders),
    /// "cosine 0.99987 (worst 0.99951)" (encoders).
    /// - Parameter compact: without the standard error, top-1 and the worst cosine.
    static func figures(_ f: ModelEvaluator.Figures, compact: Bool = false) -> String {
        if let kl = f.kl {
            var text = "KL \(Formatting.scientific(kl, 2))"
            if !compact, let e = f.klStandardError, e > 0 { text += " ± \(Formatting.scientific(e, 1))" }
            if let ppl = f.ppl { text += " · ppl \(Formatting.fixed(ppl, 2))" }
            if !compact, let top = f.top1 { text += " · top-1 \(Formatting.fixed(100 * top, 1))%" }
            return text
        }
        let cosine = "cosine \(Formatting.fixed(f.cosine ?? 1, 5))"
        return compact ? cosine : cosine + " (worst \(Formatting.fixed(f.worstCosine ?? 1, 5)))"
    }

    /// What the evaluator does now, or why it does nothing (nil: it is idle with nothing to say).
    static func evaluationState(_ jobs: JobCenter) -> (String, Style)? {
        guard let evaluator = jobs.evaluator else { return jobs.evaluationNote.map { ("model error: \($0)", .dim) } }
        let snap = evaluator.snapshot()
        switch snap.phase {
        case .running:
            let p =
                snap.progress.map { p in
                    "\(Formatting.fixed(100 * p.fraction, 0))% · " + (p.remaining.map { "~\(Formatting.fixed($0, 0)) s left · " } ?? "")
                } ?? ""
            return ("model error: \(p)measuring \(snap.label)", .accent)
        case .paused: return ("model error: measured when the job ends (\(snap.pending) layer\(snap.pending == 1 ? "" : "s") waiting)", .dim)
        case .unavailable(let why): return ("model error unavailable: \(why)", .warn)
        case .failed(let why): return ("model error failed: \(why)", .bad)
        case .idle: return snap.reference == nil ? ("model error: the engine loads at the first job", .dim) : nil
        }
    }

    /// The Quantize tab's lines on what the layer `layer`, quantized to `format`, costs the model.
    static func modelErrorLines(_ jobs: JobCenter, layer: String, format: String?) -> [(String, Style)] {
        var lines: [(String, Style)] = []
        if let evaluator = jobs.evaluator {
            let snap = evaluator.snapshot()
            if let format, let own = snap.layers[layer], own.format == format {
                lines.append(("model, this layer alone: \(figures(own.figures))", own.figures.cost > 0 ? .normal : .good))
            }
            if let whole = snap.model {
                let change = whole.change.map { " (\($0 >= 0 ? "+" : "")\(Formatting.scientific($0, 1)))" } ?? ""
                lines.append(("model, all \(whole.layers) quantized: \(figures(whole.figures))\(change)", .normal))
            }
            if let ref = snap.reference {
                let what = ref.ppl.map { "unquantized ppl \(Formatting.fixed($0, 2)) on " } ?? "against the unquantized model on "
                lines.append(("  \(what)\(snap.source)", .dim))
            }
        }
        if let state = evaluationState(jobs) { lines.append(state) }
        return lines
    }

    /// The Model tab's line on the whole model (short: it shares its line with the rows count;
    /// the status line says what the evaluation does).
    static func modelErrorSummary(_ jobs: JobCenter) -> (String, Style) {
        if let evaluator = jobs.evaluator {
            let snap = evaluator.snapshot()
            if let whole = snap.model {
                let ref = snap.reference?.ppl.map { " (unquantized \(Formatting.fixed($0, 2)))" } ?? ""
                return ("model, \(whole.layers) quantized: \(figures(whole.figures, compact: true))\(ref)", .accent)
            }
            if let state = evaluationState(jobs) { return state }
            return ("model error: quantize a layer to measure it (on \(snap.source))", .dim)
        }
        return evaluationState(jobs) ?? ("", .dim)
    }

    /// A layer's cell in the Model tab's model-error column: its KL (decoders) or 1 − cosine
    /// (encoders) alone, "…" while it waits to be measured, "-" when not quantized.
    static func modelErrorCell(_ snap: ModelEvaluator.Snapshot?, _ result: LayerResult?, layer: String) -> String {
        guard let result else { return "-" }
        guard let snap else { return "-" }
        guard let own = snap.layers[layer], own.format == result.format else { return result.matrix == nil ? "-" : "…" }
        return Formatting.scientific(own.figures.cost, 2)
    }
}
