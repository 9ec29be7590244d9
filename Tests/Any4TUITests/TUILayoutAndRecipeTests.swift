import Any4Core
import Any4TUI
import Foundation
import TestSupport
import XCTest

/// Issue 18's layout defects (overlapping lines, lines running off an edge, the Model tab not
/// scrolling, Enter on a filter landing on a block row), the progress of the UI's quantize jobs,
/// and issue 17's recipe in the Model tab.
final class TUILayoutAndRecipeTests: XCTestCase {
    static let demo = try! DemoModel.make()

    func render(_ state: AppState, width: Int, height: Int, jobs: JobCenter = JobCenter()) -> Screen {
        var state = state
        state.modelOrder = Renderer.modelRows(state, jobs.results).map(\.0.name)
        Renderer.layout(&state, width: width, height: height)
        return Renderer(ascii: false).render(
            state, jobs: jobs, kernel: KernelRunner(), histograms: HistogramCache(), width: width, height: height)
    }

    func waitForJob(_ jobs: JobCenter) {
        let deadline = Date().addingTimeInterval(60)
        while jobs.isBusy && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertFalse(jobs.isBusy, "the job finishes")
        XCTAssertNil(jobs.job?.error)
    }

    /// A Llama-shaped safetensors model with `blocks` blocks of 7 linear layers [16, 64].
    static func makeModel(_ dir: String, blocks: Int) throws -> String {
        var rng = SplitMix64(seed: 17)
        let modules = [
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"
        ]
        var tensors: [SafeTensorsWriter.Entry] = []
        for b in 0..<blocks {
            for m in modules {
                tensors.append(
                    .init(name: "model.layers.\(b).\(m).weight", shape: [16, 64], floats: (0..<1024).map { _ in Float(rng.nextGaussian()) }))
            }
        }
        let path = dir + "/m.safetensors"
        try SafeTensorsWriter.write(tensors, to: path)
        return path
    }

    // MARK: - Issue 18: layout

    /// Every tab, in every state that adds lines (a result, a running job's bar, a comparison, a
    /// recipe, the help), at the minimum size and larger: no line is drawn over another. Before:
    /// the Quantize tab's bar went over the result line, and the comparison ran over the status
    /// lines at 80x24.
    func testNoLineIsDrawnOverAnotherInAnyTabAtAnySize() throws {
        var state = AppState(model: Self.demo)
        let tensor = try XCTUnwrap(state.selectedTensor)
        let jobs = JobCenter()
        var options = QuantizationOptions()
        options.groupSize = 128
        jobs.quantize(tensor, of: Self.demo, format: "any4", options: options)
        waitForJob(jobs)
        jobs.compare(tensor, of: Self.demo, options: options)
        waitForJob(jobs)
        // A job on the layer that stays running while the screens are drawn.
        let release = DispatchSemaphore(value: 0)
        jobs.start(tensor: tensor.name, total: 10, label: "held") { progress in
            progress.advance(by: 4)
            release.wait()
        }
        defer { release.signal() }
        let started = Date().addingTimeInterval(10)
        while jobs.job?.progress.completed != 4 && Date() < started { Thread.sleep(forTimeInterval: 0.001) }
        state.recipe = RecipeEditor(recipe: try Self.demoRecipe(), path: "/nonexistent/r.json")
        for (width, height) in [(80, 24), (100, 30), (160, 50)] {
            for tab in Tab.allCases {
                for (help, prompt) in [(false, false), (true, false), (false, true)] {
                    var s = state
                    s.tab = tab
                    s.showHelp = help
                    if prompt { s.recipePrompt = "/some/long/folder/name/of/a/recipe/file/written/by/any4/plan.json" }
                    let screen = render(s, width: width, height: height, jobs: jobs)
                    XCTAssertEqual(
                        screen.overlaps.count, 0,
                        "\(tab.title) \(width)x\(height)\(help ? " help" : ""): drawn over at \(screen.overlaps.prefix(5).map { "\($0)" })\n\(screen.text)"
                    )
                    if tab == .quantize && !help && !prompt {
                        let lines = screen.lines
                        XCTAssertTrue(lines.contains { $0.contains("░") && $0.contains("40%") }, "the running job's bar:\n\(screen.text)")
                        XCTAssertTrue(lines.contains { $0.contains("result: any4") }, "the last result below it")
                        XCTAssertTrue(lines.contains { $0.contains("nvfp4") }, "the whole comparison fits:\n\(screen.text)")
                    }
                }
            }
        }
    }

    /// Text that does not fit its place ends in an ellipsis, at any width: the keys line at 80
    /// columns, a status, a long layer name in a narrow tree.
    func testLongLinesAreEllipsised() {
        var screen = Screen(width: 12, height: 2)
        screen.put(0, 2, "0123456789abcdef")
        screen.put(1, 0, "0123456789", maxWidth: 5)
        XCTAssertEqual(screen.lines, ["  012345678…", "0123…"])
        var state = AppState(model: Self.demo)
        state.apply(.selectTab(.quantize))
        let keys = render(state, width: 80, height: 24).lines[23]
        XCTAssertEqual(keys.count, 80)
        XCTAssertTrue(keys.hasPrefix("f format  g group"), "the tab's own keys come first: \(keys)")
        XCTAssertTrue(keys.hasSuffix("…"), keys)
    }

    /// Enter on a filter leaves the cursor on a layer (before: on the first block's header).
    func testEnterOnAFilterLandsOnALayer() {
        var state = AppState(model: Self.demo)
        state.apply(.startFilter)
        for c in "up_proj" { state.apply(.filterInput(c)) }
        XCTAssertEqual(state.selectedTensor?.name, "model.layers.0.mlp.up_proj.weight", "while typing, the first match")
        state.apply(.endFilter)
        XCTAssertEqual(state.selectedTensor?.name, "model.layers.0.mlp.up_proj.weight")
        state.apply(.down)
        state.apply(.down)
        XCTAssertEqual(state.selectedTensor?.name, "model.layers.1.mlp.up_proj.weight", "the next match, over the block header")
    }

    /// The Model tab scrolls with the selection: at 80x24 a model with 42 linear layers shows
    /// the last one once it is selected, from the tree or in the tab. Before: rows past the
    /// screen height were not drawn.
    func testModelTabScrollsWithTheSelection() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = try Model.open(try Self.makeModel(dir, blocks: 6))
        var state = AppState(model: model)
        let session = Session(jobs: JobCenter())
        Renderer.layout(&state, width: 80, height: 24)
        session.handle(.selectTab(.model), state: &state)
        // The tab lists the linear layers in the file's order (this writer sorts them by name).
        let linear = model.tensors.filter(\.isLinear).map(\.name)
        XCTAssertEqual(linear.count, 42)
        let last = try XCTUnwrap(linear.last)
        XCTAssertFalse(render(state, width: 80, height: 24).text.contains("layers.5.self_attn.v_proj"))
        // In the tab: Tab to it, End.
        session.handle(.nextPane, state: &state)
        session.handle(.end, state: &state)
        XCTAssertEqual(state.selectedTensor?.name, last, "the tree follows the tab")
        var screen = render(state, width: 80, height: 24)
        var row = try XCTUnwrap(screen.lines.firstIndex { $0.contains(" 5 …") && $0.contains("v_proj  float") }, screen.text)
        XCTAssertEqual(screen.style(row, 40), .reverse, "the selected row is highlighted")
        XCTAssertTrue(screen.text.contains("rows 26-42 of 42"), screen.text)
        session.handle(.home, state: &state)
        XCTAssertEqual(state.selectedTensor?.name, linear.first)
        XCTAssertTrue(render(state, width: 80, height: 24).text.contains("rows 1-17 of 42"))
        // From the tree: the last layer selected there shows in the tab too.
        session.handle(.previousPane, state: &state)
        state.select(tensorNamed: last)
        screen = render(state, width: 80, height: 24)
        row = try XCTUnwrap(screen.lines.firstIndex { $0.contains(" 5 …") && $0.contains("v_proj  float") }, screen.text)
        XCTAssertEqual(screen.style(row, 40), .bold)
        // A click on a row of the table selects that layer.
        let clicked = try XCTUnwrap(screen.lines.firstIndex { $0.contains(" 5 mlp.up_proj  float") })
        session.handle(.click(row: clicked, column: 50), state: &state)
        XCTAssertEqual(state.selectedTensor?.name, "model.layers.5.mlp.up_proj.weight")
    }

    // MARK: - Jobs: progress and figures

    /// The UI measures a layer a block of rows at a time (so the bar moves), with the core's
    /// figures exactly, in every 4-bit format; the bar reaches its total and no more.
    func testLayerWorkEqualsTheCoresFiguresAndCountsEveryStep() throws {
        let tensor = try XCTUnwrap(Self.demo.tensor(named: "model.layers.0.mlp.gate_proj.weight"))
        for format in FormatRegistry.fourBit {
            var options = QuantizationOptions()
            options.groupSize = 64
            let core = try ModelQuantization.quantize(tensor, of: Self.demo, format: format, options: options, outputErrorRows: 8)
            let jobs = JobCenter()
            jobs.quantize(tensor, of: Self.demo, format: format.name, options: options)
            waitForJob(jobs)
            let ui = try XCTUnwrap(jobs.result(for: tensor.name))
            XCTAssertEqual(ui.metrics, core.metrics, format.name)
            XCTAssertEqual(ui.outputRelativeError, core.outputRelativeError, format.name)
            XCTAssertEqual(ui.bitsPerWeight, core.bitsPerWeight, format.name)
            XCTAssertEqual(ui.kmeansObjective, core.kmeansObjective, format.name)
            XCTAssertEqual(ui.matrix?.dequantized(), core.matrix?.dequantized(), format.name)
            let progress = try XCTUnwrap(jobs.job?.progress)
            XCTAssertEqual(progress.completed, progress.total, "decode, quantize and measure each count the rows once")
        }
    }

    /// `c` names the format that runs, in turn, and its table equals the core's figures.
    func testCompareNamesTheRunningFormat() throws {
        let tensor = try XCTUnwrap(Self.demo.tensor(named: "model.layers.0.mlp.gate_proj.weight"))
        let jobs = JobCenter()
        var options = QuantizationOptions()
        options.cluster = .exact  // slow enough to see each format run
        jobs.compare(tensor, of: Self.demo, options: options)
        var labels: [String] = []
        let deadline = Date().addingTimeInterval(60)
        while jobs.isBusy && Date() < deadline {
            if let label = jobs.job?.progress.label, labels.last != label { labels.append(label) }
            Thread.sleep(forTimeInterval: 0.001)
        }
        waitForJob(jobs)
        let any4 = labels.firstIndex { $0.hasSuffix(": any4 (1/\(FormatRegistry.fourBit.count))") }
        XCTAssertNotNil(any4, "\(labels)")
        XCTAssertTrue(labels.allSatisfy { $0.hasPrefix("comparing formats on \(tensor.name)") }, "\(labels)")
        let rows = try XCTUnwrap(jobs.comparison(for: tensor.name))
        XCTAssertEqual(rows.map(\.format), FormatRegistry.fourBit.map(\.name))
        let int4 = try XCTUnwrap(rows.first { $0.format == "int4" })
        let core = try ModelQuantization.quantize(tensor, of: Self.demo, format: FormatRegistry.named("int4"), options: options, outputErrorRows: 8)
        XCTAssertEqual(int4.metrics, core.metrics)
        XCTAssertEqual(int4.outputRelativeError, core.outputRelativeError)
    }

    // MARK: - Issue 17: the recipe in the Model tab

    /// A recipe over the demo model's linear layers with three candidates; the errors fall with
    /// the bits and differ per layer.
    static func demoRecipe() throws -> Recipe {
        let layers = demo.tensors.filter(\.isLinear)
        let candidates = try ["any2:g64", "any4:g128", "int8:g128"].map { try PlanCandidate(spec: $0) }
        var entries: [[SensitivityTable.Entry?]] = []
        for (l, t) in layers.enumerated() {
            let n = t.info.elementCount, rows = t.shape[0]
            entries.append([
                .init(bits: 2 * n + rows * (n / rows / 64) * 32 + rows * 4 * 16, error: 0.5 + Double(l % 5) * 0.1),
                .init(bits: 4 * n + rows * (n / rows / 128) * 32 + rows * 16 * 16, error: 0.05 + Double(l % 3) * 0.02),
                l == 0 ? nil : .init(bits: 8 * n + rows * (n / rows / 128) * 32, error: 0.001)
            ])
        }
        let table = SensitivityTable(
            layers: layers.map(\.name), parameters: layers.map(\.info.elementCount), candidates: candidates, entries: entries,
            otherBits: 1000, otherParameters: 100, errorMeasure: "test error")
        return Recipe(table: table, choice: Array(repeating: 1, count: layers.count), budgetBitsPerWeight: 4.5, model: demo.path)
    }

    /// Changing a layer's candidate moves the totals by that layer's entries; the budget and
    /// `r` re-solve to the optimum (checked by brute force on three layers); a save reads back equal.
    func testRecipeEditingSolvingAndSaving() throws {
        let recipe = try Self.demoRecipe()
        var editor = RecipeEditor(recipe: recipe, path: "unused")
        XCTAssertEqual(editor.budget, 4.5)
        let table = recipe.table
        let before = editor.recipe.bitsPerWeight
        XCTAssertTrue(editor.cycle(layer: 2, by: 1))
        XCTAssertEqual(editor.recipe.choice[2], 2)
        let delta = Double(table.entries[2][2]!.bits - table.entries[2][1]!.bits) / Double(table.parameters.reduce(0, +))
        XCTAssertEqual(editor.recipe.bitsPerWeight - before, delta, accuracy: 1e-12)
        XCTAssertEqual(
            editor.recipe.predictedError - recipe.predictedError, table.entries[2][2]!.error - table.entries[2][1]!.error, accuracy: 1e-12)
        XCTAssertTrue(editor.edited)
        // Layer 0 has no int8 entry: next from any4 wraps to any2.
        XCTAssertTrue(editor.cycle(layer: 0, by: 1))
        XCTAssertEqual(editor.recipe.choice[0], 0)
        editor.cycle(layer: 0, by: -1)
        XCTAssertEqual(editor.recipe.choice[0], 1)

        // Solving on a three-layer table equals the brute-force optimum at each budget.
        let small = SensitivityTable(
            layers: Array(table.layers.prefix(3)), parameters: Array(table.parameters.prefix(3)), candidates: table.candidates,
            entries: Array(table.entries.prefix(3)))
        var three = RecipeEditor(recipe: Recipe(table: small, choice: [1, 1, 1], budgetBitsPerWeight: nil), path: "unused")
        for budget in stride(from: 2.0, through: 8.5, by: 0.25) {
            three.budget = budget
            let why = three.solve()
            var best: (error: Double, choice: [Int])?
            for a in 0..<3 {
                for b in 0..<3 {
                    for c in 0..<3 {
                        let choice = [a, b, c]
                        guard choice.enumerated().allSatisfy({ small.entries[$0][$1] != nil }) else { continue }
                        let t = small.totals(choice)
                        guard t.bits <= small.budgetBits(bitsPerWeight: budget) else { continue }
                        if best == nil || t.error < best!.error { best = (t.error, choice) }
                    }
                }
            }
            if let best {
                XCTAssertNil(why, "budget \(budget)")
                XCTAssertEqual(three.recipe.predictedError, best.error, accuracy: 1e-12, "budget \(budget)")
                XCTAssertLessThanOrEqual(three.recipe.bits, small.budgetBits(bitsPerWeight: budget))
            } else {
                XCTAssertNotNil(why, "budget \(budget): nothing fits")
            }
        }

        // Saved (temporary file, then rename) and read back: equal.
        let dir = try TestPaths.temporaryDirectory(for: self)
        try editor.save(to: dir + "/edited.json")
        XCTAssertFalse(editor.edited)
        XCTAssertEqual(try Recipe.load(dir + "/edited.json"), editor.recipe)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["edited.json"], "no temporary file left")
    }

    /// The keys through the Session, as the curses loop sends them: load, change a layer, the
    /// totals on screen move by the expected amount, the budget and re-solve, save, reload.
    func testRecipeThroughTheSessionAndOnScreen() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let path = dir + "/plan.json"
        let recipe = try Self.demoRecipe()
        try recipe.write(to: path)
        var state = AppState(model: Self.demo)
        let session = Session(jobs: JobCenter())
        session.handle(.selectTab(.model), state: &state)
        session.handle(.startRecipeLoad, state: &state)
        for c in path { session.handle(.filterInput(c), state: &state) }
        session.handle(.endFilter, state: &state)
        XCTAssertEqual(state.recipe?.recipe, recipe, state.status)
        func total(_ screen: Screen) -> String? {
            screen.lines.compactMap { line in line.range(of: #"recipe \d+\.\d{3} bits/w"#, options: .regularExpression).map { String(line[$0]) } }
                .first
        }
        let shown = render(state, width: 80, height: 24)
        XCTAssertEqual(total(shown), "recipe \(Formatting.fixed(recipe.bitsPerWeight, 3)) bits/w", shown.text)
        XCTAssertEqual(shown.overlaps.count, 0)
        // The selected layer (the first linear layer) to its next candidate, int8.
        let layer = try XCTUnwrap(recipe.table.layers.firstIndex(of: try XCTUnwrap(state.selectedTensor).name))
        session.handle(.recipeNext, state: &state)
        var changed = recipe
        changed.choice[layer] = recipe.table.entries[layer][2] == nil ? 0 : 2
        XCTAssertEqual(state.recipe?.recipe.choice, changed.choice)
        XCTAssertEqual(total(render(state, width: 80, height: 24)), "recipe \(Formatting.fixed(changed.bitsPerWeight, 3)) bits/w")
        XCTAssertTrue(render(state, width: 80, height: 24).text.contains("edited"))
        // Save, then load again: what was saved.
        session.handle(.saveRecipe, state: &state)
        XCTAssertTrue(state.status.hasPrefix("saved the recipe to \(path)"), state.status)
        XCTAssertEqual(try Recipe.load(path), changed)
        state.recipe = nil
        session.perform(.loadRecipe(path: path), state: &state)
        XCTAssertEqual(state.recipe?.recipe, changed)
        // The budget down to 3.0 and re-solve: within the budget, and the optimum there.
        for _ in 0..<30 { session.handle(.budgetDown, state: &state) }
        let budget = try XCTUnwrap(state.recipe?.budget)
        session.handle(.solveRecipe, state: &state)
        let solved = try XCTUnwrap(state.recipe?.recipe)
        XCTAssertLessThanOrEqual(solved.bits, solved.table.budgetBits(bitsPerWeight: budget), state.status)
        XCTAssertEqual(solved.choice, BitAllocation.solve(solved.table, budgetBits: solved.table.budgetBits(bitsPerWeight: budget)))
        // `a` quantizes per the recipe: each layer to its candidate.
        session.handle(.quantizeAll, state: &state)
        waitForJob(session.jobs)
        for (l, name) in solved.table.layers.enumerated() {
            let c = solved.candidate(ofLayer: l)
            XCTAssertEqual(session.jobs.result(for: name)?.format, c.format, name)
            XCTAssertEqual(session.jobs.result(for: name)?.matrix?.groupSize, c.groupSize, name)
        }
        // A recipe for another model is refused with the file and layer named.
        let other = try Self.makeModel(dir, blocks: 1)
        XCTAssertThrowsError(try Session.openRecipe(path, for: try Model.open(other))) { error in
            XCTAssertTrue("\(error)".contains(path), "\(error)")
        }
    }
}
