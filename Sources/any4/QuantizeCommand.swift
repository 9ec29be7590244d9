import Any4Core
import Any4Inference
import ArgumentParser

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a model's linear layers and write an any4 checkpoint (or a fake-quant one).",
        discussion: """
            Formats: \(FormatRegistry.all.map(\.name).joined(separator: ", ")). Embeddings are never \
            quantized and the LM head is skipped unless --skip says otherwise. --out chooses the \
            container (see --out; the README's "Checkpoint layout" describes each). The output is written \
            to a temporary file or folder and renamed when complete: an error, Ctrl-C, SIGTERM or SIGHUP \
            leaves no output. An --out that is the model, one of its files or folder, or another input is refused. \
            MODEL may be `demo` (the built-in model). --json prints one object with the per-layer results.
            """
    )

    @OptionGroup var modelArgument: ModelArgument

    @Option(help: "Numeric format (or --recipe).")
    var format: FormatArgument?

    @Option(
        help:
            "A recipe written by `any4 plan`: each planned layer's format and group (instead of --format; layers it keeps, and layers it does not name, are copied as stored)."
    )
    var recipe: String?

    @OptionGroup var quantization: QuantizationOptionGroup

    @OptionGroup var output: CheckpointOutputOption

    @Flag(help: "Write dequantized weights under the input's names, shapes and dtypes instead of codes.")
    var fakeQuant = false

    @Flag(
        help:
            "Calibrate sequentially on --prompt while quantizing (block i's statistics are taken on the model whose blocks before i are already quantized) and weigh any-b's k-means by --stat. Needs a model the engine runs (Llama family, BERT)."
    )
    var calibrate = false

    @Option(help: "Calibration prompt file for --calibrate (default: assets/calibration.txt).")
    var prompt: String?

    @OptionGroup var jsonOutput: JSONOutputOption

    var out: String { output.out }
    var json: Bool { jsonOutput.json }

    func run() throws {
        let options = try quantization.options()
        if let recipe {
            guard format == nil else { throw usageError("give --format or --recipe, not both") }
            guard quantization.layers == nil, quantization.skip == nil else {
                throw usageError("--layers and --skip select layers for --format; the recipe names its layers")
            }
            let plan = try reportingFileErrors { try Recipe.load(recipe) }
            let model = try openModel(modelArgument.model)
            let jobs = try reportingFileErrors { try plan.jobs(for: model, base: options, recipePath: recipe) }
            // "keep" was counted at the source's stored bits: only a GGUF checkpoint keeps ggml blocks.
            let kept = plan.table.layers.indices.filter { plan.candidate(ofLayer: $0).isKeep }.map { plan.table.layers[$0] }
            if model.gguf != nil, !kept.isEmpty, (try? QuantizedCheckpoint.container(for: out, source: model)) != .gguf {
                printError(
                    "any4: warning: the recipe keeps \(kept.count) layers at their GGUF blocks' bits; this checkpoint widens them (write a .gguf to keep them as planned)"
                )
            }
            try run(model: model, jobs: jobs, options: options)
            return
        }
        guard let numeric = format?.format else { throw usageError("give --format FORMAT or --recipe FILE") }
        let model = try openModel(modelArgument.model)
        let selection = try quantization.selection(for: model)
        let layers = try selectedLayers(model, selection, quantization)
        let jobs = layers.map { LayerJob(tensor: $0, format: numeric, options: options) }
        try run(model: model, jobs: jobs, options: options)
    }

    /// The pipeline proper: quantizes `jobs` (a layer without one is copied as stored) and
    /// writes the checkpoint. `options` are the command line's (calibration file, weighting).
    func run(model: Model, jobs: [LayerJob], options: QuantizationOptions) throws {
        let formatNames = Set(jobs.map(\.format.name))
        let displayName = formatNames.count == 1 ? formatNames.first! : "mixed"
        if calibrate, case .calibration = options.sampleWeighting {
            throw usageError("--calibrate computes its own statistics; drop --sample-weight calib:FILE")
        }
        if calibrate, let job = jobs.first(where: { !$0.format.perRowTable }) {
            throw usageError("--calibrate weighs any-b's k-means; \(job.format.name) has no learned table")
        }
        if prompt != nil && !calibrate { throw usageError("--prompt is for --calibrate") }
        var inputs = model.inputFiles
        if case .calibration(let path, _) = options.sampleWeighting { inputs.append(path) }
        if calibrate { inputs.append(prompt ?? CalibrationPrompt.defaultPath()) }
        let container = try reportingFileErrors { try QuantizedCheckpoint.container(for: out, source: model) }
        let maxShardSize = try output.maxShardBytes(for: container)
        try reportingFileErrors { try QuantizedCheckpoint.checkOutput(out, container: container, inputs: inputs) }
        let calibration = try quantization.calibration(options)

        let progress = Progress(total: jobs.reduce(0) { $0 + $1.tensor.shape[0] }, label: "quantizing \(displayName)")
        var results: [LayerResult] = []
        let started = Clock.now
        /// Writes the quantized layers as the checkpoint (the last phase of both paths); the
        /// progress line then counts bytes written.
        func write(_ results: [LayerResult]) throws {
            var quantized: [String: QuantizedMatrix] = [:]
            for r in results { quantized[r.name] = r.matrix }
            try QuantizedCheckpoint.write(
                model: model, quantized: quantized, fakeQuant: fakeQuant, to: out, maxShardSize: maxShardSize,
                progress: progress)
        }
        if calibrate {
            let engine = try loadEngine(model, options: EngineOptions())
            let tokenizer = try loadTokenizer(model)
            let sequences = try calibrationSequences(engine: engine, tokenizer: tokenizer, promptPath: prompt)
            let statistic = quantization.stat
            let source = "sequential:" + (prompt ?? "assets/calibration.txt")
            try runProgressJob(progress, interrupted: "interrupted; nothing was written") {
                _ = try EngineQuantization.quantizeSequentially(
                    engine, sequences: sequences, jobs: jobs, statistic: statistic, source: source, progress: progress
                ) { result, _ in results.append(result) }
                try write(results)
            }
        } else {
            try runProgressJob(progress, interrupted: "interrupted; nothing was written") {
                for (i, job) in jobs.enumerated() {
                    progress.setLabel("quantizing \(job.format.name) \(i + 1)/\(jobs.count) \(job.tensor.name)")
                    results.append(try ModelQuantization.quantize(job, of: model, calibration: calibration, progress: progress))
                }
                try write(results)
            }
        }
        let seconds = Clock.now - started
        warnStorageFallbacks(results)
        let reports = LayerReports(results)
        if json {
            print(
                JSONValue.object([
                    ("format", .string(displayName)), ("out", .string(out)), ("seconds", JSONValue(seconds)),
                    ("layers", reports.json(LayerReport.Field.quantize))
                ]).serialized)
        } else {
            print(
                "quantized \(results.count) layers (\(Formatting.count(reports.parameters)) weights) to \(displayName) in \(Formatting.fixed(seconds, 2)) s"
            )
            print(
                "mean SQNR \(Formatting.fixed(reports.meanSQNR, 2)) dB · \(Formatting.fixed(reports.bitsPerWeight, 3)) bits/weight · worst layer \(worstLayer(reports))"
            )
            print("wrote \(out)\(fakeQuant ? " (fake-quant)" : "")")
        }
    }

    func worstLayer(_ reports: LayerReports) -> String {
        guard let worst = reports.worst, let sqnr = worst.outcome?.sqnrDB else { return "-" }
        return "\(worst.name) (\(Formatting.fixed(sqnr, 2)) dB)"
    }
}
