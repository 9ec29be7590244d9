/// A safetensors file, opened by validating its header; tensor data stays mapped, not read.
///
/// The checks follow the reference reader (`safetensors/src/tensor.rs`): the header length is
/// bounded and inside the file, the header is a UTF-8 JSON object without duplicate keys, every
/// dtype is known, shapes are non-negative and their byte size does not overflow, each tensor's
/// `data_offsets` span exactly `product(shape) × dtype size` bytes, and the tensors tile the data
/// area from 0 to its end without gaps or overlaps.
public final class SafeTensorsFile: Sendable {
    /// Largest header accepted, as in the reference implementation.
    public static let maxHeaderLength = 100_000_000

    public let store: ByteStore
    public let headerLength: Int
    /// Tensors in the order of their data in the file.
    public let tensors: [TensorInfo]
    /// The free-form `__metadata__` string map, if present.
    public let metadata: [String: String]

    public var path: String { store.name }

    public convenience init(path: String) throws {
        try self.init(store: try ByteStore(mapping: path))
    }

    public init(store: ByteStore) throws {
        self.store = store
        let file = store.name
        var cursor = ByteCursor(store.bytes, file: file)
        let declared = try cursor.read(UInt64.self, for: "the 8-byte header length")
        guard declared <= UInt64(Self.maxHeaderLength) else {
            throw FileFormatError(
                file: file, kind: .tooLarge,
                "header length \(declared) exceeds the limit of \(Self.maxHeaderLength) bytes", offset: 0)
        }
        let length = Int(declared)
        guard length <= cursor.remaining else {
            throw FileFormatError(
                file: file, kind: .truncated,
                "header length \(length) runs past the end of the file (\(store.count) bytes)", offset: 0)
        }
        headerLength = length
        let headerBytes = try cursor.slice(length, for: "the JSON header")
        let header = try JSONParser.parse(headerBytes, file: file, baseOffset: 8)
        guard let members = header.members else {
            throw FileFormatError(file: file, kind: .badHeader, "header is not a JSON object", offset: 8)
        }
        let dataStart = 8 + length
        let dataSize = store.count - dataStart

        var metadata: [String: String] = [:]
        var entries: [(info: TensorInfo, begin: Int, end: Int)] = []
        entries.reserveCapacity(members.count)
        for (name, value) in members {
            if name == "__metadata__" {
                guard let map = value.members else {
                    throw FileFormatError(file: file, kind: .badHeader, "__metadata__ is not an object", offset: 8)
                }
                for (key, item) in map {
                    guard let text = item.string else {
                        throw FileFormatError(
                            file: file, kind: .badHeader,
                            "__metadata__ value of \"\(key)\" is not a string", offset: 8)
                    }
                    metadata[key] = text
                }
                continue
            }
            func fail(_ kind: FileFormatError.Kind, _ message: String) -> FileFormatError {
                FileFormatError(file: file, kind: kind, message, offset: 8, subject: "tensor \"\(name)\"")
            }
            guard let fields = value.members else { throw fail(.badHeader, "entry is not an object") }
            for (key, _) in fields where key != "dtype" && key != "shape" && key != "data_offsets" {
                throw fail(.badHeader, "unknown field \"\(key)\"")
            }
            guard let dtypeName = value["dtype"]?.string else { throw fail(.badHeader, "missing string field \"dtype\"") }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw fail(.unknownType, "unknown dtype \"\(dtypeName)\" (known: \(DType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard let shapeItems = value["shape"]?.array else { throw fail(.badHeader, "missing array field \"shape\"") }
            var shape: [Int] = []
            for item in shapeItems {
                guard let dim = item.int, dim >= 0 else {
                    throw fail(.badShape, "shape \(value["shape"]!.serialized) has a dimension that is not a non-negative integer")
                }
                shape.append(dim)
            }
            guard let offsets = value["data_offsets"]?.array, offsets.count == 2,
                let begin = offsets[0].int, let end = offsets[1].int
            else {
                throw fail(.badHeader, "data_offsets must be two integers")
            }
            guard begin >= 0, begin <= end else {
                throw fail(.badOffset, "data_offsets [\(begin), \(end)] are not an ordered pair of non-negative integers")
            }
            guard end <= dataSize else {
                throw fail(.badOffset, "data_offsets [\(begin), \(end)] run past the data area (\(dataSize) bytes)")
            }
            guard let count = checkedProduct(shape), let bytes = count.multipliedChecked(by: dtype.size) else {
                throw fail(.badShape, "shape \(shape) overflows")
            }
            guard end - begin == bytes else {
                throw fail(
                    .badShape, "shape \(shape) of \(dtype.rawValue) needs \(bytes) bytes but data_offsets [\(begin), \(end)] hold \(end - begin)")
            }
            entries.append(
                (
                    TensorInfo(
                        name: name, shape: shape, encoding: .plain(dtype),
                        offset: dataStart + begin, byteCount: bytes), begin, end
                ))
        }
        entries.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var expected = 0
        for entry in entries {
            guard entry.begin == expected else {
                let what = entry.begin < expected ? "overlaps the previous tensor" : "leaves a gap after the previous tensor"
                throw FileFormatError(
                    file: file, kind: .badOffset,
                    "data starts at \(entry.begin), expected \(expected): \(what)",
                    offset: dataStart + entry.begin, subject: "tensor \"\(entry.info.name)\"")
            }
            expected = entry.end
        }
        guard expected == dataSize else {
            throw FileFormatError(
                file: file, kind: .badOffset,
                "tensors cover \(expected) bytes of data but the file holds \(dataSize) after the header",
                offset: dataStart + expected)
        }
        tensors = entries.map(\.info)
        self.metadata = metadata
    }

    /// The raw bytes of `tensor`.
    public func data(of tensor: TensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: store.bytes[tensor.offset..<(tensor.offset + tensor.byteCount)])
    }

    public func tensor(named name: String) -> TensorInfo? { tensors.first { $0.name == name } }
}
