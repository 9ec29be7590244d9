import Any4Core
import Any4Inference
import ArgumentParser

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Choose a format per linear layer that minimises the predicted model error under a bit budget.",
        discussion: """
            Measures every candidate on every selected layer with the model's own activations (the \
            weighted output error Σ h_j (W−Ŵ)²_ij, h_j = E[x_j²] over the calibration prompt, on evenly \
            spaced rows), converts it to predicted KL divergence with per-layer probes (quantize one layer \
            to --probe, KL of the model's next-token distribution against the unquantized one, within \
            --probe-seconds; other layers interpolated), then picks one candidate per layer minimising the \
            summed prediction with Σ stored bits ≤ the budget (an exact multiple-choice knapsack). Bits \
            count every stored bit (codes, tables, scales, zeros) and are over the planned layers; \
            embeddings, norms and the skipped head are reported apart. Writes a recipe for \
            `any4 quantize --recipe` with --out. See the README's "Bit budgets".
            """)

    @OptionGroup var modelArgument: ModelArgument

    @Option(
        help:
            "Bits per weight over the planned layers: a number, or a candidate (e.g. any4:g128) for the bits that candidate takes on every layer."
    )
    var budget: String?

    @Option(
        help:
            "Comma-separated candidates: FORMAT:gN, fixed-block formats by name, keep (default: \(PlanCandidate.defaultLadder.map(\.spec).joined(separator: ",")))."
    )
    var candidates: String?

    @Option(help: "Predicted error against bits per weight: FROM:TO:STEP (e.g. 3.0:5.0:0.25), one solve per point.")
    var sweep: String?

    @Option(help: "Write the recipe (JSON) here.")
    var out: String?

    @OptionGroup var quantization: QuantizationOptionGroup

    @Option(help: "Calibration prompt file (default: assets/calibration.txt).")
    var prompt: String?

    @Option(help: "Most calibration tokens used (statistics and probes), 2 to 65536.")
    var tokens = 512

    @Option(help: "The candidate a probed layer is quantized to.")
    var probe = "int4:g128"

    @Option(help: "Seconds the per-layer probes may take in all (0: none: predicted error is the sum of relative output errors).")
    var probeSeconds: Double = 300

    @Option(help: "Tokens of the probe sequence, 2 to 4096.")
    var probeTokens = 128

    @Option(help: "Rows of each layer measured per candidate (evenly spaced; 0: all).")
    var sampleRows = 256

    @Option(
        help:
            "Solve the table of a recipe written earlier instead of measuring (no model is run; --candidates picks a subset of its candidates)."
    )
    var from: String?

    @OptionGroup var jsonOutput: JSONOutputOption

    func validate() throws {
        try requireRange("--tokens", tokens, 2...65536)
        try requireRange("--probe-tokens", probeTokens, 2...4096)
        try requireRange("--sample-rows", sampleRows, 0...(1 << 20))
        guard probeSeconds >= 0, probeSeconds.isFinite else { throw usageError("--probe-seconds must be ≥ 0") }
        guard budget != nil || sweep != nil else { throw usageError("give --budget BPW, --sweep FROM:TO:STEP, or both") }
        if out != nil && budget == nil { throw usageError("--out writes the recipe of --budget; give --budget") }
    }

    /// The sweep's points, or status 2.
    func sweepPoints() throws -> [Double] {
        guard let sweep else { return [] }
        let parts = sweep.split(separator: ":").map { Double($0) }
        guard parts.count == 3, let from = parts[0], let to = parts[1], let step = parts[2], from > 0, to >= from, step > 0,
            (to - from) / step <= 1000
        else { throw usageError("--sweep: expected FROM:TO:STEP with 0 < FROM ≤ TO, STEP > 0, at most 1000 points; got \(sweep)") }
        var points: [Double] = []
        var i = 0
        while true {
            let x = from + Double(i) * step
            guard x <= to + step * 1e-9 else { break }
            points.append(x)
            i += 1
        }
        return points
    }

    func run() throws {
        let ladder: [PlanCandidate]
        do { ladder = try candidates.map(PlanCandidate.list) ?? PlanCandidate.defaultLadder } catch {
            throw usageError("--candidates: \(error)")
        }
        let probeCandidate: PlanCandidate
        do { probeCandidate = try PlanCandidate(spec: probe) } catch { throw usageError("--probe: \(error)") }
        let points = try sweepPoints()
        var options = SensitivityOptions()
        options.candidates = ladder
        options.base = try quantization.options()
        options.probe = probeCandidate
        options.probeSeconds = probeCandidate.isKeep ? 0 : probeSeconds
        options.probeTokens = probeTokens
        options.sampleRows = sampleRows
        let model = try openModel(modelArgument.model)
        if let out {
            try reportingFileErrors {
                try OutputGuard.check(out, inputs: model.inputFiles + [prompt ?? CalibrationPrompt.defaultPath()] + (from.map { [$0] } ?? []))
            }
        }
        let started = Clock.now
        let report: SensitivityReport?
        let table: SensitivityTable
        if let from {
            let saved = try reportingFileErrors { try Recipe.load(from) }
            report = nil
            table = try subset(saved.table, candidates == nil ? nil : ladder)
        } else {
            options.selection = try quantization.selection(for: model)
            _ = try selectedLayers(model, options.selection, quantization)
            options.calibration = try quantization.calibration(options.base)
            var engineOptions = EngineOptions()
            engineOptions.threads = quantization.threads
            let engine = try loadEngine(model, options: engineOptions)
            let tokenizer = try loadTokenizer(model)
            let sequences = limit(try calibrationSequences(engine: engine, tokenizer: tokenizer, promptPath: prompt), tokens)
            let progress = Progress(total: 0, label: "planning")
            let measured = try runProgressJob(progress, interrupted: "interrupted; nothing was written", unit: "layers") {
                try Sensitivity.measure(engine, sequences: sequences, options: options, progress: progress)
            }
            report = measured
            table = measured.table
        }

        // The budget: a number, or a candidate's uniform bits.
        var recipe: Recipe? = nil
        var solution: BitAllocation.Solution? = nil
        if let budget {
            let bpw: Double
            if let value = Double(budget) {
                guard value > 0, value.isFinite else { throw usageError("--budget must be a positive number of bits per weight") }
                bpw = value
            } else {
                let c: PlanCandidate
                do { c = try PlanCandidate(spec: budget) } catch { throw usageError("--budget: not a number nor a candidate: \(error)") }
                guard let index = table.candidates.firstIndex(of: c) else { throw usageError("--budget \(c.spec) is not one of the candidates") }
                guard let bits = uniformBits(table, index) else { throw usageError("--budget \(c.spec) does not apply to every layer") }
                bpw = Double(bits) / Double(table.plannedParameters)
            }
            let budgetBits = table.budgetBits(bitsPerWeight: bpw)
            guard let s = BitAllocation.solution(table, budgetBits: budgetBits) else {
                let lowest = table.bitsPerWeightRange.map { Formatting.fixed($0.lowerBound, 3) } ?? "-"
                throw usageError("no choice of candidates fits \(Formatting.fixed(bpw, 3)) bits per weight (the least is \(lowest))")
            }
            solution = s
            recipe = Recipe(table: table, choice: s.choice, budgetBitsPerWeight: bpw, model: model.path)
            if let out, let recipe { try reportingFileErrors { try recipe.write(to: out) } }
        }
        var sweepRows: [(budget: Double, solution: BitAllocation.Solution?)] = []
        for p in points { sweepRows.append((p, BitAllocation.solution(table, budgetBits: table.budgetBits(bitsPerWeight: p)))) }
        let seconds = Clock.now - started

        if jsonOutput.json {
            var members: [(key: String, value: JSONValue)] = [
                ("model", .string(model.path)), ("seconds", JSONValue(seconds)),
                ("errorMeasure", .string(table.errorMeasure)),
                ("probedLayers", JSONValue(report?.probed.filter { $0 }.count ?? 0)), ("layers", JSONValue(table.layers.count)),
                (
                    "uniform",
                    .array(
                        uniformRows(table).map { row in
                            .object([
                                ("candidate", .string(row.candidate.spec)), ("bitsPerWeight", JSONValue(row.bpw)),
                                ("predictedError", JSONValue(row.error))
                            ])
                        })
                )
            ]
            if let recipe, let solution {
                members.append(("bitsPerWeight", JSONValue(recipe.bitsPerWeight)))
                members.append(("modelBitsPerWeight", JSONValue(recipe.modelBitsPerWeight)))
                members.append(("predictedError", JSONValue(recipe.predictedError)))
                members.append(("exact", .bool(solution.exact)))
                members.append(("recipe", try JSONParser.parse(recipe.json, file: "recipe")))
            }
            if !points.isEmpty {
                members.append(
                    (
                        "sweep",
                        .array(
                            sweepRows.map { row in
                                .object([
                                    ("budget", JSONValue(row.budget)),
                                    ("bitsPerWeight", row.solution.map { JSONValue(Double($0.bits) / Double(table.plannedParameters)) } ?? .null),
                                    ("predictedError", row.solution.map { JSONValue($0.error) } ?? .null)
                                ])
                            })
                    ))
            }
            print(JSONValue.object(members).serialized)
            return
        }
        if let report {
            print(
                "measured \(table.candidates.count) candidates on \(table.layers.count) layers in \(Formatting.fixed(seconds, 1)) s "
                    + "(statistics \(Formatting.fixed(report.statisticsSeconds, 1)) s, errors \(Formatting.fixed(report.errorSeconds, 1)) s, "
                    + "\(report.probed.filter { $0 }.count) probes \(Formatting.fixed(report.probeSeconds, 1)) s)")
        } else {
            print("solved the table of \(from ?? ""): \(table.candidates.count) candidates on \(table.layers.count) layers")
        }
        print("error: \(table.errorMeasure)")
        print(
            "uniform: "
                + uniformRows(table).map { "\($0.candidate.spec) \(Formatting.fixed($0.bpw, 3)) b/w \(Formatting.scientific($0.error, 3))" }.joined(
                    separator: " · "))
        if let recipe, let solution {
            printRecipe(recipe, report: report)
            print(
                "total: \(Formatting.fixed(recipe.bitsPerWeight, 4)) bits/weight over the planned layers (budget \(Formatting.fixed(recipe.budgetBitsPerWeight ?? 0, 4))), "
                    + "predicted error \(Formatting.scientific(recipe.predictedError, 4)); whole model with embeddings, norms and skipped layers as stored: "
                    + "\(Formatting.fixed(recipe.modelBitsPerWeight, 4)) bits/weight")
            if !solution.exact {
                print("(costs rounded to \(solution.unit) bits: optimal to within a budget \(solution.slackBits) bits smaller)")
            }
            if let out { print("wrote \(out)") }
        }
        if !points.isEmpty {
            print("budget  bits/weight  predicted error")
            for row in sweepRows {
                let bpw = row.solution.map { Formatting.fixed(Double($0.bits) / Double(table.plannedParameters), 4) } ?? "-"
                let error = row.solution.map { Formatting.scientific($0.error, 4) } ?? "infeasible"
                print("\(Formatting.pad(Formatting.fixed(row.budget, 3), 6, right: true))  \(Formatting.pad(bpw, 11, right: true))  \(error)")
            }
        }
    }

    func printRecipe(_ recipe: Recipe, report: SensitivityReport?) {
        let table = recipe.table
        let nameWidth = min(48, table.layers.map(\.count).max() ?? 10)
        print("\(Formatting.pad("layer", nameWidth))  \(Formatting.pad("candidate", 10))  bits/w  predicted  sensitivity")
        for (l, name) in table.layers.enumerated() {
            let c = recipe.candidate(ofLayer: l)
            let e = table.entries[l][recipe.choice[l]]!
            print(
                "\(Formatting.pad(name, nameWidth))  \(Formatting.pad(c.spec, 10))  \(Formatting.fixed(Double(e.bits) / Double(table.parameters[l]), 3))  "
                    + "\(Formatting.scientific(e.error, 2))  "
                    + (report.map { "\(Formatting.scientific($0.sensitivity[l], 2))\($0.probed[l] ? "" : " (interpolated)")" } ?? "-")
            )
        }
        var counts: [String: Int] = [:]
        for l in table.layers.indices { counts[recipe.candidate(ofLayer: l).spec, default: 0] += 1 }
        print("mix: " + table.candidates.compactMap { c in counts[c.spec].map { "\(c.spec) ×\($0)" } }.joined(separator: ", "))
    }

    /// `table` restricted to `candidates` (nil: all), or status 2 naming one it lacks.
    func subset(_ table: SensitivityTable, _ candidates: [PlanCandidate]?) throws -> SensitivityTable {
        guard let candidates else { return table }
        let columns = try candidates.map { c in
            guard let i = table.candidates.firstIndex(of: c) else {
                throw usageError(
                    "--candidates: \(c.spec) is not in the table of \(from ?? "") (\(table.candidates.map(\.spec).joined(separator: ",")))")
            }
            return i
        }
        var out = table
        out.candidates = candidates
        out.entries = table.entries.map { row in columns.map { row[$0] } }
        return out
    }

    func uniformBits(_ table: SensitivityTable, _ c: Int) -> Int? {
        var bits = 0
        for row in table.entries {
            guard let e = row[c] else { return nil }
            bits += e.bits
        }
        return bits
    }

    func uniformRows(_ table: SensitivityTable) -> [(candidate: PlanCandidate, bpw: Double, error: Double)] {
        table.candidates.indices.compactMap { c in
            guard let bits = uniformBits(table, c) else { return nil }
            let error = table.entries.reduce(0.0) { $0 + $1[c]!.error }
            return (table.candidates[c], Double(bits) / Double(table.plannedParameters), error)
        }
    }

    /// The sequences cut to `tokens` tokens in all.
    func limit(_ sequences: [[Int]], _ tokens: Int) -> [[Int]] {
        var left = tokens
        var out: [[Int]] = []
        for s in sequences where left >= 2 {
            out.append(Array(s.prefix(left)))
            left -= min(left, s.count)
        }
        return out
    }
}
