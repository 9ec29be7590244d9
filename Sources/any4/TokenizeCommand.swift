import Any4Core
import ArgumentParser

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids (and pieces) the model's tokenizer gives a text.",
        discussion: "MODEL: a .gguf file or a Hugging Face model folder (with its tokenizer). --json: {\"ids\": [...], \"pieces\": [...]}.")

    @OptionGroup var modelArgument: ModelArgument

    @Argument(help: "The text to tokenize.")
    var text: String

    @Flag(help: "Leave out the model's special tokens (BOS, [CLS]/[SEP]).")
    var noSpecial = false

    @OptionGroup var jsonOutput: JSONOutputOption

    func run() throws {
        let model = try openModel(modelArgument.model)
        let tokenizer = try loadTokenizer(model)
        let ids = tokenizer.encode(text, addSpecialTokens: !noSpecial)
        if jsonOutput.json {
            print(
                JSONValue.object([
                    ("ids", .array(ids.map { JSONValue($0) })),
                    ("pieces", .array(ids.map { .string(tokenizer.piece($0)) }))
                ]).serialized)
        } else {
            print("\(ids.count) tokens")
            for id in ids { print("\(id)\t\(printable(tokenizer.piece(id)))") }
        }
    }

    /// A piece with its whitespace and control characters made visible.
    func printable(_ piece: String) -> String {
        var out = ""
        for s in piece.unicodeScalars {
            switch s {
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default: out += s.properties.generalCategory == .control ? "\\u{\(String(s.value, radix: 16))}" : String(s)
            }
        }
        return "\"\(out)\""
    }
}
