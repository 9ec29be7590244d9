/// Why a lookup kernel's layout cannot hold a quantized matrix. The CPU kernel's
/// (``PackedLinear``) and the GPU kernel's (``GPULookupLayout``) refuse with it, each naming
/// itself and its own rules in the message.
public struct UnsupportedLayout: Error, CustomStringConvertible, Sendable {
    public enum Reason: Sendable, Equatable {
        /// Codes wider than 4 bits.
        case codeBits(Int)
        /// A group size the layout cannot cut; `rule` says what it takes ("a multiple of 8").
        case groupSize(Int, rule: String)
        /// A dimension past `limit` (rows, or columns padded to the block).
        case tooLarge(rows: Int, cols: Int, limit: Int)
    }

    /// The kernel that refuses, as the message names it ("the lookup kernel").
    public let kernel: String
    public let reason: Reason

    public init(_ kernel: String, _ reason: Reason) {
        self.kernel = kernel
        self.reason = reason
    }

    public var description: String {
        switch reason {
        case .codeBits(let b): "\(kernel) takes 4-bit (or narrower) codes, not \(b)-bit"
        case let .groupSize(g, rule): "\(kernel) needs a group size that is \(rule), not \(g)"
        case let .tooLarge(rows, cols, limit): "\(kernel) takes at most \(limit) rows and columns, not [\(rows), \(cols)]"
        }
    }
}
