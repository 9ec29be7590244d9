/// Writes safetensors files: header padded with spaces to a multiple of 8, tensors ordered by
/// descending dtype size then name (as the reference writer does), written atomically.
public enum SafeTensorsWriter {
    /// One tensor to write: its raw little-endian bytes.
    public struct Entry: Sendable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public var bytes: [UInt8]

        public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }

        /// A tensor of Float values stored as `dtype` (F32, F16 or BF16; BF16 rounds to nearest even).
        public init(name: String, shape: [Int], floats: [Float], as dtype: DType = .f32) {
            precondition(dtype.isFloatingPoint && dtype != .f64, "use raw bytes for \(dtype)")
            var out = [UInt8]()
            out.reserveCapacity(floats.count * dtype.size)
            for value in floats {
                switch dtype {
                case .f16: withUnsafeBytes(of: Float16(value).bitPattern.littleEndian) { out.append(contentsOf: $0) }
                case .bf16: withUnsafeBytes(of: bfloat16Bits(value).littleEndian) { out.append(contentsOf: $0) }
                default: withUnsafeBytes(of: value.bitPattern.littleEndian) { out.append(contentsOf: $0) }
                }
            }
            self.init(name: name, dtype: dtype, shape: shape, bytes: out)
        }
    }

    /// Writes `entries` and `metadata` to `path`, replacing it only once complete.
    ///
    /// A header longer than ``SafeTensorsFile/maxHeaderLength`` (which no reader accepts) is
    /// refused before any file is created. Cancelling `progress` stops the write with
    /// ``QuantizationError/cancelled`` and leaves `path` as it was.
    public static func write(
        _ entries: [Entry], metadata: [String: String] = [:], to path: String,
        progress: Progress? = nil
    ) throws {
        try write(entries, metadata: metadata, to: path, progress: progress, headerLimit: SafeTensorsFile.maxHeaderLength)
    }

    /// ``write(_:metadata:to:progress:)`` with another header limit (tests).
    package static func write(
        _ entries: [Entry], metadata: [String: String], to path: String, progress: Progress?,
        headerLimit: Int
    ) throws {
        let (prefix, ordered) = try layout(entries, metadata: metadata, file: path, headerLimit: headerLimit)
        let writer = try AtomicFileWriter(path: path, progress: progress)
        try writer.write(prefix)
        for entry in ordered { try writer.write(entry.bytes) }
        try writer.commit()
    }

    /// A tensor whose bytes are made only when it is written, so that a file larger than memory
    /// is written one tensor at a time.
    package struct Planned {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public var byteCount: Int
        public var payload: () throws -> TensorPayload

        package init(name: String, dtype: DType, shape: [Int], byteCount: Int, payload: @escaping () throws -> TensorPayload) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.byteCount = byteCount
            self.payload = payload
        }

        /// An entry whose bytes are already made.
        package init(_ entry: Entry) {
            self.init(name: entry.name, dtype: entry.dtype, shape: entry.shape, byteCount: entry.bytes.count) { .bytes(entry.bytes) }
        }
    }

    /// The size of the file ``write(planned:metadata:to:progress:)`` writes: 8 + header + data.
    package static func fileSize(_ entries: [Planned], metadata: [String: String], file: String) throws -> Int {
        let (prefix, _) = try plannedLayout(entries, metadata: metadata, file: file)
        return prefix.count + entries.reduce(0) { $0 + $1.byteCount }
    }

    /// Writes `entries` one at a time (each made by its payload just before it is written),
    /// replacing `path` only once complete; `progress` advances by the bytes written.
    package static func write(
        planned entries: [Planned], metadata: [String: String], to path: String, progress: Progress?
    ) throws {
        let (prefix, ordered) = try plannedLayout(entries, metadata: metadata, file: path)
        let writer = try AtomicFileWriter(path: path, progress: progress)
        try writer.write(prefix)
        progress?.advance(by: prefix.count)
        for entry in ordered {
            try entry.payload().write(to: writer, expecting: entry.byteCount, tensor: entry.name, file: path, progress: progress)
        }
        try writer.commit()
    }

    static func plannedLayout(_ entries: [Planned], metadata: [String: String], file: String) throws -> ([UInt8], [Planned]) {
        let (prefix, order) = try layout(
            entries.map { ($0.name, $0.dtype, $0.shape, $0.byteCount) }, metadata: metadata, file: file,
            headerLimit: SafeTensorsFile.maxHeaderLength)
        return (prefix, order.map { entries[$0] })
    }

    /// The whole file as bytes (for in-memory models and tests).
    public static func image(_ entries: [Entry], metadata: [String: String] = [:]) throws -> [UInt8] {
        let (prefix, ordered) = try layout(entries, metadata: metadata, file: "<memory>")
        var out = prefix
        out.reserveCapacity(prefix.count + ordered.reduce(0) { $0 + $1.bytes.count })
        for entry in ordered { out += entry.bytes }
        return out
    }

    /// Validates the entries and returns the 8-byte length plus padded header, and the data order.
    /// A header over `headerLimit` bytes (tests pass a small one) is a `.tooLarge` error.
    package static func layout(
        _ entries: [Entry], metadata: [String: String], file: String,
        headerLimit: Int = SafeTensorsFile.maxHeaderLength
    ) throws -> ([UInt8], [Entry]) {
        let (prefix, order) = try layout(
            entries.map { ($0.name, $0.dtype, $0.shape, $0.bytes.count) }, metadata: metadata, file: file,
            headerLimit: headerLimit)
        return (prefix, order.map { entries[$0] })
    }

    /// ``layout(_:metadata:file:headerLimit:)`` on (name, dtype, shape, byte count): the prefix and
    /// the indices of the entries in data order.
    static func layout(
        _ entries: [(name: String, dtype: DType, shape: [Int], byteCount: Int)], metadata: [String: String], file: String,
        headerLimit: Int
    ) throws -> ([UInt8], [Int]) {
        var seen = Set<String>()
        for entry in entries {
            guard entry.name != "__metadata__", seen.insert(entry.name).inserted else {
                throw FileFormatError(file: file, kind: .badHeader, "duplicate or reserved tensor name", subject: entry.name)
            }
            guard let count = checkedProduct(entry.shape), count * entry.dtype.size == entry.byteCount else {
                throw FileFormatError(
                    file: file, kind: .badShape,
                    "shape \(entry.shape) of \(entry.dtype.rawValue) does not match \(entry.byteCount) bytes",
                    subject: entry.name)
            }
        }
        let order = entries.indices.sorted {
            (entries[$1].dtype.size, entries[$0].name) < (entries[$0].dtype.size, entries[$1].name)
        }
        var members: [(key: String, value: JSONValue)] = []
        if !metadata.isEmpty {
            members.append(("__metadata__", .object(metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))
        }
        var position = 0
        for entry in order.map({ entries[$0] }) {
            members.append(
                (
                    entry.name,
                    .object([
                        ("dtype", .string(entry.dtype.rawValue)),
                        ("shape", .array(entry.shape.map { JSONValue($0) })),
                        ("data_offsets", .array([JSONValue(position), JSONValue(position + entry.byteCount)]))
                    ])
                ))
            position += entry.byteCount
        }
        var header = Array(JSONValue.object(members).serialized.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        guard header.count <= headerLimit else {
            throw FileFormatError(
                file: file, kind: .tooLarge,
                "the header would be \(header.count) bytes (\(entries.count) tensors, \(metadata.count) metadata keys), "
                    + "over the safetensors limit of \(headerLimit) bytes that readers enforce; nothing was written")
        }
        return (withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) } + header, order)
    }
}

/// The bytes of one tensor being written: made in memory, or a region of a mapped input file
/// (copied to the output without a copy in memory).
package enum TensorPayload {
    case bytes([UInt8])
    /// `range` of `store`'s bytes.
    case region(ByteStore, Range<Int>)

    /// Writes the bytes in pieces of at most 16 MiB, advancing `progress` after each; throws
    /// when they are not `expecting` bytes (a writer bug, named by tensor and file).
    func write(to writer: AtomicFileWriter, expecting: Int, tensor: String, file: String, progress: Progress?) throws {
        func emit(_ raw: UnsafeRawBufferPointer) throws {
            guard raw.count == expecting else {
                throw FileFormatError(file: file, kind: .badShape, "made \(raw.count) bytes, expected \(expecting)", subject: tensor)
            }
            let piece = 16 << 20
            var start = 0
            while start < raw.count {
                let end = min(start + piece, raw.count)
                try writer.write(UnsafeRawBufferPointer(rebasing: raw[start..<end]))
                progress?.advance(by: end - start)
                start = end
            }
        }
        switch self {
        case .bytes(let bytes): try bytes.withUnsafeBytes { try emit($0) }
        case .region(let store, let range): try emit(UnsafeRawBufferPointer(rebasing: store.bytes[range]))
        }
    }
}

/// Rounds a Float to bfloat16 (round to nearest, ties to even; NaN stays NaN).
public func bfloat16Bits(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    if value.isNaN { return UInt16(bits >> 16) | 0x40 }
    let rounding = 0x7FFF + ((bits >> 16) & 1)
    return UInt16((bits &+ rounding) >> 16)
}
