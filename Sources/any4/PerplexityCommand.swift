import Any4
import ArgumentParser
import Foundation

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids (and pieces) the model's tokenizer gives a text.",
        discussion: "MODEL: a .gguf file or a Hugging Face model folder (with its tokenizer). --json: {\"ids\": [...], \"pieces\": [...]}.")

    @OptionGroup var modelArgument: ModelArgument

    @Argument(help: "The text to tokenize.")
    var text: String

    @Flag(help: "Leave out the model's special tokens (BOS, [CLS]/[SEP]).")
    var noSpecial = false

    @OptionGroup var jsonOutput: JSONOutputOption

    func run() throws {
        let model = try openModel(modelArgument.model)
        let tokenizer = try loadTokenizer(model)
        let ids = tokenizer.encode(text, addSpecialTokens: !noSpecial)
        if jsonOutput.json {
            print(JSONValue.object([
                ("ids", .array(ids.map { JSONValue($0) })),
                ("pieces", .array(ids.map { .string(tokenizer.piece($0)) })),
            ]).serialized)
        } else {
            print("\(ids.count) tokens")
            for id in ids { print("\(id)\t\(printable(tokenizer.piece(id)))") }
        }
    }

    /// A piece with its whitespace and control characters made visible.
    func printable(_ piece: String) -> String {
        var out = ""
        for s in piece.unicodeScalars {
            switch s {
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default: out += s.properties.generalCategory == .control ? "\\u{\(String(s.value, radix: 16))}" : String(s)
            }
        }
        return "\"\(out)\""
    }
}

struct CalibrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate",
        abstract: "Run a prompt through the model and write per-input-channel activation statistics of every linear layer.",
        discussion: """
            The output (safetensors) holds, for each linear weight P.weight, P.mean, P.absmean, P.sqmean \
            (F32 [in]) and P.count; use it with `any4 quantize --sample-weight calib:FILE --stat S`. \
            The model runs as stored (one pass); `quantize --calibrate` instead calibrates block by block \
            on the partly quantized model. MODEL: a .gguf file or a Hugging Face model folder (a model the \
            engine runs: Llama family, BERT).
            """)

    @OptionGroup var modelArgument: ModelArgument

    @Option(help: "Prompt file (default: assets/calibration.txt).")
    var prompt: String?

    @OptionGroup var output: OutputFileOption

    @OptionGroup var threadsOption: ThreadsOption

    func run() throws {
        let model = try openModel(modelArgument.model)
        let out = output.out
        try reportingFileErrors { try OutputGuard.check(out, inputs: model.inputFiles + [prompt ?? defaultPromptPath()]) }
        var options = EngineOptions()
        options.threads = threadsOption.threads
        let engine = try loadEngine(model, options: options)
        let tokenizer = try loadTokenizer(model)
        let sequences = try calibrationSequences(engine: engine, tokenizer: tokenizer, promptPath: prompt)
        let progress = Progress(total: 0, label: "calibrating")
        let stats = try runProgressJob(progress, interrupted: "interrupted; nothing was written") {
            var result = try EngineQuantization.calibrate(engine, sequences: sequences, progress: progress)
            result.metadata["prompt"] = prompt ?? defaultPromptPath()
            result.metadata["model"] = model.path
            progress.setLabel("writing \(out)")
            try result.write(to: out, progress: progress)
            return result
        }
        let tokens = sequences.reduce(0) { $0 + $1.count }
        print("calibrated \(stats.layers.count) linear layers on \(tokens) tokens; wrote \(out)")
    }
}

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ppl",
        abstract: "Perplexity of a decoder on a text, computed as llama.cpp's perplexity tool does.",
        discussion: """
            The text's tokens are cut into non-overlapping windows of --ctx tokens; each window runs from \
            an empty cache (its first token replaced by BOS when the model adds one) and its second half \
            is scored. Prints the running estimate per window; --json prints one object at the end: \
            {"ppl", "tokens" (scored), "chunks", ...}. MODEL: a .gguf file or a Hugging Face model folder (a decoder).
            """)

    @OptionGroup var modelArgument: ModelArgument

    @Option(help: "The text file.")
    var text: String

    @Option(parsing: .unconditional, help: "Window length in tokens: 8 up to the model's context (at most 1048576).")
    var ctx = 512

    @Option(parsing: .unconditional, help: "Use at most this many windows (0: all).")
    var chunks = 0

    @OptionGroup var engineQuantization: EngineQuantizationGroup

    @OptionGroup var jsonOutput: JSONOutputOption

    /// Numeric options checked as the command line is parsed (status 2 naming the option).
    func validate() throws {
        try requireRange("--ctx", ctx, 8...maxContextTokens)
        guard chunks >= 0 else { throw usageError("--chunks must be 0 (all windows) or more, got \(chunks)") }
    }

    func run() throws {
        let json = jsonOutput.json
        let model = try openModel(modelArgument.model)
        let engine = try loadEngine(model, options: engineQuantization.engineOptions())
        guard let llama = engine as? LlamaEngine else {
            throw usageError("\(model.path): perplexity needs a decoder; \(model.config.architecture ?? "this model") is an encoder (try embed-eval)")
        }
        guard ctx <= llama.config.contextLength else {
            throw usageError("--ctx \(ctx) is longer than the model's context of \(llama.config.contextLength) tokens")
        }
        let tokenizer = try loadTokenizer(model)
        let textValue = try readText(text, what: "text")
        let tokens = tokenizer.encode(textValue, addSpecialTokens: false)
        guard tokens.count >= ctx else {
            throw usageError("\(text): \(tokens.count) tokens, fewer than one window of --ctx \(ctx)")
        }
        let quantized = try engineQuantization.apply(to: engine, tokenizer: tokenizer, quiet: json)
        let bos = tokenizer.leadingBOS
        var windows = tokens
        // chunks × ctx only when it is at most the text's length (no overflow for any --chunks).
        if chunks > 0 && chunks < tokens.count / ctx { windows = Array(tokens.prefix(chunks * ctx)) }
        if !json {
            print("\(tokens.count) tokens, \(windows.count / ctx) windows of \(ctx)\(bos != nil ? ", BOS first" : "")"
                  + (quantized.map { ", \($0)" } ?? ", weights as stored"))
        }
        let progress = Progress(total: 0, label: "perplexity")
        var running: [String] = []
        let result = try runProgressJob(progress, interrupted: "interrupted") {
            try Perplexity.measure(llama, tokens: windows, ctx: ctx, bos: bos, progress: progress) { done, estimate in
                // The running estimate shows in the progress line; the whole series, as llama.cpp
                // prints it, comes at the end.
                progress.setLabel("perplexity [\(done)] \(Formatting.fixed(estimate, 4))")
                running.append("[\(done)]\(Formatting.fixed(estimate, 4))")
            }
        }
        if json {
            print(JSONValue.object([
                ("ppl", JSONValue(result.ppl)), ("tokens", JSONValue(result.tokens)), ("chunks", JSONValue(result.chunks)),
                ("ctx", JSONValue(ctx)), ("nll", JSONValue(result.nll)), ("text_tokens", JSONValue(tokens.count)),
                ("weights", .string(quantized ?? "as stored")), ("seconds", JSONValue(result.seconds)),
            ]).serialized)
        } else {
            print(running.joined(separator: ","))
            print("perplexity \(Formatting.fixed(result.ppl, 4)) over \(result.tokens) scored tokens in \(result.chunks) windows "
                  + "(\(Formatting.fixed(result.seconds, 1)) s)")
        }
    }
}

struct EmbedEvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed-eval",
        abstract: "How far quantization moves an encoder's sentence embeddings (cosine to the f32 ones).",
        discussion: """
            One sentence a line. --json: {"mean_cosine", "min_cosine", "sentences", "worst"}. MODEL: a Hugging Face \
            folder or .gguf file of a BERT encoder.
            """)

    @OptionGroup var modelArgument: ModelArgument

    @Option(help: "Sentences, one a line.")
    var sentences: String

    @OptionGroup var engineQuantization: EngineQuantizationGroup

    @OptionGroup var jsonOutput: JSONOutputOption

    func run() throws {
        let json = jsonOutput.json
        let model = try openModel(modelArgument.model)
        let engine = try loadEngine(model, options: engineQuantization.engineOptions())
        guard let bert = engine as? BertEngine else {
            throw usageError("\(model.path): embed-eval needs an encoder; \(model.config.architecture ?? "this model") is a decoder (try ppl)")
        }
        let tokenizer = try loadTokenizer(model)
        let lines = try readText(sentences, what: "sentence file").split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let ids = lines.map { Array(tokenizer.encode($0, addSpecialTokens: true).prefix(bert.maxPositions)) }
        guard engineQuantization.quantize != nil else {
            throw usageError("embed-eval compares against a quantized model: give --quantize FORMAT")
        }
        let progress = Progress(total: lines.count, label: "embedding (f32)")
        let reference = try runProgressJob(progress, interrupted: "interrupted") {
            try EmbeddingComparison.embeddings(bert, ids, progress: progress)
        }
        let quantized = try engineQuantization.apply(to: engine, tokenizer: tokenizer, quiet: json)
        progress.reset(total: lines.count, label: "embedding (quantized)")
        let after = try runProgressJob(progress, interrupted: "interrupted") {
            try EmbeddingComparison.embeddings(bert, ids, progress: progress)
        }
        let comparison = EmbeddingComparison(reference: reference, quantized: after)
        let worst = comparison.worst!
        if json {
            print(JSONValue.object([
                ("mean_cosine", JSONValue(comparison.mean)), ("min_cosine", JSONValue(worst.cosine)),
                ("sentences", JSONValue(lines.count)), ("worst", .string(lines[worst.index])),
                ("weights", .string(quantized ?? "as stored")),
            ]).serialized)
        } else {
            print("\(lines.count) sentences, \(quantized ?? "as stored")")
            print("mean cosine \(Formatting.fixed(comparison.mean, 6)) · min \(Formatting.fixed(worst.cosine, 6))")
            print("worst: \(lines[worst.index])")
        }
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Greedy generation from a prompt; prefill and decode speeds printed apart.",
        discussion: "MODEL: a .gguf file or a Hugging Face model folder (a decoder).")

    @OptionGroup var modelArgument: ModelArgument

    @Option(name: [.customShort("p"), .customLong("prompt-text")], help: "The prompt.")
    var promptText: String

    @Option(name: .short, parsing: .unconditional, help: "Tokens to generate: 1 up to the model's context less the prompt (at most 1048576).")
    var n = 64

    @Flag(help: "Wrap the prompt in the model's chat turns (ChatML <|im_start|> … when the vocabulary has them).")
    var chat = false

    @OptionGroup var engineQuantization: EngineQuantizationGroup

    @Option(help: "The LM head in decode steps: f32, f16 or q8 (int8 weights and activations per 32, a quarter of f32's bytes). The prompt pass uses f32.")
    var head: DecodeHead = .q8

    @Flag(help: "Run the prompt and one decode step once, untimed, before the timed run (steadier speed figures).")
    var warmup = false

    @OptionGroup var jsonOutput: JSONOutputOption

    /// Numeric options checked as the command line is parsed (status 2 naming the option).
    func validate() throws {
        try requireRange("-n", n, 1...maxContextTokens)
    }

    func run() throws {
        let json = jsonOutput.json
        let model = try openModel(modelArgument.model)
        var options = engineQuantization.engineOptions()
        let decodeHead = head
        options.decodeHead = decodeHead
        let engine = try loadEngine(model, options: options)
        guard let llama = engine as? LlamaEngine else {
            throw usageError("\(model.path): run needs a decoder; \(model.config.architecture ?? "this model") is an encoder")
        }
        let tokenizer = try loadTokenizer(model)
        let quantized = try engineQuantization.apply(to: engine, tokenizer: tokenizer, quiet: json)
        var text = promptText
        var stop: Set<Int> = tokenizer.eosID.map { [$0] } ?? []
        if chat {
            let template: ChatTemplate
            do { template = try ChatTemplate.chatML(for: tokenizer) } catch { throw usageError("--chat: \(error)") }
            stop.insert(template.endOfTurn)
            text = template.prompt(user: promptText)
        }
        let prompt = tokenizer.encode(text, addSpecialTokens: true)
        guard !prompt.isEmpty else { throw usageError("the prompt is empty") }
        guard prompt.count + n <= llama.config.contextLength else {
            throw usageError("\(prompt.count) prompt tokens + \(n) do not fit the model's context of \(llama.config.contextLength)")
        }
        var stream = UTF8Stream()
        if !json { writeStdout(chat ? promptText + "\n" : promptText) }
        let g = try reportingInferenceErrors {
            try Generation.greedy(llama, prompt: prompt, count: n, stop: stop, warmup: warmup) { id in
                if !json && !stop.contains(id) { writeStdout(stream.push(tokenizer.bytes(of: id))) }
                return true
            }
        }
        let generated = g.tokens.filter { !stop.contains($0) }
        if json {
            print(JSONValue.object([
                ("prompt_tokens", JSONValue(g.promptTokens)), ("tokens", .array(g.tokens.map { JSONValue($0) })),
                ("text", .string(tokenizer.decode(generated, skipSpecial: true))),
                ("prefill_tokens_per_s", JSONValue(g.prefillRate)), ("decode_tokens_per_s", JSONValue(g.decodeRate)),
                ("weights", .string(quantized ?? "as stored")), ("threads", JSONValue(llama.options.workers)),
                ("decode_head", .string(decodeHead.rawValue)),
            ]).serialized)
        } else {
            writeStdout(stream.flush() + "\n")
            printError("""
                prefill \(g.promptTokens) tokens: \(Formatting.fixed(g.prefillRate, 1)) tokens/s · \
                decode \(g.tokens.count) tokens: \(Formatting.fixed(g.decodeRate, 1)) tokens/s · \
                \(quantized ?? "weights as stored") · head \(decodeHead.rawValue) in decode · \(llama.options.workers) threads
                """)
        }
    }
}
