import Any4Core
import Dispatch
import Foundation
import XCTest

/// The shared-state code that worker threads run, hammered from many threads. A data race here
/// may pass unnoticed in a plain build; `scripts/tsan-stress.sh` runs these tests under Thread
/// Sanitizer, which reports it.
final class ConcurrencyTests: XCTestCase {
    /// How long a stress loop runs: 3 s, or `ANY4_STRESS_SECONDS` (the TSan script asks for more).
    static let stressSeconds = Double(ProcessInfo.processInfo.environment["ANY4_STRESS_SECONDS"] ?? "") ?? 3

    /// Every row of every `parallelRows` call runs exactly once, and only before the call returns,
    /// while back-to-back calls change their task count (the persistent pool hands one job over
    /// to the next; a worker finishing the last task of one call must not take part in the next
    /// call's tasks with the old call's count). Before the pool's fix this failed or crashed
    /// (SIGSEGV: a task still running after its call returned) within about 2 M calls on 2 cores.
    func testParallelRowsRunsEveryRowOnceAcrossBackToBackJobs() {
        let rows = 64
        let counts = UnsafeMutableBufferPointer<Int32>.allocate(capacity: rows)
        defer { counts.deallocate() }
        counts.initialize(repeating: 0)
        let box = UncheckedBox(counts)
        var rng = SplitMix64(seed: 1)
        var failures = 0
        let deadline = Clock.now + Self.stressSeconds
        var call = 0
        while call % 1000 != 0 || Clock.now < deadline {
            call += 1
            // 1-16 threads: 1 to 16 tasks, a different count from one call to the next.
            parallelRows(rows, threads: 1 + Int(rng.next() % 16)) { start, end in
                for r in start..<end { box.value[r] &+= 1 }
            }
            if counts.contains(where: { $0 != Int32(truncatingIfNeeded: call) }) {
                failures += 1
                for r in 0..<rows { counts[r] = Int32(truncatingIfNeeded: call) }
            }
        }
        XCTAssertEqual(failures, 0, "calls in which a row ran twice or never (of \(call))")
    }

    /// Two threads calling at once: one gets the pool, the other runs its loop on Dispatch.
    func testParallelRowsFromTwoThreadsAtOnce() {
        let failures = AtomicCounter()
        DispatchQueue.concurrentPerform(iterations: 2) { caller in
            let counts = UnsafeMutableBufferPointer<Int32>.allocate(capacity: 4096)
            defer { counts.deallocate() }
            let box = UncheckedBox(counts)
            var rng = SplitMix64(seed: UInt64(caller) + 1)
            let deadline = Clock.now + Self.stressSeconds / 2
            while Clock.now < deadline {
                let rows = 1 + Int(rng.next() % 4096)
                counts.initialize(repeating: 0)
                parallelRows(rows, threads: 1 + Int(rng.next() % 8)) { start, end in
                    for r in start..<end { box.value[r] &+= 1 }
                }
                if counts[0..<rows].contains(where: { $0 != 1 }) || counts[rows...].contains(where: { $0 != 0 }) {
                    _ = failures.increment()
                }
            }
        }
        XCTAssertEqual(failures.increment(), 0, "calls in which a row ran twice, never, or outside the call's rows")
    }

    /// The output error of one call, from many calls on several threads at once, equals the one
    /// computed alone. Its workers write one slot per row; with the slots in a Swift array inside
    /// a shared object (before), tiny rows made the writes collide and the run crashed
    /// ("double free or corruption", SIGILL) or lost rows.
    func testOutputRelativeErrorFromManyThreadsAtOnce() {
        let rows = 4096, cols = 2
        var rng = SplitMix64(seed: 7)
        let original = (0..<(rows * cols)).map { _ in Float(rng.nextGaussian()) }
        let approximation = original.map { $0 + Float(rng.nextGaussian()) * 0.01 }
        let x = ErrorMetrics.gaussianActivations(m: 1, cols: cols)
        let alone = ErrorMetrics.outputRelativeError(original: original, approximation: approximation, rows: rows, cols: cols, activations: x)
        XCTAssertGreaterThan(alone, 0)
        let mismatches = AtomicCounter(), calls = AtomicCounter()
        let deadline = Clock.now + Self.stressSeconds / 2
        // Callers on queue threads, as the UI's jobs are (a call nested in concurrentPerform
        // would run its own loop serially).
        let group = DispatchGroup()
        for _ in 0..<3 {
            DispatchQueue.global().async(group: group) {
                while Clock.now < deadline {
                    _ = calls.increment()
                    let e = ErrorMetrics.outputRelativeError(original: original, approximation: approximation, rows: rows, cols: cols, activations: x)
                    if e != alone { _ = mismatches.increment() }
                }
            }
        }
        group.wait()
        XCTAssertEqual(mismatches.increment(), 0, "results that differ from the single-call result (of \(calls.increment()) calls)")
    }

    /// Progress advanced from many threads at once (the quantizer's workers at the end of each
    /// chunk) counts every step. Its lock is contended here, which under TSan shows the false
    /// positive that scripts/tsan.supp explains.
    func testProgressAdvancedFromManyThreadsCountsEveryStep() {
        let progress = Progress(total: 8 * 20_000)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<20_000 { progress.advance() }
        }
        XCTAssertEqual(progress.completed, 8 * 20_000)
        XCTAssertEqual(progress.fraction, 1)
    }

    /// A layer's progress forwarding each row as its weights: the run's progress counts weights
    /// (also when taken back, as the quantizer does before an F32 retry), and cancelling the run
    /// cancels the layer.
    func testForwardedProgressCountsWeightsInTheParent() {
        let run = Progress(total: 10 * 64 + 40 * 16)
        let wide = Progress(total: 10, parent: run, forwarding: 64)
        DispatchQueue.concurrentPerform(iterations: 10) { _ in wide.advance() }
        XCTAssertEqual(wide.completed, 10)
        XCTAssertEqual(run.completed, 640)
        let narrow = Progress(total: 40, parent: run, forwarding: 16)
        narrow.advance(by: 20)
        narrow.advance(by: -20)
        narrow.advance(by: 40)
        XCTAssertEqual(run.completed, 640 + 640)
        XCTAssertEqual(run.fraction, 1)
        XCTAssertFalse(narrow.isCancelled)
        run.cancel()
        XCTAssertTrue(narrow.isCancelled)
    }

    /// Buffers below 2 MiB share huge pages: each is 64-byte aligned, keeps its own values while
    /// others are made and freed (from several threads at once), many fit one page, and a page is
    /// given back when its last buffer goes (the newest page stays for the next one).
    func testSmallHugePageBuffersSharePagesAndGiveThemBack() {
        let before = HugePageArena.shared.pageCount
        var buffers: [HugePageBuffer<UInt32>] = []
        for i in 0..<64 {
            let b = HugePageBuffer<UInt32>(repeating: UInt32(i), count: 1000 + 37 * i)  // 4-13 KB each
            b.withUnsafeBufferPointer { XCTAssertEqual(Int(bitPattern: $0.baseAddress!) % 64, 0) }
            buffers.append(b)
        }
        // 64 buffers of at most 13 KB: one or two new pages, not 64.
        XCTAssertLessThanOrEqual(HugePageArena.shared.pageCount - before, 2)
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for j in 0..<200 {
                let b = HugePageBuffer<UInt8>(repeating: UInt8(t), count: 300 + 4096 * (j % 7))
                b.withUnsafeBufferPointer { p in XCTAssertTrue(p.allSatisfy { $0 == UInt8(t) }) }
            }
        }
        for (i, b) in buffers.enumerated() {
            b.withUnsafeBufferPointer { p in
                XCTAssertEqual(p.count, 1000 + 37 * i)
                XCTAssertTrue(p.allSatisfy { $0 == UInt32(i) }, "buffer \(i) was overwritten")
            }
        }
        // Large enough to need pages of their own: 1.5 MiB each, a new page for each.
        var big = (0..<3).map { _ in HugePageBuffer<UInt8>(repeating: 1, count: 3 << 19) }
        XCTAssertGreaterThanOrEqual(HugePageArena.shared.pageCount - before, 3)
        buffers = []
        big = []
        XCTAssertTrue(big.isEmpty)
        // Every page whose buffers are gone is freed; only the newest may stay.
        XCTAssertLessThanOrEqual(HugePageArena.shared.pageCount - before, 1)
    }
}
