/// Writes GGUF version 3 files: the metadata key/values in the order given (each with its own
/// type, arrays included), the tensor infos, padding to the alignment (`general.alignment`, else
/// 32), then each tensor's data at an aligned offset. Written atomically, a tensor at a time.
public enum GGUFWriter {
    /// One tensor to write: shape outermost first (as ``GGUFFile`` reports it), its ggml type, and
    /// its bytes made only when it is written.
    package struct Tensor {
        public var name: String
        public var shape: [Int]
        public var type: GGMLType
        public var byteCount: Int
        public var payload: () throws -> TensorPayload

        package init(name: String, shape: [Int], type: GGMLType, byteCount: Int, payload: @escaping () throws -> TensorPayload) {
            self.name = name
            self.shape = shape
            self.type = type
            self.byteCount = byteCount
            self.payload = payload
        }
    }

    /// The alignment `metadata` asks for (`general.alignment` as a UINT32 power of two), else 32.
    static func alignment(_ metadata: [(key: String, value: GGUFValue)]) -> Int {
        if let entry = metadata.first(where: { $0.key == "general.alignment" }), case .uint32(let v) = entry.value,
            v > 0, v & (v - 1) == 0
        {
            return Int(v)
        }
        return 32
    }

    /// The header (magic to the padding before the data) and each tensor's offset in the data section.
    package static func layout(
        metadata: [(key: String, value: GGUFValue)], tensors: [Tensor], file: String
    ) throws -> (header: [UInt8], offsets: [Int], dataSize: Int) {
        let alignment = alignment(metadata)
        var out: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        out += Array("GGUF".utf8)
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count))
        var keys = Set<String>()
        for (key, value) in metadata {
            guard keys.insert(key).inserted else {
                throw FileFormatError(file: file, kind: .badHeader, "duplicate metadata key", subject: key)
            }
            encodeString(key, into: &out)
            u32(typeID(of: value))
            encode(value, into: &out)
        }
        var names = Set<String>()
        var offsets: [Int] = []
        var position = 0
        for t in tensors {
            guard names.insert(t.name).inserted else {
                throw FileFormatError(file: file, kind: .badHeader, "duplicate tensor name", subject: t.name)
            }
            guard (1...GGUFFile.maxDimensions).contains(t.shape.count), let row = t.shape.last, row % t.type.blockSize == 0,
                let count = checkedProduct(t.shape), count / t.type.blockSize * t.type.typeSize == t.byteCount
            else {
                throw FileFormatError(
                    file: file, kind: .badShape, "shape \(t.shape) of \(t.type.name) does not match \(t.byteCount) bytes",
                    subject: t.name)
            }
            encodeString(t.name, into: &out)
            u32(UInt32(t.shape.count))
            for dim in t.shape.reversed() { u64(UInt64(dim)) }
            u32(t.type.rawValue)
            u64(UInt64(position))
            offsets.append(position)
            position = (position + t.byteCount + alignment - 1) / alignment * alignment
        }
        while out.count % alignment != 0 { out.append(0) }
        return (out, offsets, position)
    }

    /// Writes the file; `progress` advances by the bytes written and cancelling it leaves `path`
    /// as it was.
    package static func write(
        metadata: [(key: String, value: GGUFValue)], tensors: [Tensor], to path: String, progress: Progress?
    ) throws {
        let (header, offsets, _) = try layout(metadata: metadata, tensors: tensors, file: path)
        let writer = try AtomicFileWriter(path: path, progress: progress)
        try writer.write(header)
        progress?.advance(by: header.count)
        var position = 0
        for (t, offset) in zip(tensors, offsets) {
            if offset > position {
                try writer.write([UInt8](repeating: 0, count: offset - position))
                progress?.advance(by: offset - position)
            }
            try t.payload().write(to: writer, expecting: t.byteCount, tensor: t.name, file: path, progress: progress)
            position = offset + t.byteCount
        }
        // The data section ends padded, as llama.cpp's writer leaves it.
        let end = (position + alignment(metadata) - 1) / alignment(metadata) * alignment(metadata)
        if end > position {
            try writer.write([UInt8](repeating: 0, count: end - position))
            progress?.advance(by: end - position)
        }
        try writer.commit()
    }

    /// The file's size: header plus the aligned data section.
    package static func fileSize(metadata: [(key: String, value: GGUFValue)], tensors: [Tensor], file: String) throws -> Int {
        let (header, _, data) = try layout(metadata: metadata, tensors: tensors, file: file)
        return header.count + data
    }

    // MARK: - Values

    /// GGUF's type id of a value.
    static func typeID(of value: GGUFValue) -> UInt32 {
        switch value {
        case .uint8: 0
        case .int8: 1
        case .uint16: 2
        case .int16: 3
        case .uint32: 4
        case .int32: 5
        case .float32: 6
        case .bool: 7
        case .string: 8
        case .array: 9
        case .uint64: 10
        case .int64: 11
        case .float64: 12
        }
    }

    static func encodeString(_ s: String, into out: inout [UInt8]) {
        let bytes = Array(s.utf8)
        withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { out.append(contentsOf: $0) }
        out += bytes
    }

    /// A value's bytes without its type id (an array: element type, count, then the elements).
    static func encode(_ value: GGUFValue, into out: inout [UInt8]) {
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        switch value {
        case .uint8(let v): put(v)
        case .int8(let v): put(v)
        case .uint16(let v): put(v)
        case .int16(let v): put(v)
        case .uint32(let v): put(v)
        case .int32(let v): put(v)
        case .float32(let v): put(v.bitPattern)
        case .bool(let v): put(UInt8(v ? 1 : 0))
        case .string(let s): encodeString(s, into: &out)
        case .array(let elementType, let items):
            put(elementType)
            put(UInt64(items.count))
            for item in items { encode(item, into: &out) }
        case .uint64(let v): put(v)
        case .int64(let v): put(v)
        case .float64(let v): put(v.bitPattern)
        }
    }
}
