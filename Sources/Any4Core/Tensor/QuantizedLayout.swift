/// One quantized linear layer `X.weight` [out, in] of a checkpoint, as it is stored: the
/// description its file's `any4.layers` metadata gives, and the tensors that hold it
/// (`X.qweight`, `X.lut`, `X.scales`, `X.zeros`, `X.tensor_scale`; see ``QuantizedCheckpoint``).
///
/// ``Model`` lists such a layer as one virtual tensor of encoding ``TensorEncoding/quantized(_:)``
/// in place of its parts. The parts are all in one file (one shard).
public struct QuantizedLayout: Sendable, Hashable, CustomStringConvertible {
    /// The format's name (`any4`, `nf4`, `mxfp4`, ...), known to ``FormatRegistry``.
    public let format: String
    public let codeBits: Int
    /// How `X.qweight` holds the codes: `"code_packing"` in the layer's metadata, nibbles without it.
    public let codePacking: CodePacking
    /// Elements per group (the real block size; the last group of a row may be shorter). In
    /// version 2 metadata, `group_size` is this; in version 1 a fixed-block format's own block.
    public let groupSize: Int
    /// The clustering method and sample weights of a learned table ("" for the other formats).
    public let method: String
    public let sampleWeight: String
    /// The float dtype of the LUT, float scales and zeros (F32 when the layer has none of them).
    public let dtype: DType
    /// Output rows and input columns: the logical shape [out, in].
    public let rows: Int
    public let cols: Int
    public let qweight: TensorInfo
    public let lut: TensorInfo?
    public let scales: TensorInfo
    public let zeros: TensorInfo?
    public let tensorScale: TensorInfo?
    /// How the scales are stored (a float dtype, or one E8M0/E4M3 byte each).
    public let scaleEncoding: ScaleEncoding
    /// The format's fixed table (formats without a per-row LUT).
    public let sharedTable: [Float]?
    /// Bits of one stored scale, as ``QuantizedMatrix/scaleBits``.
    public let scaleBits: Int

    /// The stored tensors of the layer: qweight, then lut, scales, zeros and tensor_scale where present.
    public var parts: [TensorInfo] { [qweight] + [lut, scales, zeros, tensorScale].compactMap { $0 } }
    /// Bytes of all parts.
    public var byteCount: Int { parts.reduce(0) { $0 + $1.byteCount } }
    /// Logical parameters: out × in.
    public var elementCount: Int { rows * cols }
    /// Stored bits of all parts per logical parameter.
    public var bitsPerElement: Double { elementCount == 0 ? 0 : Double(byteCount) * 8 / Double(elementCount) }
    public var tableSize: Int { 1 << codeBits }
    public var perRowTable: Bool { lut != nil }
    public var groups: GroupLayout { GroupLayout(columns: cols, size: groupSize) }
    /// Bytes of one row of `qweight` (``CodePacking/rowBytes(cols:codeBits:)``).
    public var rowBytes: Int { codePacking.rowBytes(cols: cols, codeBits: codeBits) }

    /// `any4 g128 bf16`: format, group size, and the float dtype where the layer stores floats.
    public var description: String {
        let floats = lut != nil || zeros != nil || scaleEncoding == .float
        return "\(format) g\(groupSize)" + (floats ? " " + dtype.rawValue.lowercased() : "")
    }

    /// The layer's member of `any4.layers` (version 2), without its name.
    public var metadata: JSONValue {
        .object(
            [
                ("shape", .array([JSONValue(rows), JSONValue(cols)])),
                ("format", .string(format)),
                ("bits", JSONValue(codeBits)),
                ("group_size", JSONValue(groupSize)),
                ("method", .string(method)),
                ("sample_weight", .string(sampleWeight)),
                ("dtype", .string(dtype.rawValue.lowercased()))
            ] + (codePacking.metadataValue(codeBits: codeBits).map { [("code_packing", .string($0))] } ?? []))
    }

    /// Rows `range` of the layer read from `store` (the file holding its parts), codes unpacked.
    ///
    /// Codes outside the table are set to 0 in the result and their positions (row-major in the
    /// slice) returned in `badCodes`, so that no lookup ever leaves the table.
    public func matrix(rows range: Range<Int>, from store: ByteStore) -> (matrix: QuantizedMatrix, badCodes: [Int]) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows out of range")
        let n = range.count
        let packedStart = qweight.offset + range.lowerBound * rowBytes
        var codes = codePacking.unpack(
            UnsafeRawBufferPointer(rebasing: store.bytes[packedStart..<(packedStart + n * rowBytes)]), rows: n, cols: cols,
            codeBits: codeBits)
        var badCodes: [Int] = []
        if tableSize < 1 << codePacking.slotBits(codeBits: codeBits) {
            for i in codes.indices where Int(codes[i]) >= tableSize {
                badCodes.append(i)
                codes[i] = 0
            }
        }
        let tables = lut.map { $0.decodeRows(from: store, rows: range) } ?? sharedTable ?? []
        let g = groups.count
        let scaleValues: [Float]
        switch scaleEncoding {
        case .float: scaleValues = scales.decodeRows(from: store, rows: range)
        case let bytes:
            let start = scales.offset + range.lowerBound * g
            scaleValues = UnsafeRawBufferPointer(rebasing: store.bytes[start..<(start + n * g)]).map(bytes.decode)
        }
        let zeroValues = zeros.map { $0.decodeRows(from: store, rows: range) } ?? []
        let factor = tensorScale.map { $0.decodeRows(from: store, rows: 0..<1)[0] } ?? 1
        var matrix = QuantizedMatrix(
            formatName: format, rows: n, cols: cols, codeBits: codeBits, groupSize: groupSize,
            codes: codes, tables: tables, perRowTable: lut != nil, scales: scaleValues,
            zeros: zeroValues, tensorScale: factor, storage: dtype, scaleBits: scaleBits, codePacking: codePacking)
        matrix.method = method
        matrix.sampleWeight = sampleWeight
        return (matrix, badCodes)
    }
}

// MARK: - Reading the metadata

extension QuantizedLayout {
    /// The quantized layers that one file's metadata declares over its tensors, by weight name.
    ///
    /// Empty when the file has no `any4.layers` (an ordinary model, or a fake-quant checkpoint).
    /// Accepts version 2 (`any4.layers` members are objects describing each layer) and version 1
    /// (members are `[out, in]`, and `any4.format`, `any4.bits`, `any4.group_size`,
    /// `any4.method`, `any4.sample_weight` apply to all). Throws a ``FileFormatError`` naming
    /// `file` and the tensor for a layer whose parts are missing, mis-shaped or of the wrong dtype.
    static func layers(file: String, metadata: [String: String], tensors: [TensorInfo]) throws -> [(name: String, layout: QuantizedLayout)] {
        guard let layersText = metadata["any4.layers"] else { return [] }
        func fail(_ message: String, _ subject: String? = nil, _ kind: FileFormatError.Kind = .badHeader) -> FileFormatError {
            FileFormatError(file: file, kind: kind, message, subject: subject)
        }
        if let version = metadata["any4.version"], version != "1", version != "2" {
            throw fail("any4.version \"\(version)\" is not supported (1 and 2 are)", "any4.version", .unsupported)
        }
        let parsed = try JSONParser.parse(layersText, file: file)
        guard let members = parsed.members else { throw fail("any4.layers is not a JSON object", "any4.layers") }
        var byName: [String: TensorInfo] = [:]
        for t in tensors { byName[t.name] = t }
        var out: [(name: String, layout: QuantizedLayout)] = []
        var seen = Set<String>()
        for (name, value) in members {
            guard seen.insert(name).inserted else { throw fail("layer listed twice in any4.layers", name) }
            let fields: Fields
            if value.array != nil {
                fields = try Fields(legacy: value, metadata: metadata, name: name, fail: fail)
            } else if value.members != nil {
                fields = try Fields(object: value, name: name, fail: fail)
            } else {
                throw fail("any4.layers member is neither [out, in] nor an object", name)
            }
            out.append((name, try QuantizedLayout(name: name, fields: fields, tensors: byName, fail: fail)))
        }
        return out
    }

    /// A layer's description as its metadata gives it, before the tensors are looked at.
    struct Fields {
        var rows = 0, cols = 0
        var format = "", bits = 0, groupSize = 0
        var method = "", sampleWeight = ""
        var dtype: DType?
        var codePacking = CodePacking.nibbles

        typealias Fail = (String, String?, FileFormatError.Kind) -> FileFormatError

        static func shape(_ value: JSONValue?, name: String, fail: Fail) throws -> (Int, Int) {
            guard let items = value?.array, items.count == 2, let rows = items[0].int, let cols = items[1].int,
                rows >= 0, cols > 0
            else {
                throw fail("shape \(value?.serialized ?? "(none)") is not [out, in] with out ≥ 0 and in > 0", name, .badShape)
            }
            return (rows, cols)
        }

        init(legacy value: JSONValue, metadata: [String: String], name: String, fail: Fail) throws {
            (rows, cols) = try Self.shape(value, name: name, fail: fail)
            guard let format = metadata["any4.format"], let bits = metadata["any4.bits"].flatMap(Int.init),
                let groupSize = metadata["any4.group_size"].flatMap(Int.init)
            else {
                throw fail(
                    "any4.layers gives [out, in] (version 1) but any4.format, any4.bits or any4.group_size is missing",
                    name, .badHeader)
            }
            self.format = format
            self.bits = bits
            // Version 1 wrote the group size option, which a format of fixed blocks (mxfp4,
            // nvfp4, iq4_nl) did not use; version 2 gives the layer's real block.
            self.groupSize = (try? FormatRegistry.named(format))?.fixedBlockSize ?? groupSize
            method = metadata["any4.method"] ?? ""
            sampleWeight = metadata["any4.sample_weight"] ?? ""
        }

        init(object value: JSONValue, name: String, fail: Fail) throws {
            (rows, cols) = try Self.shape(value["shape"], name: name, fail: fail)
            guard let format = value["format"]?.string else { throw fail("no string \"format\" in any4.layers", name, .badHeader) }
            guard let bits = value["bits"]?.int else { throw fail("no integer \"bits\" in any4.layers", name, .badHeader) }
            guard let groupSize = value["group_size"]?.int else {
                throw fail("no integer \"group_size\" in any4.layers", name, .badHeader)
            }
            self.format = format
            self.bits = bits
            self.groupSize = groupSize
            method = value["method"]?.string ?? ""
            sampleWeight = value["sample_weight"]?.string ?? ""
            if let packing = value["code_packing"] {
                guard let text = packing.string, let p = CodePacking(metadataValue: text) else {
                    throw fail(
                        "code_packing \(packing.serialized) is not one of "
                            + CodePacking.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "), name, .unsupported)
                }
                codePacking = p
            }
            if let text = value["dtype"]?.string {
                guard let d = DType(rawValue: text.uppercased()), [.f32, .f16, .bf16].contains(d) else {
                    throw fail("dtype \"\(text)\" is not f32, f16 or bf16", name, .unknownType)
                }
                dtype = d
            }
        }
    }

    /// The float dtype of a stored part, nil when it is not one (F32, F16 or BF16, plain or ggml).
    static func floatDType(_ encoding: TensorEncoding) -> DType? {
        switch encoding {
        case .plain(let d) where d == .f32 || d == .f16 || d == .bf16: d
        case .ggml(.f32): .f32
        case .ggml(.f16): .f16
        case .ggml(.bf16): .bf16
        default: nil
        }
    }

    /// Whether a stored part holds raw bytes: safetensors U8, or ggml I8 in a GGUF file.
    static func isBytes(_ encoding: TensorEncoding) -> Bool {
        encoding == .plain(.u8) || encoding == .ggml(.i8)
    }

    init(
        name: String, fields f: Fields, tensors: [String: TensorInfo],
        fail: (String, String?, FileFormatError.Kind) -> FileFormatError
    ) throws {
        let numeric: any NumericFormat
        do { numeric = try FormatRegistry.named(f.format) } catch {
            throw fail("unknown format \"\(f.format)\" (\(error))", name, .unknownType)
        }
        guard numeric.codeBits == f.bits else {
            throw fail("bits \(f.bits) do not match format \(f.format) (\(numeric.codeBits) bits)", name, .badHeader)
        }
        guard f.groupSize >= 2, f.groupSize % 2 == 0, f.groupSize <= QuantizationOptions.maxGroupSize else {
            throw fail(
                "group size \(f.groupSize) is not an even number in 2...\(QuantizationOptions.maxGroupSize)", name, .badShape)
        }
        let (rows, cols) = (f.rows, f.cols)
        guard rows.multipliedReportingOverflow(by: cols).overflow == false else {
            throw fail("shape [\(rows), \(cols)] overflows", name, .badShape)
        }
        let base = name.hasSuffix(".weight") ? String(name.dropLast(7)) : name
        let groupCount = GroupLayout(columns: cols, size: f.groupSize).count
        func part(_ suffix: String, _ shape: [Int]) throws -> TensorInfo {
            guard let t = tensors[base + suffix] else {
                throw fail("missing tensor \(base + suffix) of quantized layer \(name) (\(f.format))", base + suffix, .badShape)
            }
            guard t.shape == shape else {
                throw fail(
                    "shape \(Formatting.shape(t.shape)) disagrees with any4.layers: \(name) [\(rows), \(cols)] in \(f.format) "
                        + "g\(f.groupSize) needs \(Formatting.shape(shape))", base + suffix, .badShape)
            }
            return t
        }
        var floatDTypes: [(String, DType)] = []
        func floatPart(_ suffix: String, _ shape: [Int]) throws -> TensorInfo {
            let t = try part(suffix, shape)
            guard let d = Self.floatDType(t.encoding) else {
                throw fail("is \(t.encoding), expected a float dtype (F32, F16 or BF16)", base + suffix, .badHeader)
            }
            floatDTypes.append((base + suffix, d))
            return t
        }
        let qweight = try part(".qweight", [rows, f.codePacking.rowBytes(cols: cols, codeBits: f.bits)])
        guard Self.isBytes(qweight.encoding) else {
            throw fail("is \(qweight.encoding), expected U8 (safetensors) or I8 (GGUF)", base + ".qweight", .badHeader)
        }
        let lut = numeric.perRowTable ? try floatPart(".lut", [rows, numeric.tableSize]) : nil
        let scales: TensorInfo
        if numeric.scaleEncoding == .float {
            scales = try floatPart(".scales", [rows, groupCount])
        } else {
            scales = try part(".scales", [rows, groupCount])
            guard Self.isBytes(scales.encoding) else {
                throw fail(
                    "is \(scales.encoding), expected one \(numeric.scaleEncoding.name ?? "") byte per group (U8 or I8)",
                    base + ".scales", .badHeader)
            }
        }
        let zeros = numeric.hasZeros ? try floatPart(".zeros", [rows, groupCount]) : nil
        var tensorScale: TensorInfo?
        if numeric.hasTensorScale {
            let t = try part(".tensor_scale", [1])
            guard Self.floatDType(t.encoding) != nil else {
                throw fail("is \(t.encoding), expected F32", base + ".tensor_scale", .badHeader)
            }
            tensorScale = t
        }
        // The layer's float dtype: as declared (version 2), else the LUT's, else the scales'.
        let dtype = f.dtype ?? floatDTypes.first?.1 ?? .f32
        if let declared = f.dtype {
            for (partName, d) in floatDTypes where d != declared {
                throw fail("is \(d.rawValue), but any4.layers gives \(name) dtype \(declared.rawValue.lowercased())", partName, .badHeader)
            }
        }
        self.format = f.format
        self.codeBits = f.bits
        self.codePacking = f.codePacking
        self.groupSize = f.groupSize
        self.method = f.method
        self.sampleWeight = f.sampleWeight
        self.dtype = dtype
        self.rows = rows
        self.cols = cols
        self.qweight = qweight
        self.lut = lut
        self.scales = scales
        self.zeros = zeros
        self.tensorScale = tensorScale
        self.scaleEncoding = numeric.scaleEncoding
        self.sharedTable = numeric.perRowTable ? nil : numeric.sharedTable
        self.scaleBits = numeric.scaleBits ?? dtype.size * 8
    }
}
