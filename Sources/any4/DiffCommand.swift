import Any4Core
import Any4TUI
import ArgumentParser
import Foundation

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Compare two models of one architecture tensor by tensor (original vs quantized, two quantizations, two fine-tunes).",
        discussion: """
            A and B: .safetensors files, Hugging Face folders, .gguf files or any4 checkpoints, in any mix; both sides are \
            dequantized to f32 (a block of rows at a time). Per tensor present in both: SQNR (dB, A as the signal, B − A as \
            the noise; inf when equal), relative error ‖B − A‖/‖A‖, max |B − A|, quantiles of |B − A| and a sparkline of the \
            signed differences; worst (lowest SQNR) first. Tensors present in only one model, and shape mismatches, are \
            listed after. --json prints one object with every figure and the histograms' bins (no NaN or inf: null).
            """
    )

    @Argument(help: "The reference model (the signal).")
    var a: String

    @Argument(help: "The model compared with it.")
    var b: String

    @Option(help: "Order of the table: worst (lowest SQNR first) or name (model order).")
    var sort: SortOrder = .worst

    @Flag(help: "List the identical tensors in the table too (by default they are counted, not listed).")
    var all = false

    @OptionGroup var threadsOption: ThreadsOption

    @OptionGroup var jsonOutput: JSONOutputOption

    enum SortOrder: String, ExpressibleByArgument, CaseIterable { case worst, name }

    func run() throws {
        let modelA = try openModel(a)
        let modelB = try openModel(b)
        let diff = try reportingFileErrors { try ModelDiff(modelA, modelB) }
        let threads = threadsOption.threads > 0 ? threadsOption.threads : SystemInfo.processorCount
        let progress = Progress(total: diff.totalRows, label: "diff")
        var results = try runProgressJob(progress, interrupted: "diff interrupted") { try diff.run(threads: threads, progress: progress) }
        if sort == .worst { results.sort(by: TensorDifference.worstFirst) }
        if jsonOutput.json {
            print(Self.json(diff, results).serialized)
        } else {
            for line in Self.table(diff, results, all: all) { print(line) }
        }
    }

    static let quantiles: [(label: String, p: Double)] = [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)]

    /// The signed histogram as `width` characters (bins summed in runs; heights on a log scale so
    /// the tails show beside the peak).
    static func sparkline(_ h: DifferenceHistogram, width: Int = 16) -> String {
        let per = DifferenceHistogram.bins / width
        let sums = (0..<width).map { i in h.counts[(i * per)..<((i + 1) * per)].reduce(0, +) }
        let peak = log1p(Double(sums.max() ?? 0))
        return String(
            sums.map { c in
                guard c > 0, peak > 0 else { return Renderer.eighths[0] }
                return Renderer.eighths[max(1, Int((log1p(Double(c)) / peak * 8).rounded()))]
            })
    }

    static func table(_ diff: ModelDiff, _ results: [TensorDifference], all: Bool) -> [String] {
        var lines: [String] = []
        let compared = results.filter { $0.stats != nil }
        let listed = all ? compared : compared.filter { !$0.stats!.identical }
        let nameWidth = min(48, max(12, listed.map(\.name.count).max() ?? 0))
        let header =
            Formatting.pad("tensor", nameWidth) + " " + Formatting.pad("shape", 14) + Formatting.pad("SQNR dB", 9, right: true)
            + Formatting.pad("rel err", 11, right: true) + Formatting.pad("max |d|", 11, right: true)
            + quantiles.map { Formatting.pad("|d| " + $0.label, 11, right: true) }.joined() + "  d = B − A over ±range"
        if !listed.isEmpty { lines.append(header) }
        for r in listed {
            let s = r.stats!
            var line = Formatting.pad(r.name, nameWidth) + " " + Formatting.pad(Formatting.shape(r.shapeA), 14)
            line += Formatting.pad(s.identical ? "inf" : Formatting.fixed(s.sqnrDB, 2), 9, right: true)
            line += Formatting.pad(Formatting.scientific(s.relativeError, 2), 11, right: true)
            line += Formatting.pad(Formatting.scientific(s.maxAbs, 2), 11, right: true)
            for q in quantiles { line += Formatting.pad(s.histogram.quantile(q.p).map { Formatting.scientific($0, 2) } ?? "-", 11, right: true) }
            line += "  " + sparkline(s.histogram) + " ±" + Formatting.scientific(s.histogram.range, 1)
            if s.nonFinite > 0 { line += "  \(s.nonFinite) non-finite" }
            if r.encodingA != r.encodingB { line += "  " + r.encodingA + " → " + r.encodingB }
            lines.append(line)
        }
        if !listed.isEmpty { lines.append("") }
        let identical = compared.filter { $0.stats!.identical }.count
        var total = DifferenceStats()
        for r in compared { total.merge(r.stats!) }
        lines.append(
            "\(compared.count) tensors compared (\(identical) identical\(all || identical == 0 ? "" : ", not listed: --all lists them"), \(Formatting.count(total.elements)) values): overall SQNR "
                + (total.identical ? "inf" : Formatting.fixed(total.sqnrDB, 2)) + " dB, rel err " + Formatting.scientific(total.relativeError, 2)
                + ", max |d| " + Formatting.scientific(total.maxAbs, 2))
        let problems = results.filter { $0.stats == nil }
        if !problems.isEmpty {
            lines.append("not compared (\(problems.count)):")
            for r in problems { lines.append("  \(r.name): \(r.problem ?? "")") }
        }
        for (label, list) in [("only in A (\(diff.a.path))", diff.onlyInA), ("only in B (\(diff.b.path))", diff.onlyInB)] where !list.isEmpty {
            lines.append("\(label): \(list.count)")
            for t in list { lines.append("  \(t.name) \(Formatting.shape(t.shape)) \(t.info.encoding)") }
        }
        return lines
    }

    static func json(_ diff: ModelDiff, _ results: [TensorDifference]) -> JSONValue {
        func finite(_ x: Double) -> JSONValue { x.isFinite ? JSONValue(x) : .null }
        func shape(_ s: [Int]) -> JSONValue { .array(s.map { JSONValue($0) }) }
        let tensors: [JSONValue] = results.map { r in
            var fields: [(key: String, value: JSONValue)] = [
                ("name", .string(r.name)), ("shape", shape(r.shapeA)), ("encoding_a", .string(r.encodingA)), ("encoding_b", .string(r.encodingB))
            ]
            if let s = r.stats {
                let h = s.histogram
                fields += [
                    ("compared", .bool(true)), ("identical", .bool(s.identical)), ("elements", JSONValue(s.elements)),
                    ("sqnr_db", finite(s.sqnrDB)), ("relative_error", finite(s.relativeError)), ("mse", finite(s.mse)),
                    ("max_abs_error", JSONValue(s.maxAbs)), ("non_finite", JSONValue(s.nonFinite)),
                    (
                        "abs_quantiles",
                        .object(quantiles.map { ($0.label, h.quantile($0.p).map { JSONValue($0) } ?? .null) })
                    ),
                    (
                        "histogram",
                        .object([
                            ("low", JSONValue(-h.range)), ("high", JSONValue(h.range)), ("zeros", JSONValue(h.zeros)),
                            ("counts", .array(h.counts.map { JSONValue($0) }))
                        ])
                    )
                ]
            } else {
                fields += [("compared", .bool(false)), ("shape_b", shape(r.shapeB)), ("problem", .string(r.problem ?? ""))]
            }
            return .object(fields)
        }
        func listed(_ list: [ModelTensor]) -> JSONValue {
            .array(
                list.map { .object([("name", .string($0.name)), ("shape", shape($0.shape)), ("encoding", .string($0.info.encoding.description))]) })
        }
        var total = DifferenceStats()
        for r in results { if let s = r.stats { total.merge(s) } }
        return .object([
            ("a", .string(diff.a.path)), ("b", .string(diff.b.path)), ("tensors", .array(tensors)),
            ("only_in_a", listed(diff.onlyInA)), ("only_in_b", listed(diff.onlyInB)),
            (
                "summary",
                .object([
                    ("compared", JSONValue(results.filter { $0.stats != nil }.count)),
                    ("identical", JSONValue(results.filter { $0.stats?.identical == true }.count)),
                    ("not_compared", JSONValue(results.filter { $0.stats == nil }.count)),
                    ("elements", JSONValue(total.elements)), ("sqnr_db", finite(total.sqnrDB)),
                    ("relative_error", finite(total.relativeError)), ("max_abs_error", JSONValue(total.maxAbs))
                ])
            )
        ])
    }
}
