/// The any4 checkpoint: safetensors in which each quantized linear `X.weight` becomes
///
/// - `X.qweight`: U8 [out, ⌈in/2⌉], two codes per byte, low nibble = even column (8-bit codes:
///   U8 [out, in]); 2- and 3-bit codes are dense, U8 [out, ⌈in·bits/8⌉], a little-endian bit
///   stream per row, which the layer's `"code_packing": "dense"` says (see ``CodePacking``; files
///   written before it store them in nibbles and have no such key);
/// - `X.lut`: [out, 2^b] in the model's dtype, stored centred (centroid − 2^(b−1)) — any-b only;
/// - `X.scales`: [out, groups] in the model's dtype, or U8 for a format whose
///   ``NumericFormat/scaleEncoding`` is a byte (E8M0 for mxfp4, E4M3 for nvfp4);
/// - `X.zeros`: [out, groups] in the model's dtype — asymmetric formats only;
/// - `X.tensor_scale`: F32 [1] — formats with ``NumericFormat/hasTensorScale`` (nvfp4) only.
///
/// Every other tensor is copied unchanged (GGUF block types are decoded to F32). `__metadata__`
/// holds `any4.format`, `any4.bits`, `any4.group_size`, `any4.method`, `any4.sample_weight`,
/// `any4.version` and `any4.layers`, a JSON object giving each quantized layer's [out, in].
///
/// With `fakeQuant`, the file instead has the input's names, shapes and dtypes, each quantized
/// weight replaced by its dequantized values, so any safetensors consumer can evaluate it.
public enum QuantizedCheckpoint {
    public static let version = "1"

    public struct Description: Sendable {
        public var format: String
        public var codeBits: Int
        public var groupSize: Int
        public var method: String
        public var sampleWeight: String

        /// The description of `format` quantized with `options`: its real block size, and the
        /// clustering and sample weights only for the learned (any-b) formats.
        public init(format: any NumericFormat, options: QuantizationOptions) {
            self.init(
                format: format.name, codeBits: format.codeBits, groupSize: options.blockSize(for: format),
                method: format.perRowTable ? options.cluster.rawValue : "",
                sampleWeight: format.perRowTable ? options.sampleWeighting.name : "")
        }

        public init(format: String, codeBits: Int, groupSize: Int, method: String, sampleWeight: String) {
            self.format = format
            self.codeBits = codeBits
            self.groupSize = groupSize
            self.method = method
            self.sampleWeight = sampleWeight
        }
    }

    static func baseName(_ weightName: String) -> String {
        weightName.hasSuffix(".weight") ? String(weightName.dropLast(7)) : weightName
    }

    /// Reads the quantized layers of a checkpoint back, by weight name (`X.weight`): a thin
    /// wrapper over ``Model/open(_:)`` and ``Model/quantizedMatrix(_:)``, so it reads whatever
    /// the model reader reads (a safetensors file, an HF folder, a GGUF; `any4.layers` version 1
    /// or 2) with the same checks.
    ///
    /// The description is the file's (`any4.format`, ...) when it names one format, else the
    /// first quantized layer's: a checkpoint of mixed formats describes each layer in its
    /// ``QuantizedLayout``.
    public static func read(_ path: String) throws -> (description: Description, layers: [String: QuantizedMatrix]) {
        let model = try Model.open(path)
        var layers: [String: QuantizedMatrix] = [:]
        var first: QuantizedLayout?
        for tensor in model.tensors {
            guard let q = try model.quantizedMatrix(tensor) else { continue }
            layers[tensor.name] = q
            if first == nil { first = tensor.info.encoding.quantizedLayout }
        }
        let meta = Dictionary(model.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        guard meta["any4.layers"] != nil else {
            throw FileFormatError(
                file: path, kind: .badHeader, "not an any4 checkpoint: no any4.layers metadata (a fake-quant file has no codes)")
        }
        let description: Description
        if let format = meta["any4.format"], format != "mixed", let bits = meta["any4.bits"].flatMap(Int.init),
            let groupSize = meta["any4.group_size"].flatMap(Int.init)
        {
            description = Description(
                format: format, codeBits: bits, groupSize: groupSize,
                method: meta["any4.method"] ?? "", sampleWeight: meta["any4.sample_weight"] ?? "")
        } else if let first {
            description = Description(
                format: first.format, codeBits: first.codeBits, groupSize: first.groupSize,
                method: first.method, sampleWeight: first.sampleWeight)
        } else {
            throw FileFormatError(file: path, kind: .badHeader, "any4.layers lists no layer and the file names no single format")
        }
        return (description, layers)
    }
}
