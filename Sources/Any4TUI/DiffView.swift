import Any4Core
import Foundation

/// The diff of the open model (A) with another (B, `--diff B`), measured in the background tensor
/// by tensor (``ModelDiff``), the selected tensor first; the UI reads snapshots each frame.
public final class DiffCenter: @unchecked Sendable {
    public let diff: ModelDiff
    public let progress: Any4Core.Progress
    private let lock = NSLock()
    private var _results: [String: TensorDifference] = [:]
    private var _priority: String?
    private var _error: String?
    private var running = false
    private let threads: Int

    public init(_ diff: ModelDiff, threads: Int = SystemInfo.processorCount) {
        self.diff = diff
        self.threads = threads
        progress = Any4Core.Progress(total: diff.totalRows, label: "diff")
    }

    public var results: [String: TensorDifference] { lock.withLock { _results } }
    public func result(for name: String) -> TensorDifference? { lock.withLock { _results[name] } }
    public var error: String? { lock.withLock { _error } }
    public var isDone: Bool { lock.withLock { _results.count == diff.pairs.count || _error != nil } }
    public var isRunning: Bool { lock.withLock { running } }

    /// Measures `name` next, when it is still to do (after the tensor being measured).
    public func prioritize(_ name: String?) { lock.withLock { _priority = name } }

    /// Starts the background work (once).
    public func start() {
        let go: Bool = lock.withLock {
            if running || !_results.isEmpty { return false }
            running = true
            return true
        }
        guard go else { return }
        Thread.detachNewThread { [self] in
            defer { lock.withLock { running = false } }
            // The linear layers (what quantization changes) first, in the model's order; then the
            // rest, embeddings and LM head last (the largest: a 128K-token embedding takes seconds).
            func late(_ t: ModelTensor) -> Int {
                t.isLinear && !LayerSelection.isDefaultSkipped(t.name) ? 0 : (t.role == .embedding || t.isLinear ? 2 : 1)
            }
            var order = diff.pairs.indices.sorted { (late(diff.pairs[$0].a), $0) < (late(diff.pairs[$1].a), $1) }
            let index = Dictionary(diff.pairs.enumerated().map { ($1.a.name, $0) }, uniquingKeysWith: { a, _ in a })
            while !order.isEmpty {
                if progress.isCancelled { return }
                // The selected tensor first, else the next in the model's order.
                let wanted = lock.withLock { _priority }.flatMap { index[$0] }
                let position = wanted.flatMap { order.firstIndex(of: $0) } ?? 0
                let i = order.remove(at: position)
                progress.setLabel("diff \(diff.pairs.count - order.count)/\(diff.pairs.count) \(diff.pairs[i].a.name)")
                do {
                    let d = try diff.measure(i, threads: threads, progress: progress)
                    lock.withLock { _results[d.name] = d }
                } catch {
                    if progress.isCancelled { return }
                    lock.withLock { _error = "\(error)" }
                    return
                }
            }
        }
    }

    /// Cancels the work and waits up to `timeout` seconds for it to stop.
    @discardableResult
    public func cancelAndWait(timeout: Double) -> Bool {
        progress.cancel()
        let deadline = Clock.now + timeout
        while isRunning {
            if Clock.now >= deadline { return false }
            Thread.sleep(forTimeInterval: 0.005)
        }
        return true
    }

    /// Measures every tensor on the calling thread (tests).
    public func runToEnd() throws {
        start()
        while !isDone {
            Thread.sleep(forTimeInterval: 0.01)
            if !isRunning && !isDone { break }
        }
        if let error { throw FileFormatError(file: diff.b.path, kind: .io, error) }
    }

    /// The Diff tab's rows: tensors of A in B too, measured ones worst first (lowest SQNR), then
    /// those still measuring in the model's order; then the tensors only A has.
    public func rows() -> [String] {
        let done = results
        let measured = diff.pairs.compactMap { done[$0.a.name] }.sorted(by: TensorDifference.worstFirst).map(\.name)
        let pending = diff.pairs.map(\.a.name).filter { done[$0] == nil }
        return measured + pending + diff.onlyInA.map(\.name)
    }
}

extension Renderer {
    /// The Diff tab's table header line (its rows start below), and the rows its histogram keeps below it.
    static let diffTop = 5
    static func diffHistogramRows(height: Int) -> Int { max(6, min(12, (height - 3 - diffTop) / 2)) }
    static func diffTableHeight(height: Int) -> Int { max(1, height - 3 - diffTop - diffHistogramRows(height: height)) }

    /// The Diff tab: what B is, the progress, the table of tensors by worst SQNR and the
    /// histogram of B − A of the selected tensor.
    func drawDiff(_ s: inout Screen, _ state: AppState, _ center: DiffCenter?, x0: Int, width: Int) {
        let w = width - 2
        guard let center else {
            s.put(3, x0 + 1, "No model to compare: start with --diff B (any4 A --diff B).", .dim, maxWidth: w)
            return
        }
        let diff = center.diff
        let results = center.results
        s.put(2, x0 + 1, "B = \(diff.b.path) · \(diff.b.format.rawValue) · d = B − A, A the signal", .bold, maxWidth: w)
        var summary = "\(results.count)/\(diff.pairs.count) tensors measured"
        let identical = results.values.filter { $0.stats?.identical == true }.count
        summary += " · \(identical) identical"
        if !diff.onlyInA.isEmpty || !diff.onlyInB.isEmpty { summary += " · only in A: \(diff.onlyInA.count), only in B: \(diff.onlyInB.count)" }
        s.put(3, x0 + 1, summary, .dim, maxWidth: w)
        if let error = center.error {
            s.put(4, x0 + 1, "error: \(error)", .bad, maxWidth: w)
        } else if !center.isDone {
            s.put(4, x0 + 1, Self.progressLine(center.progress, label: center.progress.label), .accent, maxWidth: w)
        }
        let top = Self.diffTop + 1
        let height = Self.diffTableHeight(height: s.height)
        let columns: [(String, Int)] = [("SQNR dB", 9), ("rel err", 10), ("max |d|", 10)]
        let nameWidth = max(12, w - columns.reduce(0) { $0 + $1.1 })
        func line(_ name: String, _ cells: [String]) -> String {
            zip(columns, cells).reduce(Formatting.pad(name, nameWidth)) { $0 + Formatting.pad($1.1, $1.0.1, right: true) }
        }
        s.put(top - 1, x0 + 1, line("tensor (worst first)", columns.map(\.0)), .dim, maxWidth: w)
        let rows = state.modelOrder
        let position = state.selectedTensor.flatMap { rows.firstIndex(of: $0.name) }
        let scroll = AppState.modelScroll(state.modelScroll, position: position, count: rows.count, height: height)
        let byName = Dictionary(state.model.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for i in 0..<height {
            let index = scroll + i
            guard index < rows.count else { break }
            let y = top + i
            let name = byName[rows[index]].map { Self.layerLabel($0, width: nameWidth - 1) } ?? rows[index]
            let cells: [String]
            var style: Style = .normal
            if let r = results[rows[index]] {
                if let st = r.stats {
                    cells = [
                        st.identical ? "identical" : Formatting.fixed(st.sqnrDB, 2), Formatting.scientific(st.relativeError, 2),
                        Formatting.scientific(st.maxAbs, 2)
                    ]
                    style = st.identical ? .dim : (st.sqnrDB >= 20 ? .good : (st.sqnrDB >= 14 ? .warn : .bad))
                } else {
                    cells = [r.problem ?? "", "", ""]
                    style = .warn
                }
            } else if diff.onlyInA.contains(where: { $0.name == rows[index] }) {
                cells = ["only in A", "", ""]
                style = .dim
            } else {
                cells = ["…", "", ""]
                style = .dim
            }
            s.put(y, x0 + 1, line(name, cells), style, maxWidth: w)
            if index == position { s.highlight(y, from: x0 + 1, to: x0 + 1 + w, state.focus == .detail ? .reverse : .bold) }
        }
        drawDiffHistogram(&s, state, results, x0: x0, width: width, top: top + height)
    }

    /// The histogram of B − A of the selected tensor: heights on a log scale (the tails show
    /// beside the peak at 0), ±range below, and the quantiles of |B − A|.
    func drawDiffHistogram(_ s: inout Screen, _ state: AppState, _ results: [String: TensorDifference], x0: Int, width: Int, top: Int) {
        let w = width - 2
        let bottom = s.height - 3
        guard let tensor = state.selectedTensor else {
            s.put(top, x0 + 1, "Select a tensor to see its histogram of differences.", .dim, maxWidth: w)
            return
        }
        guard let r = results[tensor.name], let st = r.stats else {
            let why = results[tensor.name]?.problem ?? "not measured yet"
            s.put(top, x0 + 1, "\(tensor.name): \(why)", .dim, maxWidth: w)
            return
        }
        let h = st.histogram
        let q = [0.5, 0.99, 0.999].map { h.quantile($0).map { Formatting.scientific($0, 2) } ?? "-" }
        s.put(top, x0 + 1, "\(tensor.name) · \(r.encodingA) → \(r.encodingB)", .bold, maxWidth: w)
        guard !st.identical else {
            s.put(top + 1, x0 + 1, "identical: every difference is 0 (\(Formatting.count(st.elements)) values)", .good, maxWidth: w)
            return
        }
        s.put(top + 1, x0 + 1, "|d| p50 \(q[0])  p99 \(q[1])  p99.9 \(q[2])  max \(Formatting.scientific(st.maxAbs, 2))", .normal, maxWidth: w)
        // Bins summed to fit the pane (64, 32 or 16 columns).
        var per = 1
        while DifferenceHistogram.bins / per > w - 2 && per < DifferenceHistogram.bins { per *= 2 }
        let columns = DifferenceHistogram.bins / per
        let sums = (0..<columns).map { i in h.counts[(i * per)..<((i + 1) * per)].reduce(0, +) }
        let plotTop = top + 2, plotHeight = max(2, bottom - plotTop - 1)
        let peak = log1p(Double(sums.max() ?? 0))
        let levels = sums.map { c in c > 0 && peak > 0 ? max(1, Int((log1p(Double(c)) / peak * Double(plotHeight * 8)).rounded())) : 0 }
        drawBars(&s, levels, top: plotTop, height: plotHeight, x: x0 + 2)
        let axis = plotTop + plotHeight
        let low = Formatting.scientific(-h.range, 1), high = Formatting.scientific(h.range, 1)
        s.put(axis, x0 + 2, low, .dim)
        s.put(axis, x0 + 2 + columns / 2, "0", .dim)
        s.put(axis, x0 + 2 + columns - high.count, high, .dim)
        s.put(axis, x0 + 4 + columns, "log counts", .dim, maxWidth: max(0, w - columns - 3))
    }
}
