import Any4
import Any4TUI
import ArgumentParser
import Foundation

struct TUICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tui",
        abstract: "Open the terminal UI on a model (the built-in demo when no path is given)."
    )

    @Argument(help: "A .safetensors file, a Hugging Face model folder, or a .gguf file.")
    var path: String?

    @Flag(help: "Plain ASCII drawing and no colour.")
    var ascii = false

    func run() throws {
        let launched = Clock.now
        let model = try openModel(path)
        guard isatty(0) == 1, isatty(1) == 1 else {
            // Not a terminal (a pipe, CI): print the layer tree instead of drawing a screen.
            printError("any4: not a terminal; printing `any4 inspect` of \(model.path) instead of the interactive UI")
            try InspectCommand.parse(path.map { [$0] } ?? []).run()
            return
        }
        let noColor = ascii || !(ProcessInfo.processInfo.environment["NO_COLOR"] ?? "").isEmpty
        CursesApp(model: model, ascii: ascii, noColor: noColor, launchedAt: launched).run()
    }
}
