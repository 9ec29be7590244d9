import Any4Core
import Any4Inference
import Foundation
import TestSupport
import XCTest

/// Calibration sequences and the ChatML template (Inference/Prompts.swift), on a word tokenizer
/// and, when the models are present, on SmolLM2's and MiniLM's own tokenizers.
final class PromptsTests: XCTestCase {
    /// One id per whitespace-separated word (its position in `vocabulary`, else 0), BOS 1 first
    /// with special tokens; `<|im_end|>` is one token only when `chat` is set.
    struct WordTokenizer: TextTokenizer {
        var chat = true
        var bos = 1
        var vocabulary: [String] { ["<unk>", "<s>", "<|im_start|>", "<|im_end|>", "a", "b", "c", "d"] }
        var vocabularySize: Int { vocabulary.count }
        var bosID: Int? { bos }
        var eosID: Int? { nil }
        func encode(_ text: String, addSpecialTokens: Bool) -> [Int] {
            let words = text.split(whereSeparator: \.isWhitespace).flatMap { word -> [Int] in
                if !chat && word.hasPrefix("<|") { return [0, 0, 0] }  // split into pieces
                return [vocabulary.firstIndex(of: String(word)) ?? 0]
            }
            return (addSpecialTokens ? [bos] : []) + words
        }
        func decode(_ ids: [Int], skipSpecial: Bool) -> String { ids.map { vocabulary[$0] }.joined(separator: " ") }
        func bytes(of id: Int) -> [UInt8] { Array(vocabulary[id].utf8) }
        func piece(_ id: Int) -> String { vocabulary[id] }
    }

    func testDecoderTakesTheWholePromptCutToItsContext() throws {
        let tokenizer = WordTokenizer()
        let text = "a b\n\nc d\n\na"
        XCTAssertEqual(
            try CalibrationPrompt.sequences(text, source: "p.txt", target: .decoder(contextLength: 100), tokenizer: tokenizer),
            [[1, 4, 5, 6, 7, 4]])
        XCTAssertEqual(
            try CalibrationPrompt.sequences(text, source: "p.txt", target: .decoder(contextLength: 3), tokenizer: tokenizer),
            [[1, 4, 5]])
    }

    func testEncoderTakesOneSequencePerParagraphCutToItsPositions() throws {
        let tokenizer = WordTokenizer()
        let text = "a b\n\n  \n\nc d c\n\n\n\nd\n"
        XCTAssertEqual(
            try CalibrationPrompt.sequences(text, source: "p.txt", target: .encoder(maxPositions: 512), tokenizer: tokenizer),
            [[1, 4, 5], [1, 6, 7, 6], [1, 7]])
        XCTAssertEqual(
            try CalibrationPrompt.sequences(text, source: "p.txt", target: .encoder(maxPositions: 2), tokenizer: tokenizer),
            [[1, 4], [1, 6], [1, 7]])
    }

    func testADecoderPromptOfOneTokenIsRefusedNamingTheFile() {
        XCTAssertThrowsError(
            try CalibrationPrompt.sequences(
                "", source: "dir/p.txt", target: .decoder(contextLength: 8),
                tokenizer: WordTokenizer())
        ) { error in
            XCTAssertEqual(error as? PromptError, .tooFewTokens(source: "dir/p.txt", count: 1))
            XCTAssertEqual("\(error)", "dir/p.txt: the calibration prompt has 1 tokens")
        }
    }

    func testChatMLWrapsOneUserTurnAndStopsOnImEnd() throws {
        let template = try ChatTemplate.chatML(for: WordTokenizer())
        XCTAssertEqual(template.endOfTurn, 3)
        XCTAssertEqual(
            template.prompt(user: "What is 2+2?"),
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    }

    func testChatMLWithoutTheTokensIsRefused() {
        XCTAssertThrowsError(try ChatTemplate.chatML(for: WordTokenizer(chat: false))) { error in
            XCTAssertEqual(error as? PromptError, .noChatTokens)
            XCTAssertEqual("\(error)", "the vocabulary has no <|im_start|>/<|im_end|> tokens")
        }
    }

    /// The real tokenizers: SmolLM2 has ChatML's tokens, MiniLM (WordPiece) has not.
    func testChatMLOnRealTokenizers() throws {
        let smol = try Tokenizers.load(for: try Model.open(try TestPaths.requireModel(TestPaths.smolLM2)))
        let template = try ChatTemplate.chatML(for: smol)
        XCTAssertEqual(smol.encode("<|im_end|>", addSpecialTokens: false), [template.endOfTurn])
        let ids = smol.encode(template.prompt(user: "hi"), addSpecialTokens: false)
        XCTAssertEqual(ids.first, smol.encode("<|im_start|>", addSpecialTokens: false).first)
        XCTAssertTrue(ids.contains(template.endOfTurn))

        let minilm = try Tokenizers.load(for: try Model.open(try TestPaths.requireModel(TestPaths.miniLM)))
        XCTAssertThrowsError(try ChatTemplate.chatML(for: minilm)) { XCTAssertEqual($0 as? PromptError, .noChatTokens) }
    }
}
