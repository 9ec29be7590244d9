/// A plan's choice of format per layer, with the measurements it was chosen from.
///
/// Written by `any4 plan`, read by `any4 quantize --recipe` and the TUI. The file is JSON:
///
/// ```
/// {"any4.recipe": 1, "model": "...", "errorMeasure": "...", "budgetBitsPerWeight": 4.0,
///  "candidates": ["any4:g128", ..., "keep"], "otherBits": N, "otherParameters": N,
///  "totals": {"bits": N, "parameters": N, "bitsPerWeight": x, "predictedError": x, ...},
///  "layers": [
///   {"name": "blk.0.attn_q.weight", "parameters": N, "choice": "any4:g128", "format": "any4",
///    "group": 128, "bits": N, "bitsPerWeight": x, "predictedError": x,
///    "entries": [[bits, error], ..., null]},
///   ...]}
/// ```
///
/// `choice` (a spec from `candidates`) is what is applied; `entries` holds, per candidate in the
/// order of `candidates`, the layer's stored bits and predicted error (null: not applicable).
/// `format`, `group`, `bits`, `bitsPerWeight`, `predictedError` and `totals` are written for
/// readers and recomputed from `choice` and `entries` on loading, so editing `choice` by hand is
/// enough to change a layer.
public struct Recipe: Sendable, Equatable {
    public var table: SensitivityTable
    /// Candidate index per layer.
    public var choice: [Int]
    /// The budget the plan was solved under (nil: chosen by hand).
    public var budgetBitsPerWeight: Double?
    /// The model the plan measured (informative).
    public var model: String

    public static let version = 1

    public init(table: SensitivityTable, choice: [Int], budgetBitsPerWeight: Double?, model: String = "") {
        precondition(choice.count == table.layers.count, "one choice per layer")
        precondition(
            choice.enumerated().allSatisfy { l, c in c >= 0 && c < table.candidates.count && table.entries[l][c] != nil },
            "every choice is an applicable candidate")
        self.table = table
        self.choice = choice
        self.budgetBitsPerWeight = budgetBitsPerWeight
        self.model = model
    }

    /// Σ stored bits of the planned layers.
    public var bits: Int { table.totals(choice).bits }
    /// Stored bits per weight over the planned layers (what the budget constrains).
    public var bitsPerWeight: Double { Double(bits) / Double(max(table.plannedParameters, 1)) }
    /// Σ predicted error of the chosen candidates.
    public var predictedError: Double { table.totals(choice).error }
    /// Stored bits per weight over the whole model: the planned layers plus everything else as stored.
    public var modelBitsPerWeight: Double {
        Double(bits + table.otherBits) / Double(max(table.plannedParameters + table.otherParameters, 1))
    }

    /// The candidate chosen for layer `l`.
    public func candidate(ofLayer l: Int) -> PlanCandidate { table.candidates[choice[l]] }

    /// The candidate chosen for the weight `name`, or nil when the recipe does not plan it.
    public func candidate(forWeight name: String) -> PlanCandidate? {
        table.layers.firstIndex(of: name).map { candidate(ofLayer: $0) }
    }

    // MARK: - Writing

    /// The recipe as JSON text, one layer per line.
    public var json: String {
        func number(_ x: Double) -> String { JSONValue(x).serialized }
        var lines: [String] = []
        let head: [(String, JSONValue)] = [
            ("any4.recipe", JSONValue(Self.version)),
            ("model", .string(model)),
            ("errorMeasure", .string(table.errorMeasure)),
            ("budgetBitsPerWeight", budgetBitsPerWeight.map { JSONValue($0) } ?? .null),
            ("candidates", .array(table.candidates.map { .string($0.spec) })),
            ("otherBits", JSONValue(table.otherBits)),
            ("otherParameters", JSONValue(table.otherParameters)),
            (
                "totals",
                .object([
                    ("bits", JSONValue(bits)), ("parameters", JSONValue(table.plannedParameters)),
                    ("bitsPerWeight", JSONValue(bitsPerWeight)), ("predictedError", JSONValue(predictedError)),
                    ("modelBitsPerWeight", JSONValue(modelBitsPerWeight))
                ])
            )
        ]
        for (key, value) in head { lines.append("  " + JSONValue.object([(key, value)]).serialized.dropFirst().dropLast() + ",") }
        var layerLines: [String] = []
        for (l, name) in table.layers.enumerated() {
            let c = candidate(ofLayer: l)
            let e = table.entries[l][choice[l]]!
            let entries: [JSONValue] = table.entries[l].map { entry in
                entry.map { .array([JSONValue($0.bits), JSONValue($0.error)]) } ?? .null
            }
            let object = JSONValue.object([
                ("name", .string(name)), ("parameters", JSONValue(table.parameters[l])),
                ("choice", .string(c.spec)), ("format", .string(c.format)),
                ("group", c.groupSize.map { JSONValue($0) } ?? .null), ("bits", JSONValue(e.bits)),
                ("bitsPerWeight", JSONValue(Double(e.bits) / Double(max(table.parameters[l], 1)))),
                ("predictedError", JSONValue(e.error)), ("entries", .array(entries))
            ])
            layerLines.append("    " + object.serialized)
        }
        return "{\n" + lines.joined(separator: "\n") + "\n  \"layers\": [\n" + layerLines.joined(separator: ",\n") + "\n  ]\n}\n"
    }

    /// Writes the recipe to `path` (temporary file, then rename).
    public func write(to path: String) throws {
        let writer = try AtomicFileWriter(path: path)
        try writer.write(json)
        try writer.commit()
    }

    // MARK: - Reading

    /// Reads a recipe, checking every field.
    ///
    /// - Throws: ``FileFormatError`` naming the file and the entry (`layers[3].entries[2]`, a
    ///   layer's name) that is wrong.
    public static func load(_ path: String) throws -> Recipe {
        let store = try ByteStore(mapping: path)
        return try parse(try JSONParser.parse(store.bytes, file: path), file: path)
    }

    /// Reads a recipe from JSON text (`file` names it in errors).
    public static func parse(_ text: String, file: String) throws -> Recipe {
        try parse(try JSONParser.parse(text, file: file), file: file)
    }

    static func parse(_ root: JSONValue, file: String) throws -> Recipe {
        func bad(_ message: String, _ subject: String? = nil) -> FileFormatError {
            FileFormatError(file: file, kind: .badHeader, message, subject: subject)
        }
        guard root.members != nil else { throw bad("a recipe is a JSON object") }
        guard let version = root["any4.recipe"]?.int else { throw bad("not an any4 recipe (no \"any4.recipe\" version)") }
        guard version == Self.version else { throw bad("recipe version \(version) is not supported (this build reads \(Self.version))") }
        let model = root["model"]?.string ?? ""
        let measure = root["errorMeasure"]?.string ?? "predicted error"
        var budget: Double? = nil
        if let b = root["budgetBitsPerWeight"], b != .null {
            guard let value = b.double, value.isFinite, value > 0 else { throw bad("must be a positive number or null", "budgetBitsPerWeight") }
            budget = value
        }
        guard let specs = root["candidates"]?.array, !specs.isEmpty else { throw bad("missing or empty list", "candidates") }
        guard specs.count <= BitAllocation.maxCandidates else { throw bad("more than \(BitAllocation.maxCandidates) candidates", "candidates") }
        var candidates: [PlanCandidate] = []
        for (i, spec) in specs.enumerated() {
            guard let text = spec.string else { throw bad("not a string", "candidates[\(i)]") }
            do {
                let c = try PlanCandidate(spec: text)
                guard !candidates.contains(c) else { throw bad("\(c.spec) is listed twice", "candidates[\(i)]") }
                candidates.append(c)
            } catch let error as QuantizationError {
                throw bad(error.description, "candidates[\(i)]")
            }
        }
        func count(_ key: String) throws -> Int {
            guard let v = root[key] else { return 0 }
            guard let n = v.int, n >= 0 else { throw bad("must be a non-negative integer", key) }
            return n
        }
        let otherBits = try count("otherBits")
        let otherParameters = try count("otherParameters")
        guard let layers = root["layers"]?.array else { throw bad("missing list", "layers") }
        var names: [String] = [], parameters: [Int] = [], entries: [[SensitivityTable.Entry?]] = [], choice: [Int] = []
        var seen = Set<String>()
        for (l, layer) in layers.enumerated() {
            let at = "layers[\(l)]"
            guard let name = layer["name"]?.string, !name.isEmpty else { throw bad("missing name", at) }
            guard seen.insert(name).inserted else { throw bad("\(name) is listed twice", at) }
            guard let p = layer["parameters"]?.int, p > 0 else { throw bad("parameters must be a positive integer", "\(at) (\(name))") }
            guard let row = layer["entries"]?.array, row.count == candidates.count else {
                throw bad("entries must list one [bits, error] or null per candidate (\(candidates.count))", "\(at) (\(name))")
            }
            var parsed: [SensitivityTable.Entry?] = []
            for (c, item) in row.enumerated() {
                if item == .null {
                    parsed.append(nil)
                    continue
                }
                guard let pair = item.array, pair.count == 2, let bits = pair[0].int, bits >= 0,
                    let error = pair[1].double, error.isFinite, error >= 0
                else {
                    throw bad("expected [bits ≥ 0 (integer), error ≥ 0] or null", "\(at).entries[\(c)] (\(name), \(candidates[c].spec))")
                }
                parsed.append(.init(bits: bits, error: error))
            }
            guard let spec = layer["choice"]?.string else { throw bad("missing choice", "\(at) (\(name))") }
            let chosen: PlanCandidate
            do { chosen = try PlanCandidate(spec: spec) } catch { throw bad("choice: \(error)", "\(at) (\(name))") }
            guard let index = candidates.firstIndex(of: chosen) else {
                throw bad("choice \(chosen.spec) is not one of the candidates", "\(at) (\(name))")
            }
            guard parsed[index] != nil else { throw bad("choice \(chosen.spec) has no entry (null)", "\(at) (\(name))") }
            names.append(name)
            parameters.append(p)
            entries.append(parsed)
            choice.append(index)
        }
        let table = SensitivityTable(
            layers: names, parameters: parameters, candidates: candidates, entries: entries, otherBits: otherBits,
            otherParameters: otherParameters, errorMeasure: measure)
        return Recipe(table: table, choice: choice, budgetBitsPerWeight: budget, model: model)
    }

    // MARK: - Applying

    /// The quantize pipeline's jobs: one per planned layer not chosen "keep", with the candidate's
    /// format and `base` at its group size (see ``assignments(for:recipePath:)`` for the checks).
    public func jobs(for model: Model, base: QuantizationOptions, recipePath: String) throws -> [LayerJob] {
        try assignments(for: model, recipePath: recipePath).map { tensor, candidate in
            guard let format = candidate.numericFormat else { preconditionFailure("keep has no job") }
            return LayerJob(tensor: tensor, format: format, options: candidate.options(base: base))
        }
    }

    /// The tensors of `model` the recipe quantizes and the candidate for each, in model order;
    /// layers chosen "keep" are left out (copied as stored).
    ///
    /// - Throws: ``FileFormatError`` naming `recipePath` and the layer when a planned layer is not a
    ///   linear layer of the model or its size differs from the recipe's.
    public func assignments(for model: Model, recipePath: String) throws -> [(tensor: ModelTensor, candidate: PlanCandidate)] {
        var planned: [String: Int] = [:]
        for (l, name) in table.layers.enumerated() { planned[name] = l }
        var out: [(ModelTensor, PlanCandidate)] = []
        var found = 0
        for t in model.tensors {
            guard let l = planned[t.name] else { continue }
            found += 1
            guard t.isLinear, t.shape.count == 2 else {
                throw FileFormatError(file: recipePath, kind: .badShape, "is not a linear layer of \(model.path)", subject: t.name)
            }
            guard t.info.elementCount == table.parameters[l] else {
                throw FileFormatError(
                    file: recipePath, kind: .badShape,
                    "the recipe has \(table.parameters[l]) weights, \(model.path) has \(t.info.elementCount) (a recipe for another model?)",
                    subject: t.name)
            }
            let c = candidate(ofLayer: l)
            if !c.isKeep { out.append((t, c)) }
        }
        if found < table.layers.count, let missing = table.layers.first(where: { model.tensor(named: $0) == nil }) {
            throw FileFormatError(
                file: recipePath, kind: .badShape, "no such tensor in \(model.path) (a recipe for another model?)", subject: missing)
        }
        return out
    }
}
