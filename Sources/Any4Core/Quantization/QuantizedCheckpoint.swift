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

    /// Writes `model` with `quantized` (by weight name) replacing its weights; atomic.
    ///
    /// Refuses (``OutputGuard``) a `path` that is one of the model's own files. Cancelling
    /// `progress` stops the write with ``QuantizationError/cancelled`` and writes nothing.
    public static func write(
        model: Model, quantized: [String: QuantizedMatrix], description: Description,
        fakeQuant: Bool, to path: String, progress: Progress? = nil
    ) throws {
        try OutputGuard.check(path, inputs: model.inputFiles)
        var entries: [SafeTensorsWriter.Entry] = []
        var layers: [(key: String, value: JSONValue)] = []
        for tensor in model.tensors {
            if progress?.isCancelled == true { throw QuantizationError.cancelled }
            if let q = quantized[tensor.name] {
                if fakeQuant {
                    let dtype = ModelQuantization.storageDType(of: tensor)
                    let target: DType = if case .plain(let d) = tensor.info.encoding, d.isFloatingPoint, d != .f64 { d } else { dtype }
                    entries.append(.init(name: tensor.name, shape: tensor.shape, floats: q.dequantized(), as: target))
                } else {
                    entries += quantizedEntries(q, base: baseName(tensor.name))
                    layers.append((tensor.name, .array([JSONValue(q.rows), JSONValue(q.cols)])))
                }
            } else {
                entries += try copied(tensor, of: model)
            }
        }
        var metadata = model.format == .gguf ? [:] : Dictionary(model.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        metadata["any4.format"] = description.format
        metadata["any4.bits"] = String(description.codeBits)
        metadata["any4.group_size"] = String(description.groupSize)
        // Clustering and sample weights only mean something for the learned (any-b) formats.
        if !description.method.isEmpty { metadata["any4.method"] = description.method }
        if !description.sampleWeight.isEmpty { metadata["any4.sample_weight"] = description.sampleWeight }
        metadata["any4.version"] = version
        metadata["any4.fake_quant"] = fakeQuant ? "1" : "0"
        if !fakeQuant { metadata["any4.layers"] = JSONValue.object(layers).serialized }
        try SafeTensorsWriter.write(entries, metadata: metadata, to: path, progress: progress)
    }

    static func baseName(_ weightName: String) -> String {
        weightName.hasSuffix(".weight") ? String(weightName.dropLast(7)) : weightName
    }

    static func quantizedEntries(_ q: QuantizedMatrix, base: String) -> [SafeTensorsWriter.Entry] {
        let packed = q.packedCodes()
        var out: [SafeTensorsWriter.Entry] = [
            .init(name: base + ".qweight", dtype: .u8, shape: [q.rows, packed.count / max(q.rows, 1)], bytes: packed)
        ]
        if q.perRowTable {
            out.append(.init(name: base + ".lut", shape: [q.rows, q.tableSize], floats: q.tables, as: q.storage))
        }
        let groups = q.groupsPerRow
        let format = try? FormatRegistry.named(q.formatName)
        switch format?.scaleEncoding ?? .float {
        case .float:
            out.append(.init(name: base + ".scales", shape: [q.rows, groups], floats: q.scales, as: q.storage))
        case let bytes:
            out.append(.init(name: base + ".scales", dtype: .u8, shape: [q.rows, groups], bytes: q.scales.map(bytes.encode)))
        }
        if format?.hasTensorScale == true {
            out.append(.init(name: base + ".tensor_scale", shape: [1], floats: [q.tensorScale]))
        }
        if !q.zeros.isEmpty {
            out.append(.init(name: base + ".zeros", shape: [q.rows, groups], floats: q.zeros, as: q.storage))
        }
        return out
    }

    /// A tensor copied as it is (plain dtypes byte for byte; ggml float types as their dtype;
    /// ggml block types decoded to F32; a quantized layer as its stored parts, byte for byte).
    static func copied(_ tensor: ModelTensor, of model: Model) throws -> [SafeTensorsWriter.Entry] {
        let store = model.stores[tensor.fileIndex]
        func raw(_ info: TensorInfo) -> [UInt8] {
            Array(UnsafeRawBufferPointer(rebasing: store.bytes[info.offset..<(info.offset + info.byteCount)]))
        }
        switch tensor.info.encoding {
        case .plain(let d): return [.init(name: tensor.name, dtype: d, shape: tensor.shape, bytes: raw(tensor.info))]
        case .ggml(.f32): return [.init(name: tensor.name, dtype: .f32, shape: tensor.shape, bytes: raw(tensor.info))]
        case .ggml(.f16): return [.init(name: tensor.name, dtype: .f16, shape: tensor.shape, bytes: raw(tensor.info))]
        case .ggml(.bf16): return [.init(name: tensor.name, dtype: .bf16, shape: tensor.shape, bytes: raw(tensor.info))]
        case .ggml: return [.init(name: tensor.name, shape: tensor.shape, floats: try model.decode(tensor))]
        case .quantized(let layout):
            // Parts are U8 bytes (ggml I8 in a GGUF) or F32/F16/BF16.
            return layout.parts.map {
                .init(name: $0.name, dtype: QuantizedLayout.floatDType($0.encoding) ?? .u8, shape: $0.shape, bytes: raw($0))
            }
        }
    }

    /// Reads the quantized layers of a checkpoint back, by weight name (`X.weight`).
    public static func read(_ path: String) throws -> (description: Description, layers: [String: QuantizedMatrix]) {
        let file = try SafeTensorsFile(path: path)
        let meta = file.metadata
        func fail(_ message: String, _ subject: String? = nil) -> FileFormatError {
            FileFormatError(file: path, kind: .badHeader, message, subject: subject)
        }
        guard let formatName = meta["any4.format"], let bits = meta["any4.bits"].flatMap(Int.init),
            let groupSize = meta["any4.group_size"].flatMap(Int.init), groupSize > 0
        else {
            throw fail("not an any4 checkpoint (no any4.format / any4.bits / any4.group_size metadata)")
        }
        guard groupSize <= QuantizationOptions.maxGroupSize else {
            throw fail("any4.group_size \(groupSize) is larger than \(QuantizationOptions.maxGroupSize)")
        }
        let format: any NumericFormat
        do { format = try FormatRegistry.named(formatName) } catch { throw fail("\(error)") }
        guard format.codeBits == bits else { throw fail("any4.bits \(bits) does not match format \(formatName)") }
        guard let layersJSON = meta["any4.layers"] else { throw fail("no any4.layers metadata (a fake-quant file has no codes)") }
        let layers = try JSONParser.parse(layersJSON, file: path)
        var byName: [String: TensorInfo] = [:]
        for t in file.tensors { byName[t.name] = t }
        var out: [String: QuantizedMatrix] = [:]
        for (name, shapeValue) in layers.members ?? [] {
            guard let dims = shapeValue.array?.compactMap(\.int), dims.count == 2, dims[0] >= 0, dims[1] > 0 else {
                throw fail("bad shape in any4.layers", name)
            }
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
        }
        let description = Description(
            format: formatName, codeBits: bits, groupSize: groupSize,
            method: meta["any4.method"] ?? "", sampleWeight: meta["any4.sample_weight"] ?? "")
        return (description, out)
    }
}
