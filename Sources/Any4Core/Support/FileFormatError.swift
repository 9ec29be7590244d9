/// An error in a model or data file: which file, what is wrong, and where.
///
/// Every reader in the core throws this type for bad input, so a caller (the CLI, the TUI, a
/// test) can report the file, the byte offset and the tensor or key involved without parsing
/// message text.
public struct FileFormatError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The file ends before a structure it declares.
        case truncated
        /// Magic bytes or version are not the format's.
        case badMagic
        /// The header is malformed (bad JSON, bad UTF-8, wrong value type, duplicate key).
        case badHeader
        /// A dtype or tensor type this reader does not know.
        case unknownType
        /// A shape, count or size that is negative, overflows or contradicts the data.
        case badShape
        /// Tensor data offsets outside the data area, misaligned or overlapping.
        case badOffset
        /// A declared size beyond what this reader accepts (header length, string length, rank).
        case tooLarge
        /// Well-formed but not supported here.
        case unsupported
        /// The file could not be opened, read or written.
        case io
        /// An output path that is (or resolves to) a file or folder the command reads.
        case outputIsInput
    }

    public var file: String
    public var kind: Kind
    public var message: String
    /// Byte offset in the file where the problem was found, when known.
    public var offset: Int?
    /// The tensor or key involved, when known.
    public var subject: String?

    public init(file: String, kind: Kind, _ message: String, offset: Int? = nil, subject: String? = nil) {
        self.file = file
        self.kind = kind
        self.message = message
        self.offset = offset
        self.subject = subject
    }

    public var description: String {
        var text = "\(file): "
        if let subject { text += "\(subject): " }
        text += message
        if let offset { text += " (at byte \(offset))" }
        return text
    }
}
