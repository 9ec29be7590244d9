#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A size taken from a file or an option that cannot be had: a product or sum that does not fit
/// in an `Int`, a negative count, or an allocation larger than the machine can give. The message
/// names what asked for it and the value.
public struct SizeError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Reason: Equatable, Sendable {
        /// `terms` combined with `operation` ("×" or "+") overflows a 64-bit size.
        case overflow(terms: [Int], operation: String)
        /// A count or size that is negative.
        case negative(Int)
        /// `bytes` exceed the `available` bytes the machine can give (`source` says whose figure).
        case exceedsMemory(bytes: Int, available: Int, source: String)
    }

    /// What the size is for: "model.layers.0.mlp.up_proj.weight: LUTs (rows × entries)".
    public var what: String
    public var reason: Reason

    public init(_ what: String, _ reason: Reason) {
        self.what = what
        self.reason = reason
    }

    public var description: String {
        switch reason {
        case let .overflow(terms, operation):
            "\(what): \(terms.map(String.init).joined(separator: " \(operation) ")) overflows a 64-bit size"
        case .negative(let value):
            "\(what): \(value) is negative"
        case let .exceedsMemory(bytes, available, source):
            "\(what) needs \(Formatting.bytes(bytes)) (\(bytes) bytes), more than the \(Formatting.bytes(available)) "
                + "this machine can give (\(source))"
        }
    }
}

/// Checked size arithmetic for everything computed from files or options: shapes × dtype sizes,
/// group counts, packed sizes, buffers. Each function returns the exact value or throws a
/// ``SizeError`` naming `what` and the operands; none traps.
public enum Sizes {
    /// The product of `factors` (each ≥ 0). A zero factor makes it 0 whatever the others are (the
    /// product is then exact), so `[0, 2^62, 2^62]` is 0, not an overflow.
    public static func product(_ factors: [Int], _ what: @autoclosure () -> String) throws(SizeError) -> Int {
        if let negative = factors.first(where: { $0 < 0 }) { throw SizeError(what(), .negative(negative)) }
        if factors.contains(0) { return 0 }
        var total = 1
        for f in factors {
            let (next, overflow) = total.multipliedReportingOverflow(by: f)
            if overflow { throw SizeError(what(), .overflow(terms: factors, operation: "×")) }
            total = next
        }
        return total
    }

    /// The sum of `terms` (each ≥ 0).
    public static func sum(_ terms: [Int], _ what: @autoclosure () -> String) throws(SizeError) -> Int {
        if let negative = terms.first(where: { $0 < 0 }) { throw SizeError(what(), .negative(negative)) }
        var total = 0
        for t in terms {
            let (next, overflow) = total.addingReportingOverflow(t)
            if overflow { throw SizeError(what(), .overflow(terms: terms, operation: "+")) }
            total = next
        }
        return total
    }

    /// ⌈width / size⌉ for width ≥ 0 and size > 0, without the overflow of `(width + size − 1) / size`.
    @inlinable
    public static func groupCount(width: Int, size: Int) -> Int {
        precondition(width >= 0 && size > 0, "groupCount needs width >= 0 and size > 0")
        return width / size + (width % size == 0 ? 0 : 1)
    }

    /// `value` rounded up to a multiple of `multiple` (> 0), or a SizeError when that overflows.
    public static func roundUp(_ value: Int, toMultipleOf multiple: Int, _ what: @autoclosure () -> String) throws(SizeError) -> Int {
        precondition(multiple > 0)
        if value < 0 { throw SizeError(what(), .negative(value)) }
        let rem = value % multiple
        if rem == 0 { return value }
        let (next, overflow) = value.addingReportingOverflow(multiple - rem)
        if overflow { throw SizeError(what(), .overflow(terms: [value, multiple - rem], operation: "+")) }
        return next
    }
}

/// How much memory the machine can give, and the one check every large allocation from a file or
/// an option goes through: refused up front, with the size and what asked for it, rather than an
/// abort ("failed to allocate"), the OOM killer, or hours of swapping.
public enum MemoryBudget {
    /// The bytes the machine can give now, and where that figure comes from: `MemAvailable` of
    /// /proc/meminfo, lowered by the cgroup's `memory.max` less `memory.current` (containers), and by
    /// `ANY4_MEMORY_LIMIT` (bytes, or with a K, M, G or T suffix: powers of 1024) when set. Nil when
    /// none of them is known (no /proc): then nothing is refused.
    public static func available() -> (bytes: Int, source: String)? {
        var best: (bytes: Int, source: String)?
        func offer(_ bytes: Int?, _ source: String) {
            guard let bytes, bytes >= 0 else { return }
            if best == nil || bytes < best!.bytes { best = (bytes, source) }
        }
        if let text = readSmallFile("/proc/meminfo") { offer(meminfoAvailable(text), "MemAvailable in /proc/meminfo") }
        if let max = readSmallFile("/sys/fs/cgroup/memory.max").flatMap({ Int($0.trimmingSpaces) }) {
            let current = readSmallFile("/sys/fs/cgroup/memory.current").flatMap { Int($0.trimmingSpaces) } ?? 0
            offer(Swift.max(0, max - current), "the cgroup's memory.max less memory.current")
        }
        if let limit = getenv("ANY4_MEMORY_LIMIT").map({ String(cString: $0) }) {
            offer(parseByteCount(limit), "ANY4_MEMORY_LIMIT=\(limit)")
        }
        return best
    }

    /// Allocations below this are not checked (not worth reading /proc for).
    public static let smallBytes = 16 << 20

    /// Throws unless `bytes` fit in what the machine can give now. `what` says who asks
    /// ("bench --shape 60000x60000", "decoding model.embed_tokens.weight to f32").
    public static func check(_ bytes: Int, for what: @autoclosure () -> String) throws(SizeError) {
        if bytes < 0 { throw SizeError(what(), .negative(bytes)) }
        guard bytes >= smallBytes else { return }
        try check(bytes, against: available(), for: what())
    }

    /// The check against a given figure (nil: unknown, nothing refused).
    public static func check(
        _ bytes: Int, against figure: (bytes: Int, source: String)?,
        for what: @autoclosure () -> String
    ) throws(SizeError) {
        if bytes < 0 { throw SizeError(what(), .negative(bytes)) }
        guard let figure, bytes > figure.bytes else { return }
        throw SizeError(what(), .exceedsMemory(bytes: bytes, available: figure.bytes, source: figure.source))
    }

    /// `MemAvailable` (kB) of /proc/meminfo's text, in bytes.
    package static func meminfoAvailable(_ text: String) -> Int? {
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let kb = Int(fields[1]) else { return nil }
            let (bytes, overflow) = kb.multipliedReportingOverflow(by: 1024)
            return overflow ? Int.max : bytes
        }
        return nil
    }

    /// "4096", "512M", "2G", "1T" (powers of 1024) as bytes; nil if not such a count.
    package static func parseByteCount(_ text: String) -> Int? {
        var digits = text.trimmingSpaces
        var shift = 0
        if let last = digits.last, let s = ["K": 10, "M": 20, "G": 30, "T": 40][String(last).uppercased()] {
            shift = s
            digits.removeLast()
        }
        guard let value = Int(digits), value >= 0 else { return nil }
        guard shift == 0 || value <= Int.max >> shift else { return Int.max }
        return value << shift
    }

    /// The text of a small file such as /proc/meminfo (whose size stat reports as 0), or nil.
    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
