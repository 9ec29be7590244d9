import Any4Core
import ArgumentParser

/// Options shared by `quantize`, `compare` and, with `--format`, the engine commands.
struct QuantizationOptionGroup: ParsableArguments {
    @OptionGroup var groupSizeOption: GroupSizeOption

    @Flag(help: "Refuse widths the group size does not divide instead of using a shorter last group.")
    var strictGroups = false

    @Option(help: "any-b clustering: lloyd (k-means++ then Lloyd, the paper's) or exact (globally optimal 1-D k-means).")
    var cluster: ClusterMethod = .lloyd

    @Option(help: "any-b k-means sample weights: none, scale (the group scale, the paper's default) or calib:FILE (scale × a calibration statistic).")
    var sampleWeight: SampleWeightArgument = .scale

    @Option(
        help:
            "Calibration statistic for calib:FILE and --calibrate: mean (|mean|), absmean or sqmean (the default: lowest SmolLM2 perplexity of the three, see README)."
    )
    var stat: CalibrationStatistic = .sqmean

    @Option(
        help: "Regular expression: only linear layers whose name contains a match (a pattern that runs longer than 2 s against one name is refused).")
    var layers: String?

    @Option(
        help:
            "Regular expression: leave matching layers unquantized (default: the heads, i.e. the LM head and a BERT pooler; '^$' quantizes every linear layer; same time bound as --layers)."
    )
    var skip: String?

    @Option(
        help:
            "Float dtype of LUTs, scales and zeros: f16, bf16 or f32 (default: bf16 for a bf16 model, else f16; a layer whose scales f16 cannot hold is then stored in f32, with a warning). mxfp4, nvfp4 and iq4_nl keep their own scale encoding."
    )
    var tableDtype: TableDTypeArgument?

    @OptionGroup var threadsOption: ThreadsOption

    @Option(help: "Seed for k-means++ seeding.")
    var seed: UInt64 = 0

    var groupSize: Int { groupSizeOption.groupSize }
    var threads: Int { threadsOption.threads }

    /// The options, or a usage error (status 2) naming what is wrong.
    func options(cluster override: ClusterMethod? = nil) throws -> QuantizationOptions {
        var o = QuantizationOptions()
        o.groupSize = groupSize
        o.strictGroups = strictGroups
        o.threads = threads
        o.seed = seed
        o.cluster = override ?? cluster
        o.sampleWeighting = sampleWeight.weighting(stat)
        o.storageDType = tableDtype?.dtype
        do { try o.validate() } catch { throw usageError("--group-size: \(error)") }
        return o
    }

    /// The layer selection for `model`: `--layers` and `--skip` compiled and matched against its
    /// linear layers' names with a time bound (status 2 for a bad pattern or one that runs over).
    func selection(for model: Model) throws -> LayerSelection {
        let include = try compilePattern(layers, "--layers")
        let skip = try compilePattern(skip, "--skip")
        do {
            return try LayerSelection(include: include, skip: skip).resolved(for: model.tensors.filter(\.isLinear).map(\.name))
        } catch {
            let (flag, text) = error.which == "skip" ? ("--skip", self.skip ?? "") : ("--layers", layers ?? "")
            throw usageError("\(flag): pattern \"\(text)\" \(error)")
        }
    }

    func calibration(_ options: QuantizationOptions) throws -> CalibrationStats? {
        guard case .calibration(let path, _) = options.sampleWeighting else { return nil }
        return try reportingFileErrors { try CalibrationStats.load(path) }
    }
}

/// Prints, on standard error, each layer the default rule stored in F32 (a scale F16 cannot
/// hold), so that a bits-per-weight figure above the 16-bit one is explained.
func warnStorageFallbacks(_ results: [LayerResult]) {
    for result in results {
        if let note = result.storageFallback { printError("any4: warning: \(note)") }
    }
}

/// A regular expression from the command line, or status 2 naming the option.
func compilePattern(_ text: String?, _ flag: String) throws -> Regex<AnyRegexOutput>? {
    guard let text else { return nil }
    do { return try Regex(text) } catch { throw usageError("\(flag): not a valid regular expression: \(text)") }
}

/// Prints `message` as an error and exits with status 2.
func usageError(_ message: String) -> ExitCode {
    printError("any4: error: \(message)")
    return ExitCode(2)
}

/// Status 2 naming `option` unless `value` lies in `range` (`meaning` explains a special value).
func requireRange(_ option: String, _ value: Int, _ range: ClosedRange<Int>, _ meaning: String = "") throws {
    guard range.contains(value) else {
        throw usageError("\(option) must be in \(range.lowerBound)...\(range.upperBound)\(meaning), got \(value)")
    }
}

/// `--group-size`: an even number in 2...QuantizationOptions.maxGroupSize.
func requireGroupSize(_ value: Int, option: String = "--group-size") throws {
    var o = QuantizationOptions()
    o.groupSize = value
    do { try o.validate() } catch { throw usageError("\(option): \(error)") }
}

/// `--threads`: 0 (all cores) to QuantizationOptions.maxThreads.
func requireThreads(_ value: Int) throws {
    try requireRange("--threads", value, 0...QuantizationOptions.maxThreads, " (0: all cores)")
}

/// The longest context (`--ctx`, `-n`) an option may ask for, in tokens; the model's own context
/// and the memory of its KV cache are checked once it is open.
let maxContextTokens = 1 << 20

/// The selected linear layers, or status 2 when none match.
func selectedLayers(_ model: Model, _ selection: LayerSelection, _ group: QuantizationOptionGroup) throws -> [ModelTensor] {
    let chosen = model.tensors.filter(selection.selects)
    guard !chosen.isEmpty else {
        throw usageError(
            "no linear layer of \(model.path) matches" + (group.layers.map { " --layers \($0)" } ?? "")
                + (group.skip.map { " with --skip \($0)" } ?? ""))
    }
    return chosen
}
