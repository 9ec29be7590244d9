import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Progress of a long job (quantize, calibrate, bench, perplexity), shared between the worker
/// threads that advance it and the UI or CLI that shows it; cancelling it asks the job to stop.
public final class Progress: Sendable {
    private let state: Mutex<State>
    private let cancelled = Atomic<Bool>(false)
    /// A job this one is part of: cancelling it cancels this one too.
    private let parent: Progress?

    struct State {
        var completed = 0
        var total: Int
        var label: String
        /// When the job (or, after ``Progress/reset(total:label:)``, its current phase) started.
        var started = Clock.now
    }

    /// What each step of this job counts for in its parent's (0: the counts stay apart).
    private let forwarding: Int

    /// - Parameters:
    ///   - parent: the enclosing job, whose cancellation this one sees (its own counts stay apart,
    ///     as when a benchmark quantizes a matrix as one step of a case),
    ///   - forwarding: unless 0, each step also advances `parent` by this much (a layer's rows
    ///     counted as its weights in a whole run's progress, so that its ETA weighs wide rows more).
    public init(total: Int, label: String = "", parent: Progress? = nil, forwarding: Int = 0) {
        state = Mutex(State(total: total, label: label))
        self.parent = parent
        self.forwarding = forwarding
    }

    public func advance(by amount: Int = 1) {
        state.withLock { $0.completed += amount }
        if forwarding != 0 { parent?.advance(by: amount * forwarding) }
    }

    /// Starts a new phase: counts, label and the clock of ``elapsed`` (so the ETA is the phase's).
    public func reset(total: Int, label: String) {
        state.withLock { $0 = State(total: total, label: label) }
    }

    public func setLabel(_ label: String) { state.withLock { $0.label = label } }
    public func addToTotal(_ amount: Int) { state.withLock { $0.total += amount } }

    public var completed: Int { state.withLock { $0.completed } }
    public var total: Int { state.withLock { $0.total } }
    public var label: String { state.withLock { $0.label } }
    public var fraction: Double {
        state.withLock { $0.total > 0 ? min(1, Double($0.completed) / Double($0.total)) : 0 }
    }
    /// Seconds since the job (or its current phase) started.
    public var elapsed: Double { Clock.now - state.withLock { $0.started } }
    /// Estimated seconds left, from the rate so far (nil before any progress).
    public var remaining: Double? {
        let f = fraction
        return f > 0 ? elapsed * (1 - f) / f : nil
    }

    public func cancel() { cancelled.store(true, ordering: .relaxed) }
    public var isCancelled: Bool { cancelled.load(ordering: .relaxed) || parent?.isCancelled == true }
}

/// A monotonic clock in seconds.
public enum Clock {
    public static var now: Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }
}

public enum SystemInfo {
    /// Online processors.
    public static var processorCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}
