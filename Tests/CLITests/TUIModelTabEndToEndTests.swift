import Any4Core
import Foundation
import TestSupport
import XCTest

/// Issue 18's crash sequence, the Model tab's scrolling, and issue 17's recipe, in a real
/// terminal (tmux runs the binary, sends keys and mouse clicks, reads the screen).
final class TUIModelTabEndToEndTests: XCTestCase {
    var terminal: Tmux!

    override func setUpWithError() throws { terminal = try Tmux() }
    override func tearDown() { terminal?.kill() }

    /// A left click at screen cell (row, column), 0-based, as an xterm SGR mouse press and release.
    func click(row: Int, column: Int) throws {
        for end in ["M", "m"] {
            let bytes = Array("\u{1b}[<0;\(column + 1);\(row + 1)\(end)".utf8).map { String(format: "%02x", $0) }
            try terminal.run(["send-keys", "-t", terminal.session, "-H"] + bytes)
        }
    }

    /// The screen line that contains `text`.
    func line(containing text: String) throws -> Int {
        let screen = try terminal.screen().components(separatedBy: "\n")
        return try XCTUnwrap(screen.firstIndex { $0.contains(text) }, "no line with \(text):\n\(screen.joined(separator: "\n"))")
    }

    /// The histogram's row and the shown tensor's row count: the row must be inside the tensor.
    func assertShownRowIsInsideTheTensor(_ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let text = try terminal.waitFor(matching: #"(row \d+ in the group-scaled|Select a tensor|whole tensor)"#)
        guard let r = text.range(of: #"row \d+ in the group-scaled"#, options: .regularExpression) else { return }
        let row = Int(text[r].dropFirst(4).prefix { $0.isNumber })!
        let shape = try XCTUnwrap(text.range(of: #"weight  \[\d+,"#, options: .regularExpression), text, file: file, line: line)
        let rows = Int(text[shape].dropFirst(9).prefix { $0.isNumber })!
        XCTAssertLessThan(row, rows, "\(what): row \(row) of a \(rows)-row tensor\n\(text)", file: file, line: line)
    }

    /// Row 650 of the 688-row gate_proj, then another tensor by the mouse and by Page Down: alive,
    /// and the row shown exists in the tensor shown (before: `Model.decodeRows` trapped).
    func testRow650ThenAnotherTensorByMouseAndPageDown() throws {
        try terminal.start(width: 120, height: 40)
        try terminal.type(TestPaths.any4Binary, enter: true)
        try terminal.waitFor("row 0 in the group-scaled")
        for (move, name) in [("mouse", "down_proj"), ("page down", ""), ("end", ""), ("wheel", "")] {
            // Typing a filter moves to the first match; Esc clears it and stays there.
            try terminal.type("/gate_proj")
            try terminal.key("Escape")
            try terminal.waitFor("model.layers.0.mlp.gate_proj.weight  [688, 256]")
            try terminal.type("g650")
            try terminal.key("Enter")
            try terminal.waitFor("row 650 in the group-scaled")
            switch move {
            case "mouse": try click(row: try line(containing: "mlp." + name + ".weight"), column: 4)
            case "page down": try terminal.key("NPage")
            case "end": try terminal.key("End")
            default:
                let bytes = Array("\u{1b}[<65;5;10M".utf8).map { String(format: "%02x", $0) }
                try terminal.run(["send-keys", "-t", terminal.session, "-H"] + bytes)
            }
            if move == "mouse" { try terminal.waitFor("model.layers.0.mlp.down_proj.weight  [256, 688]") }
            Thread.sleep(forTimeInterval: 0.3)
            try terminal.waitFor("any4 explorer")
            try assertShownRowIsInsideTheTensor(move)
        }
        try terminal.key("q")
        try terminal.waitFor("prompt$")
    }

    /// A Llama-shaped model of `blocks` blocks of 7 linear layers [16, 64] in `dir`.
    func makeModel(_ dir: String, blocks: Int) throws -> String {
        var rng = SplitMix64(seed: 3)
        let modules = [
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"
        ]
        var tensors: [SafeTensorsWriter.Entry] = []
        for b in 0..<blocks {
            for m in modules {
                tensors.append(
                    .init(name: "model.layers.\(b).\(m).weight", shape: [16, 64], floats: (0..<1024).map { _ in Float(rng.nextGaussian()) }))
            }
        }
        let path = dir + "/m.safetensors"
        try SafeTensorsWriter.write(tensors, to: path)
        return path
    }

    /// At 80x24 with 42 linear layers the Model tab scrolls to the last one.
    func testModelTabScrollsToTheLastLayerAt80x24() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = try makeModel(dir, blocks: 6)
        try terminal.start(width: 80, height: 24)
        try terminal.type(TestPaths.any4Binary + " " + model, enter: true)
        try terminal.waitFor("any4 explorer")
        try terminal.key("4")
        try terminal.waitFor("rows 1-17 of 42")
        try terminal.key("Tab")
        try terminal.key("End")
        let text = try terminal.waitFor("rows 26-42 of 42")
        // The file's last linear layer (names sorted), its block and module shown.
        XCTAssertTrue(text.contains("│ 5 …ttn.v_proj  float"), text)
        try terminal.key("q")
        try terminal.waitFor("prompt$")
    }

    /// `--recipe`: the totals on screen; `]` on a layer moves them by that layer's entries; `S`
    /// saves the edit (read back equal); `L` and Enter load it again.
    func testRecipeEditSaveAndReload() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let modelPath = try makeModel(dir, blocks: 6)
        let model = try Model.open(modelPath)
        let layers = model.tensors.filter(\.isLinear)
        let candidates = try ["any3:g64", "any4:g64", "int8:g64"].map { try PlanCandidate(spec: $0) }
        let entries: [[SensitivityTable.Entry?]] = layers.enumerated().map { l, t in
            let n = t.info.elementCount
            return [
                .init(bits: 3 * n + 512, error: 0.3 + Double(l) * 0.01),
                .init(bits: 4 * n + 1024, error: 0.1 + Double(l) * 0.001),
                .init(bits: 8 * n + 512, error: 0.001)
            ]
        }
        let table = SensitivityTable(
            layers: layers.map(\.name), parameters: layers.map(\.info.elementCount), candidates: candidates, entries: entries)
        let recipe = Recipe(table: table, choice: Array(repeating: 1, count: layers.count), budgetBitsPerWeight: 4.5)
        let path = dir + "/plan.json"
        try recipe.write(to: path)

        try terminal.start(width: 100, height: 30)
        try terminal.type(TestPaths.any4Binary + " tui " + modelPath + " --recipe " + path, enter: true)
        try terminal.waitFor("recipe \(Formatting.fixed(recipe.bitsPerWeight, 3)) bits/w")
        // The second layer of the table (Tab to the table, Down) to its next candidate, int8.
        try terminal.key("Tab")
        try terminal.key("Down")
        try terminal.key("]")
        var edited = recipe
        edited.choice[1] = 2
        XCTAssertNotEqual(Formatting.fixed(edited.bitsPerWeight, 3), Formatting.fixed(recipe.bitsPerWeight, 3))
        try terminal.waitFor("recipe \(Formatting.fixed(edited.bitsPerWeight, 3)) bits/w")
        try terminal.waitFor("edited")
        try terminal.key("S")
        try terminal.waitFor("saved the recipe to")
        XCTAssertEqual(try Recipe.load(path), edited)
        // Back to the plan's choice, then L Enter reloads the saved file.
        try terminal.key("[")
        try terminal.waitFor("recipe \(Formatting.fixed(recipe.bitsPerWeight, 3)) bits/w")
        try terminal.key("L")
        try terminal.waitFor("recipe: " + path + "_")
        try terminal.key("Enter")
        try terminal.waitFor("recipe \(Formatting.fixed(edited.bitsPerWeight, 3)) bits/w")
        try terminal.key("q")
        try terminal.waitFor("prompt$")
    }
}
