import Any4Core
import Any4Inference
import ArgumentParser
import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The signals that cancel a job: Ctrl-C, `kill`, and the terminal going away.
let cancellingSignals = [SIGINT, SIGTERM, SIGHUP]

/// Turns SIGINT, SIGTERM and SIGHUP into a cancellation of `progress` while `body` runs, so that
/// long work, the final write included, stops cleanly (and writes no output file) instead of dying
/// half-way. Outside such jobs the signals keep their default action (the process ends).
func cancellingOnInterrupt<T>(_ progress: Progress, _ body: () throws -> T) rethrows -> T {
    let router = InterruptRouter.shared
    router.push(progress)
    defer { router.pop(progress) }
    return try body()
}

/// The process's one set of Dispatch signal sources for SIGINT, SIGTERM and SIGHUP, made on the
/// first job and kept: each signal cancels the jobs running at the time, or, when none is, ends the
/// process with the signal's default action. (Cancelling the sources after a job and making new ones
/// for the next lost the signal on Linux: a command that loaded a model in one job and then
/// quantized, calibrated or wrote in another ignored Ctrl-C in the second.)
final class InterruptRouter: @unchecked Sendable {
    static let shared = InterruptRouter()

    private let jobs = Mutex<[Progress]>([])
    private var sources: [DispatchSourceSignal] = []

    private init() {
        let queue = DispatchQueue(label: "any4.signals")
        for sig in cancellingSignals {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            source.setEventHandler { [unowned self] in self.deliver(sig) }
            source.resume()
            sources.append(source)
        }
    }

    private func deliver(_ sig: Int32) {
        let running = jobs.withLock { $0 }
        guard running.isEmpty else {
            for progress in running { progress.cancel() }
            return
        }
        // No job to stop: the default action, as if no handler had been installed (unblocked here:
        // Dispatch may block the signal in its own threads).
        signal(sig, SIG_DFL)
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, sig)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        raise(sig)
        _exit(128 + sig)
    }

    func push(_ progress: Progress) { jobs.withLock { $0.append(progress) } }

    func pop(_ progress: Progress) {
        jobs.withLock { jobs in
            if let i = jobs.lastIndex(where: { $0 === progress }) { jobs.remove(at: i) }
        }
    }
}

/// Runs a long job with a progress line on stderr, cancelled by Ctrl-C, and maps its errors to the
/// CLI's exits: interrupted → 130 (saying `interrupted`), bad options or weights → 2, bad files → 2.
func runProgressJob<T>(
    _ progress: Progress, interrupted: @autoclosure () -> String, unit: String = "rows", _ body: () throws -> T
) throws -> T {
    let line = ProgressLine(progress, unit: unit)
    line.start()
    defer { line.stop() }
    do {
        return try cancellingOnInterrupt(progress, body)
    } catch QuantizationError.cancelled {
        line.stop()
        printError("any4: \(interrupted())")
        throw ExitCode(130)
    } catch let error as QuantizationError {
        line.stop()
        throw usageError("\(error)")
    } catch let error as FileFormatError {
        line.stop()
        printError("any4: error: \(error)")
        throw ExitCode(2)
    } catch let error as InferenceError {
        line.stop()
        throw usageError("\(error)")
    } catch let error as SizeError {
        line.stop()
        throw usageError("\(error)")
    }
}

/// A one-line progress display on stderr, only when stderr is a terminal.
final class ProgressLine: @unchecked Sendable {
    let progress: Progress
    private let enabled = isatty(2) == 1
    private var timer: DispatchSourceTimer?

    /// What `progress` counts, for the rate shown once the total is in thousands.
    let unit: String

    init(_ progress: Progress, unit: String = "rows") {
        self.progress = progress
        self.unit = unit
    }

    func start() {
        guard enabled else { return }
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "any4.progress"))
        timer.schedule(deadline: .now(), repeating: .milliseconds(200))
        timer.setEventHandler { [weak self] in self?.draw() }
        timer.resume()
        self.timer = timer
    }

    func draw() {
        let p = progress
        let rate = p.elapsed > 0 ? Double(p.completed) / p.elapsed : 0
        // Quantization counts rows (thousands); perplexity, calibration and embedding count
        // windows, blocks or sentences, shown as done/total.
        // A checkpoint being written counts bytes.
        let count =
            p.label.hasPrefix("writing ")
            ? "\(Formatting.bytes(p.completed)) of \(Formatting.bytes(p.total))"
            : p.total >= 1000 ? "\(Formatting.count(Int(rate))) \(unit)/s" : "\(p.completed)/\(p.total)"
        var line = "\r\u{1B}[K\(p.label) \(Formatting.fixed(100 * p.fraction, 1))% · \(count)"
        if let eta = p.remaining { line += " · ETA \(Formatting.fixed(eta, 0)) s" }
        var err = StandardError()
        print(line, terminator: "", to: &err)
    }

    func stop() {
        timer?.cancel()
        timer = nil
        if enabled {
            var err = StandardError()
            print("\r\u{1B}[K", terminator: "", to: &err)
        }
    }
}
