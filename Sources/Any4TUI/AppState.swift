import Any4Core

/// The panes and tabs of the explorer.
public enum Pane: Sendable { case layers, detail }

public enum Tab: Int, Sendable, CaseIterable {
    case histogram, quantize, kernel, model, diff
    public var title: String {
        switch self {
        case .histogram: "Histogram"
        case .quantize: "Quantize"
        case .kernel: "Kernel"
        case .model: "Model"
        case .diff: "Diff"
        }
    }
}

/// One line of the layer tree: a block header or a tensor.
public enum TreeRow: Equatable, Sendable {
    case block(Int)
    case tensor(Int)
}

/// What the user can do; the backend turns keys and clicks into these.
public enum Action: Equatable, Sendable {
    case up, down, pageUp, pageDown, home, end
    case expand, collapse, toggle
    case nextPane, previousPane
    case selectTab(Tab)
    case previousRow, nextRow, toggleRowMode, toggleDomain, toggleIntGrid, zoomIn, zoomOut
    case cycleFormat, cycleGroupSize, cycleCluster, runQuantize, runCompare
    case batchUp, batchDown, togglePause
    case quantizeAll, writeCheckpoint, exportTable, cycleSort, cycleSampleWeight
    case startRowJump, confirmQuit
    case startFilter, filterInput(Character), filterBackspace, endFilter
    /// The recipe in the Model tab: the selected layer's next/previous candidate, the budget
    /// up/down, re-solve at the budget, save, and type a path to load one.
    case recipeNext, recipePrevious, budgetUp, budgetDown, solveRecipe, saveRecipe, startRecipeLoad
    case toggleHelp, cancel, quit
    case click(row: Int, column: Int), wheel(up: Bool)
}

/// The whole UI state: plain values, changed only by ``AppState/apply(_:)``.
public struct AppState: Sendable {
    public let model: Model
    public let blocks: [ModelBlock]
    public var expanded: Set<Int>
    public var selection = 0
    public var scroll = 0
    public var focus: Pane = .layers
    public var tab: Tab = .histogram
    /// Histogram of one row (nil: the whole tensor).
    public var histogramRow: Int? = 0
    /// Group-scaled [0, 2^b − 1] domain (with the row's codebook) or raw values.
    public var scaledDomain = true
    /// Reference grid under the histogram: none (nil) or one of ``ReferenceGrid/all`` (int4, nf4, fp4).
    public var grid: ReferenceGrid?
    /// Typing a row number after `g`.
    public var rowJump: String?
    /// Sort of the Model tab: by name, SQNR, output error, bits per weight, the recipe's predicted
    /// error, or the model-level error each layer causes alone (worst first).
    public var sort: Sort = .name
    public enum Sort: String, Sendable, CaseIterable {
        case name, sqnr, outputError = "output error", bits, predicted = "predicted error", modelError = "model error"
    }
    public var sampleWeighting: SampleWeighting = .scale
    /// Quit was asked with unsaved quantized layers: the next `q` (or `y`) quits.
    public var confirmingQuit = false
    /// Whether quantized layers exist that were not written (set by the app).
    public var unsaved = false
    public var zoom = 1
    /// The model the Diff tab compares with (`--diff B`), nil without one (and no Diff tab).
    public var diffWith: String?
    /// The tabs shown: the Diff tab only with `--diff`.
    public var tabs: [Tab] { Tab.allCases.filter { $0 != .diff || diffWith != nil } }
    /// The tab whose table the moving keys walk when the detail pane has focus (rows in ``modelOrder``).
    var hasTable: Bool { tab == .model || tab == .diff }
    /// The bit-budget recipe shown in the Model tab (`--recipe FILE`, or `L`).
    public var recipe: RecipeEditor?
    /// Typing the path of a recipe to load (after `L`).
    public var recipePrompt: String?
    /// The Model tab's rows (tensor names in its current order; the Diff tab's in that tab), set
    /// before each action and frame from the results (the order can depend on them); its first row
    /// shown, and how many fit.
    public var modelOrder: [String] = []
    public var modelScroll = 0
    public var modelHeight = 10
    public var modelTop = 5
    public var filter = ""
    public var filtering = false
    public var showHelp = false
    public var status = ""
    public var quit = false
    /// The formats the `f` key cycles through (the registry's offered formats).
    public static let formats = FormatRegistry.offered.map(\.name)
    public var formatIndex = 0
    public var groupSize = 128
    public var cluster: ClusterMethod = .lloyd
    public var batch = 1
    public var kernelPaused = false
    /// Layout facts the reducer needs (set by the view on each frame).
    public var treeHeight = 20
    public var treeTop = 2
    public var treeWidth = 40

    public init(model: Model) {
        self.model = model
        blocks = model.blocks
        // Start with the first block that holds a linear layer open, and select its first linear layer.
        let hasLinear: (ModelBlock) -> Bool = { $0.tensorIndices.contains { model.tensors[$0].isLinear } }
        let first = blocks.firstIndex { $0.index != nil && hasLinear($0) } ?? blocks.firstIndex(where: hasLinear) ?? 0
        expanded = [first]
        if let row = visibleRows.firstIndex(where: {
            if case .tensor(let t) = $0 { return model.tensors[t].isLinear }
            return false
        }) {
            selection = row
        }
    }

    public var format: String { Self.formats[formatIndex] }
    /// The format chosen, as the registry holds it.
    public var numericFormat: any NumericFormat { FormatRegistry.offered[formatIndex] }

    /// The rows of the tree as shown: block headers, and the tensors of expanded blocks that match
    /// the filter (a filter also shows matching tensors of collapsed blocks).
    public var visibleRows: [TreeRow] {
        var rows: [TreeRow] = []
        let needle = filter.lowercased()
        for (b, block) in blocks.enumerated() {
            let matching =
                needle.isEmpty
                ? block.tensorIndices
                : block.tensorIndices.filter { model.tensors[$0].name.lowercased().contains(needle) }
            if !needle.isEmpty && matching.isEmpty { continue }
            rows.append(.block(b))
            if expanded.contains(b) || !needle.isEmpty { rows += matching.map { .tensor($0) } }
        }
        return rows
    }

    /// The tensor under the cursor, if the cursor is on a tensor.
    public var selectedTensor: ModelTensor? {
        let rows = visibleRows
        guard selection >= 0, selection < rows.count, case .tensor(let t) = rows[selection] else { return nil }
        return model.tensors[t]
    }

    /// The first tensor row at or after `start` in the tree as shown.
    func firstTensorRow(from start: Int) -> Int? {
        let rows = visibleRows
        guard start < rows.count else { return nil }
        return rows[max(start, 0)...].firstIndex {
            if case .tensor = $0 { return true }
            return false
        }
    }

    /// Selects the tensor `name` in the tree, opening its block (and clearing a filter that hides it).
    public mutating func select(tensorNamed name: String) {
        guard let t = model.tensors.firstIndex(where: { $0.name == name }) else { return }
        if let b = blocks.firstIndex(where: { $0.tensorIndices.contains(t) }) { expanded.insert(b) }
        if !visibleRows.contains(.tensor(t)) { filter = "" }
        if let row = visibleRows.firstIndex(of: .tensor(t)) { selection = row }
        clampSelection()
    }

    /// The Model tab's position of the selected tensor, if it has one.
    public var modelPosition: Int? { selectedTensor.flatMap { modelOrder.firstIndex(of: $0.name) } }

    /// With the Model tab focused, the moving keys walk its rows (in its order) and the tree
    /// follows; true when `action` was one of them.
    mutating func moveInModelTab(_ action: Action) -> Bool {
        guard !modelOrder.isEmpty else { return false }
        let page = max(1, modelHeight - 1)
        let here = modelPosition
        let target: Int
        switch action {
        case .up: target = (here ?? 1) - 1
        case .down: target = (here ?? -1) + 1
        case .pageUp: target = (here ?? 0) - page
        case .pageDown: target = (here ?? 0) + page
        case .home: target = 0
        case .end: target = modelOrder.count - 1
        case .wheel(let up): target = (here ?? 0) + (up ? -3 : 3)
        default: return false
        }
        select(tensorNamed: modelOrder[max(0, min(target, modelOrder.count - 1))])
        return true
    }

    /// Keeps the Model tab's selected row on screen (the tab scrolls with the selection).
    mutating func clampModelScroll() {
        modelScroll = Self.modelScroll(modelScroll, position: modelPosition, count: modelOrder.count, height: modelHeight)
    }

    /// The first Model tab row to show: `scroll` moved just enough to show `position`.
    public static func modelScroll(_ scroll: Int, position: Int?, count: Int, height: Int) -> Int {
        var s = scroll
        if let p = position {
            if p < s { s = p }
            if p >= s + height { s = p - height + 1 }
        }
        return max(0, min(s, max(0, count - height)))
    }

    mutating func clampSelection() {
        let count = visibleRows.count
        selection = max(0, min(selection, count - 1))
        if selection < scroll { scroll = selection }
        if selection >= scroll + treeHeight { scroll = selection - treeHeight + 1 }
        scroll = max(0, min(scroll, max(0, count - treeHeight)))
    }

    /// Applies one action. Whatever moves the selection to another tensor (keys, the mouse, the
    /// filter) starts its histogram at row 0: the row shown must exist in the tensor shown.
    public mutating func apply(_ action: Action) {
        let before = selectedTensor?.name
        reduce(action)
        if selectedTensor?.name != before, histogramRow != nil { histogramRow = 0 }
        clampModelScroll()
    }

    private mutating func reduce(_ action: Action) {
        if let digits = rowJump {
            switch action {
            case .filterInput(let c) where c.isNumber: rowJump = digits + String(c)
            case .filterBackspace: rowJump = String(digits.dropLast())
            case .endFilter:
                if let n = Int(digits), let t = selectedTensor { histogramRow = max(0, min(n, t.info.rowCount - 1)) }
                rowJump = nil
            case .cancel: rowJump = nil
            default: break
            }
            return
        }
        if let typed = recipePrompt {
            switch action {
            case .filterInput(let c): recipePrompt = typed + String(c)
            case .filterBackspace: recipePrompt = String(typed.dropLast())
            case .cancel: recipePrompt = nil
            default: break  // Enter is the Session's (it loads the file)
            }
            return
        }
        if confirmingQuit {
            if action == .quit || action == .confirmQuit {
                quit = true
            } else {
                confirmingQuit = false
                status = ""
            }
            return
        }
        if filtering {
            switch action {
            case .filterInput(let c):
                filter.append(c)
                selection = firstTensorRow(from: 0) ?? 0
            case .filterBackspace:
                if !filter.isEmpty { filter.removeLast() }
                selection = firstTensorRow(from: 0) ?? 0
            case .endFilter:
                filtering = false
                // Enter lands on a layer (the first match at or after the cursor), not a block header.
                selection = firstTensorRow(from: selection) ?? firstTensorRow(from: 0) ?? selection
            case .cancel:
                // The filter goes; the cursor stays on the layer it was on.
                let current = selectedTensor?.name
                filtering = false
                filter = ""
                if let current { select(tensorNamed: current) }
            default: break
            }
            clampSelection()
            return
        }
        if showHelp, action != .toggleHelp, action != .quit {
            showHelp = false
            return
        }
        if hasTable, focus == .detail, moveInModelTab(action) { return }
        let rows = visibleRows
        switch action {
        case .up: selection -= 1
        case .down: selection += 1
        case .pageUp: selection -= max(1, treeHeight - 1)
        case .pageDown: selection += max(1, treeHeight - 1)
        case .home: selection = 0
        case .end: selection = rows.count - 1
        case .expand, .collapse, .toggle:
            if focus == .detail && action == .collapse {
                focus = .layers
                break
            }
            if focus == .detail { break }
            guard selection < rows.count else { break }
            switch rows[selection] {
            case .block(let b):
                if action == .collapse || (action == .toggle && expanded.contains(b)) { expanded.remove(b) } else { expanded.insert(b) }
            case .tensor(let t):
                if action == .collapse, let b = blocks.firstIndex(where: { $0.tensorIndices.contains(t) }) {
                    expanded.remove(b)
                    selection = visibleRows.firstIndex(of: .block(b)) ?? selection
                } else if action != .collapse {
                    focus = .detail
                }
            }
        case .nextPane, .previousPane: focus = focus == .layers ? .detail : .layers
        case .selectTab(let t): if tabs.contains(t) { tab = t }
        case .previousRow: histogramRow = max(0, (histogramRow ?? 0) - 1)
        case .nextRow:
            if let t = selectedTensor { histogramRow = min(max(t.info.rowCount - 1, 0), (histogramRow ?? -1) + 1) }
        case .toggleRowMode: histogramRow = histogramRow == nil ? 0 : nil
        case .toggleDomain: scaledDomain.toggle()
        case .toggleIntGrid:
            // none → each grid in turn → none
            let choices = [nil] + ReferenceGrid.all.map(Optional.some)
            grid = choices[(choices.firstIndex(of: grid)! + 1) % choices.count]
        case .zoomIn: zoom = min(zoom * 2, 64)
        case .zoomOut: zoom = max(zoom / 2, 1)
        case .cycleFormat: formatIndex = (formatIndex + 1) % Self.formats.count
        case .cycleGroupSize: groupSize = groupSize == 256 ? 32 : groupSize * 2
        case .cycleCluster: cluster = cluster == .lloyd ? .exact : .lloyd
        case .batchUp: batch = min(batch * 2, 64)
        case .batchDown: batch = max(batch / 2, 1)
        case .togglePause: kernelPaused.toggle()
        case .startFilter: filtering = true
        case .toggleHelp: showHelp.toggle()
        case .quit:
            if unsaved {
                confirmingQuit = true
                status = "unsaved layers: q/y quits, other key stays (w writes)"
            } else {
                quit = true
            }
        case .startRowJump: if selectedTensor?.shape.count == 2 { rowJump = "" }
        case .cycleSampleWeight: sampleWeighting = sampleWeighting == .scale ? .none : .scale
        case .cycleSort: sort = Sort.allCases[(Sort.allCases.firstIndex(of: sort)! + 1) % Sort.allCases.count]
        case .cancel: status = ""
        case .click(let row, let column):
            // The Model tab's first row as drawn (the view scrolls to the selection).
            let shown = Self.modelScroll(modelScroll, position: modelPosition, count: modelOrder.count, height: modelHeight)
            if hasTable, !showHelp, column > treeWidth, row >= modelTop, row < modelTop + modelHeight,
                shown + row - modelTop < modelOrder.count
            {
                focus = .detail
                select(tensorNamed: modelOrder[shown + row - modelTop])
            } else if column < treeWidth, row >= treeTop, row < treeTop + treeHeight {
                focus = .layers
                let target = scroll + row - treeTop
                if target < rows.count {
                    if target == selection { reduce(.toggle) } else { selection = target }
                }
            } else if row == 0 {
                focus = .detail
            }
        case .wheel(let up): selection += up ? -3 : 3
        case .recipeNext, .recipePrevious:
            guard recipe != nil else {
                status = "no recipe: L loads one (any4 plan writes them)"
                break
            }
            guard let t = selectedTensor, let l = recipe!.layer(named: t.name) else {
                status = "the recipe does not plan this layer"
                break
            }
            if !recipe!.cycle(layer: l, by: action == .recipeNext ? 1 : -1) { status = "no other candidate applies to this layer" }
        case .budgetUp, .budgetDown:
            if recipe == nil {
                status = "no recipe: L loads one (any4 plan writes them)"
            } else {
                recipe!.adjustBudget(by: action == .budgetUp ? RecipeEditor.budgetStep : -RecipeEditor.budgetStep)
                status = "budget \(Formatting.fixed(recipe!.budget, 2)) bits/weight: r re-solves"
            }
        case .solveRecipe:
            if recipe == nil {
                status = "no recipe: L loads one (any4 plan writes them)"
            } else if let why = recipe!.solve() {
                status = why
            } else {
                status = "solved at \(Formatting.fixed(recipe!.budget, 2)) bits/weight"
            }
        case .startRecipeLoad: recipePrompt = recipe?.path ?? ""
        case .runQuantize, .runCompare, .filterInput, .filterBackspace, .endFilter,
            .quantizeAll, .writeCheckpoint, .exportTable, .confirmQuit, .saveRecipe:
            break
        }
        clampSelection()
    }
}
