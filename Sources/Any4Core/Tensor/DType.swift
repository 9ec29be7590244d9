/// Element types of plain (unquantized) tensors, named as safetensors names them.
public enum DType: String, Sendable, CaseIterable, Hashable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8"
    case bool = "BOOL"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64, .u64: 8
        case .f32, .i32, .u32: 4
        case .f16, .bf16, .i16, .u16: 2
        case .i8, .u8, .bool: 1
        }
    }

    public var isFloatingPoint: Bool { self == .f64 || self == .f32 || self == .f16 || self == .bf16 }

    /// Converts `count` little-endian elements at `source` to Float.
    public func decode(_ source: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        switch self {
        case .f32:
            for i in 0..<count { out[i] = Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        case .f16:
            for i in 0..<count {
                out[i] = Float(Float16(bitPattern: UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))))
            }
        case .bf16:
            for i in 0..<count {
                out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
            }
        case .f64:
            for i in 0..<count {
                out[i] = Float(Double(bitPattern: UInt64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
            }
        case .i64: for i in 0..<count { out[i] = Float(Int64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
        case .i32: for i in 0..<count { out[i] = Float(Int32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
        case .i16: for i in 0..<count { out[i] = Float(Int16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
        case .i8: for i in 0..<count { out[i] = Float(source.load(fromByteOffset: i, as: Int8.self)) }
        case .u64: for i in 0..<count { out[i] = Float(UInt64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))) }
        case .u32: for i in 0..<count { out[i] = Float(UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        case .u16: for i in 0..<count { out[i] = Float(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .u8: for i in 0..<count { out[i] = Float(source.load(fromByteOffset: i, as: UInt8.self)) }
        case .bool: for i in 0..<count { out[i] = source.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0 }
        }
    }
}

/// How a tensor's elements are stored: a plain dtype, a ggml block format, or a quantized layer
/// of an any4 checkpoint (a virtual tensor whose parts are other tensors of the file).
public enum TensorEncoding: Sendable, Hashable, CustomStringConvertible {
    case plain(DType)
    case ggml(GGMLType)
    /// A quantized linear layer `X.weight` [out, in], stored as `X.qweight`, `X.lut`, `X.scales`...
    indirect case quantized(QuantizedLayout)

    public var description: String {
        switch self {
        case .plain(let d): d.rawValue
        case .ggml(let t): t.name
        case .quantized(let layout): layout.description
        }
    }

    /// Elements per independently decodable block (1 for plain dtypes; a row for a quantized layer).
    public var blockSize: Int {
        switch self {
        case .plain: 1
        case .ggml(let t): t.blockSize
        case .quantized(let layout): max(layout.cols, 1)
        }
    }

    /// Bytes per block (a quantized layer: its bytes per row, rounded up, since its parts are
    /// stored apart).
    public var blockBytes: Int {
        switch self {
        case .plain(let d): d.size
        case .ggml(let t): t.typeSize
        case .quantized(let layout): layout.rows == 0 ? 0 : (layout.byteCount + layout.rows - 1) / layout.rows
        }
    }

    /// Storage bits per element, scales included (a quantized layer: the stored bits of all its
    /// parts per logical parameter).
    public var bitsPerElement: Double {
        if case .quantized(let layout) = self { return layout.bitsPerElement }
        return Double(blockBytes * 8) / Double(blockSize)
    }

    /// The layer, for a quantized tensor.
    public var quantizedLayout: QuantizedLayout? {
        if case .quantized(let layout) = self { layout } else { nil }
    }

    /// Decodes `count` elements (a multiple of `blockSize`) at `source` to Float.
    ///
    /// Plain and ggml encodings only: a quantized layer's parts lie apart in its file, so it is
    /// decoded by ``TensorInfo/decode(from:elements:into:)`` or ``Model/decodeRows(_:rows:)``.
    public func decode(_ source: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        switch self {
        case .plain(let d): d.decode(source, count: count, into: out)
        case .ggml(let t): t.dequantize(source, count: count, into: out)
        case .quantized: preconditionFailure("a quantized layer is decoded from its file, not from one pointer")
        }
    }
}
