import Any4Core
import Any4Inference
import ArgumentParser

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
        try reportingFileErrors { try OutputGuard.check(out, inputs: model.inputFiles + [prompt ?? CalibrationPrompt.defaultPath()]) }
        var options = EngineOptions()
        options.threads = threadsOption.threads
        let engine = try loadEngine(model, options: options)
        let tokenizer = try loadTokenizer(model)
        let sequences = try calibrationSequences(engine: engine, tokenizer: tokenizer, promptPath: prompt)
        let progress = Progress(total: 0, label: "calibrating")
        let stats = try runProgressJob(progress, interrupted: "interrupted; nothing was written") {
            var result = try EngineQuantization.calibrate(engine, sequences: sequences, progress: progress)
            result.metadata["prompt"] = prompt ?? CalibrationPrompt.defaultPath()
            result.metadata["model"] = model.path
            progress.setLabel("writing \(out)")
            try result.write(to: out, progress: progress)
            return result
        }
        let tokens = sequences.reduce(0) { $0 + $1.count }
        print("calibrated \(stats.layers.count) linear layers on \(tokens) tokens; wrote \(out)")
    }
}
