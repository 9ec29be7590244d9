/// A bounds-checked little-endian reader over untrusted bytes.
///
/// Every read checks the remaining length first and throws a ``FileFormatError`` naming the
/// file and the offset, so a parser built on it cannot read out of bounds whatever the input.
public struct ByteCursor {
    public let bytes: UnsafeRawBufferPointer
    public let file: String
    public private(set) var offset: Int

    public init(_ bytes: UnsafeRawBufferPointer, file: String, offset: Int = 0) {
        self.bytes = bytes
        self.file = file
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }

    /// Throws unless `count` more bytes are available.
    public func require(_ count: Int, for what: @autoclosure () -> String) throws {
        guard count >= 0, count <= remaining else {
            throw FileFormatError(
                file: file, kind: .truncated,
                "file ends inside \(what()): needs \(count) bytes, \(remaining) left", offset: offset)
        }
    }

    public mutating func skip(_ count: Int, for what: @autoclosure () -> String) throws {
        try require(count, for: what())
        offset += count
    }

    public mutating func read<T: FixedWidthInteger>(_: T.Type, for what: @autoclosure () -> String) throws -> T {
        try require(MemoryLayout<T>.size, for: what())
        let value = T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += MemoryLayout<T>.size
        return value
    }

    public mutating func readFloat(for what: @autoclosure () -> String) throws -> Float {
        Float(bitPattern: try read(UInt32.self, for: what()))
    }

    public mutating func readDouble(for what: @autoclosure () -> String) throws -> Double {
        Double(bitPattern: try read(UInt64.self, for: what()))
    }

    /// Reads `count` bytes as a view into the underlying buffer.
    public mutating func slice(_ count: Int, for what: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        try require(count, for: what())
        let view = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
        offset += count
        return view
    }

    /// Reads `count` bytes as UTF-8 text; invalid UTF-8 is an error.
    public mutating func readUTF8(_ count: Int, for what: @autoclosure () -> String) throws -> String {
        let start = offset
        let view = try slice(count, for: what())
        guard let text = String(validating: view, as: UTF8.self) else {
            throw FileFormatError(file: file, kind: .badHeader, "\(what()) is not valid UTF-8", offset: start)
        }
        return text
    }
}

extension Int {
    /// `self * other`, or nil on overflow.
    @inlinable func multipliedChecked(by other: Int) -> Int? {
        let (result, overflow) = multipliedReportingOverflow(by: other)
        return overflow ? nil : result
    }

    /// `self + other`, or nil on overflow.
    @inlinable func addingChecked(_ other: Int) -> Int? {
        let (result, overflow) = addingReportingOverflow(other)
        return overflow ? nil : result
    }
}

/// The product of `dims`, or nil if any is negative or the product overflows.
@inlinable func checkedProduct(_ dims: [Int]) -> Int? {
    var total = 1
    for dim in dims {
        guard dim >= 0, let next = total.multipliedChecked(by: dim) else { return nil }
        total = next
    }
    return total
}
