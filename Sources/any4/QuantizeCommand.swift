import Any4Core
import Any4Inference
import ArgumentParser
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a model's linear layers and write an any4 checkpoint (or a fake-quant one).",
        discussion: """
            Formats: \(FormatRegistry.all.map(\.name).joined(separator: ", ")). Embeddings are never \
            quantized, and the heads (the LM head, a BERT pooler) are skipped unless --skip says otherwise. --out chooses the \
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

    @Flag(help: "Redo every shard of a folder checkpoint, ignoring the complete ones a previous run left in OUT.partial.")
    var force = false

    @Option(
        help:
            "Do part I of N (0-based) of a split run: N balanced parts of whole layers; the part writes only its shards into OUT.partial, then `any4 merge OUT.partial` finishes. Without it, SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT or JOB_COMPLETION_INDEX with --shard-count choose the part."
    )
    var shard: String?

    @Option(help: "Parts of a split run whose index comes from JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs) or SLURM_ARRAY_TASK_ID.")
    var shardCount: Int?

    @OptionGroup var jsonOutput: JSONOutputOption

    var out: String { output.out }
    var json: Bool { jsonOutput.json }

    func run() throws {
        // The signal sources are armed asynchronously: made now, long before the first write, so
        // that a signal during it is never lost.
        _ = InterruptRouter.shared
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
    /// writes the checkpoint as it goes (see ``CheckpointPlan``). `options` are the command
    /// line's (calibration file, weighting).
    func run(model: Model, jobs: [LayerJob], options: QuantizationOptions) throws {
        var jobs = jobs
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
        let split = try splitPart()
        if split.count > 1 && container != .folder {
            throw usageError("a split run (\(split.source)) writes a folder checkpoint's shards; \(out) is one \(container.rawValue) file")
        }
        if force && container != .folder { throw usageError("--force is for a folder checkpoint (a single file is always redone)") }
        if split.count > 1 { printError("any4: part \(split.index)/\(split.count) from \(split.source)") }
        let calibration = try quantization.calibration(options)

        // Sequential calibration: the engine runs the blocks in order; the layers outside blocks
        // are not quantized, and every layer's sample weighting names the prompt.
        var engine: (any TransformerEngine)? = nil
        var sequences: [[Int]] = []
        var blockOf: [String: Int] = [:]
        let source = "sequential:" + (prompt ?? "assets/calibration.txt")
        if calibrate {
            let e = try loadEngine(model, options: EngineOptions())
            sequences = try calibrationSequences(engine: e, tokenizer: try loadTokenizer(model), promptPath: prompt)
            for i in 0..<e.blockCount { for l in e.linears(ofBlock: i) { blockOf[l.name] = i } }
            let outside = jobs.filter { blockOf[$0.tensor.name] == nil }.map(\.tensor.name)
            if !outside.isEmpty {
                printError("any4: --calibrate quantizes the layers inside blocks; left as stored: \(outside.joined(separator: ", "))")
                jobs.removeAll { blockOf[$0.tensor.name] == nil }
            }
            for i in jobs.indices { jobs[i].options.sampleWeighting = .calibration(path: source, statistic: quantization.stat) }
            engine = e
        }

        var results: [LayerResult] = []
        let started = Clock.now
        var forceNow = force
        var reused = 0
        var mineCount = 0
        let work = container == .folder ? CheckpointPlan.workFolder(for: out) : parentDirectory(out)
        // A layer the default 16-bit tables cannot hold is stored in F32 (dtype's fallback), which
        // the plan could not know: the plan is made again with that layer pinned to F32 and the run
        // goes on, reusing the shards already complete (their headers do not change).
        while true {
            do {
                let plan = try runProgressJob(Progress(total: 0), interrupted: "interrupted; nothing was written") {
                    container == .gguf
                        ? try CheckpointPlan.makeGGUF(
                            model: model, jobs: jobs, fakeQuant: fakeQuant, inputs: try CheckpointPlan.inputFingerprint(inputs))
                        : try CheckpointPlan.make(
                            model: model, jobs: jobs, fakeQuant: fakeQuant, single: container == .safetensors, maxShardSize: maxShardSize,
                            partCount: split.count, inputs: try CheckpointPlan.inputFingerprint(inputs))
                }
                let mine = plan.parts[split.index]
                let work = container == .folder ? CheckpointPlan.workFolder(for: out) : parentDirectory(out)
                var writing = Set(mine)
                reused = 0
                if container == .folder {
                    try reportingFileErrors {
                        try CheckpointPlan.prepareWorkFolder(work, force: forceNow, inputs: inputs)
                        unlink(work + "/" + CheckpointPlan.manifestName(part: split.index, of: split.count))
                        // One part copies the config and tokenizer (parts on other machines sharing the
                        // folder would otherwise race on the same files).
                        if split.index == 0 { try CheckpointPlan.copyCompanions(of: model, into: work) }
                    }
                    for k in mine where !forceNow && plan.isComplete(k, in: work) {
                        printError("any4: reusing shard \(k + 1)/\(plan.files.count) \(plan.files[k].name)")
                        writing.remove(k)
                        reused += 1
                    }
                }
                let fileOfUnit = plan.fileOfUnit
                let todo = plan.units.indices.filter { plan.units[$0].job != nil && writing.contains(fileOfUnit[$0]) }
                let partLabel = split.count > 1 ? "part \(split.index)/\(split.count) · " : ""
                // Counted in weights (a layer's rows forwarded as rows × columns), so that the ETA
                // holds across layers of different widths; the calibrated path counts them too.
                let progress = Progress(
                    total: todo.reduce(0) { $0 + plan.units[$1].tensor.info.elementCount }, label: partLabel + "quantizing \(displayName)")
                let writer = StreamingCheckpointWriter(
                    plan: plan, folder: work, writing: writing, singlePath: container == .folder ? nil : out, progress: progress,
                    log: { printError("any4: \($0)") })
                func interrupted() -> String {
                    writer.abandon()
                    guard container == .folder else { return "interrupted; nothing was written" }
                    let kept = mine.filter { plan.isComplete($0, in: work) }.count
                    if kept == 0 && reused == 0 && split.count == 1 {
                        for name in listDirectory(work) { unlink(work + "/" + name) }
                        rmdir(work)
                        return "interrupted; nothing was written"
                    }
                    return "interrupted; \(kept) of \(mine.count) shards complete in \(work): run the same command again to resume "
                        + "(--force starts over)"
                }
                var done = 0
                func label(_ u: Int) -> String {
                    let k = plan.fileOfUnit[u]
                    return partLabel
                        + "\(plan.units[u].job!.format.name) \(done + 1)/\(todo.count) \(plan.units[u].tensor.name) · shard \(k + 1)/\(plan.files.count)"
                }
                try runProgressJob(progress, interrupted: interrupted(), unit: "weights") {
                    defer { writer.abandon() }
                    if let engine, !todo.isEmpty {
                        var unitOf: [String: Int] = [:]
                        for (u, unit) in plan.units.enumerated() where unit.job != nil { unitOf[unit.tensor.name] = u }
                        for u in plan.units.indices where plan.units[u].job == nil && writer.writes(unit: u) { try writer.put(unit: u, matrix: nil) }
                        let last = todo.compactMap { blockOf[plan.units[$0].tensor.name] }.max()
                        _ = try EngineQuantization.quantizeSequentially(
                            engine, sequences: sequences, jobs: jobs, statistic: quantization.stat, source: source, throughBlock: last,
                            progress: progress
                        ) { result, job in
                            guard let u = unitOf[job.tensor.name], writer.writes(unit: u) else { return }
                            progress.setLabel(label(u))
                            try writer.put(unit: u, matrix: result.matrix)
                            var r = result
                            r.matrix = nil
                            results.append(r)
                            done += 1
                        }
                        progress.setLabel(partLabel + "calibrated through block \(last ?? 0)")
                        guard writer.unfinished.isEmpty else {
                            throw FileFormatError(
                                file: work, kind: .badShape, "layers never quantized in \(writer.unfinished.joined(separator: ", "))")
                        }
                    } else {
                        for k in mine where writing.contains(k) {
                            for u in plan.files[k].units {
                                guard let job = plan.units[u].job else {
                                    try writer.put(unit: u, matrix: nil)
                                    continue
                                }
                                progress.setLabel(label(u))
                                let rows = Swift.max(1, plan.units[u].tensor.shape[0])
                                let layerProgress = Progress(
                                    total: rows, parent: progress, forwarding: plan.units[u].tensor.info.elementCount / rows)
                                var r = try ModelQuantization.quantize(job, of: model, calibration: calibration, progress: layerProgress)
                                try writer.put(unit: u, matrix: r.matrix)
                                r.matrix = nil
                                results.append(r)
                                done += 1
                            }
                        }
                    }
                    guard container == .folder else { return }
                    if split.count == 1 {
                        try CheckpointPlan.finish(folder: work, index: plan.index, shards: Set(plan.files.map(\.name)), out: out)
                    } else {
                        let manifest = try AtomicFileWriter(path: work + "/" + CheckpointPlan.manifestName(part: split.index, of: split.count))
                        try manifest.write(plan.manifest(part: split.index))
                        try manifest.commit()
                    }
                }
                mineCount = mine.count
                break
            } catch let fallback as StorageFallback {
                guard split.count == 1, !calibrate, let i = jobs.firstIndex(where: { $0.tensor.name == fallback.tensor }) else {
                    printError("any4: error: \(fallback.warning)")
                    throw usageError(
                        "a split or --calibrate run cannot change its plan on the way: run it (every part) with --table-dtype f32")
                }
                printError("any4: warning: \(fallback.warning); planning again")
                jobs[i].options.storageDType = fallback.storage
                forceNow = false
            }
        }
        // A layer redone after a plan change counts once (its last result).
        var last: [String: Int] = [:]
        for (i, r) in results.enumerated() { last[r.name] = i }
        results = results.enumerated().filter { last[$0.element.name] == $0.offset }.map(\.element)
        let seconds = Clock.now - started
        report(
            results, displayName: displayName, seconds: seconds, heads: skippedHeads(model, jobs), reused: reused, split: split,
            work: work, shards: mineCount)
    }

    /// The heads left as stored by the default skip (``LayerSelection/isDefaultSkipped(_:)``):
    /// none when --skip or a recipe chose the layers.
    func skippedHeads(_ model: Model, _ jobs: [LayerJob]) -> [String] {
        guard quantization.skip == nil, recipe == nil else { return [] }
        let planned = Set(jobs.map(\.tensor.name))
        return model.tensors.filter { $0.isLinear && $0.info.elementCount > 0 && LayerSelection.isDefaultSkipped($0.name) }
            .map(\.name).filter { !planned.contains($0) }
    }

    /// The part a split run does: `--shard I/N`, else the scheduler's environment (Slurm job
    /// arrays, Kubernetes Indexed Jobs with --shard-count), else the whole run (part 0 of 1).
    func splitPart() throws -> (index: Int, count: Int, source: String) {
        let env = ProcessInfo.processInfo.environment
        if let shard {
            let pieces = shard.split(separator: "/", omittingEmptySubsequences: false)
            guard pieces.count == 2, let i = Int(pieces[0]), let n = Int(pieces[1]), n >= 1, (0..<n).contains(i), n <= 100_000 else {
                throw usageError("--shard: \"\(shard)\" is not I/N with 0 ≤ I < N (e.g. 0/3, 1/3, 2/3)")
            }
            if shardCount != nil && shardCount != n { throw usageError("--shard-count \(shardCount!) contradicts --shard \(shard)") }
            return (i, n, "--shard")
        }
        if let text = env["SLURM_ARRAY_TASK_ID"], let id = Int(text) {
            let base = env["SLURM_ARRAY_TASK_MIN"].flatMap { Int($0) } ?? 0
            guard let n = shardCount ?? env["SLURM_ARRAY_TASK_COUNT"].flatMap({ Int($0) }) else {
                throw usageError("SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT: give --shard-count N (or --shard I/N)")
            }
            let i = id - base
            guard n >= 1, (0..<n).contains(i) else {
                throw usageError(
                    "SLURM_ARRAY_TASK_ID \(id) (less SLURM_ARRAY_TASK_MIN \(base)) is not a part of \(n): use a contiguous array such as --array=0-\(n - 1)"
                )
            }
            return (i, n, "SLURM_ARRAY_TASK_ID")
        }
        if let text = env["JOB_COMPLETION_INDEX"], let i = Int(text) {
            guard let n = shardCount else {
                printError("any4: JOB_COMPLETION_INDEX is set but --shard-count is not: quantizing the whole model")
                return (0, 1, "")
            }
            guard n >= 1, (0..<n).contains(i) else { throw usageError("JOB_COMPLETION_INDEX \(i) is not a part of --shard-count \(n)") }
            return (i, n, "JOB_COMPLETION_INDEX")
        }
        if let n = shardCount, n != 1 {
            throw usageError("--shard-count is for SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX; neither is set (use --shard I/N)")
        }
        return (0, 1, "")
    }

    func report(
        _ results: [LayerResult], displayName: String, seconds: Double, heads: [String] = [], reused: Int = 0,
        split: (index: Int, count: Int, source: String) = (0, 1, ""), work: String = "", shards: Int = 0
    ) {
        warnStorageFallbacks(results)
        let reports = LayerReports(results)
        if json {
            var members: [(key: String, value: JSONValue)] = [
                ("format", .string(displayName)), ("out", .string(out)), ("seconds", JSONValue(seconds)),
                ("reused_shards", JSONValue(reused))
            ]
            if split.count > 1 { members += [("part", JSONValue(split.index)), ("parts", JSONValue(split.count))] }
            members.append(("skipped_heads", .array(heads.map { .string($0) })))
            members.append(("layers", reports.json(LayerReport.Field.quantize)))
            print(JSONValue.object(members).serialized)
            return
        }
        print(
            "quantized \(results.count) layers (\(Formatting.count(reports.parameters)) weights) to \(displayName) in \(Formatting.fixed(seconds, 2)) s"
                + (reused > 0 ? " · reused \(reused) complete shard\(reused == 1 ? "" : "s")" : ""))
        if !results.isEmpty {
            print(
                "mean SQNR \(Formatting.fixed(reports.meanSQNR, 2)) dB · \(Formatting.fixed(reports.bitsPerWeight, 3)) bits/weight · worst layer \(worstLayer(reports))"
            )
        }
        if !heads.isEmpty {
            print("left as stored (heads are skipped by default; --skip '^$' quantizes them): \(heads.joined(separator: ", "))")
        }
        if split.count > 1 {
            print("wrote part \(split.index)/\(split.count) (\(shards) shards) in \(work); when every part is done: any4 merge \(work)")
        } else {
            print("wrote \(out)\(fakeQuant ? " (fake-quant)" : "")")
        }
    }

    func worstLayer(_ reports: LayerReports) -> String {
        guard let worst = reports.worst, let sqnr = worst.outcome?.sqnrDB else { return "-" }
        return "\(worst.name) (\(Formatting.fixed(sqnr, 2)) dB)"
    }
}
