import Any4Core
import ArgumentParser
import Foundation

@main
struct Any4Command: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "any4",
        abstract: "See and control how an LLM's weights survive 4-bit quantization.",
        discussion: """
            With no subcommand, opens the terminal UI (on the built-in synthetic demo model when no \
            model path is given). Models: a .safetensors file, a Hugging Face folder, or a .gguf file.
            """,
        subcommands: [
            TUICommand.self, InspectCommand.self, QuantizeCommand.self, CompareCommand.self, BenchCommand.self, InfoCommand.self,
            TokenizeCommand.self, CalibrateCommand.self, PlanCommand.self, PerplexityCommand.self, EmbedEvalCommand.self, RunCommand.self,
            MergeCommand.self, DiffCommand.self
        ],
        defaultSubcommand: TUICommand.self
    )

    /// ArgumentParser's `main`, except that a value outside a choice option's choices exits 2 with
    /// a one-line message naming the option and the choices, as the other bad options do (see
    /// Choices.swift); other parse errors keep the parser's usage message and status 64.
    static func main() {
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            if let message = ChoiceFailure.message(arguments: Array(CommandLine.arguments.dropFirst())) {
                printError("any4: error: \(message)")
                Self.exit(withError: ExitCode(2))
            }
            Self.exit(withError: error)
        }
        do {
            try command.run()
        } catch {
            Self.exit(withError: error)
        }
    }
}

/// Runs `body`, turning file errors and sizes that cannot be had into a one-line message on stderr
/// and exit status 2.
func reportingFileErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as FileFormatError {
        printError("any4: error: \(error)")
        throw ExitCode(2)
    } catch let error as SizeError {
        printError("any4: error: \(error)")
        throw ExitCode(2)
    }
}

func printError(_ text: String) {
    var stderr = StandardError()
    print(text, to: &stderr)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var copy = string
        copy.withUTF8 { buffer in _ = fwriteStderr(buffer) }
    }
}

#if canImport(Glibc)
    import Glibc
    private func fwriteStderr(_ buffer: UnsafeBufferPointer<UInt8>) -> Int { Glibc.write(2, buffer.baseAddress, buffer.count) }
#elseif canImport(Darwin)
    import Darwin
    private func fwriteStderr(_ buffer: UnsafeBufferPointer<UInt8>) -> Int { Darwin.write(2, buffer.baseAddress, buffer.count) }
#endif

/// Opens the model at `path`, or the built-in demo when `path` is nil or `demo` (and no file of
/// that name exists).
func openModel(_ path: String?) throws -> Model {
    try reportingFileErrors {
        if let path, !(path == "demo" && !FileManager.default.fileExists(atPath: path)) { return try Model.open(path) }
        return try DemoModel.make()
    }
}
