import Any4Core
import CAny4Kernels

/// A STREAM-triad-like probe, a[i] = b[i] + s·c[i], over arrays far larger than the last-level
/// cache, on `threads` threads: the memory bandwidth a streaming kernel can hope for.
public enum BandwidthProbe {
    /// Best-of-`repeats` bandwidth in GB/s, counting 12 bytes per element (two reads, one write).
    public static func triadGBps(threads: Int, elements: Int = 32 << 20, repeats: Int = 5) -> Double {
        let a = UnsafeMutableBufferPointer<Float>.allocate(capacity: elements)
        let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: elements)
        let c = UnsafeMutableBufferPointer<Float>.allocate(capacity: elements)
        defer {
            a.deallocate()
            b.deallocate()
            c.deallocate()
        }
        let ptrs = UncheckedBox((a.baseAddress!, b.baseAddress!, c.baseAddress!))
        // First touch on the threads that will stream (pages land near them).
        parallelRows(elements, threads: threads) { s, e in
            let (a, b, c) = ptrs.value
            for i in s..<e {
                a[i] = 0
                b[i] = 1
                c[i] = 2
            }
        }
        var best = Double.infinity
        for _ in 0..<repeats {
            let t0 = Clock.now
            parallelRows(elements, threads: threads) { s, e in
                let (a, b, c) = ptrs.value
                any4_triad(a, b, c, 3, s, e)
            }
            best = min(best, Clock.now - t0)
        }
        return Double(elements * 12) / best / 1e9
    }
}
