import Foundation
import TestSupport
import XCTest

/// Issue 18 item 1 in a real terminal: quantize one SmolLM2 layer and its model-level error (KL
/// and perplexity against the unquantized model) appears, keys answered meanwhile.
final class TUIModelErrorEndToEndTests: XCTestCase {
    var terminal: Tmux!

    override func setUpWithError() throws { terminal = try Tmux() }
    override func tearDown() { terminal?.kill() }

    func testQuantizingOneSmolLM2LayerShowsItsKLAndPerplexity() throws {
        let model = try TestPaths.requireModel(TestPaths.smolLM2)
        try terminal.start(width: 160, height: 50)
        try terminal.type(TestPaths.any4Binary + " tui --eval-tokens 32 " + model, enter: true)
        try terminal.waitFor("any4 explorer")
        try terminal.key("2")
        // The engine loads and measures the unquantized model in the background.
        try terminal.waitFor(matching: #"unquantized ppl \d+\.\d\d on calibration\.txt, 32 tokens"#, timeout: 120)
        try terminal.key("Enter")
        var text = try terminal.waitFor(
            matching: #"model, this layer alone: KL \d\.\d\de-\d\d ± \d\.\de-\d\d · ppl \d+\.\d\d · top-1 \d+\.\d%"#, timeout: 120)
        XCTAssertTrue(text.contains("result: any4"), text)
        // The Model tab: the column and the whole model's line.
        try terminal.key("4")
        text = try terminal.waitFor(matching: #"model, 1 quantized: KL \d\.\d\de-\d\d"#)
        XCTAssertTrue(text.contains("model KL"), "the Model tab's column\n\(text)")
        XCTAssertNotNil(text.range(of: #"attn_k\.weight +any4 +\d\.\d\de-\d\d"#, options: .regularExpression), text)
        try terminal.key("q")
        try terminal.waitFor("q/y quits")
        try terminal.key("y")
        try terminal.waitFor("prompt$")
    }
}
