import Any4Core

/// Everything a frame shows, drawn into a ``Screen``.
public struct Renderer: Sendable {
    public var ascii: Bool
    public static let minimumWidth = 80
    public static let minimumHeight = 24

    public init(ascii: Bool) { self.ascii = ascii }

    /// Updates the layout facts the reducer uses (tree height, pane width) for a terminal size.
    public static func layout(_ state: inout AppState, width: Int, height: Int) {
        state.treeWidth = min(46, max(28, width / 3))
        state.treeTop = 2
        state.treeHeight = max(1, height - 4)
        if state.tab == .diff {
            state.modelTop = diffTop + 1
            state.modelHeight = diffTableHeight(height: height)
        } else {
            state.modelTop = modelTop(state)
            state.modelHeight = max(1, height - 3 - state.modelTop)
        }
        state.clampSelection()
        state.clampModelScroll()
    }

    public func render(
        _ state: AppState, jobs: JobCenter, kernel: KernelRunner, histograms: HistogramCache,
        diff: DiffCenter? = nil, width: Int, height: Int
    ) -> Screen {
        var s = Screen(width: width, height: height)
        guard width >= Self.minimumWidth, height >= Self.minimumHeight else {
            let lines = [
                "terminal too small", "\(width)x\(height), need at least \(Self.minimumWidth)x\(Self.minimumHeight)",
                "enlarge the window, or press q to quit"
            ]
            for (i, line) in lines.enumerated() {
                s.put(height / 2 - 1 + i, max(0, (width - line.count) / 2), line, i == 0 ? .bad : .normal)
            }
            return s
        }
        drawTitle(&s, state)
        drawTree(&s, state, jobs)
        let x0 = state.treeWidth + 1
        let paneWidth = width - x0
        // The divider, but not through a recipe path being typed (it takes the whole line).
        for row in 2..<(height - 1) where !(row == height - 2 && state.recipePrompt != nil) {
            s.put(row, state.treeWidth, ascii ? "|" : "│", .dim)
        }
        if state.showHelp {
            for row in 2..<(height - 1) { s.clear(row, from: 0, to: width) }
            drawHelp(&s, x0: 0, width: width)
        } else {
            switch state.tab {
            case .histogram: drawHistogram(&s, state, histograms, x0: x0, width: paneWidth)
            case .quantize: drawQuantize(&s, state, jobs, x0: x0, width: paneWidth)
            case .kernel: drawKernel(&s, state, kernel, x0: x0, width: paneWidth)
            case .model: drawModel(&s, state, jobs, x0: x0, width: paneWidth)
            case .diff: drawDiff(&s, state, diff, x0: x0, width: paneWidth)
            }
        }
        drawStatus(&s, state, jobs)
        if ascii { s.transliterateToASCII() }
        return s
    }

    // MARK: - Frame

    func drawTitle(_ s: inout Screen, _ state: AppState) {
        let m = state.model
        let name = m.format == .demo ? "synthetic demo" : m.path
        let title = " any4 explorer · \(name) · \(m.format.rawValue) · \(m.tensors.count) tensors · \(Formatting.count(m.parameterCount)) params "
        s.put(0, 0, title, .title)
        s.highlight(0, from: 0, to: s.width, .title)
        var x = 0
        for tab in state.tabs {
            let label = " \(tab.rawValue + 1) \(tab.title) "
            s.put(1, x, label, tab == state.tab ? (state.focus == .detail ? .reverse : .bold) : .dim)
            x += label.count + 1
        }
    }

    func drawTree(_ s: inout Screen, _ state: AppState, _ jobs: JobCenter) {
        let rows = state.visibleRows
        let width = state.treeWidth
        for i in 0..<state.treeHeight {
            let index = state.scroll + i
            guard index < rows.count else { break }
            let y = state.treeTop + i
            var text: String
            var style: Style = .normal
            switch rows[index] {
            case .block(let b):
                let block = state.blocks[b]
                let open = state.expanded.contains(b) || !state.filter.isEmpty
                text = (open ? (ascii ? "v " : "▾ ") : (ascii ? "> " : "▸ ")) + (block.name ?? "(outside blocks)")
                text += "  " + Formatting.count(block.parameters)
                style = .bold
            case .tensor(let t):
                let tensor = state.model.tensors[t]
                let shortName = tensor.block.map { String(tensor.name.dropFirst($0.count + 1)) } ?? tensor.name
                text = "  " + shortName
                if let r = jobs.result(for: tensor.name) {
                    // The state comes before the shape so a narrow pane cuts the shape first.
                    text += " \(r.format) \(Formatting.fixed(r.bitsPerWeight, 2))b \(Formatting.fixed(r.metrics.sqnrDB, 1))dB"
                    style = r.metrics.sqnrDB >= 20 ? .good : (r.metrics.sqnrDB >= 14 ? .warn : .bad)
                } else if let layout = tensor.info.encoding.quantizedLayout {
                    // A checkpoint's quantized layer, as stored.
                    text += " \(layout.format) \(Formatting.fixed(layout.bitsPerElement, 2))b"
                } else if !tensor.isLinear {
                    style = .dim
                }
                text += " " + Formatting.shape(tensor.shape)
            }
            s.put(y, 0, text, style, maxWidth: width)
            if index == state.selection {
                s.highlight(y, from: 0, to: width, state.focus == .layers ? .reverse : .bold)
            }
        }
        if let typed = state.recipePrompt {
            // The whole line: a path is long (the status waits while it is typed).
            s.put(s.height - 2, 0, "recipe: " + typed + "_", .accent)
        } else if let digits = state.rowJump {
            s.put(s.height - 2, 0, "go to row: " + digits + "_", .accent, maxWidth: width)
        } else if state.filtering || !state.filter.isEmpty {
            s.put(s.height - 2, 0, "/" + state.filter + (state.filtering ? "_" : ""), .accent, maxWidth: width)
        }
    }

    func drawStatus(_ s: inout Screen, _ state: AppState, _ jobs: JobCenter) {
        let y = s.height - 1
        // The tab's own keys first: a narrow terminal cuts the common ones (? lists them all).
        var keys: String
        switch state.tab {
        case .histogram: keys = "[ ] g row  r row/all  s scaled/raw  i grid  + - zoom"
        case .quantize: keys = "f format  g group  m method  p weights  Enter run  c compare  Esc cancel"
        case .kernel: keys = "b/B batch  space pause"
        case .model:
            keys =
                state.recipe == nil
                ? "a quantize all  w write  e export  o sort  L load recipe"
                : "[ ] choice  + - budget  r re-solve  S save  L load  a quantize  w write  o sort"
        case .diff: keys = "Tab to the table  ↑↓ walk it (worst first)"
        }
        keys += "  │ q quit  ? help  Tab pane  1-\(state.tabs.count) tabs  / filter  ↑↓ move  Enter open"
        if ascii { keys = keys.replacingOccurrences(of: "↑↓", with: "up/down") }
        s.put(y, 0, keys, .dim)
        if state.recipePrompt != nil {
            // The prompt has the line.
        } else if !state.status.isEmpty {
            s.put(
                s.height - 2, state.treeWidth + 2, state.status, state.confirmingQuit ? .warn : .accent,
                maxWidth: s.width - state.treeWidth - 2)
        } else if let job = jobs.job {
            var text: String
            if let error = job.error {
                text = "error: \(error)"
            } else if job.done {
                text = (job.finishedAt.map { Clock.now - $0 < 5 } ?? true) ? "done: \(job.label)" : ""
                // Then the model's evaluation of what the job changed, while it runs.
                if jobs.evaluator?.isBusy == true, let (line, _) = Self.evaluationState(jobs) {
                    text = text.isEmpty ? line : text + " · " + line
                }
            } else {
                // The job's label names what runs now (the format being compared, the layer).
                let label = job.progress.label.isEmpty ? job.label : job.progress.label
                text = Self.progressLine(job.progress, label: label)
            }
            let style: Style = job.error != nil ? .bad : (job.done ? .good : .accent)
            s.put(s.height - 2, state.treeWidth + 2, text, style, maxWidth: s.width - state.treeWidth - 2)
        }
    }

    /// A running job's status: the figures first (they move every step: rows, not whole percents,
    /// so a slow format still shows progress), then what runs.
    static func progressLine(_ progress: Any4Core.Progress, label: String) -> String {
        let eta = progress.remaining.map { " · ~\(Formatting.fixed($0, 0)) s left" } ?? ""
        return "\(Formatting.fixed(100 * progress.fraction, 1))% · \(progress.completed)/\(progress.total) rows\(eta) · \(label)"
    }

    func drawHelp(_ s: inout Screen, x0: Int, width: Int) {
        let lines = [
            "Keys", "",
            "↑ ↓ j k        move in the layer tree   PgUp PgDn Home End",
            "→ l Enter      open a block / focus the tensor;  ← h  close the block",
            "Tab Shift-Tab  switch pane              1 2 3 4 (5)  switch tab",
            "/              filter layers by name    Esc  clear, cancel a job",
            "Histogram      [ ] row, g go to row, r row/whole tensor, s scaled/raw",
            "               i \(ReferenceGrid.all.map(\.name).joined(separator: "/")) grid, + - zoom",
            "Quantize       f format, g group, m Lloyd/exact, p sample weights,",
            "               Enter run, c compare all formats",
            "Kernel         b B batch size, space pause",
            "Model          a quantize all (per the recipe if one is open), w write",
            "               checkpoint, e export, o sort, L load a recipe (any4 plan);",
            "               model KL, ppl (cosine: encoders) per layer alone, after each job",
            "               recipe: [ ] the layer's choice, + - budget, r re-solve, S save",
            "               Tab to the table: ↑ ↓ PgUp PgDn walk its rows (Diff tab too)",
            "Diff           (--diff B) tensors vs B's, worst SQNR first; B − A histogram",
            "Mouse          click a layer (tree or Model table), wheel scrolls",
            "q              quit (asks when quantized layers are unsaved)",
            "Any key closes this help."
        ]
        for (i, line) in lines.enumerated() {
            s.put(
                3 + i, x0 + 1,
                ascii
                    ? line.replacingOccurrences(of: "↑ ↓", with: "up dn").replacingOccurrences(of: "→", with: ">").replacingOccurrences(
                        of: "←", with: "<") : line,
                i == 0 ? .bold : .normal, maxWidth: width - 2)
        }
    }

    // MARK: - Histogram

    package static let eighths: [Character] = [" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]

    /// Bars in eighth blocks, bottom-aligned in rows top..<top+height: column x+i filled to
    /// `levels[i]` eighths of a row (at most height · 8).
    func drawBars(_ s: inout Screen, _ levels: [Int], top: Int, height: Int, x: Int) {
        for (i, level) in levels.enumerated() {
            for r in 0..<height {
                let fill = min(max(level - (height - 1 - r) * 8, 0), 8)
                guard fill > 0 else { continue }
                let ch: Character = ascii ? (fill >= 4 ? "#" : ".") : Self.eighths[fill]
                s.put(top + r, x + i, String(ch), .accent)
            }
        }
    }

    func drawHistogram(_ s: inout Screen, _ state: AppState, _ cache: HistogramCache, x0: Int, width: Int) {
        guard let tensor = state.selectedTensor else {
            s.put(3, x0 + 1, "Select a tensor in the layer tree (Enter opens a block).", .dim, maxWidth: width - 2)
            return
        }
        s.put(
            2, x0 + 1,
            "\(tensor.name)  \(Formatting.shape(tensor.shape)) \(tensor.info.encoding) "
                + (tensor.info.encoding.quantizedLayout.map { Formatting.fixed($0.bitsPerElement, 2) + " bits/w " } ?? "") + tensor.role.rawValue,
            .bold, maxWidth: width - 2)
        let bins = max(8, width - 4)
        let row = tensor.shape.count == 2 ? state.histogramRow : nil
        let data = cache.data(
            model: state.model, tensor: tensor, row: row, scaled: state.scaledDomain && row != nil,
            bins: bins, groupSize: state.groupSize)
        s.put(3, x0 + 1, data.note, .dim, maxWidth: width - 2)
        let plotTop = 5, plotHeight = max(4, s.height - 16)
        guard let peak = data.counts.max(), peak > 0 else {
            s.put(plotTop, x0 + 1, "no values to show", .warn)
            return
        }
        let scale = Double(plotHeight * 8) / Double(peak) * Double(state.zoom)
        let levels = data.counts.map { count in count > 0 ? max(Int((Double(count) * scale).rounded(.up)), 1) : 0 }
        drawBars(&s, levels, top: plotTop, height: plotHeight, x: x0 + 2)
        let markerRow = plotTop + plotHeight
        func column(_ v: Float) -> Int? {
            guard data.high > data.low else { return nil }
            let c = Int(((v - data.low) / (data.high - data.low) * Float(data.counts.count)).rounded(.down))
            return c >= 0 && c < data.counts.count ? c : nil
        }
        for v in Self.gridValues(state.grid, data, scaled: state.scaledDomain && row != nil) {
            if let c = column(v) { s.put(markerRow, x0 + 2 + c, ascii ? "|" : "┆", .dim, overlay: true) }
        }
        if let grid = state.grid { s.put(markerRow + 2, x0 + 2, "┆ = \(grid.name) grid of the first group", .dim, maxWidth: width - 2) }
        // The codebook's markers go over the grid's (and over each other where two share a cell).
        for v in data.codebook { if let c = column(v) { s.put(markerRow, x0 + 2 + c, ascii ? "^" : "▲", .good, overlay: true) } }
        s.put(markerRow + 1, x0 + 2, Formatting.number(Double(data.low), 3), .dim)
        let hi = Formatting.number(Double(data.high), 3)
        s.put(markerRow + 1, x0 + 2 + data.counts.count - hi.count, hi, .dim)
        if !data.codebook.isEmpty {
            s.put(
                markerRow + 3, x0 + 1, data.codebookCaption ?? "codebook (any4, group \(state.groupSize)) and weights per code:", .bold,
                maxWidth: width - 2)
            // One line of 16 when it fits, else two lines of 8 (each a value row and a count row).
            let perLine = (width - 2) / 7 >= data.codebook.count ? data.codebook.count : (data.codebook.count + 1) / 2
            let cell = max(6, min(8, (width - 2) / max(perLine, 1)))
            var y = markerRow + 4
            for start in stride(from: 0, to: data.codebook.count, by: max(perLine, 1)) {
                var line = "", counts = ""
                for i in start..<min(start + perLine, data.codebook.count) {
                    line += Formatting.pad(Formatting.number(Double(data.codebook[i]), 2), cell, right: true)
                    counts += Formatting.pad(String(i < data.usage.count ? data.usage[i] : 0), cell, right: true)
                }
                s.put(y, x0 + 1, line, .normal, maxWidth: width - 2)
                s.put(y + 1, x0 + 1, counts, .dim, maxWidth: width - 2)
                y += 2
            }
        }
    }

    /// The reference grid's values in the histogram's domain, placed with the row's first group.
    static func gridValues(_ grid: ReferenceGrid?, _ data: HistogramData, scaled: Bool) -> [Float] {
        guard let grid, let g = data.firstGroup else { return [] }
        return grid.values(low: g.low, high: g.high, scaled: scaled)
    }

    // MARK: - Quantize

    /// The progress bar of a running job: bar, percent.
    func bar(_ fraction: Double, width: Int) -> String {
        let barWidth = max(10, width - 6)
        let filled = min(barWidth, max(0, Int(Double(barWidth) * fraction)))
        return String(repeating: ascii ? "#" : "█", count: filled) + String(repeating: ascii ? "." : "░", count: barWidth - filled)
            + " " + Formatting.fixed(100 * fraction, 0) + "%"
    }

    func drawQuantize(_ s: inout Screen, _ state: AppState, _ jobs: JobCenter, x0: Int, width: Int) {
        guard let tensor = state.selectedTensor, tensor.isLinear else {
            s.put(3, x0 + 1, "Select a linear layer to quantize.", .dim, maxWidth: width - 2)
            return
        }
        // One line each, top down; blank lines only where the pane has room for them.
        var pane = PaneLines(top: 2, bottom: s.height - 3, x: x0 + 1, width: width - 2)
        let roomy = pane.rowsLeft >= 26
        pane.line(&s, "\(tensor.name)  \(Formatting.shape(tensor.shape))", .bold)
        if roomy { pane.skip() }
        let anyOnly = state.numericFormat.perRowTable ? "" : " (any-b only)"
        pane.line(&s, "format  [f] \(state.format)")
        pane.line(&s, "group   [g] \(state.groupSize)")
        pane.line(&s, "method  [m] \(state.cluster.rawValue)" + anyOnly)
        pane.line(&s, "weights [p] \(state.sampleWeighting == .scale ? "group scale (the paper's default)" : "none")" + anyOnly)
        if roomy { pane.skip() }
        pane.line(&s, "Enter quantizes this layer in the background; c compares every 4-bit format.", .dim)
        if roomy { pane.skip() }
        // The running job's bar has a line of its own (the last result stays below it).
        if let job = jobs.job, job.tensor == tensor.name, !job.done {
            pane.line(&s, bar(job.progress.fraction, width: width - 2), .accent)
        } else {
            pane.skip()
        }
        if let r = jobs.result(for: tensor.name) {
            pane.line(&s, "result: \(r.format) · \(Formatting.fixed(r.bitsPerWeight, 3)) bits/weight · \(Formatting.fixed(r.seconds, 2)) s", .bold)
            pane.line(
                &s,
                "  SQNR \(Formatting.fixed(r.metrics.sqnrDB, 2)) dB   MSE \(Formatting.scientific(r.metrics.mse, 2))   max \(Formatting.scientific(r.metrics.maxAbsError, 2))",
                r.metrics.sqnrDB >= 20 ? .good : .warn)
            if let e = r.outputRelativeError {
                pane.line(&s, "  output error ‖XWᵀ − XŴᵀ‖/‖XWᵀ‖ \(Formatting.scientific(e, 3)) (8 Gaussian rows)")
            }
        }
        for (text, style) in Self.modelErrorLines(jobs, layer: tensor.name, format: jobs.result(for: tensor.name)?.format) {
            pane.line(&s, text, style)
        }
        if let rows = jobs.comparison(for: tensor.name) {
            if roomy || pane.rowsLeft > rows.count + 1 { pane.skip() }
            pane.line(
                &s,
                Formatting.pad("format", 9) + Formatting.pad("SQNR dB", 8, right: true)
                    + Formatting.pad("MSE", 10, right: true) + Formatting.pad("bits/w", 8, right: true)
                    + Formatting.pad("out err", 10, right: true), .bold)
            let best = rows.map(\.metrics.sqnrDB).max() ?? 0
            for r in rows {
                pane.line(
                    &s,
                    Formatting.pad(r.format, 9) + Formatting.pad(Formatting.fixed(r.metrics.sqnrDB, 2), 8, right: true)
                        + Formatting.pad(Formatting.scientific(r.metrics.mse, 2), 10, right: true)
                        + Formatting.pad(Formatting.fixed(r.bitsPerWeight, 3), 8, right: true)
                        + Formatting.pad(r.outputRelativeError.map { Formatting.scientific($0, 2) } ?? "-", 10, right: true),
                    r.metrics.sqnrDB == best ? .good : .normal)
            }
        }
    }

    // MARK: - Kernel

    static let sparks: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]

    func drawKernel(_ s: inout Screen, _ state: AppState, _ kernel: KernelRunner, x0: Int, width: Int) {
        let snap = kernel.snapshot()
        s.put(
            2, x0 + 1, "lookup GEMM (fast int8 path, 1 thread)  batch \(state.batch)" + (state.kernelPaused ? "  PAUSED" : ""), .bold,
            maxWidth: width - 2)
        guard let layer = snap.layer else {
            s.put(4, x0 + 1, snap.message ?? "select a quantized linear layer", .dim, maxWidth: width - 2)
            return
        }
        s.put(3, x0 + 1, layer, .dim, maxWidth: width - 2)
        guard !snap.latencies.isEmpty else {
            s.put(5, x0 + 1, "measuring…", .dim)
            return
        }
        let sorted = snap.latencies.sorted()
        let median = sorted[sorted.count / 2], p90 = sorted[min(sorted.count - 1, sorted.count * 9 / 10)]
        s.put(
            5, x0 + 1, "median \(Formatting.fixed(median * 1e6, 1)) µs   p90 \(Formatting.fixed(p90 * 1e6, 1)) µs   (\(sorted.count) runs)", .good,
            maxWidth: width - 2)
        let gbps = Double(snap.streamedBytes) / median / 1e9
        let share = snap.probeGBps.map { " · \(Formatting.fixed(100 * gbps / $0, 0))% of probe (\(Formatting.fixed($0, 1)))" } ?? ""
        s.put(6, x0 + 1, "\(Formatting.fixed(gbps, 2)) GB/s" + share, .normal, maxWidth: width - 2)
        if let dense = snap.denseMedian {
            s.put(7, x0 + 1, "dense f32 \(Formatting.fixed(dense * 1e6, 1)) µs → \(Formatting.fixed(dense / median, 2))x", maxWidth: width - 2)
        }
        if let e = snap.totalError {
            let bits = snap.bitsPerWeight.map { " · \(Formatting.fixed($0, 3)) bits/weight" } ?? ""
            s.put(8, x0 + 1, "error vs f32 product: \(Formatting.scientific(e, 2)) (Gaussian x)" + bits, .normal, maxWidth: width - 2)
        }
        if let e = snap.relError {
            s.put(9, x0 + 1, "kernel-only error: \(Formatting.scientific(e, 2)) (vs f64 of the dequantized)", .dim, maxWidth: width - 2)
        }
        drawGPURow(&s, snap, x0: x0, width: width)
        let recent = snap.latencies.suffix(max(10, width - 4))
        if let lo = recent.min(), let hi = recent.max() {
            var line = ""
            for v in recent {
                let level = hi > lo ? Int((v - lo) / (hi - lo) * 7) : 0
                line.append(ascii ? (level > 3 ? "#" : ".") : Self.sparks[level])
            }
            s.put(11, x0 + 2, line, .accent)
        }
    }

    /// The layer on the GPU lookup kernel when there is a GPU, else one dim line saying why not.
    func drawGPURow(_ s: inout Screen, _ snap: KernelRunner.Snapshot, x0: Int, width: Int) {
        if let name = snap.gpuName, !snap.gpuLatencies.isEmpty {
            let sorted = snap.gpuLatencies.sorted()
            let median = sorted[sorted.count / 2]
            s.put(
                10, x0 + 1,
                "GPU \(name): median \(Formatting.fixed(median * 1e6, 1)) µs · "
                    + "\(Formatting.fixed(Double(snap.gpuStreamedBytes) / median / 1e9, 1)) GB/s (lookup kernel, bf16 x)", .good,
                maxWidth: width - 2)
        } else if let note = snap.gpuNote {
            s.put(10, x0 + 1, note, .dim, maxWidth: width - 2)
        }
    }

    // MARK: - Model

    /// The rows of the current tab's table (Model or Diff tab), by tensor name.
    package static func tableRows(
        _ state: AppState, _ results: [String: LayerResult], _ diff: DiffCenter?, costs: [String: Double] = [:]
    ) -> [String] {
        state.tab == .diff ? diff?.rows() ?? [] : modelRows(state, results, costs: costs).map(\.0.name)
    }

    /// The linear layers in the Model tab's order.
    /// - Parameter costs: each layer's model-level error alone (``JobCenter/modelCosts``).
    package static func modelRows(
        _ state: AppState, _ results: [String: LayerResult], costs: [String: Double] = [:]
    ) -> [(ModelTensor, LayerResult?)] {
        let rows = state.model.tensors.filter(\.isLinear).map { ($0, results[$0.name]) }
        switch state.sort {
        case .name: return rows
        case .modelError: return rows.sorted { (costs[$0.0.name] ?? -1) > (costs[$1.0.name] ?? -1) }
        case .outputError: return rows.sorted { ($0.1?.outputRelativeError ?? -1) > ($1.1?.outputRelativeError ?? -1) }
        case .sqnr: return rows.sorted { ($0.1?.metrics.sqnrDB ?? .infinity) < ($1.1?.metrics.sqnrDB ?? .infinity) }
        case .bits: return rows.sorted { ($0.1?.bitsPerWeight ?? .infinity) < ($1.1?.bitsPerWeight ?? .infinity) }
        case .predicted:
            guard let recipe = state.recipe else { return rows }
            func error(_ t: ModelTensor) -> Double { recipe.layer(named: t.name).map { recipe.entry($0).error } ?? -1 }
            return rows.sorted { error($0.0) > error($1.0) }
        }
    }

    /// A layer's name in `width` columns: the whole name when it fits, else its block number and
    /// module ("5 self_attn.v_proj"), cut in the middle so that both ends stay ("5 …attn.v_proj").
    package static func layerLabel(_ t: ModelTensor, width: Int) -> String {
        if t.name.count <= width { return t.name }
        let label = (t.blockIndex.map { "\($0) " } ?? "") + t.module
        if label.count <= width { return label }
        let head = t.blockIndex.map { "\($0) " } ?? ""
        return head + "…" + label.suffix(max(1, width - head.count - 1))
    }

    /// " · N stored quantized" for a checkpoint's quantized layers, "" without any.
    static func storedNote(_ rows: [(ModelTensor, LayerResult?)]) -> String {
        let stored = rows.filter { $0.0.info.encoding.quantizedLayout != nil }.count
        return stored == 0 ? "" : " · \(stored) stored quantized"
    }

    /// The first row of the Model tab's table, below its summary lines.
    static func modelTop(_ state: AppState) -> Int { state.recipe == nil ? 4 : 6 }

    func drawModel(_ s: inout Screen, _ state: AppState, _ jobs: JobCenter, x0: Int, width: Int) {
        let results = jobs.results
        let rows = Self.modelRows(state, results, costs: jobs.modelCosts)
        let w = width - 2
        s.put(
            2, x0 + 1,
            "\(rows.count) linear · \(results.count) quantized" + Self.storedNote(rows)
                + " · sort: \(state.sort.rawValue) (o) · a: all to \(state.recipe == nil ? state.format : "recipe")",
            .bold,
            maxWidth: w)
        let recipe = state.recipe
        if let recipe {
            let r = recipe.recipe
            s.put(
                3, x0 + 1,
                "recipe \(Formatting.fixed(r.bitsPerWeight, 3)) bits/w · budget \(Formatting.fixed(recipe.budget, 2)) · error \(Formatting.scientific(r.predictedError, 3))",
                .accent, maxWidth: w)
            s.put(
                4, x0 + 1,
                "model \(Formatting.fixed(r.modelBitsPerWeight, 3)) bits/w · \(recipe.edited ? "edited · " : "")\(recipe.path)",
                recipe.edited ? .warn : .dim, maxWidth: w)
        }
        let top = Self.modelTop(state)
        let height = max(1, s.height - 3 - top)
        // Columns: with a recipe, its choice, bits/w and predicted error come first.
        var columns: [(title: String, width: Int, value: (ModelTensor, LayerResult?) -> String)] = []
        if let recipe {
            func planned(_ t: ModelTensor) -> Int? { recipe.layer(named: t.name) }
            columns += [
                ("plan", 11, { t, _ in planned(t).map { recipe.recipe.candidate(ofLayer: $0).spec } ?? "-" }),
                ("bits/w", 7, { t, _ in planned(t).map { Formatting.fixed(recipe.bitsPerWeight($0), 2) } ?? "-" }),
                ("pred err", 10, { t, _ in planned(t).map { Formatting.scientific(recipe.entry($0).error, 2) } ?? "-" })
            ]
        }
        // A checkpoint's quantized layer shows its stored format and bits (its error needs the original: --diff).
        columns.append(("format", 8, { t, r in r?.format ?? t.info.encoding.quantizedLayout?.format ?? "float" }))
        if let evaluation = jobs.evaluator?.snapshot() {
            // The model-level error of the layer alone: next to the format, so that a narrow pane keeps it.
            columns.append(
                (evaluation.decoder ? "model KL" : "1-cos", 10, { t, r in Self.modelErrorCell(evaluation, r, layer: t.name) }))
        }
        columns += [
            ("SQNR dB", 9, { _, r in r.map { Formatting.fixed($0.metrics.sqnrDB, 2) } ?? "-" }),
            ("out err", 10, { _, r in r?.outputRelativeError.map { Formatting.scientific($0, 2) } ?? "-" }),
            (
                "bits/w", 8,
                { t, r in (r?.bitsPerWeight ?? t.info.encoding.quantizedLayout?.bitsPerElement).map { Formatting.fixed($0, 2) } ?? "-" }
            )
        ]
        // The name gets what the columns leave (at least 12); columns that do not fit are dropped.
        while columns.count > 1 && columns.reduce(0, { $0 + $1.width }) > w - 12 { columns.removeLast() }
        let nameWidth = max(12, min(40, w - columns.reduce(0) { $0 + $1.width }))
        func line(_ name: String, _ cells: [String]) -> String {
            zip(columns, cells).reduce(Formatting.pad(name, nameWidth)) { text, pair in
                // Text columns left-aligned (a space before), numbers right-aligned.
                let left = pair.0.title == "plan" || pair.0.title == "format"
                return text + (left ? " " + Formatting.pad(pair.1, pair.0.width - 1) : Formatting.pad(pair.1, pair.0.width, right: true))
            }
        }
        s.put(top - 1, x0 + 1, line("layer", columns.map(\.title)), .dim, maxWidth: w)
        let position = state.selectedTensor.flatMap { t in rows.firstIndex { $0.0.name == t.name } }
        let scroll = AppState.modelScroll(state.modelScroll, position: position, count: rows.count, height: height)
        for i in 0..<height {
            let index = scroll + i
            guard index < rows.count else { break }
            let (t, r) = rows[index]
            let y = top + i
            let name = Self.layerLabel(t, width: nameWidth - 1)
            let style: Style = r.map { $0.metrics.sqnrDB >= 20 ? .good : ($0.metrics.sqnrDB >= 14 ? .warn : .bad) } ?? .dim
            s.put(y, x0 + 1, line(String(name), columns.map { $0.value(t, r) }), style, maxWidth: w)
            if index == position { s.highlight(y, from: x0 + 1, to: x0 + 1 + w, state.focus == .detail ? .reverse : .bold) }
        }
        if rows.count > height {
            let last = min(scroll + height, rows.count)
            s.put(s.height - 3, x0 + 1, "rows \(scroll + 1)-\(last) of \(rows.count)", .dim, maxWidth: 20)
        }
        // The whole model's figures where the engine runs it, else the tab's keys.
        let (hint, hintStyle): (String, Style) =
            jobs.evaluator != nil || jobs.evaluationNote != nil
            ? Self.modelErrorSummary(jobs)
            : (
                recipe == nil
                    ? "L loads a recipe (any4 plan) · ppl: any4 ppl MODEL"
                    : "[ ] choice · + - budget · r re-solve · S save · L load", .dim
            )
        let hintX = rows.count > height ? 22 : 0
        s.put(s.height - 3, x0 + 1 + hintX, hint, hintStyle, maxWidth: w - hintX)
    }

}

/// Lines of a pane drawn top down, one `put` each, never below `bottom` (what does not fit is
/// left out and counted, never drawn over the status lines).
struct PaneLines {
    var y: Int
    let bottom: Int
    let x: Int
    let width: Int
    private(set) var dropped = 0

    init(top: Int, bottom: Int, x: Int, width: Int) {
        y = top
        self.bottom = bottom
        self.x = x
        self.width = width
    }

    var rowsLeft: Int { max(0, bottom - y + 1) }

    mutating func line(_ s: inout Screen, _ text: String, _ style: Style = .normal) {
        if y <= bottom {
            s.put(y, x, text, style, maxWidth: width)
        } else {
            dropped += 1
        }
        y += 1
    }

    mutating func skip(_ n: Int = 1) { y += n }
}
