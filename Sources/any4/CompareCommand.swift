import Any4Core
import ArgumentParser

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Quantize every selected linear layer in several formats and compare their error.",
        discussion: """
            Text: one row per layer with each format's SQNR (dB), then a summary per format (mean SQNR, wins, \
            bits per weight weighted by parameters, seconds). --json adds MSE, max error, bits per weight, \
            seconds and k-means objectives per layer and format. MODEL may be `demo`.
            """
    )

    @OptionGroup var modelArgument: ModelArgument

    @Option(name: .customLong("format"), help: "Comma-separated formats.")
    var formats = FormatRegistry.comparison.map(\.name).joined(separator: ",")

    /// `--formats`, the old spelling of `--format`.
    @Option(name: .customLong("formats"), help: .hidden)
    var formatsAlias: String?

    @OptionGroup var quantization: QuantizationOptionGroup

    @Flag(help: "Run any-b formats with both Lloyd and the exact solver (the exact runs are named any4-exact, ...).")
    var bothClusterings = false

    @Flag(help: "Run mxfp4, nvfp4 and iq4_nl at --group-size too (non-standard, labelled FORMAT@N) for a comparison at equal block size.")
    var equalBlocks = false

    @OptionGroup var jsonOutput: JSONOutputOption

    var json: Bool { jsonOutput.json }

    /// A column of the comparison: a format with the clustering it runs with.
    struct Variant {
        var label: String
        var format: any NumericFormat
        var options: QuantizationOptions
    }

    func run() throws {
        let options = try quantization.options()
        var variants: [Variant] = []
        for name in (formatsAlias ?? formats).split(separator: ",").map({ $0.filter { $0 != " " } }) where !name.isEmpty {
            let f: any NumericFormat
            do { f = try FormatRegistry.named(name) } catch { throw usageError("\(formatOption): \(error)") }
            if f.perRowTable && bothClusterings {
                var lloyd = options, exact = options
                lloyd.cluster = .lloyd
                exact.cluster = .exact
                variants.append(Variant(label: f.name, format: f, options: lloyd))
                variants.append(Variant(label: f.name + "-exact", format: f, options: exact))
            } else if equalBlocks, let fixed = f.fixedBlockSize, fixed != options.groupSize {
                var o = options
                o.overrideFixedBlocks = true
                variants.append(Variant(label: "\(f.name)@\(options.groupSize)", format: f, options: o))
            } else {
                variants.append(Variant(label: f.name + (f.perRowTable && options.cluster == .exact ? "-exact" : ""), format: f, options: options))
            }
        }
        guard !variants.isEmpty else { throw usageError("\(formatOption) is empty") }
        let model = try openModel(modelArgument.model)
        let layers = try selectedLayers(model, try quantization.selection(for: model), quantization)
        let calibration = try quantization.calibration(options)

        let progress = Progress(total: layers.reduce(0) { $0 + $1.shape[0] } * variants.count, label: "comparing")
        var comparison = LayerComparison(labels: variants.map(\.label))
        var fallbacks: [LayerResult] = []
        try runProgressJob(progress, interrupted: "interrupted") {
            for (i, layer) in layers.enumerated() {
                progress.setLabel("comparing \(i + 1)/\(layers.count) \(layer.name)")
                var results: [LayerReport] = []
                for v in variants {
                    var r = try ModelQuantization.quantize(
                        layer, of: model, format: v.format, options: v.options,
                        calibration: calibration, keepMatrix: false, progress: progress)
                    r.format = v.label
                    results.append(LayerReport(r))
                    if r.storageFallback != nil { fallbacks.append(r) }
                }
                comparison.rows.append(.init(name: layer.name, shape: layer.shape, results: results))
            }
        }
        warnStorageFallbacks(fallbacks)
        let summary = comparison.summaries
        if json {
            print(
                JSONValue.object([
                    ("model", .string(model.path)),
                    ("group_size", JSONValue(options.groupSize)),
                    ("layers", comparison.layersJSON()),
                    ("summary", comparison.summaryJSON())
                ]).serialized)
            return
        }
        let nameWidth = min(44, max(12, layers.map(\.name.count).max() ?? 0))
        var header = Formatting.pad("layer", nameWidth) + " " + Formatting.pad("shape", 12)
        for label in comparison.labels { header += Formatting.pad(label, 11, right: true) }
        print(header + "   (SQNR dB)")
        for row in comparison.rows {
            var line = Formatting.pad(row.name, nameWidth) + " " + Formatting.pad(Formatting.shape(row.shape), 12)
            let sqnr = row.results.compactMap { $0.outcome?.sqnrDB }
            let best = sqnr.max() ?? 0
            for x in sqnr {
                line += Formatting.pad((x == best ? "*" : "") + Formatting.fixed(x, 2), 11, right: true)
            }
            print(line)
        }
        print("")
        print(
            Formatting.pad("format", 14) + Formatting.pad("mean SQNR", 11, right: true) + Formatting.pad("wins", 7, right: true)
                + Formatting.pad("bits/w", 9, right: true) + Formatting.pad("seconds", 10, right: true))
        for s in summary {
            print(
                Formatting.pad(s.label, 14) + Formatting.pad(Formatting.fixed(s.meanSQNR, 2), 11, right: true)
                    + Formatting.pad(String(s.wins), 7, right: true) + Formatting.pad(Formatting.fixed(s.meanBits, 3), 9, right: true)
                    + Formatting.pad(Formatting.fixed(s.seconds, 2), 10, right: true))
        }
        print("(* best SQNR on the layer; wins count layers where the format is best, ties shared)")
    }

    /// The spelling of the format option the command line used, for messages.
    var formatOption: String { formatsAlias != nil ? "--formats" : "--format" }
}
