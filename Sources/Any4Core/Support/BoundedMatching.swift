import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Regular expressions from the command line (`--layers`, `--skip`, `inspect --filter`) matched
/// against tensor names with a time bound.
///
/// Swift's `Regex` backtracks: a pattern such as `(a+)+$` takes exponential time on a long name
/// that almost matches, and a safetensors name can be thousands of characters long. The names are
/// matched one after the other on a worker thread while the caller watches the clock; a single
/// name that takes longer than `limit` seconds ends the wait with ``PatternTimeout``. (Swift
/// cannot interrupt a match: the worker stops at the next name, but the match that ran over is
/// left to finish or to end with the process, which the command line does at once.)
public enum BoundedMatching {
    /// The default bound per name, in seconds.
    public static let defaultLimit = 2.0

    /// Whether each of `names` contains a match of `regex`.
    public static func matches(
        _ regex: Regex<AnyRegexOutput>, in names: [String],
        limit: Double = defaultLimit
    ) throws(PatternTimeout) -> [Bool] {
        guard !names.isEmpty else { return [] }
        let work = MatchWork(regex: regex, names: names)
        // A thread of its own, not Dispatch's pool: a match that never ends must not hold one of
        // the pool's few threads (as many as cores) that the quantizer's loops wait on.
        var thread = pthread_t()
        let context = Unmanaged.passRetained(work).toOpaque()
        let created = pthread_create(
            &thread, nil,
            { raw in
                let work = Unmanaged<MatchWork>.fromOpaque(raw!).takeRetainedValue()
                work.run()
                work.finished.signal()
                return nil
            }, context)
        if created == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<MatchWork>.fromOpaque(context).release()
            work.run()  // no thread to be had: match here, unbounded
            return work.results
        }
        var seen = 0
        var since = Clock.now
        while work.finished.wait(timeout: .now() + .milliseconds(10)) == .timedOut {
            let done = work.done.load(ordering: .acquiring)
            let now = Clock.now
            if done != seen {
                seen = done
                since = now
            } else if now - since > limit {
                work.stop.set()
                throw PatternTimeout(name: names[done], seconds: limit)
            }
        }
        return work.results
    }
}

/// A pattern that ran longer than the bound against one name.
public struct PatternTimeout: Error, Sendable, Equatable, CustomStringConvertible {
    /// The name it was matching.
    public var name: String
    /// The bound it exceeded, in seconds.
    public var seconds: Double
    /// Which pattern of a ``LayerSelection`` ran over: `include` or `skip` (empty otherwise).
    public var which = ""

    public init(name: String, seconds: Double, which: String = "") {
        self.name = name
        self.seconds = seconds
        self.which = which
    }

    /// The name as a message shows it: quoted, cut to 40 characters, with its length when cut.
    public var shownName: String {
        name.count <= 40 ? "\"\(name)\"" : "\"\(name.prefix(40))…\" (\(name.count) characters)"
    }

    public var description: String {
        "took longer than \(Formatting.fixed(seconds, seconds == seconds.rounded() ? 0 : 1)) s against \(shownName); simplify it"
    }
}

/// The matching thread's state: it writes `results[i]` and then publishes `done = i + 1`; the
/// caller reads `results` only after the thread signals `finished`.
private final class MatchWork: @unchecked Sendable {
    let regex: Regex<AnyRegexOutput>
    let names: [String]
    var results: [Bool]
    let done = Atomic<Int>(0)
    let stop = AtomicFlag()
    let finished = DispatchSemaphore(value: 0)

    init(regex: Regex<AnyRegexOutput>, names: [String]) {
        self.regex = regex
        self.names = names
        results = [Bool](repeating: false, count: names.count)
    }

    func run() {
        for i in names.indices {
            if stop.isSet { return }
            results[i] = names[i].contains(regex)
            done.store(i + 1, ordering: .releasing)
        }
    }
}
