/// A metadata value of a GGUF file.
public indirect enum GGUFValue: Sendable, Equatable, CustomStringConvertible {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case float32(Float), bool(Bool), string(String)
    case array(elementType: UInt32, [GGUFValue])
    case uint64(UInt64), int64(Int64), float64(Double)

    /// GGUF's value type ids.
    public static let typeNames: [UInt32: String] = [
        0: "UINT8", 1: "INT8", 2: "UINT16", 3: "INT16", 4: "UINT32", 5: "INT32", 6: "FLOAT32",
        7: "BOOL", 8: "STRING", 9: "ARRAY", 10: "UINT64", 11: "INT64", 12: "FLOAT64"
    ]

    /// The value as an integer, if it is one (any width) and fits.
    public var int: Int? {
        switch self {
        case .uint8(let v): Int(v)
        case .int8(let v): Int(v)
        case .uint16(let v): Int(v)
        case .int16(let v): Int(v)
        case .uint32(let v): Int(v)
        case .int32(let v): Int(v)
        case .uint64(let v): Int(exactly: v)
        case .int64(let v): Int(exactly: v)
        default: nil
        }
    }

    /// The value as a Double, if it is numeric.
    public var double: Double? {
        switch self {
        case .float32(let v): Double(v.description) ?? Double(v)
        case .float64(let v): v
        default: int.map(Double.init)
        }
    }

    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var array: [GGUFValue]? { if case .array(_, let a) = self { a } else { nil } }

    public var description: String {
        switch self {
        case .uint8(let v): "\(v)"
        case .int8(let v): "\(v)"
        case .uint16(let v): "\(v)"
        case .int16(let v): "\(v)"
        case .uint32(let v): "\(v)"
        case .int32(let v): "\(v)"
        case .uint64(let v): "\(v)"
        case .int64(let v): "\(v)"
        case .float32(let v): "\(v)"
        case .float64(let v): "\(v)"
        case .bool(let v): "\(v)"
        case .string(let s): s
        case .array(let type, let items):
            "[\(items.count) × \(GGUFValue.typeNames[type] ?? "?")]"
        }
    }
}

/// A GGUF file (versions 2 and 3), opened by reading and validating its header only.
///
/// Tensor data stays memory-mapped until a tensor is decoded. Shapes are reported outermost
/// first (PyTorch order); GGUF stores them innermost first (`ne[0]` is the row length).
public final class GGUFFile: Sendable {
    public static let maxDimensions = 4
    /// Longest string accepted in the header (keys, names, values).
    public static let maxStringLength = 1 << 24
    /// Deepest nesting of arrays accepted.
    public static let maxArrayDepth = 8

    public let store: ByteStore
    public let version: UInt32
    /// Metadata in file order.
    public let metadata: [(key: String, value: GGUFValue)]
    /// Tensors in header order; shapes outermost first.
    public let tensors: [TensorInfo]
    public let alignment: Int
    /// Absolute offset of the tensor-data section.
    public let dataOffset: Int

    public var path: String { store.name }

    public convenience init(path: String) throws {
        try self.init(store: try ByteStore(mapping: path))
    }

    public init(store: ByteStore) throws {
        self.store = store
        let file = store.name
        var c = ByteCursor(store.bytes, file: file)
        let magic = try c.read(UInt32.self, for: "the magic")
        guard magic == 0x4655_4747 else {
            throw FileFormatError(file: file, kind: .badMagic, "not a GGUF file (magic is not \"GGUF\")", offset: 0)
        }
        version = try c.read(UInt32.self, for: "the version")
        guard version == 2 || version == 3 else {
            throw FileFormatError(
                file: file, kind: .unsupported,
                "GGUF version \(version) is not supported (2 and 3 are)", offset: 4)
        }
        let tensorCountOffset = c.offset
        let tensorCount = try c.read(UInt64.self, for: "the tensor count")
        let kvCountOffset = c.offset
        let kvCount = try c.read(UInt64.self, for: "the metadata count")
        // Each KV needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor info 8 + 4 + 4 + 8.
        guard kvCount <= UInt64(c.remaining / 13) else {
            throw FileFormatError(
                file: file, kind: .badShape,
                "metadata count \(kvCount) cannot fit in the \(c.remaining) bytes left", offset: kvCountOffset)
        }
        guard tensorCount <= UInt64(c.remaining / 24) else {
            throw FileFormatError(
                file: file, kind: .badShape,
                "tensor count \(tensorCount) cannot fit in the \(c.remaining) bytes left", offset: tensorCountOffset)
        }

        var metadata: [(key: String, value: GGUFValue)] = []
        var keys = Set<String>()
        metadata.reserveCapacity(Int(kvCount))
        for index in 0..<Int(kvCount) {
            let keyOffset = c.offset
            let key = try Self.readString(&c, for: "metadata key #\(index)")
            guard keys.insert(key).inserted else {
                throw FileFormatError(file: file, kind: .badHeader, "duplicate metadata key", offset: keyOffset, subject: key)
            }
            let typeOffset = c.offset
            let type = try c.read(UInt32.self, for: "the type of \(key)")
            let value = try Self.readValue(&c, type: type, typeOffset: typeOffset, key: key, depth: 0)
            metadata.append((key, value))
        }
        self.metadata = metadata

        var alignment = 32
        if let entry = metadata.first(where: { $0.key == "general.alignment" }) {
            guard case .uint32(let value) = entry.value, value > 0, value & (value - 1) == 0, value <= 1 << 20 else {
                throw FileFormatError(
                    file: file, kind: .badHeader,
                    "general.alignment must be a UINT32 power of two, got \(entry.value)", subject: "general.alignment")
            }
            alignment = Int(value)
        }
        self.alignment = alignment

        var raw: [(name: String, shape: [Int], type: GGMLType, offset: Int, bytes: Int, at: Int)] = []
        raw.reserveCapacity(Int(tensorCount))
        var names = Set<String>()
        for index in 0..<Int(tensorCount) {
            let infoOffset = c.offset
            let name = try Self.readString(&c, for: "the name of tensor #\(index)")
            guard names.insert(name).inserted else {
                throw FileFormatError(file: file, kind: .badHeader, "duplicate tensor name", offset: infoOffset, subject: name)
            }
            func fail(_ kind: FileFormatError.Kind, _ message: String, _ at: Int) -> FileFormatError {
                FileFormatError(file: file, kind: kind, message, offset: at, subject: "tensor \"\(name)\"")
            }
            let dimsOffset = c.offset
            let nDims = try c.read(UInt32.self, for: "the rank of \(name)")
            guard nDims >= 1, nDims <= UInt32(Self.maxDimensions) else {
                throw fail(.badShape, "rank \(nDims) is outside 1...\(Self.maxDimensions)", dimsOffset)
            }
            var ne: [Int] = []
            for _ in 0..<Int(nDims) {
                let at = c.offset
                let dim = try c.read(UInt64.self, for: "a dimension of \(name)")
                guard dim <= UInt64(Int.max) else { throw fail(.badShape, "dimension \(dim) is too large", at) }
                ne.append(Int(dim))
            }
            let typeOffset = c.offset
            let typeID = try c.read(UInt32.self, for: "the type of \(name)")
            guard let type = GGMLType(rawValue: typeID) else {
                throw fail(.unknownType, "unknown ggml type id \(typeID)", typeOffset)
            }
            let offsetAt = c.offset
            let rel = try c.read(UInt64.self, for: "the data offset of \(name)")
            guard rel <= UInt64(Int.max), Int(rel) % alignment == 0 else {
                throw fail(.badOffset, "data offset \(rel) is not a multiple of the alignment \(alignment)", offsetAt)
            }
            guard ne[0] % type.blockSize == 0 else {
                throw fail(.badShape, "row length \(ne[0]) is not a multiple of \(type.name)'s block size \(type.blockSize)", dimsOffset)
            }
            guard let count = checkedProduct(ne),
                let bytes = (count / type.blockSize).multipliedChecked(by: type.typeSize)
            else {
                throw fail(.badShape, "shape \(Array(ne.reversed())) overflows", dimsOffset)
            }
            raw.append((name, Array(ne.reversed()), type, Int(rel), bytes, offsetAt))
        }

        let headerEnd = c.offset
        let padded = (headerEnd + alignment - 1) / alignment * alignment
        // A file with no tensors may end right after its header.
        guard padded <= store.count || raw.isEmpty else {
            throw FileFormatError(
                file: file, kind: .truncated,
                "file ends before the tensor data section at \(padded)", offset: store.count)
        }
        dataOffset = padded
        let dataSize = max(0, store.count - padded)

        var infos: [TensorInfo] = []
        infos.reserveCapacity(raw.count)
        for entry in raw {
            guard let end = entry.offset.addingChecked(entry.bytes), end <= dataSize else {
                throw FileFormatError(
                    file: file, kind: .badOffset,
                    "data [\(entry.offset), +\(entry.bytes)) runs past the end of the data section (\(dataSize) bytes)",
                    offset: entry.at, subject: "tensor \"\(entry.name)\"")
            }
            infos.append(
                TensorInfo(
                    name: entry.name, shape: entry.shape, encoding: .ggml(entry.type),
                    offset: padded + entry.offset, byteCount: entry.bytes))
        }
        let byOffset = infos.sorted { ($0.offset, $0.byteCount) < ($1.offset, $1.byteCount) }
        for (a, b) in zip(byOffset, byOffset.dropFirst()) where a.offset + a.byteCount > b.offset && b.byteCount > 0 {
            throw FileFormatError(
                file: file, kind: .badOffset,
                "data overlaps tensor \"\(a.name)\"", offset: b.offset, subject: "tensor \"\(b.name)\"")
        }
        tensors = infos
    }

    // MARK: - Header values

    package static func readString(_ c: inout ByteCursor, for what: String) throws -> String {
        let at = c.offset
        let length = try c.read(UInt64.self, for: "the length of \(what)")
        guard length <= UInt64(maxStringLength) else {
            throw FileFormatError(
                file: c.file, kind: .tooLarge,
                "\(what) declares \(length) bytes (limit \(maxStringLength))", offset: at)
        }
        return try c.readUTF8(Int(length), for: what)
    }

    package static func readValue(_ c: inout ByteCursor, type: UInt32, typeOffset: Int, key: String, depth: Int) throws -> GGUFValue {
        let what = "the value of \(key)"
        switch type {
        case 0: return .uint8(try c.read(UInt8.self, for: what))
        case 1: return .int8(try c.read(Int8.self, for: what))
        case 2: return .uint16(try c.read(UInt16.self, for: what))
        case 3: return .int16(try c.read(Int16.self, for: what))
        case 4: return .uint32(try c.read(UInt32.self, for: what))
        case 5: return .int32(try c.read(Int32.self, for: what))
        case 6: return .float32(try c.readFloat(for: what))
        case 7:
            let at = c.offset
            let byte = try c.read(UInt8.self, for: what)
            guard byte <= 1 else {
                throw FileFormatError(file: c.file, kind: .badHeader, "BOOL value \(byte) is neither 0 nor 1", offset: at, subject: key)
            }
            return .bool(byte == 1)
        case 8: return .string(try readString(&c, for: what))
        case 9:
            guard depth < maxArrayDepth else {
                throw FileFormatError(file: c.file, kind: .tooLarge, "arrays nested deeper than \(maxArrayDepth)", offset: typeOffset, subject: key)
            }
            let elementTypeOffset = c.offset
            let elementType = try c.read(UInt32.self, for: "the element type of \(key)")
            guard GGUFValue.typeNames[elementType] != nil else {
                throw FileFormatError(
                    file: c.file, kind: .unknownType, "unknown array element type \(elementType)",
                    offset: elementTypeOffset, subject: key)
            }
            let countOffset = c.offset
            let count = try c.read(UInt64.self, for: "the length of \(key)")
            let minimum: UInt64 =
                switch elementType {
                case 0, 1, 7: 1
                case 2, 3: 2
                case 4, 5, 6: 4
                case 8, 10, 11, 12: 8
                default: 12
                }
            guard count <= UInt64(c.remaining) / minimum else {
                throw FileFormatError(
                    file: c.file, kind: .truncated,
                    "array of \(count) elements cannot fit in the \(c.remaining) bytes left",
                    offset: countOffset, subject: key)
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(Int(count))
            for _ in 0..<Int(count) {
                items.append(try readValue(&c, type: elementType, typeOffset: elementTypeOffset, key: key, depth: depth + 1))
            }
            return .array(elementType: elementType, items)
        case 10: return .uint64(try c.read(UInt64.self, for: what))
        case 11: return .int64(try c.read(Int64.self, for: what))
        case 12: return .float64(try c.readDouble(for: what))
        default:
            throw FileFormatError(file: c.file, kind: .unknownType, "unknown metadata value type \(type)", offset: typeOffset, subject: key)
        }
    }

    // MARK: - Lookup

    public func value(_ key: String) -> GGUFValue? { metadata.first { $0.key == key }?.value }

    public func tensor(named name: String) -> TensorInfo? { tensors.first { $0.name == name } }

    /// `general.architecture`, if present.
    public var architecture: String? { value("general.architecture")?.string }
}
