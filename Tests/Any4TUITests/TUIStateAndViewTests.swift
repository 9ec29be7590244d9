import Any4Core
import Any4GPU
import Any4TUI
import XCTest

final class TUIStateAndViewTests: XCTestCase {
    static let demo = try! DemoModel.make()

    func render(
        _ state: AppState, width: Int = 120, height: Int = 40, ascii: Bool = false,
        jobs: JobCenter = JobCenter(), kernel: KernelRunner = KernelRunner()
    ) -> Screen {
        var state = state
        Renderer.layout(&state, width: width, height: height)
        return Renderer(ascii: ascii).render(
            state, jobs: jobs, kernel: kernel, histograms: HistogramCache(),
            width: width, height: height)
    }

    func testKernelTabShowsLiveLatencyOfTheQuantizedLayer() throws {
        var state = AppState(model: Self.demo)
        state.apply(.selectTab(.kernel))
        let tensor = try XCTUnwrap(state.selectedTensor)
        XCTAssertTrue(render(state).text.contains("select a quantized linear layer"))
        var options = QuantizationOptions()
        options.groupSize = 128
        let result = try ModelQuantization.quantize(tensor, of: Self.demo, format: FormatRegistry.named("any4"), options: options)
        let runner = KernelRunner()
        runner.set(layer: tensor.name, matrix: result.matrix, original: { try Self.demo.decode(tensor) }, batch: 2, paused: false)
        let deadline = Date().addingTimeInterval(20)
        while runner.snapshot().totalError == nil && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let text = render(state, kernel: runner).text
        XCTAssertTrue(text.contains("median"), text)
        XCTAssertTrue(text.contains("µs"), text)
        XCTAssertTrue(text.contains("GB/s"), text)
        XCTAssertTrue(text.contains("dense f32"), text)
        XCTAssertTrue(text.contains("error vs f32 product"), text)
        // The GPU row: the layer on the GPU kernel, or one line saying why there is none.
        XCTAssertTrue(text.contains(GPUBackend.shared == nil ? "GPU: none (" : "GPU "), text)
        let snap = runner.snapshot()
        XCTAssertLessThan(snap.relError ?? 1, 3e-2, "kernel error")
        XCTAssertLessThan(snap.totalError ?? 1, 0.3, "quantization + kernel error")
    }

    func testScreenClipsAndKeepsStyles() {
        var screen = Screen(width: 10, height: 2)
        screen.put(0, 8, "abcdef", .bold)
        screen.put(1, -2, "xyz█")
        screen.put(5, 0, "off screen")
        XCTAssertEqual(screen.lines, ["        a…", "z█"], "clipped text ends in an ellipsis")
        XCTAssertEqual(screen.style(0, 9), .bold)
    }

    func testStartsOnTheFirstLinearLayerOfTheFirstBlock() {
        let state = AppState(model: Self.demo)
        XCTAssertEqual(state.selectedTensor?.name, "model.layers.0.mlp.down_proj.weight")
        XCTAssertEqual(state.focus, .layers)
    }

    func testNavigationExpandCollapseAndTabs() {
        var state = AppState(model: Self.demo)
        Renderer.layout(&state, width: 120, height: 40)
        state.apply(.down)
        XCTAssertEqual(state.selectedTensor?.name, "model.layers.0.mlp.gate_proj.weight")
        state.apply(.collapse)  // on a tensor: closes its block and lands on the header
        XCTAssertNil(state.selectedTensor)
        XCTAssertEqual(state.visibleRows[state.selection], .block(1))
        state.apply(.expand)
        state.apply(.down)
        XCTAssertEqual(state.selectedTensor?.name, "model.layers.0.input_layernorm.weight")
        state.apply(.end)
        XCTAssertEqual(state.selection, state.visibleRows.count - 1)
        state.apply(.selectTab(.kernel))
        XCTAssertEqual(state.tab, .kernel)
        state.apply(.nextPane)
        XCTAssertEqual(state.focus, .detail)
        state.apply(.batchUp)
        state.apply(.batchUp)
        XCTAssertEqual(state.batch, 4)
        state.apply(.cycleFormat)
        XCTAssertEqual(state.format, "int4")
        state.apply(.quit)
        XCTAssertTrue(state.quit)
    }

    func testFilterShowsMatchingTensorsOfCollapsedBlocks() {
        var state = AppState(model: Self.demo)
        state.apply(.startFilter)
        for c in "layers.3.mlp.up" { state.apply(.filterInput(c)) }
        state.apply(.endFilter)
        XCTAssertEqual(state.visibleRows.count, 2)
        state.apply(.down)
        XCTAssertEqual(state.selectedTensor?.name, "model.layers.3.mlp.up_proj.weight")
    }

    func testHistogramTabDrawsTheRowAndItsCodebook() {
        let screen = render(AppState(model: Self.demo))
        let text = screen.text
        XCTAssertTrue(text.contains("synthetic demo"))
        XCTAssertTrue(text.contains("model.layers.0.mlp.down_proj.weight  [256, 688] BF16 linear"), text)
        XCTAssertTrue(text.contains("group-scaled domain"))
        let markerLines = screen.lines.filter { $0.filter { $0 == "▲" }.count >= 8 }
        XCTAssertEqual(markerLines.count, 1, "one line of codebook markers (up to 16, neighbours may share a cell)")
        XCTAssertTrue(text.contains("codebook (any4, group 128)"))
        XCTAssertTrue(screen.lines.contains { $0.contains("█") }, "bars drawn")
    }

    func testASCIIAndTooSmall() {
        let ascii = render(AppState(model: Self.demo), ascii: true).text
        XCTAssertTrue(ascii.allSatisfy(\.isASCII), ascii)
        XCTAssertTrue(ascii.contains("^"))
        let small = render(AppState(model: Self.demo), width: 79, height: 30).text
        XCTAssertTrue(small.contains("terminal too small"))
        XCTAssertTrue(small.contains("79x30, need at least 80x24"))
        XCTAssertTrue(render(AppState(model: Self.demo), width: 80, height: 24).text.contains("any4 explorer"))
    }

    func testQuantizeTabShowsTheResultOfABackgroundJob() throws {
        var state = AppState(model: Self.demo)
        state.apply(.selectTab(.quantize))
        let jobs = JobCenter()
        let tensor = try XCTUnwrap(state.selectedTensor)
        var options = QuantizationOptions()
        options.groupSize = 128
        jobs.quantize(tensor, of: Self.demo, format: "any4", options: options)
        let deadline = Date().addingTimeInterval(20)
        while jobs.isBusy && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        let text = render(state, jobs: jobs).text
        XCTAssertTrue(text.contains("result: any4"), text)
        XCTAssertTrue(text.contains("SQNR"), text)
        XCTAssertTrue(text.contains("down_proj.weight any4 "), "the tree shows the layer's new state")
        state.apply(.selectTab(.model))
        XCTAssertTrue(render(state, jobs: jobs).text.contains("· 1 quantized ·"))
    }

    func testQuitAsksWhenQuantizedLayersAreUnsavedAndRowJump() {
        var state = AppState(model: Self.demo)
        state.unsaved = true
        state.apply(.quit)
        XCTAssertFalse(state.quit)
        XCTAssertTrue(state.status.contains("unsaved"))
        state.apply(.down)  // any other key stays
        XCTAssertFalse(state.confirmingQuit)
        state.apply(.quit)
        state.apply(.confirmQuit)
        XCTAssertTrue(state.quit)

        var jump = AppState(model: Self.demo)
        jump.apply(.startRowJump)
        for c in "12" { jump.apply(.filterInput(c)) }
        jump.apply(.endFilter)
        XCTAssertEqual(jump.histogramRow, 12)
        jump.apply(.toggleIntGrid)
        XCTAssertEqual(jump.grid?.name, "int4")
        XCTAssertTrue(render(jump).text.contains("int4 grid of the first group"))
    }

    func testHelpOverlay() {
        var state = AppState(model: Self.demo)
        state.apply(.toggleHelp)
        XCTAssertTrue(render(state).text.contains("Keys"))
        state.apply(.down)  // any key closes help
        XCTAssertFalse(state.showHelp)
    }
}

extension TUIStateAndViewTests {
    /// At the minimum size every tab still shows its numbers.
    func testEveryTabFitsAt80x24() throws {
        var state = AppState(model: Self.demo)
        let jobs = JobCenter()
        var options = QuantizationOptions()
        options.groupSize = 128
        jobs.quantize(try XCTUnwrap(state.selectedTensor), of: Self.demo, format: "any4", options: options)
        let deadline = Date().addingTimeInterval(20)
        while jobs.isBusy && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        state.apply(.selectTab(.model))
        let model = render(state, width: 80, height: 24, jobs: jobs).text
        XCTAssertTrue(model.contains("SQNR dB") && model.contains("bits/w"), model)
        let row = try XCTUnwrap(model.split(separator: "\n").first { $0.contains("down_proj") && $0.contains("any4") })
        XCTAssertNotNil(row.range(of: #"\d+\.\d\d +\d\.\d\de-\d\d +\d\.\d\d"#, options: .regularExpression), String(row))
        state.apply(.selectTab(.histogram))
        let hist = render(state, width: 80, height: 24, jobs: jobs)
        XCTAssertEqual(hist.lines.filter { $0.contains("codebook (any4") }.count, 1)
        state.apply(.quit)
        XCTAssertEqual(state.status, "", "nothing unsaved in this state")
        state.unsaved = true
        state.apply(.quit)
        XCTAssertTrue(render(state, width: 80, height: 24, jobs: jobs).text.contains("q/y quits"))
        state.apply(.cancel)
        state.apply(.toggleHelp)
        let help = render(state, width: 80, height: 24).text
        XCTAssertTrue(help.contains("Any key closes this help."), help)
    }
}

extension TUIStateAndViewTests {
    /// The histogram row must exist in whatever tensor is selected, however the selection moved
    /// (issue 18: row 650 of a 688-row tensor kept after clicking a 256-row one trapped in
    /// `Model.decodeRows`; only the arrow keys reset the row).
    func testHistogramRowStaysInsideTheSelectedTensor() throws {
        func onRow650OfGateProj() throws -> AppState {
            var state = AppState(model: Self.demo)
            Renderer.layout(&state, width: 120, height: 40)
            state.apply(.down)
            XCTAssertEqual(state.selectedTensor?.name, "model.layers.0.mlp.gate_proj.weight")
            XCTAssertEqual(state.selectedTensor?.info.rowCount, 688)
            state.apply(.startRowJump)
            for c in "650" { state.apply(.filterInput(c)) }
            state.apply(.endFilter)
            XCTAssertEqual(state.histogramRow, 650)
            return state
        }
        // The mouse: a click on the 256-row down_proj just above.
        var state = try onRow650OfGateProj()
        let downProj = try XCTUnwrap(
            state.visibleRows.firstIndex {
                if case .tensor(let t) = $0 { return Self.demo.tensors[t].name == "model.layers.0.mlp.down_proj.weight" }
                return false
            })
        state.apply(.click(row: state.treeTop + downProj - state.scroll, column: 1))
        XCTAssertEqual(state.selectedTensor?.name, "model.layers.0.mlp.down_proj.weight")
        XCTAssertEqual(state.histogramRow, 0)
        XCTAssertTrue(render(state).text.contains("row 0 in the group-scaled domain"))
        // Every other way of moving: each lands on another tensor (or a header) with row 0.
        let moves: [(String, [Action])] = [
            ("page up", [.pageUp]), ("page down", [.pageDown]), ("home", [.home]), ("end", [.end]),
            ("wheel up", [.wheel(up: true)]), ("wheel down", [.wheel(up: false)]),
            ("filter", [.startFilter] + "down".map { .filterInput($0) } + [.endFilter]),
            ("filter backspace", [.startFilter] + "gate".map { .filterInput($0) } + [.endFilter, .down, .startFilter, .filterBackspace])
        ]
        for (name, actions) in moves {
            var state = try onRow650OfGateProj()
            for action in actions { state.apply(action) }
            if let t = state.selectedTensor, t.shape.count == 2 {
                XCTAssertLessThan(state.histogramRow ?? 0, t.info.rowCount, "\(name): row beyond \(t.name)")
            }
            _ = render(state)
        }
        // Random walks over every way of moving, jumping to the last row of big tensors often.
        var rng = SplitMix64(seed: 18)
        var walk = AppState(model: Self.demo)
        Renderer.layout(&walk, width: 120, height: 30)
        let steps: [Action] = [
            .up, .down, .pageUp, .pageDown, .home, .end, .expand, .collapse, .toggle,
            .wheel(up: true), .wheel(up: false), .nextRow, .previousRow, .toggleRowMode,
            .startFilter, .filterInput("o"), .filterInput("1"), .filterBackspace, .endFilter, .cancel
        ]
        for step in 0..<3000 {
            let k = Int(rng.next() % UInt64(steps.count + 2))
            if k >= steps.count {
                walk.apply(.click(row: walk.treeTop + Int(rng.next() % UInt64(walk.treeHeight)), column: 1))
            } else if steps[k] == .nextRow, walk.rowJump == nil, !walk.filtering {
                walk.apply(.startRowJump)
                for c in "99999" { walk.apply(.filterInput(c)) }
                walk.apply(.endFilter)
            } else {
                walk.apply(steps[k])
            }
            if let t = walk.selectedTensor, t.shape.count == 2, let row = walk.histogramRow {
                XCTAssertLessThan(row, t.info.rowCount, "step \(step): row \(row) of \(t.name)")
                if row >= t.info.rowCount { break }
            }
        }
    }
}

extension TUIStateAndViewTests {
    /// Leaving the UI (quit or a signal) cancels the running job and waits for it: the process
    /// must not exit under a worker that is still quantizing.
    func testCancelAndWaitStopsQuantizeAllPromptly() {
        let jobs = JobCenter()
        var options = QuantizationOptions()
        options.cluster = .exact
        jobs.quantizeAll(Self.demo, format: "any4", options: options)
        XCTAssertTrue(jobs.isBusy)
        let started = Date()
        XCTAssertTrue(jobs.cancelAndWait(timeout: 10))
        XCTAssertLessThan(Date().timeIntervalSince(started), 2)
        XCTAssertFalse(jobs.isBusy)
        XCTAssertEqual(jobs.job?.error.map { $0.contains("cancel") }, true, "\(String(describing: jobs.job))")
        XCTAssertLessThan(jobs.results.count, Self.demo.tensors.filter(LayerSelection().selects).count)
        XCTAssertTrue(JobCenter().cancelAndWait(timeout: 0), "nothing to wait for")
    }

    /// The kernel runner's thread leaves its loop when asked.
    func testKernelRunnerStops() throws {
        let state = AppState(model: Self.demo)
        let tensor = try XCTUnwrap(state.selectedTensor)
        let result = try ModelQuantization.quantize(tensor, of: Self.demo, format: FormatRegistry.named("any4"), options: QuantizationOptions())
        let runner = KernelRunner()
        runner.set(layer: tensor.name, matrix: result.matrix, original: { try Self.demo.decode(tensor) }, batch: 1, paused: false)
        let deadline = Date().addingTimeInterval(20)
        while runner.snapshot().latencies.isEmpty && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        XCTAssertTrue(runner.stop(timeout: 5))
        let count = runner.snapshot().latencies.count
        Thread.sleep(forTimeInterval: 0.1)
        XCTAssertEqual(runner.snapshot().latencies.count, count, "no runs after stop")
    }
}
