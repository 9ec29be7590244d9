/// How a quantized layer's codes lie in its `X.qweight` rows: the one packer and reader of codes.
///
/// Each row starts on a byte and is padded to whole bytes. Within a row, codes form a
/// little-endian bit stream: code c occupies bits [c·w, (c+1)·w) counted from bit 0 of the row's
/// first byte, where w is the slot width. So a 4-bit slot is "low nibble = even column", and a
/// 2-bit slot holds 4 codes per byte, low bits first.
///
/// - ``nibbles``: the layout of every checkpoint before dense packing, and still of 4- and 8-bit
///   codes: 4-bit slots up to 4 bits (2- and 3-bit codes waste 2 or 1 bits each), a byte above.
/// - ``dense``: slots of exactly the code's bits, ⌈cols · bits / 8⌉ bytes a row. A layer says so
///   with `"code_packing": "dense"` in `any4.layers`; without the key it is ``nibbles``. For 4- and
///   8-bit codes the two are the same bytes.
public enum CodePacking: String, Sendable, Hashable, CaseIterable {
    case nibbles
    case dense

    /// The packing the writer uses for `codeBits`: dense below 4 bits (where it saves bytes),
    /// else nibbles (the same bytes, and no metadata key, so 4- and 8-bit files are as before).
    public static func written(codeBits: Int) -> CodePacking { codeBits < 4 ? .dense : .nibbles }

    /// Bits one code occupies in a row.
    public func slotBits(codeBits: Int) -> Int {
        switch self {
        case .nibbles: codeBits > 4 ? 8 : 4
        case .dense: codeBits
        }
    }

    /// Bytes of one stored row of `cols` codes (`cols · slotBits / 8`, rounded up).
    public func rowBytes(cols: Int, codeBits: Int) -> Int {
        let w = slotBits(codeBits: codeBits)
        return cols / 8 * w + (cols % 8 * w + 7) / 8
    }

    /// The value of `"code_packing"` in `any4.layers`, nil when the key is left out (nibbles,
    /// or dense codes of 4 or 8 bits, which are stored as nibbles are).
    public func metadataValue(codeBits: Int) -> String? {
        self == .dense && slotBits(codeBits: codeBits) != CodePacking.nibbles.slotBits(codeBits: codeBits) ? rawValue : nil
    }

    /// The packing a layer's `"code_packing"` value names (nil: the key is absent).
    public init?(metadataValue: String?) {
        guard let metadataValue else {
            self = .nibbles
            return
        }
        self.init(rawValue: metadataValue)
    }

    /// `codes` (rows × cols, one code per byte, each below 2^codeBits) packed into rows ×
    /// ``rowBytes(cols:codeBits:)`` bytes.
    public func pack(_ codes: [UInt8], rows: Int, cols: Int, codeBits: Int) -> [UInt8] {
        precondition(codes.count == rows * cols, "codes do not match [\(rows), \(cols)]")
        let w = slotBits(codeBits: codeBits)
        if w == 8 { return codes }
        let rowBytes = self.rowBytes(cols: cols, codeBits: codeBits)
        let mask = UInt64(1) << codeBits - 1
        var out = [UInt8](repeating: 0, count: rows * rowBytes)
        codes.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for r in 0..<rows {
                    let from = src.baseAddress! + r * cols
                    let to = dst.baseAddress! + r * rowBytes
                    var acc: UInt64 = 0
                    var filled = 0
                    var byte = 0
                    for c in 0..<cols {
                        acc |= (UInt64(from[c]) & mask) << UInt64(filled)
                        filled += w
                        while filled >= 8 {
                            to[byte] = UInt8(truncatingIfNeeded: acc)
                            acc >>= 8
                            filled -= 8
                            byte += 1
                        }
                    }
                    if filled > 0 { to[byte] = UInt8(truncatingIfNeeded: acc) }
                }
            }
        }
        return out
    }

    /// Inverse of ``pack(_:rows:cols:codeBits:)``: `rows` rows of ``rowBytes(cols:codeBits:)``
    /// bytes from `packed` to rows × cols codes. A code is its slot's value, which may be 2^codeBits
    /// or more in a nibble slot (the caller checks codes against the table).
    public func unpack(_ packed: UnsafeRawBufferPointer, rows: Int, cols: Int, codeBits: Int) -> [UInt8] {
        let rowBytes = self.rowBytes(cols: cols, codeBits: codeBits)
        precondition(packed.count >= rows * rowBytes, "packed codes shorter than [\(rows), \(rowBytes)]")
        let w = slotBits(codeBits: codeBits)
        if w == 8 { return Array(packed[0..<(rows * cols)]) }
        let mask = UInt64(1) << w - 1
        return [UInt8](unsafeUninitializedCapacity: rows * cols) { out, count in
            for r in 0..<rows {
                let from = r * rowBytes
                let to = out.baseAddress! + r * cols
                var acc: UInt64 = 0
                var filled = 0
                var byte = from
                for c in 0..<cols {
                    if filled < w {
                        acc |= UInt64(packed[byte]) << UInt64(filled)
                        byte += 1
                        filled += 8
                    }
                    to[c] = UInt8(truncatingIfNeeded: acc & mask)
                    acc >>= UInt64(w)
                    filled -= w
                }
            }
            count = rows * cols
        }
    }

    /// Where code (row, column) lies in a stored matrix: the byte holding its first bit, from the
    /// start of `X.qweight`, and its value read from `bytes` (the whole `X.qweight`).
    public func code(row: Int, column: Int, cols: Int, codeBits: Int, in bytes: UnsafeRawBufferPointer) -> (offset: Int, code: Int) {
        let w = slotBits(codeBits: codeBits)
        let bit = column * w
        let offset = row * rowBytes(cols: cols, codeBits: codeBits) + bit / 8
        var word = Int(bytes[offset])
        if bit % 8 + w > 8 { word |= Int(bytes[offset + 1]) << 8 }
        return (offset, word >> (bit % 8) & (1 << w - 1))
    }
}
