import Any4
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

    @Argument(help: "A .safetensors file, a Hugging Face model folder, or a .gguf file.")
    var model: String

    @Option(help: "Comma-separated formats.")
    var formats = FormatRegistry.comparison.map(\.name).joined(separator: ",")

    @OptionGroup var quantization: QuantizationOptionGroup

    @Flag(help: "Run any-b formats with both Lloyd and the exact solver (the exact runs are named any4-exact, ...).")
    var bothClusterings = false

    @Flag(help: "Run mxfp4, nvfp4 and iq4_nl at --group-size too (non-standard, labelled FORMAT@N) for a comparison at equal block size.")
    var equalBlocks = false

    @Flag(help: "Print one JSON object.")
    var json = false

    /// A column of the comparison: a format with the clustering it runs with.
    struct Variant {
        var label: String
        var format: any NumericFormat
        var options: QuantizationOptions
    }

    func run() throws {
        let options = try quantization.options()
        var variants: [Variant] = []
        for name in formats.split(separator: ",").map({ $0.filter { $0 != " " } }) where !name.isEmpty {
            let f: any NumericFormat
            do { f = try FormatRegistry.named(name) } catch { throw usageError("--formats: \(error)") }
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
        guard !variants.isEmpty else { throw usageError("--formats is empty") }
        let model = try openModel(self.model)
        let layers = try selectedLayers(model, try quantization.selection(for: model), quantization)
        let calibration = try quantization.calibration(options)

        let progress = Progress(total: layers.reduce(0) { $0 + $1.shape[0] } * variants.count, label: "comparing")
        var rows: [(layer: ModelTensor, results: [LayerResult])] = []
        try runProgressJob(progress, interrupted: "interrupted") {
                for (i, layer) in layers.enumerated() {
                    progress.setLabel("comparing \(i + 1)/\(layers.count) \(layer.name)")
                    var results: [LayerResult] = []
                    for v in variants {
                        var r = try ModelQuantization.quantize(layer, of: model, format: v.format, options: v.options,
                                                               calibration: calibration, keepMatrix: false, progress: progress)
                        r.format = v.label
                        results.append(r)
                    }
                    rows.append((layer, results))
                }
        }
        let labels = variants.map(\.label)
        let summary = labels.map { label in summarize(label, rows.map { $0.results }) }
        if json {
            print(JSONValue.object([
                ("model", .string(model.path)),
                ("group_size", JSONValue(options.groupSize)),
                ("layers", .array(rows.map { row in
                    .object([
                        ("name", .string(row.layer.name)),
                        ("shape", .array(row.layer.shape.map { JSONValue($0) })),
                        ("results", .object(row.results.map { r in
                            var fields: [(key: String, value: JSONValue)] = [
                                ("sqnr_db", JSONValue(r.metrics.sqnrDB)), ("mse", JSONValue(r.metrics.mse)),
                                ("max_abs_error", JSONValue(r.metrics.maxAbsError)),
                                ("bits_per_weight", JSONValue(r.bitsPerWeight)), ("seconds", JSONValue(r.seconds)),
                            ]
                            if let o = r.kmeansObjective { fields.append(("kmeans_objective", JSONValue(o))) }
                            if let o = r.kmeansObjectiveFirst64 { fields.append(("kmeans_objective_first64", JSONValue(o))) }
                            return (r.format, .object(fields))
                        })),
                    ])
                })),
                ("summary", .object(summary.map { s in
                    (s.label, .object([
                        ("mean_sqnr_db", JSONValue(s.meanSQNR)), ("wins", JSONValue(s.wins)),
                        ("mean_bits_per_weight", JSONValue(s.meanBits)), ("seconds", JSONValue(s.seconds)),
                    ]))
                })),
            ]).serialized)
            return
        }
        let nameWidth = min(44, max(12, layers.map(\.name.count).max() ?? 0))
        var header = Formatting.pad("layer", nameWidth) + " " + Formatting.pad("shape", 12)
        for label in labels { header += Formatting.pad(label, 11, right: true) }
        print(header + "   (SQNR dB)")
        for row in rows {
            var line = Formatting.pad(row.layer.name, nameWidth) + " " + Formatting.pad(Formatting.shape(row.layer.shape), 12)
            let best = row.results.map(\.metrics.sqnrDB).max() ?? 0
            for r in row.results {
                line += Formatting.pad((r.metrics.sqnrDB == best ? "*" : "") + Formatting.fixed(r.metrics.sqnrDB, 2), 11, right: true)
            }
            print(line)
        }
        print("")
        print(Formatting.pad("format", 14) + Formatting.pad("mean SQNR", 11, right: true) + Formatting.pad("wins", 7, right: true)
              + Formatting.pad("bits/w", 9, right: true) + Formatting.pad("seconds", 10, right: true))
        for s in summary {
            print(Formatting.pad(s.label, 14) + Formatting.pad(Formatting.fixed(s.meanSQNR, 2), 11, right: true)
                  + Formatting.pad(String(s.wins), 7, right: true) + Formatting.pad(Formatting.fixed(s.meanBits, 3), 9, right: true)
                  + Formatting.pad(Formatting.fixed(s.seconds, 2), 10, right: true))
        }
        print("(* best SQNR on the layer; wins count layers where the format is best, ties shared)")
    }

    struct Summary {
        var label: String
        var meanSQNR: Double
        var wins: Int
        var meanBits: Double
        var seconds: Double
    }

    func summarize(_ label: String, _ table: [[LayerResult]]) -> Summary {
        var sqnr = 0.0, bits = 0.0, params = 0.0, seconds = 0.0, wins = 0
        for results in table {
            guard let r = results.first(where: { $0.format == label }) else { continue }
            let n = Double(r.shape.reduce(1, *))
            sqnr += r.metrics.sqnrDB
            bits += r.bitsPerWeight * n
            params += n
            seconds += r.seconds
            if r.metrics.sqnrDB >= (results.map(\.metrics.sqnrDB).max() ?? 0) { wins += 1 }
        }
        let n = Double(max(table.count, 1))
        return Summary(label: label, meanSQNR: sqnr / n, wins: wins, meanBits: params > 0 ? bits / params : 0, seconds: seconds)
    }
}
