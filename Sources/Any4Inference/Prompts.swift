import Any4Core
import Foundation

/// A prompt that cannot be used as asked: too few tokens to calibrate on, or a vocabulary without
/// the chat template's tokens. The description is the whole message (the CLI prints it after
/// `any4: error: `, prefixed by the option that asked for it where there is one).
public enum PromptError: Error, Equatable, CustomStringConvertible {
    /// A decoder's calibration prompt of fewer than 2 tokens (`source` names the file).
    case tooFewTokens(source: String, count: Int)
    /// The vocabulary lacks the ChatML turn markers.
    case noChatTokens

    public var description: String {
        switch self {
        case .tooFewTokens(let source, let count): "\(source): the calibration prompt has \(count) tokens"
        case .noChatTokens: "the vocabulary has no <|im_start|>/<|im_end|> tokens"
        }
    }
}

/// The token sequences a calibration prompt gives a model: what `calibrate`, `quantize --calibrate`
/// and the engine commands' `--calibrate` run through it.
public enum CalibrationPrompt {
    /// The kind of model the sequences are for.
    public enum Target: Equatable, Sendable {
        /// A decoder: the whole prompt as one sequence, cut to the context.
        case decoder(contextLength: Int)
        /// An encoder: one sequence per paragraph (blank-line separated), each cut to the positions.
        case encoder(maxPositions: Int)
    }

    /// The default prompt: assets/calibration.txt next to the package (found from the executable's
    /// location, up to five folders up, or else relative to the working directory).
    public static func defaultPath() -> String {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = dir.appendingPathComponent("assets/calibration.txt").path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            dir.deleteLastPathComponent()
        }
        return "assets/calibration.txt"
    }

    /// The target an engine calibrates as: a BERT encoder by paragraphs, anything else (the Llama
    /// family) as one decoder sequence.
    public static func target(of engine: any TransformerEngine) -> Target {
        if let bert = engine as? BertEngine { return .encoder(maxPositions: bert.maxPositions) }
        if let llama = engine as? LlamaEngine { return .decoder(contextLength: llama.config.contextLength) }
        return .decoder(contextLength: Int.max)
    }

    /// The sequences of `text` (read from `source`, which names it in errors) for `target`, with the
    /// tokenizer's special tokens. A decoder's prompt needs at least 2 tokens.
    public static func sequences(
        _ text: String, source: String, target: Target,
        tokenizer: any TextTokenizer
    ) throws(PromptError) -> [[Int]] {
        switch target {
        case .encoder(let maxPositions):
            let paragraphs = text.components(separatedBy: "\n\n").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
                .filter { !$0.isEmpty }
            return paragraphs.map { Array(tokenizer.encode($0, addSpecialTokens: true).prefix(maxPositions)) }
        case .decoder(let contextLength):
            let ids = tokenizer.encode(text, addSpecialTokens: true)
            guard ids.count >= 2 else { throw .tooFewTokens(source: source, count: ids.count) }
            return [Array(ids.prefix(contextLength))]
        }
    }

    /// The sequences of `text` for `engine`'s kind of model.
    public static func sequences(
        _ text: String, source: String, engine: any TransformerEngine,
        tokenizer: any TextTokenizer
    ) throws(PromptError) -> [[Int]] {
        try sequences(text, source: source, target: target(of: engine), tokenizer: tokenizer)
    }
}

/// A chat template: how a user's message is wrapped into the model's turns, and the token that ends
/// the assistant's turn. Only ChatML (`<|im_start|>` … `<|im_end|>`, SmolLM2's and Qwen's) so far.
public struct ChatTemplate: Sendable, Equatable {
    /// The token id that ends a turn: generation stops on it.
    public let endOfTurn: Int

    /// ChatML for `tokenizer`, or `PromptError.noChatTokens` when `<|im_end|>` is not one token of
    /// its vocabulary.
    public static func chatML(for tokenizer: any TextTokenizer) throws(PromptError) -> ChatTemplate {
        let end = tokenizer.encode("<|im_end|>", addSpecialTokens: false)
        guard end.count == 1 else { throw .noChatTokens }
        return ChatTemplate(endOfTurn: end[0])
    }

    /// `message` as one user turn followed by the opening of the assistant's turn.
    public func prompt(user message: String) -> String {
        "<|im_start|>user\n\(message)<|im_end|>\n<|im_start|>assistant\n"
    }
}
