/// One tensor of a model file: its name, shape, storage and where its bytes are.
public struct TensorInfo: Sendable, Hashable {
    public let name: String
    /// Dimensions, outermost first (PyTorch order): a linear weight is `[out, in]`.
    public let shape: [Int]
    public let encoding: TensorEncoding
    /// Absolute byte offset of the tensor's data in its file (a quantized layer: of its codes,
    /// `X.qweight`; its other parts lie elsewhere, see ``QuantizedLayout/parts``).
    public let offset: Int
    /// Bytes of the tensor's data (a quantized layer: of all its parts).
    public let byteCount: Int

    public init(name: String, shape: [Int], encoding: TensorEncoding, offset: Int, byteCount: Int) {
        self.name = name
        self.shape = shape
        self.encoding = encoding
        self.offset = offset
        self.byteCount = byteCount
    }

    /// Number of elements (the product of `shape`; 1 for a scalar). Readers have checked that the
    /// product fits in any order of its factors that ends in a non-zero; a zero makes it 0.
    public var elementCount: Int { shape.contains(0) ? 0 : shape.reduce(1, *) }

    /// Elements in one row: the innermost dimension (1 for a scalar).
    public var rowLength: Int { shape.last ?? 1 }

    /// Number of rows: all dimensions but the innermost.
    public var rowCount: Int { rowLength == 0 ? 0 : elementCount / rowLength }
}

extension TensorInfo {
    /// Decodes elements `range` of this tensor to Float.
    ///
    /// - Parameters:
    ///   - store: the bytes of the file the tensor lives in.
    ///   - range: element range; both ends must be multiples of the encoding's block size.
    ///   - out: room for `range.count` floats.
    public func decode(from store: ByteStore, elements range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let block = encoding.blockSize
        precondition(range.lowerBound >= 0 && range.upperBound <= elementCount, "element range out of bounds")
        precondition(range.lowerBound % block == 0 && range.upperBound % block == 0, "range not block aligned")
        precondition(encoding.quantizedLayout != nil || offset + byteCount <= store.count, "tensor outside its file")
        guard !range.isEmpty, let base = store.bytes.baseAddress else { return }
        if case .quantized(let layout) = encoding {
            // Whole rows (the block is a row); a code outside the table decodes to NaN.
            let rows = (range.lowerBound / block)..<(range.upperBound / block)
            let (matrix, badCodes) = layout.matrix(rows: rows, from: store)
            matrix.dequantize(rows: 0..<rows.count, into: out)
            for i in badCodes { out[i] = .nan }
            return
        }
        let start = base + offset + range.lowerBound / block * encoding.blockBytes
        encoding.decode(start, count: range.count, into: out)
    }

    /// Decodes the whole tensor to Float.
    public func decodeAll(from store: ByteStore) -> [Float] {
        [Float](unsafeUninitializedCapacity: elementCount) { buffer, initialized in
            if let base = buffer.baseAddress { decode(from: store, elements: 0..<elementCount, into: base) }
            initialized = elementCount
        }
    }

    /// Decodes rows `rows` of this tensor (each of `rowLength` elements) to Float.
    public func decodeRows(from store: ByteStore, rows: Range<Int>) -> [Float] {
        let range = (rows.lowerBound * rowLength)..<(rows.upperBound * rowLength)
        return [Float](unsafeUninitializedCapacity: range.count) { buffer, initialized in
            if let base = buffer.baseAddress { decode(from: store, elements: range, into: base) }
            initialized = range.count
        }
    }
}
