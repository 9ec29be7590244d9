import Any4Core
import Foundation

/// What an action asks of the world beyond the UI state: a job to start or stop, a file to write.
public enum Effect: Equatable, Sendable {
    /// Quantize the layer to the form's format (tab 2, Enter).
    case quantize(tensor: String)
    /// Quantize the layer in every 4-bit format for the comparison table (`c`).
    case compare(tensor: String)
    /// Quantize every linear layer the CLI would (`a`).
    case quantizeAll
    /// Cancel the running job (Esc); the reducer then clears the status line.
    case cancelJob
    /// Write every quantized layer (each with its own settings) as an any4 checkpoint at `path` (`w`).
    case writeCheckpoint(path: String)
    /// Write the Model tab's table as `any4-layers.csv` and `any4-layers.json` (`e`).
    case exportTable
    /// Quantize every layer the open recipe quantizes, each to its chosen candidate (`a` with a recipe).
    case quantizeRecipe
    /// Open the recipe at `path` in the Model tab (`--recipe`, or `L` and a path).
    case loadRecipe(path: String)
    /// Write the open recipe, as edited, to its file (`S`; temporary file, then rename).
    case saveRecipe
    /// Nothing to run: show this in the status line.
    case status(String)
}

extension AppState {
    /// The Quantize form as options (used for one layer, for all, and for the checkpoint's metadata).
    public var quantizationOptions: QuantizationOptions {
        var options = QuantizationOptions()
        options.groupSize = groupSize
        options.cluster = cluster
        options.sampleWeighting = sampleWeighting
        return options
    }
}

/// The TUI's side effects without a terminal: `state + action → effect → status`. The curses
/// backend maps keys and clicks to actions and hands each to ``handle(_:state:)``; tests do the same.
public struct Session {
    public let jobs: JobCenter
    /// The folder `w` and `e` write in (nil: the current folder; the status line names the files
    /// as given).
    public var folder: String?

    /// The export's file names.
    public static let exportNames = (csv: "any4-layers.csv", json: "any4-layers.json")

    /// The diff with `--diff B`'s model, measured in the background (nil without one).
    public let diff: DiffCenter?

    public init(jobs: JobCenter, folder: String? = nil, diff: DiffCenter? = nil) {
        self.jobs = jobs
        self.folder = folder
        self.diff = diff
    }

    /// The current tab's table rows (Model tab: by the sort, with the model-level costs; Diff tab:
    /// worst first), which row keys and clicks walk. The curses loop refreshes it every frame too.
    public func refreshTableOrder(_ state: inout AppState) {
        state.modelOrder = Renderer.tableRows(state, jobs.results, diff, costs: jobs.modelCosts)
    }

    /// Applies one action: runs the effect it asks for, or hands it to the reducer.
    public func handle(_ action: Action, state: inout AppState) {
        refreshTableOrder(&state)
        if let effect = Self.effect(of: action, in: state) {
            perform(effect, state: &state)
        } else {
            state.apply(action)
        }
    }

    /// The effect `action` asks for in `state`, or nil when it only changes the state. While a
    /// filter or a row number is typed, every action goes to the reducer (Esc ends the typing and
    /// leaves the job running). In the Quantize tab, Enter on a tensor runs the quantization
    /// whichever pane has focus.
    public static func effect(of action: Action, in state: AppState) -> Effect? {
        if state.recipePrompt != nil {
            // Enter loads the typed path; Esc (the reducer) stops typing.
            return action == .endFilter ? .loadRecipe(path: state.recipePrompt!) : nil
        }
        if state.filtering || state.rowJump != nil { return nil }
        let action = action == .toggle && state.tab == .quantize && state.selectedTensor != nil ? .runQuantize : action
        switch action {
        case .runQuantize, .runCompare:
            guard let tensor = state.selectedTensor, tensor.isLinear else { return .status("select a linear layer first") }
            return action == .runQuantize ? .quantize(tensor: tensor.name) : .compare(tensor: tensor.name)
        case .cancel: return .cancelJob
        case .quantizeAll: return state.recipe == nil ? .quantizeAll : .quantizeRecipe
        case .saveRecipe: return state.recipe == nil ? .status("no recipe: L loads one (any4 plan writes them)") : .saveRecipe
        case .writeCheckpoint: return .writeCheckpoint(path: checkpointName(state))
        case .exportTable: return .exportTable
        default: return nil
        }
    }

    /// `w`'s file: the model's name without its extension (`demo` for the built-in model), the
    /// format, `.gguf` for a GGUF model (a checkpoint that keeps its metadata and tokenizer), else
    /// `.safetensors`.
    public static func checkpointName(_ state: AppState) -> String {
        let base = state.model.format == .demo ? "demo" : URL(fileURLWithPath: state.model.path).deletingPathExtension().lastPathComponent
        return "\(base).\(state.format).\(state.model.format == .gguf ? "gguf" : "safetensors")"
    }

    /// Runs `effect`, leaving its outcome in the status line where it has one (jobs report on
    /// their own, in the views).
    public func perform(_ effect: Effect, state: inout AppState) {
        switch effect {
        case .quantize(let name):
            guard let tensor = state.model.tensors.first(where: { $0.name == name }) else { return }
            jobs.quantize(tensor, of: state.model, format: state.format, options: state.quantizationOptions)
        case .compare(let name):
            guard let tensor = state.model.tensors.first(where: { $0.name == name }) else { return }
            jobs.compare(tensor, of: state.model, options: state.quantizationOptions)
        case .quantizeAll:
            jobs.quantizeAll(state.model, format: state.format, options: state.quantizationOptions)
        case .quantizeRecipe:
            guard let recipe = state.recipe else { return }
            do {
                let chosen = try recipe.recipe.assignments(for: state.model, recipePath: recipe.path)
                let base = state.quantizationOptions
                jobs.quantizeAll(
                    state.model,
                    layers: try chosen.map { ($0.tensor, try FormatRegistry.named($0.candidate.format), $0.candidate.options(base: base)) },
                    label: "quantizing \(chosen.count) layers per the recipe")
            } catch {
                state.status = "recipe: \(error)"
            }
        case .loadRecipe(let path):
            state.recipePrompt = nil
            do {
                state.recipe = try Self.openRecipe(path, for: state.model)
                let r = state.recipe!.recipe
                state.status = "recipe \(path): \(r.table.layers.count) layers, \(Formatting.fixed(r.bitsPerWeight, 3)) bits/weight"
            } catch {
                state.status = "recipe not loaded: \(error)"
            }
        case .saveRecipe:
            guard var recipe = state.recipe else { return }
            let model = state.model
            state.status = Self.status(of: "save") {
                try OutputGuard.check(recipe.path, inputs: model.inputFiles)
                try recipe.save()
                return "saved the recipe to \(recipe.path) (\(Formatting.fixed(recipe.recipe.bitsPerWeight, 3)) bits/weight)"
            }
            if !recipe.edited { state.recipe = recipe }
        case .cancelJob:
            jobs.cancel()
            state.apply(.cancel)
        case .writeCheckpoint(let name):
            let path = self.path(name)
            let model = state.model
            // QuantizedCheckpoint.write refuses a path that is one of the model's files (OutputGuard).
            state.status = Self.status(of: "write") {
                let count = try jobs.write(model, to: path)
                return "wrote \(count) quantized layer\(count == 1 ? "" : "s") to \(path)"
            }
        case .exportTable:
            let current = state
            state.status = Self.status(of: "export") {
                try exportTable(current)
                return "exported \(Self.exportNames.csv) and \(Self.exportNames.json)"
            }
        case .status(let text):
            state.status = text
        }
    }

    /// Reads the recipe at `path` and checks that it plans layers of `model` (names and sizes).
    ///
    /// - Throws: ``FileFormatError`` naming the file and the entry or layer that is wrong.
    public static func openRecipe(_ path: String, for model: Model) throws -> RecipeEditor {
        let recipe = try Recipe.load(path)
        _ = try recipe.assignments(for: model, recipePath: path)
        return RecipeEditor(recipe: recipe, path: path)
    }

    /// A file name in ``folder``.
    /// The status line of a write: what `body` says it wrote, "<what> refused: …" when the target
    /// is one of the model's files, else "<what> failed: …".
    static func status(of what: String, _ body: () throws -> String) -> String {
        do {
            return try body()
        } catch let error as FileFormatError where error.kind == .outputIsInput {
            return "\(what) refused: \(error)"
        } catch {
            return "\(what) failed: \(error)"
        }
    }

    func path(_ name: String) -> String { folder.map { $0 + "/" + name } ?? name }

    /// The Model tab's table as it is exported: every linear layer in the tab's order, the
    /// quantized ones with their figures.
    public static func exportedTable(_ state: AppState, _ results: [String: LayerResult], costs: [String: Double] = [:]) -> LayerReports {
        LayerReports(
            Renderer.modelRows(state, results, costs: costs).map { tensor, result in
                result.map(LayerReport.init) ?? LayerReport(unquantized: tensor.name, shape: tensor.shape)
            })
    }

    /// The export's two files: (name, text).
    public static func exportFiles(
        _ state: AppState, _ results: [String: LayerResult], costs: [String: Double] = [:]
    ) -> [(name: String, text: String)] {
        let table = exportedTable(state, results, costs: costs)
        let json = JSONValue.object([("model", .string(state.model.path)), ("layers", table.json(LayerReport.Field.table))])
        return [(exportNames.csv, table.csv(LayerReport.Field.table)), (exportNames.json, json.serialized + "\n")]
    }

    /// Writes the Model tab's table as CSV and JSON in ``folder`` (atomically); neither is written
    /// if either would replace one of the model's files.
    public func exportTable(_ state: AppState) throws {
        let files = Self.exportFiles(state, jobs.results, costs: jobs.modelCosts).map { (path: path($0.name), text: $0.text) }
        for file in files { try OutputGuard.check(file.path, inputs: state.model.inputFiles) }
        for file in files {
            let writer = try AtomicFileWriter(path: file.path)
            try writer.write(file.text)
            try writer.commit()
        }
    }
}
