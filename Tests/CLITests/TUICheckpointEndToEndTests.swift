import Any4Core
import Foundation
import TestSupport
import XCTest

/// Issue 18 in a real terminal (tmux): quantize two layers at two group sizes, `w`, reopen the file
/// in the explorer (stored codes on stored LUTs, each layer's own group, the kernel running it)
/// and in `ppl`; and `any4 A --diff B`'s Diff tab.
final class TUICheckpointEndToEndTests: XCTestCase {
    var terminal: Tmux!

    override func setUpWithError() throws { terminal = try Tmux() }
    override func tearDown() { terminal?.kill() }

    func any4(_ arguments: [String]) throws -> ProcessResult { try runProcess(TestPaths.any4Binary, arguments) }

    /// A tiny synthetic Llama (tokenizer included) in `dir`/tiny.
    func makeTiny(_ dir: String) throws -> String {
        let python = try Python.require(["numpy", "tokenizers"])
        let path = dir + "/tiny"
        let gen = try runProcess(python, [TestPaths.packageRoot + "/scripts/make-synthetic-llama.py", "--size", "tiny", path, "--seed", "3"])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        return path
    }

    func ppl(_ model: String) throws -> Double {
        let r = try any4(["ppl", model, "--text", TestPaths.packageRoot + "/assets/calibration.txt", "--ctx", "64", "--chunks", "2", "--json"])
        XCTAssertEqual(r.status, 0, "ppl \(model): \(r.stderr)")
        return try XCTUnwrap(JSONParser.parse(r.stdout.split(separator: "\n").last.map(String.init) ?? "", file: "ppl")["ppl"]?.double)
    }

    func testQuantizeTwoLayersAtTwoGroupSizesWriteAndReopenInTheTUIAndPpl() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let tiny = try makeTiny(dir)
        try terminal.start(width: 120, height: 40)
        // In the model's folder: `w` writes there, beside its config and tokenizer.
        try terminal.type("cd " + Tmux.quoted([tiny]) + " && " + TestPaths.any4Binary + " .", enter: true)
        try terminal.waitFor("model.layers.0.mlp.down_proj.weight  [256, 512]")
        // Quantize tab; group 128 → 256 → 32 → 64; the first layer (down_proj) at 64.
        try terminal.key("2")
        for _ in 0..<3 { try terminal.key("g") }
        try terminal.waitFor("group   [g] 64")
        try terminal.key("Enter")
        try terminal.waitFor("down_proj.weight any4 5.00b")
        // The next layer (gate_proj) at 128.
        try terminal.key("Down")
        try terminal.key("g")
        try terminal.waitFor("group   [g] 128")
        try terminal.key("Enter")
        try terminal.waitFor("gate_proj.weight any4 5.25b")
        try terminal.key("w")
        try terminal.waitFor("wrote 2 quantized layers to tiny.any4.safetensors")
        try terminal.key("q")
        try terminal.waitFor("prompt$")

        // Reopened: each layer as stored, with its own group; the histogram is its stored codes.
        try terminal.type("clear; " + TestPaths.any4Binary + " tiny.any4.safetensors", enter: true)
        var text = try terminal.waitFor("stored any4 codes")
        XCTAssertTrue(text.contains("down_proj.weight any4 5.00b"), text)
        XCTAssertTrue(text.contains("gate_proj.weight any4 5.25b"), text)
        XCTAssertTrue(text.contains("(group 64): stored any4 codes"), text)
        XCTAssertTrue(text.contains("stored any4 g64 · 5.00 bits/w: its LUT and weights per code:"), text)
        try terminal.key("Down")
        try terminal.waitFor("(group 128): stored any4 codes")
        // The kernel tab runs the stored layer.
        try terminal.key("3")
        text = try terminal.waitFor("median", timeout: 30)
        XCTAssertTrue(text.contains("5.250 bits/weight"), text)
        try terminal.key("4")
        try terminal.waitFor("· 2 stored quantized ·")
        try terminal.key("q")
        try terminal.waitFor("prompt$")

        // ppl reads it; it is the CLI's two runs at the same settings, value for value.
        let written = tiny + "/tiny.any4.safetensors"
        for (i, step) in [(#"layers\.0\.mlp\.down"#, "64"), (#"layers\.0\.mlp\.gate"#, "128")].enumerated() {
            let r = try any4([
                "quantize", i == 0 ? tiny : dir + "/cli0", "--format", "any4", "--group-size", step.1, "--layers", step.0, "--out", dir + "/cli\(i)"
            ])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let diff = try any4(["diff", dir + "/cli1", written, "--json"])
        XCTAssertEqual(diff.status, 0, diff.stderr)
        let summary = try JSONParser.parse(diff.stdout, file: "diff")["summary"]
        XCTAssertEqual(summary?["identical"]?.int, summary?["compared"]?.int, diff.stdout)
        let a = try ppl(written), b = try ppl(dir + "/cli1"), original = try ppl(tiny)
        XCTAssertEqual(a, b, "the TUI's checkpoint and the CLI's read back the same")
        XCTAssertNotEqual(a, original)
    }

    func testDiffTabInTheTerminal() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let tiny = try makeTiny(dir)
        let q = try any4(["quantize", tiny, "--format", "int4", "--group-size", "64", "--layers", #"layers\.1\.self_attn\.v"#, "--out", dir + "/q"])
        XCTAssertEqual(q.status, 0, q.stderr)
        try terminal.start(width: 100, height: 30)
        try terminal.type(TestPaths.any4Binary + " " + tiny + " --diff " + dir + "/q", enter: true)
        var text = try terminal.waitFor("21/21 tensors measured · 20 identical")
        XCTAssertTrue(text.contains(" 5 Diff"), text)
        // The changed layer heads the table (worst first); Tab and Home select it; its histogram shows.
        try terminal.key("Tab")
        try terminal.key("Home")
        text = try terminal.waitFor("|d| p50")
        XCTAssertNotNil(text.range(of: #"1 self_attn\.v_proj +\d+\.\d\d"#, options: .regularExpression), text)
        XCTAssertTrue(text.contains("F32 → int4 g64 f16"), text)
        XCTAssertTrue(text.contains("log counts"), text)
        // Down: an identical tensor, said so.
        try terminal.key("Down")
        try terminal.waitFor("identical: every difference is 0")
        // Other tabs and back.
        try terminal.key("1")
        try terminal.waitFor("group-scaled")
        try terminal.key("5")
        try terminal.waitFor("tensor (worst first)")
        try terminal.key("q")
        try terminal.waitFor("prompt$")

        // `any4 tui A --diff B` is the same; a B of another architecture is refused before the screen.
        try FileManager.default.createDirectory(atPath: dir + "/bert", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: tiny + "/model.safetensors", toPath: dir + "/bert/model.safetensors")
        try #"{"model_type": "bert"}"#.write(toFile: dir + "/bert/config.json", atomically: true, encoding: .utf8)
        let refused = try any4(["tui", tiny, "--diff", dir + "/bert"])
        XCTAssertEqual(refused.status, 2, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("architecture bert differs"), refused.stderr)
        // Not a terminal: the diff is printed instead.
        let piped = try any4(["tui", tiny, "--diff", dir + "/q"])
        XCTAssertEqual(piped.status, 0, piped.stderr)
        XCTAssertTrue(piped.stdout.contains("model.layers.1.self_attn.v_proj.weight"), piped.stdout)
        XCTAssertTrue(piped.stdout.contains("21 tensors compared (20 identical"), piped.stdout)
    }
}
