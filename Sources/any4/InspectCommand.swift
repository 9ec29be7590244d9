import Any4Core
import ArgumentParser
import Dispatch
import Foundation

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "List a model's blocks and tensors: shape ([out, in]), dtype, parameters, bytes.",
        discussion: "Reads headers only unless --stats is given. Without MODEL, inspects the built-in demo model."
    )

    @OptionGroup var modelArgument: OptionalModelArgument

    @OptionGroup var jsonOutput: JSONOutputOption

    @Flag(help: "Decode every tensor and add min, max, mean, std, kurtosis and the share beyond 6 std.")
    var stats = false

    @Option(
        help: "Only tensors whose name contains a match of this regular expression (a pattern that runs longer than 2 s against one name is refused)."
    )
    var filter: String?

    func run() throws {
        let regex = try compilePattern(filter, "--filter")
        let model = try openModel(modelArgument.model)
        var selected = Array(model.tensors.indices)
        if let regex {
            let matched: [Bool]
            do {
                matched = try BoundedMatching.matches(regex, in: model.tensors.map(\.name))
            } catch {
                throw usageError("--filter: pattern \"\(filter ?? "")\" \(error)")
            }
            selected = selected.filter { matched[$0] }
        }
        if selected.isEmpty, let filter {
            throw usageError("no tensor of \(model.path) matches --filter \(filter)")
        }
        let tensorStats = stats ? try reportingFileErrors { try computeStats(model, selected) } : [:]
        if jsonOutput.json {
            print(jsonReport(model, selected, tensorStats).serialized)
        } else {
            print(textReport(model, selected, tensorStats), terminator: "")
        }
    }

    /// Statistics of the selected tensors, computed on all cores.
    func computeStats(_ model: Model, _ selected: [Int]) throws -> [Int: Result<TensorStats, FileFormatError>] {
        let results = ResultBox<Result<TensorStats, FileFormatError>>(count: selected.count)
        DispatchQueue.concurrentPerform(iterations: selected.count) { k in
            let tensor = model.tensors[selected[k]]
            do {
                results.set(k, .success(try TensorStats(of: tensor, in: model)))
            } catch let error as FileFormatError {
                results.set(k, .failure(error))
            } catch {
                results.set(k, .failure(FileFormatError(file: model.path, kind: .unsupported, "\(error)", subject: tensor.name)))
            }
        }
        var out: [Int: Result<TensorStats, FileFormatError>] = [:]
        for (k, index) in selected.enumerated() { out[index] = results.values[k] }
        return out
    }

    // MARK: - Text

    func textReport(_ model: Model, _ selected: [Int], _ stats: [Int: Result<TensorStats, FileFormatError>]) -> String {
        var out = ""
        let chosen = Set(selected)
        let version = model.ggufVersion.map { " v\($0)" } ?? ""
        out += "\(model.path)\n"
        let shown = selected.count == model.tensors.count ? "" : "\(selected.count) of "
        out += "format \(model.format.rawValue)\(version) · \(shown)\(model.tensors.count) tensors · "
        out += "\(Formatting.count(model.parameterCount)) params · \(Formatting.bytes(model.byteCount))"
        let linear = model.tensors.filter(\.isLinear)
        out += " · \(linear.count) linear (\(Formatting.count(linear.reduce(0) { $0 + $1.info.elementCount })) params)\n"
        let fields = model.config.fields
        if !fields.isEmpty { out += "config: " + fields.map { "\($0.0)=\($0.1)" }.joined(separator: " ") + "\n" }

        let nameWidth = min(48, max(24, selected.map { relativeName(model.tensors[$0]).count }.max() ?? 0))
        for block in model.blocks {
            let members = block.tensorIndices.filter { chosen.contains($0) }
            guard !members.isEmpty else { continue }
            out += "\n" + Formatting.pad(block.name ?? "(outside blocks)", nameWidth + 2)
            out += "  \(block.tensorIndices.count) tensors · \(Formatting.count(block.parameters)) params · \(Formatting.bytes(block.bytes))\n"
            for index in members {
                let t = model.tensors[index]
                var line = "  " + Formatting.pad(relativeName(t), nameWidth)
                line += " " + Formatting.pad(Formatting.shape(t.shape), 14)
                line += " " + Formatting.pad(t.info.encoding.description, 7)
                line += " " + Formatting.pad(Formatting.count(t.info.elementCount), 8, right: true)
                line += " " + Formatting.pad(Formatting.bytes(t.info.byteCount), 10, right: true)
                line += "  " + Formatting.pad(t.role.rawValue, 9)
                switch stats[index] {
                case .success(let s)?:
                    line += " min " + Formatting.number(Double(s.min)) + " max " + Formatting.number(Double(s.max))
                    line += " mean " + Formatting.number(s.mean) + " std " + Formatting.number(s.std)
                    line += " kurt " + Formatting.fixed(s.kurtosis, 2) + " >6σ " + Formatting.fixed(100 * s.outlierShare, 4) + "%"
                    if s.nonFinite > 0 { line += " non-finite \(s.nonFinite)" }
                case .failure(let e)?:
                    line += " stats: \(e.message)"
                case nil: break
                }
                out += line + "\n"
            }
        }
        return out
    }

    func relativeName(_ t: ModelTensor) -> String {
        guard let block = t.block else { return t.name }
        return String(t.name.dropFirst(block.count + 1))
    }

    // MARK: - JSON

    func jsonReport(_ model: Model, _ selected: [Int], _ stats: [Int: Result<TensorStats, FileFormatError>]) -> JSONValue {
        var tensors: [JSONValue] = []
        for index in selected {
            let t = model.tensors[index]
            var fields: [(key: String, value: JSONValue)] = [
                ("name", .string(t.name)),
                ("shape", .array(t.shape.map { JSONValue($0) })),
                ("dtype", .string(t.info.encoding.description)),
                ("params", JSONValue(t.info.elementCount)),
                ("bytes", JSONValue(t.info.byteCount)),
                ("bits_per_weight", JSONValue(t.info.encoding.bitsPerElement)),
                ("block", t.block.map { .string($0) } ?? .null),
                ("module", .string(t.module)),
                ("role", .string(t.role.rawValue)),
                ("file", .string(model.stores[t.fileIndex].name)),
                ("offset", JSONValue(t.info.offset))
            ]
            switch stats[index] {
            case .success(let s)?:
                fields.append(
                    (
                        "stats",
                        .object([
                            ("min", JSONValue(Double(s.min))), ("max", JSONValue(Double(s.max))),
                            ("mean", JSONValue(s.mean)), ("std", JSONValue(s.std)),
                            ("kurtosis", JSONValue(s.kurtosis)), ("outlier_share_6std", JSONValue(s.outlierShare)),
                            ("non_finite", JSONValue(s.nonFinite))
                        ])
                    ))
            case .failure(let e)?:
                fields.append(("stats", .object([("error", .string(e.message))])))
            case nil: break
            }
            tensors.append(.object(fields))
        }
        let blocks: [JSONValue] = model.blocks.map { b in
            .object([
                ("name", b.name.map { .string($0) } ?? .null),
                ("index", b.index.map { JSONValue($0) } ?? .null),
                ("tensors", JSONValue(b.tensorIndices.count)),
                ("params", JSONValue(b.parameters)),
                ("bytes", JSONValue(b.bytes))
            ])
        }
        var config: [(key: String, value: JSONValue)] = []
        let c = model.config
        func add(_ key: String, _ value: JSONValue?) { if let value { config.append((key, value)) } }
        add("architecture", c.architecture.map { .string($0) })
        add("class", c.className.map { .string($0) })
        add("hidden_size", c.hiddenSize.map { JSONValue($0) })
        add("layers", c.layers.map { JSONValue($0) })
        add("heads", c.heads.map { JSONValue($0) })
        add("kv_heads", c.kvHeads.map { JSONValue($0) })
        add("intermediate_size", c.intermediateSize.map { JSONValue($0) })
        add("vocab_size", c.vocabSize.map { JSONValue($0) })
        add("context_length", c.contextLength.map { JSONValue($0) })
        add("rope_theta", c.ropeTheta.map { JSONValue($0) })
        add("norm_eps", c.normEpsilon.map { JSONValue($0) })
        add("tied_embeddings", c.tiedEmbeddings.map { .bool($0) })
        return .object([
            ("path", .string(model.path)),
            ("format", .string(model.format.rawValue)),
            ("gguf_version", model.ggufVersion.map { JSONValue($0) } ?? .null),
            ("config", .object(config)),
            ("metadata", .object(model.metadata.map { ($0.key, .string($0.value)) })),
            ("params", JSONValue(model.parameterCount)),
            ("bytes", JSONValue(model.byteCount)),
            ("blocks", .array(blocks)),
            ("tensors", .array(tensors))
        ])
    }
}

/// Results written by concurrent workers, one slot each.
final class ResultBox<T>: @unchecked Sendable {
    private(set) var values: [T?]
    private let lock = NSLock()
    init(count: Int) { values = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: T) { lock.withLock { values[index] = value } }
}
