import Any4Core
import Any4TUI
import ArgumentParser
import Foundation

struct TUICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tui",
        abstract: "Open the terminal UI on a model (the built-in demo when no path is given)."
    )

    @OptionGroup var modelArgument: OptionalModelArgument

    @Option(help: "A bit-budget recipe (written by `any4 plan`) to show and edit in the Model tab.")
    var recipe: String?

    @Option(help: "Another model of the same architecture to compare with, tensor by tensor (the Diff tab; see `any4 diff`).")
    var diff: String?

    @Flag(help: "Plain ASCII drawing and no colour.")
    var ascii = false

    @Option(
        name: .customLong("eval-text"),
        help: "Text the model-level error (KL and perplexity, or embedding cosine) is measured on after each job (default: assets/calibration.txt).")
    var evalText: String?

    @Option(
        name: .customLong("eval-tokens"),
        help: "Tokens of that text a decoder is measured on, 8 or more (default: 128 up to 1B parameters, fewer for larger models).")
    var evalTokens: Int?

    func run() throws {
        if isatty(0) == 1 && isatty(1) == 1 { Self.makeCrashReportsNonInteractive() }
        let launched = Clock.now
        let path = modelArgument.model
        let model = try openModel(path)
        // A bad recipe is refused before the screen is taken (exit 2, naming the file and entry).
        let editor = try recipe.map { try Session.openRecipe($0, for: model) }
        // A model that cannot be compared is refused before the screen is taken, as a bad recipe.
        let modelDiff = try diff.map { other in try reportingFileErrors { try ModelDiff(model, try Model.open(other)) } }
        if let evalText { _ = try readText(evalText, what: "evaluation text") }
        if let evalTokens, evalTokens < 8 { throw usageError("--eval-tokens \(evalTokens): a decoder is measured on 8 tokens or more") }
        guard isatty(0) == 1, isatty(1) == 1 else {
            // Not a terminal (a pipe, CI): print the layer tree instead of drawing a screen.
            printError(
                "any4: not a terminal; printing `any4 \(diff == nil ? "inspect" : "diff")` of \(model.path) instead of the interactive UI")
            if let other = diff {
                try DiffCommand.parse([path ?? "demo", other]).run()
            } else {
                try InspectCommand.parse(path.map { [$0] } ?? []).run()
            }
            return
        }
        let noColor = ascii || !(ProcessInfo.processInfo.environment["NO_COLOR"] ?? "").isEmpty
        if let signal = CursesApp(
            model: model, recipe: editor, diff: modelDiff, ascii: ascii, noColor: noColor, launchedAt: launched,
            evaluationText: evalText, evaluationTokens: evalTokens
        ).run() {
            throw ExitCode(128 + signal)  // 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP
        }
    }

    /// On a terminal, Swift's crash backtracer asks whether to debug and waits up to 30 s for a
    /// key before the process may die; under the UI nobody answers that prompt (keys meant for
    /// the UI, a closed window), and a helper whose crashed process is killed meanwhile is left
    /// behind, blocked for good on a socket it also holds itself. The runtime reads its settings
    /// from SWIFT_BACKTRACE once, at process start, so the UI runs itself again, once, with
    /// `interactive=no` added; a SWIFT_BACKTRACE that already says `interactive=` is left alone.
    static func makeCrashReportsNonInteractive() {
        let current = ProcessInfo.processInfo.environment["SWIFT_BACKTRACE"] ?? ""
        guard !current.contains("interactive=") else { return }
        setenv("SWIFT_BACKTRACE", current.isEmpty ? "interactive=no" : current + ",interactive=no", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // Only returns if exec failed: carry on with the runtime's defaults.
    }
}
