#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Synchronization

/// A fixed-size array of plain values on transparent huge pages (on Linux, where they are advised):
/// in its own memory, aligned to 2 MiB, when it is at least that large; else in a shared huge page
/// with other small buffers (``HugePageArena``).
///
/// The lookup and dense kernels stream tens of megabytes of weights per call; with 4 KiB pages every
/// 4 KiB is a TLB miss (and in a virtual machine a two-level page walk), and the hardware
/// prefetchers stop at each page boundary. On the 2-core VM this project is measured on, a plain
/// read of 512 MiB ran at 17–19 GB/s with 4 KiB pages and at 20 GB/s with huge pages. A small
/// model's layers are each below 2 MiB (SmolLM2's 576 × 1536 is 0.4 MiB): on pages of their own
/// they were all on 4 KiB pages, and its decode step's products ran at 0.6 of the bench's speed.
package final class HugePageBuffer<Element: BitwiseCopyable>: @unchecked Sendable {
    package let count: Int
    private let base: UnsafeMutablePointer<Element>

    static var hugePageBytes: Int { HugePageArena.pageBytes }

    /// `count` elements, each set to `value`.
    package init(repeating value: Element, count: Int) {
        self.count = count
        base = Self.allocate(bytes: Self.byteCount(count)).bindMemory(to: Element.self, capacity: count)
        base.initialize(repeating: value, count: count)
    }

    /// Bytes held for `count` elements (at least one, so that every buffer has an address).
    private static func byteCount(_ count: Int) -> Int { max(count * MemoryLayout<Element>.stride, 1) }

    private static func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        if bytes < hugePageBytes { return HugePageArena.shared.allocate(bytes: bytes) }
        return hugePages((bytes + hugePageBytes - 1) / hugePageBytes * hugePageBytes)
    }

    /// A copy of `values`.
    package init(_ values: [Element]) {
        count = values.count
        base = Self.allocate(bytes: Self.byteCount(count)).bindMemory(to: Element.self, capacity: count)
        values.withUnsafeBufferPointer { if let v = $0.baseAddress { base.initialize(from: v, count: count) } }
    }

    /// A copy of `other` in memory of its own.
    package init(copying other: HugePageBuffer<Element>) {
        count = other.count
        base = Self.allocate(bytes: Self.byteCount(count)).bindMemory(to: Element.self, capacity: count)
        base.initialize(from: other.base, count: count)
    }

    deinit {
        if Self.byteCount(count) < Self.hugePageBytes {
            HugePageArena.shared.release(base)
        } else {
            free(base)
        }
    }

    package func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Element>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: base, count: count))
    }

    package func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Element>) throws -> R) rethrows -> R {
        try body(UnsafeMutableBufferPointer(start: base, count: count))
    }
}

/// Huge pages shared by buffers below 2 MiB: each taken whole (2 MiB-aligned, advised), buffers cut
/// from the newest at 64-byte boundaries, and a page freed when its last buffer is (the newest
/// stays for the next). At most one partly used page per run of allocations is wasted.
package final class HugePageArena: Sendable {
    package static let shared = HugePageArena()
    package static let pageBytes = 2 << 20

    private struct Page {
        var used = 0
        var live = 0
    }

    private struct State {
        /// By base address.
        var pages: [UInt: Page] = [:]
        var current: UInt?
    }

    private let state = Mutex(State())

    /// `bytes` (below pageBytes) of memory, 64-byte aligned.
    func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        precondition(bytes < Self.pageBytes)
        let size = max(64, (bytes + 63) / 64 * 64)
        let address: UInt = state.withLock { s in
            if let c = s.current, s.pages[c]!.used + size <= Self.pageBytes {
                let at = c + UInt(s.pages[c]!.used)
                s.pages[c]!.used += size
                s.pages[c]!.live += 1
                return at
            }
            if let c = s.current, s.pages[c]!.live == 0 {
                free(UnsafeMutableRawPointer(bitPattern: c))
                s.pages[c] = nil
            }
            let c = UInt(bitPattern: hugePages(Self.pageBytes))
            s.pages[c] = Page(used: size, live: 1)
            s.current = c
            return c
        }
        return UnsafeMutableRawPointer(bitPattern: address)!
    }

    /// Gives back memory from allocate(bytes:).
    func release(_ pointer: UnsafeMutableRawPointer) {
        let c = UInt(bitPattern: pointer) & ~UInt(Self.pageBytes - 1)
        state.withLock { s in
            guard var page = s.pages[c] else { preconditionFailure("a pointer the huge-page arena did not give") }
            page.live -= 1
            if page.live == 0 && c != s.current {
                free(UnsafeMutableRawPointer(bitPattern: c))
                s.pages[c] = nil
            } else {
                s.pages[c] = page
            }
        }
    }

    /// Pages held now (for tests).
    package var pageCount: Int { state.withLock { $0.pages.count } }
}

/// `size` bytes (a multiple of 2 MiB) aligned to 2 MiB and, on Linux, advised for transparent huge
/// pages (a hint: ignored where THP is off); freed with free().
private func hugePages(_ size: Int) -> UnsafeMutableRawPointer {
    var raw: UnsafeMutableRawPointer?
    guard posix_memalign(&raw, HugePageArena.pageBytes, size) == 0, let raw else {
        fatalError("out of memory allocating \(size) bytes for packed weights")
    }
    #if os(Linux)
        _ = madvise(raw, size, 14)  // MADV_HUGEPAGE
    #endif
    return raw
}
