import Any4Core
import Foundation

/// Quantized layers and any4 checkpoints written part by part here, independently of the
/// checkpoint writer, as the on-disk contract (version 2) gives them.
public enum QuantizedFixtures {
    public struct Layer {
        public var name: String
        public var q: QuantizedMatrix
        public var dtype: DType
        /// Whether the codes are written dense (`"code_packing": "dense"`, `bits` bits each) rather
        /// than in nibbles (the layout of files written before dense packing, and the default here):
        /// set `q.codePacking` to `.dense` for dense 2- or 3-bit codes.
        public var denseCodes: Bool { q.codePacking == .dense && q.codeBits < 4 }
        public var base: String { String(name.dropLast(".weight".count)) }
        public init(name: String, q: QuantizedMatrix, dtype: DType) {
            self.name = name
            self.q = q
            self.dtype = dtype
        }
    }

    public static func weights(_ rows: Int, _ cols: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<(rows * cols)).map { _ in Float(rng.nextStudentT4() * 0.02) }
    }

    public static func layer(_ name: String, _ format: String, rows: Int, cols: Int, group: Int, dtype: DType) throws -> Layer {
        var options = QuantizationOptions()
        options.groupSize = group
        options.threads = 1
        var q = try Quantizer.quantize(
            weights(rows, cols, seed: UInt64(rows * 1000 + cols)), rows: rows, cols: cols, name: name,
            format: FormatRegistry.named(format), options: options, storage: dtype)
        q.codePacking = .nibbles
        return Layer(name: name, q: q, dtype: dtype)
    }

    /// Three layers of different format, group size and dtype: any4 g32 bf16 (per-row LUT),
    /// int4 g64 f16 on a width of 80 (zeros; a ragged last group), mxfp4 (E8M0 byte scales) at f32.
    public static func mixedLayers() throws -> [Layer] {
        [
            try layer("model.layers.0.self_attn.q_proj.weight", "any4", rows: 8, cols: 96, group: 32, dtype: .bf16),
            try layer("model.layers.0.mlp.up_proj.weight", "int4", rows: 6, cols: 80, group: 64, dtype: .f16),
            try layer("model.layers.1.mlp.down_proj.weight", "mxfp4", rows: 5, cols: 64, group: 32, dtype: .f32)
        ]
    }

    /// Codes two per byte, low nibble first (one per byte above 4 bits), written here.
    public static func packed(_ q: QuantizedMatrix) -> [UInt8] {
        if q.codeBits > 4 { return q.codes }
        let rowBytes = (q.cols + 1) / 2
        var out = [UInt8](repeating: 0, count: q.rows * rowBytes)
        for r in 0..<q.rows {
            for c in 0..<q.cols {
                out[r * rowBytes + c / 2] |= c % 2 == 0 ? q.codes[r * q.cols + c] : q.codes[r * q.cols + c] << 4
            }
        }
        return out
    }

    /// Codes as a little-endian bit stream of `codeBits`-bit codes per row, each row padded to
    /// whole bytes, written here bit by bit.
    public static func densePacked(_ q: QuantizedMatrix) -> [UInt8] {
        let rowBytes = (q.cols * q.codeBits + 7) / 8
        var out = [UInt8](repeating: 0, count: q.rows * rowBytes)
        for r in 0..<q.rows {
            for c in 0..<q.cols {
                for b in 0..<q.codeBits where q.codes[r * q.cols + c] >> b & 1 == 1 {
                    let bit = c * q.codeBits + b
                    out[r * rowBytes + bit / 8] |= 1 << (bit % 8)
                }
            }
        }
        return out
    }

    /// The stored parts of a layer.
    public static func parts(_ layer: Layer) throws -> [SafeTensorsWriter.Entry] {
        let q = layer.q, base = layer.base
        let format = try FormatRegistry.named(q.formatName)
        var out: [SafeTensorsWriter.Entry] = [
            layer.denseCodes
                ? .init(name: base + ".qweight", dtype: .u8, shape: [q.rows, (q.cols * q.codeBits + 7) / 8], bytes: densePacked(q))
                : .init(name: base + ".qweight", dtype: .u8, shape: [q.rows, q.codeBits > 4 ? q.cols : (q.cols + 1) / 2], bytes: packed(q))
        ]
        if q.perRowTable { out.append(.init(name: base + ".lut", shape: [q.rows, q.tableSize], floats: q.tables, as: layer.dtype)) }
        if format.scaleEncoding == .float {
            out.append(.init(name: base + ".scales", shape: [q.rows, q.groupsPerRow], floats: q.scales, as: layer.dtype))
        } else {
            out.append(
                .init(
                    name: base + ".scales", dtype: .u8, shape: [q.rows, q.groupsPerRow],
                    bytes: q.scales.map(format.scaleEncoding.encode)))
        }
        if !q.zeros.isEmpty { out.append(.init(name: base + ".zeros", shape: [q.rows, q.groupsPerRow], floats: q.zeros, as: layer.dtype)) }
        if format.hasTensorScale { out.append(.init(name: base + ".tensor_scale", shape: [1], floats: [q.tensorScale])) }
        return out
    }

    /// `any4.layers` (version 2) for `layers`, as the contract gives it.
    public static func layersJSON(_ layers: [Layer]) -> String {
        let members = layers.map { l in
            "\"\(l.name)\": {\"shape\": [\(l.q.rows), \(l.q.cols)], \"format\": \"\(l.q.formatName)\", \"bits\": \(l.q.codeBits), "
                + "\"group_size\": \(l.q.groupSize), \"method\": \"lloyd\", \"sample_weight\": \"none\", "
                + "\"dtype\": \"\(l.dtype.rawValue.lowercased())\"" + (l.denseCodes ? ", \"code_packing\": \"dense\"}" : "}")
        }
        return "{" + members.joined(separator: ", ") + "}"
    }

    public static let norm = SafeTensorsWriter.Entry(name: "model.norm.weight", shape: [96], floats: (0..<96).map { 1 + Float($0) / 128 })

    public static func writeVersion2(_ layers: [Layer], extra: [SafeTensorsWriter.Entry] = [norm], to path: String) throws {
        try SafeTensorsWriter.write(
            try layers.flatMap(parts) + extra,
            metadata: ["any4.version": "2", "any4.format": "mixed", "any4.fake_quant": "0", "any4.layers": layersJSON(layers)],
            to: path)
    }

    /// An HF-style folder: config, two shards and an index; layers of one format in each shard.
    public static func writeShardedFolder(_ dir: String, _ layers: [Layer]) throws {
        try SafeTensorsWriter.write(
            try parts(layers[0]) + [norm],
            metadata: ["any4.version": "2", "any4.layers": layersJSON([layers[0]])],
            to: dir + "/model-00001-of-00002.safetensors")
        try SafeTensorsWriter.write(
            try layers[1...].flatMap(parts),
            metadata: ["any4.version": "2", "any4.layers": layersJSON(Array(layers[1...]))],
            to: dir + "/model-00002-of-00002.safetensors")
        var map: [String] = []
        for (i, l) in layers.enumerated() {
            for p in try parts(l) { map.append("\"\(p.name)\": \"model-0000\(i == 0 ? 1 : 2)-of-00002.safetensors\"") }
        }
        map.append("\"model.norm.weight\": \"model-00001-of-00002.safetensors\"")
        try "{\"metadata\": {\"total_size\": 1, \"any4.version\": \"2\"}, \"weight_map\": {\(map.joined(separator: ", "))}}"
            .write(toFile: dir + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        try "{\"model_type\": \"llama\", \"hidden_size\": 96}".write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
    }
}
