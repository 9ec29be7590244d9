/// One layer's quantization outcome as the tools report it: `quantize --json`, `compare`'s table
/// and JSON, the TUI's Model tab and its export, the one-line summary of the commands that run a
/// quantized model. A layer left as it is (the TUI's `float` rows) has no outcome.
///
/// ``LayerResult`` is what the quantizer returns (with the codes); a report is its figures only.
public struct LayerReport: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    /// The format's name, compare's variant label (`any4-exact`, `mxfp4@128`), or `float` for a
    /// layer that was not quantized.
    public var format: String
    /// The figures of a quantized layer (nil: the layer is as stored).
    public var outcome: Outcome?

    public struct Outcome: Sendable, Equatable {
        public var sqnrDB: Double
        public var mse: Double
        public var maxAbsError: Double
        public var bitsPerWeight: Double
        public var seconds: Double
        /// ‖XWᵀ − XŴᵀ‖/‖XWᵀ‖ on Gaussian activations, when it was measured.
        public var outputRelativeError: Double?
        /// any-b: the weighted k-means objective summed over all rows, and over the first 64.
        public var kmeansObjective: Double?
        public var kmeansObjectiveFirst64: Double?

        public init(
            sqnrDB: Double, mse: Double, maxAbsError: Double, bitsPerWeight: Double, seconds: Double,
            outputRelativeError: Double? = nil, kmeansObjective: Double? = nil, kmeansObjectiveFirst64: Double? = nil
        ) {
            self.sqnrDB = sqnrDB
            self.mse = mse
            self.maxAbsError = maxAbsError
            self.bitsPerWeight = bitsPerWeight
            self.seconds = seconds
            self.outputRelativeError = outputRelativeError
            self.kmeansObjective = kmeansObjective
            self.kmeansObjectiveFirst64 = kmeansObjectiveFirst64
        }
    }

    public init(name: String, shape: [Int], format: String, outcome: Outcome?) {
        self.name = name
        self.shape = shape
        self.format = format
        self.outcome = outcome
    }

    /// The figures of a quantized layer.
    public init(_ result: LayerResult) {
        self.init(
            name: result.name, shape: result.shape, format: result.format,
            outcome: Outcome(
                sqnrDB: result.metrics.sqnrDB, mse: result.metrics.mse, maxAbsError: result.metrics.maxAbsError,
                bitsPerWeight: result.bitsPerWeight, seconds: result.seconds,
                outputRelativeError: result.outputRelativeError, kmeansObjective: result.kmeansObjective,
                kmeansObjectiveFirst64: result.kmeansObjectiveFirst64))
    }

    /// A layer left as it is (format `float`, no figures).
    public init(unquantized name: String, shape: [Int]) {
        self.init(name: name, shape: shape, format: "float", outcome: nil)
    }

    /// The number of weights.
    public var parameters: Int { shape.reduce(1, *) }
}

// MARK: - Fields

extension LayerReport {
    /// A column of the JSON and CSV encodings: its JSON key (and CSV header) and how it is written.
    public enum Field: String, Sendable, CaseIterable {
        case name, shape, format
        case sqnrDB = "sqnr_db", mse, maxAbsError = "max_abs_error", outputRelativeError = "output_rel_error"
        case bitsPerWeight = "bits_per_weight", seconds
        case kmeansObjective = "kmeans_objective", kmeansObjectiveFirst64 = "kmeans_objective_first64"

        /// The key in JSON.
        public var key: String { rawValue }
        /// The CSV header (the name's column is `layer`).
        public var header: String { self == .name ? "layer" : rawValue }

        /// `quantize --json`: the layers of one format (the format is named once, outside).
        public static let quantize: [Field] = [.name, .shape, .sqnrDB, .mse, .maxAbsError, .bitsPerWeight, .seconds]
        /// `compare --json`: one format's figures on a layer (named by the layer and the format outside).
        public static let comparison: [Field] = [
            .sqnrDB, .mse, .maxAbsError, .bitsPerWeight, .seconds,
            .kmeansObjective, .kmeansObjectiveFirst64
        ]
        /// The TUI's Model tab export (CSV and JSON): every linear layer, quantized or not.
        public static let table: [Field] = [
            .name, .shape, .format, .sqnrDB, .mse, .maxAbsError, .outputRelativeError,
            .bitsPerWeight, .seconds
        ]
    }

    /// One field's value as the encoders write it.
    enum Cell: Equatable {
        case text(String)
        case dimensions([Int])
        /// A figure; nil when it was not measured (JSON `null`, an empty CSV cell).
        case number(Double?)
    }

    /// The value of `field`, or nil when the field is left out: the figures of a layer that was not
    /// quantized, and k-means objectives a format without a learned table does not have. An output
    /// error that was not measured is kept as an empty value (the export's column is always there).
    func cell(_ field: Field) -> Cell? {
        switch field {
        case .name: return .text(name)
        case .shape: return .dimensions(shape)
        case .format: return .text(format)
        default: break
        }
        guard let o = outcome else { return nil }
        switch field {
        case .name, .shape, .format: return nil  // handled above
        case .sqnrDB: return .number(o.sqnrDB)
        case .mse: return .number(o.mse)
        case .maxAbsError: return .number(o.maxAbsError)
        case .outputRelativeError: return .number(o.outputRelativeError)
        case .bitsPerWeight: return .number(o.bitsPerWeight)
        case .seconds: return .number(o.seconds)
        case .kmeansObjective: return o.kmeansObjective.map { .number($0) }
        case .kmeansObjectiveFirst64: return o.kmeansObjectiveFirst64.map { .number($0) }
        }
    }

    // MARK: - Encoders

    /// The layer as one JSON object with `fields` in that order. Non-finite figures are `null`
    /// (``JSONValue/serialized``).
    public func json(_ fields: [Field]) -> JSONValue {
        .object(
            fields.compactMap { field in
                cell(field).map { cell -> (key: String, value: JSONValue) in
                    switch cell {
                    case .text(let s): (field.key, .string(s))
                    case .dimensions(let d): (field.key, .array(d.map { JSONValue($0) }))
                    case .number(let x): (field.key, x.map { JSONValue($0) } ?? .null)
                    }
                }
            })
    }

    /// The layer as one CSV line (no newline) with `fields` in that order: a shape as `ROWSxCOLS`,
    /// a figure as Swift prints a Double (`nan`, `inf` and `-inf` for non-finite ones), an absent
    /// value as an empty cell. Cells are not quoted.
    public func csv(_ fields: [Field]) -> String {
        fields.map { field in
            switch cell(field) {
            case .text(let s): s
            case .dimensions(let d): d.map(String.init).joined(separator: "x")
            case .number(let x): x.map { "\($0)" } ?? ""
            case nil: ""
            }
        }.joined(separator: ",")
    }
}

// MARK: - A set of layers

/// The layers of one run, in order, with the figures the tools summarize them by.
public struct LayerReports: Sendable, Equatable {
    public var layers: [LayerReport]

    public init(_ layers: [LayerReport]) { self.layers = layers }
    public init(_ results: [LayerResult]) { self.init(results.map(LayerReport.init)) }

    /// The layers as a JSON array of objects with `fields`.
    public func json(_ fields: [LayerReport.Field]) -> JSONValue { .array(layers.map { $0.json(fields) }) }

    /// The layers as CSV: a header line of `fields`, then one line per layer, each ending in a newline.
    public func csv(_ fields: [LayerReport.Field]) -> String {
        var text = fields.map(\.header).joined(separator: ",") + "\n"
        for layer in layers { text += layer.csv(fields) + "\n" }
        return text
    }

    /// The quantized layers (those with figures).
    var quantized: [(layer: LayerReport, outcome: LayerReport.Outcome)] {
        layers.compactMap { layer in layer.outcome.map { (layer, $0) } }
    }

    /// The number of weights in the quantized layers.
    public var parameters: Int { quantized.reduce(0) { $0 + $1.layer.parameters } }

    /// The mean SQNR of the quantized layers (each layer counts once).
    public var meanSQNR: Double {
        let q = quantized
        return q.reduce(0) { $0 + $1.outcome.sqnrDB } / Double(q.count)
    }

    /// Bits per weight over the quantized layers, weighted by their weights (0 when there are none).
    public var bitsPerWeight: Double {
        var bits = 0.0, params = 0.0
        for (layer, outcome) in quantized {
            let n = Double(layer.parameters)
            bits += outcome.bitsPerWeight * n
            params += n
        }
        return params > 0 ? bits / params : 0
    }

    /// The quantized layer with the lowest SQNR (the first of equals).
    public var worst: LayerReport? {
        quantized.min { $0.outcome.sqnrDB < $1.outcome.sqnrDB }?.layer
    }
}
