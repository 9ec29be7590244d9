import Any4Core
import Any4Inference
import ArgumentParser

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
            print(
                "\(tokens.count) tokens, \(windows.count / ctx) windows of \(ctx)\(bos != nil ? ", BOS first" : "")"
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
            print(
                JSONValue.object([
                    ("ppl", JSONValue(result.ppl)), ("tokens", JSONValue(result.tokens)), ("chunks", JSONValue(result.chunks)),
                    ("ctx", JSONValue(ctx)), ("nll", JSONValue(result.nll)), ("text_tokens", JSONValue(tokens.count)),
                    ("weights", .string(quantized ?? "as stored")), ("seconds", JSONValue(result.seconds))
                ]).serialized)
        } else {
            print(running.joined(separator: ","))
            print(
                "perplexity \(Formatting.fixed(result.ppl, 4)) over \(result.tokens) scored tokens in \(result.chunks) windows "
                    + "(\(Formatting.fixed(result.seconds, 1)) s)")
        }
    }
}
