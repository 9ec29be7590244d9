import Dispatch
import Synchronization

/// Splits rows [0, rows) over `threads` workers (the global Dispatch pool: no thread is created
/// per call) and runs `body` on each contiguous range.
@inline(__always)
func parallelRows(_ rows: Int, threads: Int, _ body: (Int, Int) -> Void) {
    let workers = max(1, min(threads, rows))
    if workers == 1 { body(0, rows); return }
    let chunk = (rows + workers - 1) / workers
    withoutActuallyEscaping(body) { body in
        let box = UncheckedBox(body)
        DispatchQueue.concurrentPerform(iterations: workers) { i in
            let start = i * chunk, end = min(rows, start + chunk)
            if start < end { box.value(start, end) }
        }
    }
}

/// A value handed to concurrent workers that only read it or write disjoint parts of it.
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// A counter workers take work items from.
final class AtomicCounter: Sendable {
    private let value = Atomic<Int>(0)
    /// Returns the value before the increment.
    func increment() -> Int { value.add(1, ordering: .relaxed).oldValue }
}

/// A flag any thread may raise (cancellation, a signal asking to stop).
public final class AtomicFlag: Sendable {
    private let value = Atomic<Bool>(false)
    public init() {}
    public func set() { value.store(true, ordering: .relaxed) }
    public var isSet: Bool { value.load(ordering: .relaxed) }
}
