/// Which per-input-channel activation statistic weighs any-b's k-means.
public enum CalibrationStatistic: String, Sendable, CaseIterable {
    /// |mean of x| (the paper weights by the activation mean; its magnitude keeps weights ≥ 0).
    case mean
    /// mean of |x|.
    case absmean
    /// mean of x²: the diagonal of the layer's Hessian, the principled choice.
    case sqmean
}

/// Per-linear-layer, per-input-channel statistics of the layer's input activations.
///
/// The file is safetensors. For a linear weight named `P.weight` (or `P` if the name has no
/// `.weight` suffix) it holds `P.mean`, `P.absmean`, `P.sqmean` (F32 [in]) and `P.count`
/// (F32 [1], the number of activation rows seen); `__metadata__` records `any4.calibration` = "1"
/// and free-form notes (prompt, model).
public struct CalibrationStats: Sendable {
    public struct Layer: Sendable, Equatable {
        public var mean: [Float]
        public var absmean: [Float]
        public var sqmean: [Float]
        public var count: Float

        public init(mean: [Float], absmean: [Float], sqmean: [Float], count: Float) {
            self.mean = mean
            self.absmean = absmean
            self.sqmean = sqmean
            self.count = count
        }

        public func values(_ statistic: CalibrationStatistic) -> [Float] {
            switch statistic {
            case .mean: mean.map(abs)
            case .absmean: absmean
            case .sqmean: sqmean
            }
        }
    }

    public var layers: [String: Layer]
    public var metadata: [String: String]

    public init(layers: [String: Layer] = [:], metadata: [String: String] = [:]) {
        self.layers = layers
        self.metadata = metadata
    }

    /// The key a weight tensor's statistics are stored under.
    public static func key(forWeight name: String) -> String {
        name.hasSuffix(".weight") ? String(name.dropLast(7)) : name
    }

    public func layer(forWeight name: String) -> Layer? { layers[Self.key(forWeight: name)] }

    public static func load(_ path: String) throws -> CalibrationStats {
        let file = try SafeTensorsFile(path: path)
        var layers: [String: Layer] = [:]
        var byName: [String: TensorInfo] = [:]
        for t in file.tensors { byName[t.name] = t }
        for t in file.tensors where t.name.hasSuffix(".sqmean") {
            let key = String(t.name.dropLast(7))
            func vector(_ suffix: String) throws -> [Float] {
                guard let info = byName[key + suffix], info.shape.count == 1, info.encoding == .plain(.f32) else {
                    throw FileFormatError(file: path, kind: .badHeader, "missing or malformed F32 vector", subject: key + suffix)
                }
                return info.decodeAll(from: file.store)
            }
            let layer = Layer(
                mean: try vector(".mean"), absmean: try vector(".absmean"), sqmean: try vector(".sqmean"),
                count: try vector(".count").first ?? 0)
            guard layer.mean.count == layer.sqmean.count, layer.absmean.count == layer.sqmean.count else {
                throw FileFormatError(file: path, kind: .badShape, "statistics of different lengths", subject: key)
            }
            if let bad = (layer.mean + layer.absmean + layer.sqmean).first(where: { !$0.isFinite }) {
                throw FileFormatError(file: path, kind: .badHeader, "non-finite statistic \(bad)", subject: key)
            }
            layers[key] = layer
        }
        guard !layers.isEmpty else {
            throw FileFormatError(file: path, kind: .badHeader, "no calibration statistics (no tensor named *.sqmean)")
        }
        return CalibrationStats(layers: layers, metadata: file.metadata)
    }

    /// Writes the statistics to `path` (atomic); cancelling `progress` stops the write with
    /// ``QuantizationError/cancelled`` and writes nothing.
    public func write(to path: String, progress: Progress? = nil) throws {
        var entries: [SafeTensorsWriter.Entry] = []
        for (key, layer) in layers {
            entries.append(.init(name: key + ".mean", shape: [layer.mean.count], floats: layer.mean))
            entries.append(.init(name: key + ".absmean", shape: [layer.absmean.count], floats: layer.absmean))
            entries.append(.init(name: key + ".sqmean", shape: [layer.sqmean.count], floats: layer.sqmean))
            entries.append(.init(name: key + ".count", shape: [1], floats: [layer.count]))
        }
        var meta = metadata
        meta["any4.calibration"] = "1"
        try SafeTensorsWriter.write(entries, metadata: meta, to: path, progress: progress)
    }
}
