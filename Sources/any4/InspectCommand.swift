import Any4Core
import ArgumentParser
import Dispatch
import Foundation
import Synchronization

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "List a model's blocks and tensors: shape ([out, in]), dtype, parameters, bytes.",
        discussion: """
            Reads headers only unless --stats is given. Without MODEL, inspects the built-in demo model.
            A quantized layer of an any4 checkpoint is listed once, as X.weight [out, in] with its logical \
            parameters (out × in), its format, group size and float dtype (any4 g128 bf16) and its stored \
            bits per weight (all its parts: codes, LUT, scales, zeros); --stored lists the stored tensors \
            (X.qweight, X.lut, X.scales, ...) instead.
            """
    )

    @OptionGroup var modelArgument: OptionalModelArgument

    @OptionGroup var jsonOutput: JSONOutputOption

    @Flag(
        help:
            "Decode every tensor (a quantized layer: its dequantized values) and add min, max, mean, std, kurtosis and the share beyond 6 std."
    )
    var stats = false

    @Flag(help: "List the tensors as stored in the files: a quantized layer's parts (X.qweight, X.lut, X.scales, ...) instead of X.weight.")
    var stored = false

    @Option(
        help: "Only tensors whose name contains a match of this regular expression (a pattern that runs longer than 2 s against one name is refused)."
    )
    var filter: String?

    func run() throws {
        let regex = try compilePattern(filter, "--filter")
        let model = try openModel(modelArgument.model)
        let list = stored ? model.storedTensors : model.tensors
        var selected = Array(list.indices)
        if let regex {
            let matched: [Bool]
            do {
                matched = try BoundedMatching.matches(regex, in: list.map(\.name))
            } catch {
                throw usageError("--filter: pattern \"\(filter ?? "")\" \(error)")
            }
            selected = selected.filter { matched[$0] }
        }
        if selected.isEmpty, let filter {
            throw usageError("no tensor of \(model.path) matches --filter \(filter)")
        }
        let tensorStats = stats ? try computeStats(model, list, selected) : [:]
        if jsonOutput.json {
            print(jsonReport(model, list, selected, tensorStats).serialized)
        } else {
            print(textReport(model, list, selected, tensorStats), terminator: "")
        }
    }

    /// Statistics of the selected tensors, computed on all cores, with a progress line on a
    /// terminal (two passes over every element); ^C stops it with status 130.
    func computeStats(
        _ model: Model, _ list: [ModelTensor], _ selected: [Int]
    ) throws -> [Int: Result<TensorStats, FileFormatError>] {
        let total = selected.reduce(0) { $0 + 2 * list[$1].info.elementCount }
        let progress = Progress(total: total, label: "stats of \(selected.count) tensors")
        let results = ResultBox<Result<TensorStats, FileFormatError>>(count: selected.count)
        try runProgressJob(progress, interrupted: "inspect --stats interrupted", unit: "values") {
            let next = Atomic<Int>(0)
            // Workers take tensors in order, so the progress line moves from the first.
            DispatchQueue.concurrentPerform(iterations: min(SystemInfo.processorCount, selected.count)) { _ in
                while !progress.isCancelled {
                    let k = next.add(1, ordering: .relaxed).oldValue
                    guard k < selected.count else { return }
                    let tensor = list[selected[k]]
                    do {
                        results.set(k, .success(try TensorStats(of: tensor, in: model, progress: progress)))
                    } catch let error as FileFormatError {
                        results.set(k, .failure(error))
                    } catch QuantizationError.cancelled {
                        return
                    } catch {
                        results.set(k, .failure(FileFormatError(file: model.path, kind: .unsupported, "\(error)", subject: tensor.name)))
                    }
                }
            }
            if progress.isCancelled { throw QuantizationError.cancelled }
        }
        var out: [Int: Result<TensorStats, FileFormatError>] = [:]
        for (k, index) in selected.enumerated() { out[index] = results.values[k] }
        return out
    }

    /// The quantized layers of `list` (none in a stored listing): how many, and their stored bits
    /// over their logical parameters.
    func quantizedSummary(_ list: [ModelTensor]) -> (count: Int, bitsPerWeight: Double)? {
        let layers = list.compactMap { $0.info.encoding.quantizedLayout }
        guard !layers.isEmpty else { return nil }
        let bits = layers.reduce(0.0) { $0 + Double($1.byteCount) * 8 }
        let params = layers.reduce(0.0) { $0 + Double($1.elementCount) }
        return (layers.count, params > 0 ? bits / params : 0)
    }

    // MARK: - Text

    func textReport(
        _ model: Model, _ list: [ModelTensor], _ selected: [Int], _ stats: [Int: Result<TensorStats, FileFormatError>]
    ) -> String {
        var out = ""
        let chosen = Set(selected)
        let version = model.ggufVersion.map { " v\($0)" } ?? ""
        out += "\(model.path)\n"
        let shown = selected.count == list.count ? "" : "\(selected.count) of "
        out += "format \(model.format.rawValue)\(version) · \(shown)\(list.count) \(stored ? "stored " : "")tensors · "
        out += "\(Formatting.count(list.reduce(0) { $0 + $1.info.elementCount })) params · \(Formatting.bytes(model.byteCount))"
        let linear = list.filter(\.isLinear)
        out += " · \(linear.count) linear (\(Formatting.count(linear.reduce(0) { $0 + $1.info.elementCount })) params)\n"
        if let q = quantizedSummary(list) {
            out += "\(q.count) quantized layers, \(Formatting.fixed(q.bitsPerWeight, 3)) bits/weight over quantized layers\n"
        }
        let fields = model.config.fields
        if !fields.isEmpty { out += "config: " + fields.map { "\($0.0)=\($0.1)" }.joined(separator: " ") + "\n" }

        let nameWidth = min(48, max(24, selected.map { relativeName(list[$0]).count }.max() ?? 0))
        let encodingWidth = max(7, selected.map { list[$0].info.encoding.description.count }.max() ?? 0)
        let anyQuantized = selected.contains { list[$0].info.encoding.quantizedLayout != nil }
        for block in Model.blocks(of: list) {
            let members = block.tensorIndices.filter { chosen.contains($0) }
            guard !members.isEmpty else { continue }
            out += "\n" + Formatting.pad(block.name ?? "(outside blocks)", nameWidth + 2)
            out += "  \(block.tensorIndices.count) tensors · \(Formatting.count(block.parameters)) params · \(Formatting.bytes(block.bytes))\n"
            for index in members {
                let t = list[index]
                var line = "  " + Formatting.pad(relativeName(t), nameWidth)
                line += " " + Formatting.pad(Formatting.shape(t.shape), 14)
                line += " " + Formatting.pad(t.info.encoding.description, encodingWidth)
                line += " " + Formatting.pad(Formatting.count(t.info.elementCount), 8, right: true)
                line += " " + Formatting.pad(Formatting.bytes(t.info.byteCount), 10, right: true)
                if anyQuantized {
                    // Stored bits per logical weight, for the quantized layers.
                    let bits = t.info.encoding.quantizedLayout.map { Formatting.fixed($0.bitsPerElement, 3) + " b/w" } ?? ""
                    line += " " + Formatting.pad(bits, 10, right: true)
                }
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

    func jsonReport(
        _ model: Model, _ list: [ModelTensor], _ selected: [Int], _ stats: [Int: Result<TensorStats, FileFormatError>]
    ) -> JSONValue {
        var tensors: [JSONValue] = []
        for index in selected {
            let t = list[index]
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
            if let layout = t.info.encoding.quantizedLayout {
                fields += [
                    ("format", .string(layout.format)),
                    ("code_bits", JSONValue(layout.codeBits)),
                    // How the codes are laid out in the file: nibbles (one code per 4 bits) or
                    // dense (2- and 3-bit codes as a bit stream), and the bytes per row that gives.
                    ("code_packing", .string(layout.codePacking.rawValue)),
                    ("row_bytes", JSONValue(layout.rowBytes)),
                    ("group_size", JSONValue(layout.groupSize)),
                    ("float_dtype", .string(layout.dtype.rawValue)),
                    ("method", .string(layout.method)),
                    ("sample_weight", .string(layout.sampleWeight)),
                    ("stored", .array(layout.parts.map { .string($0.name) }))
                ]
            }
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
        let blocks: [JSONValue] = Model.blocks(of: list).map { b in
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
            ("params", JSONValue(list.reduce(0) { $0 + $1.info.elementCount })),
            ("bytes", JSONValue(model.byteCount)),
            ("stored", .bool(stored)),
            ("quantized_layers", JSONValue(quantizedSummary(list)?.count ?? 0)),
            ("quantized_bits_per_weight", quantizedSummary(list).map { JSONValue($0.bitsPerWeight) } ?? .null),
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
