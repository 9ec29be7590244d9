import Any4Core
import Any4Inference
import Any4Kernels
import ArgumentParser

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

    @Option(
        help:
            "Make the prompt exactly this many tokens (1 up to the model's context less -n): the prompt's tokens repeated or cut, for a prefill figure at a fixed length (as llama-bench's pp128 is)."
    )
    var promptTokens: Int?

    @Flag(help: "Generate all -n tokens: the end-of-sequence token does not stop the run (speed figures over a fixed count).")
    var ignoreEos = false

    @Flag(help: "Wrap the prompt in the model's chat turns (ChatML <|im_start|> … when the vocabulary has them).")
    var chat = false

    @OptionGroup var engineQuantization: EngineQuantizationGroup

    @Option(
        help:
            "The LM head in decode steps and for the prompt's last row: f32, f16 or q8 (int8 weights and activations per 32, a quarter of f32's bytes)."
    )
    var head: DecodeHead = .q8

    @Option(
        help:
            "How the prompt pass runs quantized layers: lookup (the lookup kernel on --kernel's path, as decode does), gemm (f32 GEMMs over dequantized tiles, as ppl does) or auto (lookup where the AVX-512 VNNI kernel runs with --kernel fast, where it is the faster; else gemm)."
    )
    var prefill: PrefillPath = .auto

    @Option(help: "The KV cache's precision: f32 (as computed) or f16 (attention reads half the bytes; keys and values rounded to f16).")
    var kvCache: KVPrecision = .f32

    @Flag(help: "Run the prompt and one decode step once, untimed, before the timed run (steadier speed figures).")
    var warmup = false

    @Flag(
        inversion: .prefixedNo,
        help:
            "Measure memory bandwidth just before and just after generating (a triad probe, ~1 s each; their mean is used) and print the decode rate it bounds (bytes read per token ÷ bandwidth)."
    )
    var probeBandwidth = true

    @OptionGroup var jsonOutput: JSONOutputOption

    /// Numeric options checked as the command line is parsed (status 2 naming the option).
    func validate() throws {
        try requireRange("-n", n, 1...maxContextTokens)
        if let promptTokens { try requireRange("--prompt-tokens", promptTokens, 1...maxContextTokens) }
    }

    func run() throws {
        let json = jsonOutput.json
        let model = try openModel(modelArgument.model)
        var options = engineQuantization.engineOptions()
        let decodeHead = head
        options.decodeHead = decodeHead
        options.kvCache = kvCache
        let prefillPath = prefill.resolved(kernel: options.kernel)
        if prefillPath == .lookup { options.gemmRows = Int.max }
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
        var prompt = tokenizer.encode(text, addSpecialTokens: true)
        guard !prompt.isEmpty else { throw usageError("the prompt is empty") }
        if let promptTokens {
            let encoded = prompt
            prompt = (0..<promptTokens).map { encoded[$0 % encoded.count] }
        }
        if ignoreEos { stop = [] }
        guard prompt.count + n <= llama.config.contextLength else {
            throw usageError("\(prompt.count) prompt tokens + \(n) do not fit the model's context of \(llama.config.contextLength)")
        }
        // The bandwidth of this machine moves by 2x between minutes: probed on both sides of the run.
        var probes = probeBandwidth ? [BandwidthProbe.triadGBps(threads: llama.options.workers)] : []
        var stream = UTF8Stream()
        if !json { writeStdout(chat ? promptText + "\n" : promptText) }
        let g = try reportingInferenceErrors {
            try Generation.greedy(llama, prompt: prompt, count: n, stop: stop, warmup: warmup) { id in
                if !json && !stop.contains(id) { writeStdout(stream.push(tokenizer.bytes(of: id))) }
                return true
            }
        }
        let generated = g.tokens.filter { !stop.contains($0) }
        // The memory floor of a decode step: bytes it reads (at the mean position of the decode
        // steps) over the bandwidth a triad probe measures with the same threads, before and after.
        let meanPosition = g.promptTokens + max(g.tokens.count - 1, 0) / 2
        let bytesPerToken = llama.decodeStepBytes(position: meanPosition)
        probes.append(contentsOf: probeBandwidth ? [BandwidthProbe.triadGBps(threads: llama.options.workers)] : [])
        let probe = probes.isEmpty ? nil : probes.reduce(0, +) / Double(probes.count)
        let bound = probe.map { $0 * 1e9 / Double(max(bytesPerToken, 1)) }
        if json {
            print(
                JSONValue.object([
                    ("prompt_tokens", JSONValue(g.promptTokens)), ("tokens", .array(g.tokens.map { JSONValue($0) })),
                    ("text", .string(tokenizer.decode(generated, skipSpecial: true))),
                    ("prefill_tokens_per_s", JSONValue(g.prefillRate)), ("decode_tokens_per_s", JSONValue(g.decodeRate)),
                    ("weights", .string(quantized ?? "as stored")), ("threads", JSONValue(llama.options.workers)),
                    ("decode_head", .string(decodeHead.rawValue)), ("kv_cache", .string(kvCache.rawValue)),
                    ("prefill_path", .string(prefillPath.rawValue)), ("simd", .string(CPUFeatures.simd.name)),
                    ("bytes_per_token", JSONValue(bytesPerToken)), ("probe_gbps", probe.map { JSONValue($0) } ?? .null),
                    ("probe_gbps_before_after", .array(probes.map { JSONValue($0) })),
                    ("bound_tokens_per_s", bound.map { JSONValue($0) } ?? .null),
                    ("share_of_bound", bound.map { JSONValue(g.decodeRate / $0) } ?? .null)
                ]).serialized)
        } else {
            writeStdout(stream.flush() + "\n")
            printError(
                """
                prefill \(g.promptTokens) tokens: \(Formatting.fixed(g.prefillRate, 1)) tokens/s · \
                decode \(g.tokens.count) tokens: \(Formatting.fixed(g.decodeRate, 1)) tokens/s · \
                \(quantized ?? "weights as stored") · head \(decodeHead.rawValue) in decode · prefill \(prefillPath.rawValue) · \(llama.options.workers) threads
                """)
            if let probe, let bound {
                printError(
                    """
                    memory floor: \(Formatting.fixed(Double(bytesPerToken) / 1e6, 1)) MB read per token at \(Formatting.fixed(probe, 1)) GB/s \
                    (probe) bounds decode at \(Formatting.fixed(bound, 1)) tokens/s; reached \(Formatting.fixed(100 * g.decodeRate / bound, 0)) %
                    """)
            }
        }
    }
}

/// How `run`'s prompt pass runs quantized layers.
enum PrefillPath: String, ExpressibleByArgument, CaseIterable {
    case auto, lookup, gemm

    /// auto: the lookup kernel where its AVX-512 VNNI version runs the fast path (2-3x the AVX2
    /// kernel at 8+ rows, and faster than f32 GEMMs there); else f32 GEMMs over dequantized tiles.
    func resolved(kernel: KernelPath) -> PrefillPath {
        guard self == .auto else { return self }
        return kernel == .fast && CPUFeatures.simd >= .avx512 ? .lookup : .gemm
    }
}
