import Any4
import ArgumentParser

struct TUICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tui",
        abstract: "Open the terminal UI on a model (the built-in demo when no path is given)."
    )

    @Argument(help: "A .safetensors file, a Hugging Face model folder, or a .gguf file.")
    var path: String?

    func run() throws {
        let model = try openModel(path)
        // The interactive UI is not built yet; until it is, show what it would open.
        printError("any4: the interactive terminal UI is not built yet; showing `any4 inspect` of \(model.path).")
        try InspectCommand.parse(path.map { [$0] } ?? []).run()
    }
}
