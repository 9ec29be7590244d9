/// The any4 checkpoint: safetensors in which each quantized linear `X.weight` becomes
///
/// - `X.qweight`: U8 [out, ⌈in/2⌉], two codes per byte, low nibble = even column (8-bit codes:
///   U8 [out, in]; 2- and 3-bit codes also use nibbles);
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

    /// Reads the quantized layers of a checkpoint back, by weight name (`X.weight`).
    public static func read(_ path: String) throws -> (description: Description, layers: [String: QuantizedMatrix]) {
        let file = try SafeTensorsFile(path: path)
        let meta = file.metadata
        func fail(_ message: String, _ subject: String? = nil) -> FileFormatError {
            FileFormatError(file: path, kind: .badHeader, message, subject: subject)
        }
        // Version 2 describes each layer in its any4.layers member; version 1 the whole file.
        let fileFormat = meta["any4.format"]
        let fileBits = meta["any4.bits"].flatMap(Int.init)
        let fileGroup = meta["any4.group_size"].flatMap(Int.init)
        guard fileFormat != nil else { throw fail("not an any4 checkpoint (no any4.format metadata)") }
        guard let layersJSON = meta["any4.layers"] else { throw fail("no any4.layers metadata (a fake-quant file has no codes)") }
        let layers = try JSONParser.parse(layersJSON, file: path)
        var byName: [String: TensorInfo] = [:]
        for t in file.tensors { byName[t.name] = t }
        var out: [String: QuantizedMatrix] = [:]
        var described: (method: String, sampleWeight: String)?
        for (name, member) in layers.members ?? [] {
            let isObject = member.members != nil
            guard let formatName = isObject ? member["format"]?.string : fileFormat,
                let bits = isObject ? member["bits"]?.int : fileBits,
                let groupSize = isObject ? member["group_size"]?.int : fileGroup, groupSize > 0
            else {
                throw fail("no format / bits / group_size for this layer", name)
            }
            guard groupSize <= QuantizationOptions.maxGroupSize else {
                throw fail("group size \(groupSize) is larger than \(QuantizationOptions.maxGroupSize)", name)
            }
            let format: any NumericFormat
            do { format = try FormatRegistry.named(formatName) } catch { throw fail("\(error)", name) }
            guard format.codeBits == bits else { throw fail("bits \(bits) does not match format \(formatName)", name) }
            let shapeValue = isObject ? member["shape"] ?? .null : member
            guard let dims = shapeValue.array?.compactMap(\.int), dims.count == 2, dims[0] >= 0, dims[1] > 0 else {
                throw fail("bad shape in any4.layers", name)
            }
            let method = isObject ? member["method"]?.string ?? "" : meta["any4.method"] ?? ""
            let sampleWeight = isObject ? member["sample_weight"]?.string ?? "" : meta["any4.sample_weight"] ?? ""
            if described == nil { described = (method, sampleWeight) }
            let (rows, cols) = (dims[0], dims[1])
            let base = baseName(name)
            let block = format.fixedBlockSize ?? groupSize
            let groups = GroupLayout(columns: cols, size: block).count
            func tensor(_ suffix: String, _ shape: [Int]) throws -> TensorInfo {
                guard let t = byName[base + suffix] else { throw fail("missing tensor", base + suffix) }
                guard t.shape == shape else { throw fail("shape \(t.shape), expected \(shape)", base + suffix) }
                return t
            }
            let rowBytes = format.codeBits > 4 ? cols : cols / 2 + cols % 2
            // The shapes below are checked against the file's tensors, whose byte counts the reader
            // has checked; only the unpacked codes can be larger than anything in the file.
            let qweight = try tensor(".qweight", [rows, rowBytes])
            try MemoryBudget.check(
                try Sizes.product([rows, cols], "\(name): codes (rows × columns)"),
                for: "unpacking the codes of \(name)")
            guard qweight.encoding == .plain(.u8) else { throw fail("qweight must be U8", base + ".qweight") }
            let codes = QuantizedMatrix.unpackCodes(Array(file.data(of: qweight)), rows: rows, cols: cols, codeBits: bits)
            if let bad = codes.firstIndex(where: { Int($0) >= format.tableSize }) {
                throw fail("code \(codes[bad]) out of range for \(bits) bits", base + ".qweight")
            }
            var storage = DType.f32
            let tables: [Float]
            if format.perRowTable {
                let lut = try tensor(".lut", [rows, format.tableSize])
                guard case .plain(let d) = lut.encoding, d.isFloatingPoint else { throw fail("lut must be a float dtype", base + ".lut") }
                storage = d
                tables = lut.decodeAll(from: file.store)
            } else {
                tables = format.sharedTable ?? []
            }
            let scalesInfo = try tensor(".scales", [rows, groups])
            let scales: [Float]
            switch format.scaleEncoding {
            case .float:
                guard case .plain(let d) = scalesInfo.encoding, d.isFloatingPoint else {
                    throw fail("scales must be a float dtype", base + ".scales")
                }
                if !format.perRowTable { storage = d }
                scales = scalesInfo.decodeAll(from: file.store)
            case let bytes:
                scales = file.data(of: scalesInfo).map(bytes.decode)
            }
            let zeros = format.hasZeros ? try tensor(".zeros", [rows, groups]).decodeAll(from: file.store) : []
            let tensorScale = format.hasTensorScale ? try tensor(".tensor_scale", [1]).decodeAll(from: file.store)[0] : 1
            let scaleBits = format.scaleBits ?? storage.size * 8
            out[name] = QuantizedMatrix(
                formatName: formatName, rows: rows, cols: cols, codeBits: bits, groupSize: block,
                codes: codes, tables: tables, perRowTable: format.perRowTable, scales: scales,
                zeros: zeros, tensorScale: tensorScale, storage: storage, scaleBits: scaleBits)
            out[name]?.method = method
            out[name]?.sampleWeight = sampleWeight
        }
        let first = out.values.first
        let description = Description(
            format: fileFormat ?? "", codeBits: fileBits ?? first?.codeBits ?? 0, groupSize: fileGroup ?? first?.groupSize ?? 0,
            method: meta["any4.method"] ?? described?.method ?? "", sampleWeight: meta["any4.sample_weight"] ?? described?.sampleWeight ?? "")
        return (description, out)
    }
}
