import CAny4Support
import Dispatch
import Synchronization

/// Splits rows [0, rows) over `threads` workers and runs `body` on each contiguous range: on the
/// persistent worker pool (workers spin between the many short calls of a decode step), or on
/// the global Dispatch pool when another thread's job holds it. No thread is created per call.
@inline(__always)
package func parallelRows(_ rows: Int, threads: Int, _ body: (Int, Int) -> Void) {
    let workers = max(1, min(threads, rows))
    if workers == 1 {
        body(0, rows)
        return
    }
    // Loops of 128 rows or more per worker are cut into 4 tasks per worker, claimed as workers
    // free up, so a worker that starts late (woken from sleep) or that the machine slows down (a
    // busy neighbour, an interrupt) does not hold up the others: the layers of a small model's
    // decode step (576-1536 rows) are such loops. Only when the loop may use every core: the pool
    // hands tasks to all its threads.
    let everyCore = workers > Int(any4_pool_workers())
    let tasks = everyCore && rows >= 128 * workers ? 4 * workers : workers
    let chunk = (rows + tasks - 1) / tasks
    withoutActuallyEscaping(body) { body in
        var job = ParallelJob(body: body, rows: rows, chunk: chunk)
        let ran = withUnsafeMutablePointer(to: &job) { p in
            any4_pool_run(
                Int32(tasks),
                { raw, i in
                    let job = raw!.assumingMemoryBound(to: ParallelJob.self)
                    let start = Int(i) * job.pointee.chunk, end = min(job.pointee.rows, start + job.pointee.chunk)
                    if start < end { job.pointee.body(start, end) }
                }, p)
        }
        if ran == 0 {
            let box = UncheckedBox(body)
            DispatchQueue.concurrentPerform(iterations: tasks) { i in
                let start = i * chunk, end = min(rows, start + chunk)
                if start < end { box.value(start, end) }
            }
        }
    }
}

private struct ParallelJob {
    let body: (Int, Int) -> Void
    let rows: Int
    let chunk: Int
}

/// A value handed to concurrent workers that only read it or write disjoint parts of it.
package struct UncheckedBox<T>: @unchecked Sendable {
    package let value: T
    package init(_ value: T) { self.value = value }
}

/// A counter workers take work items from.
package final class AtomicCounter: Sendable {
    private let value = Atomic<Int>(0)
    package init() {}
    /// Returns the value before the increment.
    package func increment() -> Int { value.add(1, ordering: .relaxed).oldValue }
}

/// A flag any thread may raise (cancellation, a signal asking to stop).
public final class AtomicFlag: Sendable {
    private let value = Atomic<Bool>(false)
    public init() {}
    public func set() { value.store(true, ordering: .relaxed) }
    public var isSet: Bool { value.load(ordering: .relaxed) }
}
