/// Several formats run on the same layers (`any4 compare`): one row per layer with each format's
/// report, in the order of `labels`, and a summary per format.
public struct LayerComparison: Sendable, Equatable {
    /// One layer and each format's report on it (the report's `format` is the format's label).
    public struct Row: Sendable, Equatable {
        public var name: String
        public var shape: [Int]
        public var results: [LayerReport]

        public init(name: String, shape: [Int], results: [LayerReport]) {
            self.name = name
            self.shape = shape
            self.results = results
        }
    }

    /// One format over all the layers.
    public struct Summary: Sendable, Equatable {
        public var label: String
        /// The mean of the layers' SQNR (each layer counts once).
        public var meanSQNR: Double
        /// Layers where the format has the best SQNR (ties count for each).
        public var wins: Int
        /// Bits per weight weighted by the layers' weights.
        public var meanBits: Double
        public var seconds: Double
    }

    public var labels: [String]
    public var rows: [Row]

    public init(labels: [String], rows: [Row] = []) {
        self.labels = labels
        self.rows = rows
    }

    /// The format labelled `label` over all the layers.
    public func summary(_ label: String) -> Summary {
        var sqnr = 0.0, seconds = 0.0, wins = 0
        var column: [LayerReport] = []
        for row in rows {
            guard let r = row.results.first(where: { $0.format == label }), let o = r.outcome else { continue }
            column.append(r)
            sqnr += o.sqnrDB
            seconds += o.seconds
            if o.sqnrDB >= (row.results.compactMap { $0.outcome?.sqnrDB }.max() ?? 0) { wins += 1 }
        }
        let n = Double(max(rows.count, 1))
        return Summary(label: label, meanSQNR: sqnr / n, wins: wins, meanBits: LayerReports(column).bitsPerWeight, seconds: seconds)
    }

    /// Every format's summary, in the order of `labels`.
    public var summaries: [Summary] { labels.map(summary) }

    /// `compare --json`'s `layers`: per layer its name, shape and each format's figures
    /// (``LayerReport/Field/comparison``) keyed by the format's label.
    public func layersJSON() -> JSONValue {
        .array(
            rows.map { row in
                .object([
                    (LayerReport.Field.name.key, .string(row.name)),
                    (LayerReport.Field.shape.key, .array(row.shape.map { JSONValue($0) })),
                    ("results", .object(row.results.map { ($0.format, $0.json(LayerReport.Field.comparison)) }))
                ])
            })
    }

    /// `compare --json`'s `summary`: each format's summary keyed by its label.
    public func summaryJSON() -> JSONValue {
        .object(
            summaries.map { s in
                (
                    s.label,
                    .object([
                        ("mean_sqnr_db", JSONValue(s.meanSQNR)), ("wins", JSONValue(s.wins)),
                        ("mean_bits_per_weight", JSONValue(s.meanBits)), ("seconds", JSONValue(s.seconds))
                    ])
                )
            })
    }
}
