import Any4Core
import Any4Inference
import Any4Kernels
import ArgumentParser
import Foundation

/// `--format FORMAT` and the quantize command's options, for the commands that run a model
/// (ppl, embed-eval, run): the model is quantized in place before it runs.
struct EngineQuantizationGroup: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Quantize the linear layers to this format before running (default: run the weights as stored).",
            valueName: "format"))
    var format: FormatArgument?

    /// `--quantize`, the old spelling of `--format`.
    @Option(name: .customLong("quantize"), help: .hidden)
    var quantizeAlias: FormatArgument?

    @OptionGroup var quantization: QuantizationOptionGroup

    @Flag(
        help:
            "With --format: calibrate sequentially on --prompt (block i's statistics are taken after blocks 0..<i are quantized) and weigh any-b's k-means by --stat."
    )
    var calibrate = false

    @Option(help: "Calibration prompt file for --calibrate (default: assets/calibration.txt).")
    var prompt: String?

    @Option(help: "Lookup-kernel path for quantized layers at small batch: fast (int8 activations) or exact (f32 activations).")
    var kernel: KernelPath = .fast

    /// The format asked for, under either spelling (nil: run the weights as stored).
    var quantize: FormatArgument? { quantizeAlias ?? format }

    /// Both spellings at once: status 2 rather than one silently winning.
    func validate() throws {
        if format != nil && quantizeAlias != nil {
            throw usageError("--format and --quantize are the same option (--quantize is its old name); give it once")
        }
    }

    func engineOptions() -> EngineOptions {
        var o = EngineOptions()
        o.threads = quantization.threads
        o.kernel = kernel
        return o
    }

    /// Quantizes `engine` in place as asked; returns a one-line description (nil: not quantized).
    func apply(to engine: any TransformerEngine, tokenizer: any TextTokenizer, quiet: Bool) throws -> String? {
        guard let format = quantize?.format else {
            if calibrate { throw usageError("--calibrate needs --format FORMAT") }
            return nil
        }
        let options = try quantization.options()
        let selection = try quantization.selection(for: engine.model)
        let progress = Progress(total: 0, label: "quantizing \(format.name)")
        let started = Clock.now
        let results: [LayerResult]
        if calibrate {
            guard format.perRowTable else {
                throw usageError("--calibrate weighs any-b's k-means; \(format.name) has no learned table")
            }
            let statistic = quantization.stat
            let sequences = try calibrationSequences(engine: engine, tokenizer: tokenizer, promptPath: prompt)
            results = try runProgressJob(progress, interrupted: "interrupted", unit: "weights") {
                try EngineQuantization.quantizeSequentially(
                    engine, sequences: sequences, format: format, options: options,
                    statistic: statistic, selection: selection, progress: progress
                ).results
            }
        } else {
            let calibration = try quantization.calibration(options)
            results = try runProgressJob(progress, interrupted: "interrupted", unit: "weights") {
                try EngineQuantization.quantize(
                    engine, format: format, options: options, selection: selection,
                    calibration: calibration, progress: progress)
            }
        }
        guard !results.isEmpty else { throw usageError("no linear layer of \(engine.model.path) matches the layer selection") }
        warnStorageFallbacks(results)
        let bits = LayerReports(results).bitsPerWeight
        var text = "\(format.name) g\(options.blockSize(for: format))"
        if calibrate { text += " calibrated (\(quantization.stat.rawValue))" }
        text += ": \(results.count) layers, \(Formatting.fixed(bits, 3)) bits/weight, \(Formatting.fixed(Clock.now - started, 1)) s"
        if !quiet { printError("any4: quantized \(text)") }
        return text
    }
}

/// The calibration token sequences of the prompt file (default: assets/calibration.txt) for the
/// engine's kind of model, or status 2 naming the file.
func calibrationSequences(engine: any TransformerEngine, tokenizer: any TextTokenizer, promptPath: String?) throws -> [[Int]] {
    let path = promptPath ?? CalibrationPrompt.defaultPath()
    let text = try readText(path, what: "calibration prompt")
    do {
        return try CalibrationPrompt.sequences(text, source: path, engine: engine, tokenizer: tokenizer)
    } catch {
        throw usageError("\(error)")
    }
}

/// A UTF-8 text file, or status 2 naming the file (missing, unreadable, not a regular file — a
/// FIFO, device or socket would block or never end —, not UTF-8, empty).
func readText(_ path: String, what: String) throws -> String {
    let store: ByteStore
    do {
        store = try ByteStore(mapping: path)
    } catch let error as FileFormatError {
        throw usageError("\(path): cannot read the \(what): \(error.message)")
    }
    guard let text = String(validating: store.bytes, as: UTF8.self) else {
        throw usageError("\(path): the \(what) is not UTF-8 text")
    }
    guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
        throw usageError("\(path): the \(what) is empty")
    }
    return text
}

/// The model's tokenizer, or status 2 naming what is missing.
func loadTokenizer(_ model: Model) throws -> any TextTokenizer {
    try reportingFileErrors { try Tokenizers.load(for: model) }
}

/// The engine for the model's architecture, or status 2; a progress line on a terminal while its
/// weights are loaded and checked (Ctrl-C: status 130).
func loadEngine(_ model: Model, options: EngineOptions) throws -> any TransformerEngine {
    let progress = Progress(total: 0, label: "loading")
    return try runProgressJob(progress, interrupted: "interrupted", unit: "weights") {
        try reportingFileErrors { try Engines.load(model, options: options, progress: progress) }
    }
}

/// Runs `body`, mapping the engine's refusals (context overflow, too-short text, a KV cache the
/// machine cannot hold) to status 2.
func reportingInferenceErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as InferenceError {
        throw usageError("\(error)")
    } catch let error as SizeError {
        throw usageError("\(error)")
    }
}

/// Prints the UTF-8 bytes of generated tokens as they complete characters.
struct UTF8Stream {
    private var pending: [UInt8] = []

    /// Appends bytes and returns the text that is now complete.
    mutating func push(_ bytes: [UInt8]) -> String {
        pending += bytes
        // Keep back an incomplete trailing sequence (at most 3 bytes).
        var end = pending.count
        var back = 0
        while back < min(3, pending.count) {
            let b = pending[pending.count - 1 - back]
            if b & 0xC0 != 0x80 {  // a lead byte (or ASCII): is its sequence complete?
                let need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
                if need > back + 1 { end = pending.count - 1 - back }
                break
            }
            back += 1
        }
        let text = String(decoding: pending[..<end], as: UTF8.self)
        pending.removeFirst(end)
        return text
    }

    mutating func flush() -> String {
        defer { pending = [] }
        return String(decoding: pending, as: UTF8.self)
    }
}

/// Writes to standard output through the same buffer as `print`, flushing when asked (streamed
/// tokens, running estimates).
func writeStdout(_ text: String, flush: Bool = true) {
    print(text, terminator: "")
    if flush { fflush(nil) }
}
