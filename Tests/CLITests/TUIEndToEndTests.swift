import Foundation
import TestSupport
import XCTest

/// The real binary in a real terminal: tmux runs it, sends keys and reads the screen.
final class TUIEndToEndTests: XCTestCase {
    var terminal: Tmux!

    override func setUpWithError() throws { terminal = try Tmux() }

    override func tearDown() { terminal?.kill() }

    func start(width: Int, height: Int) throws { try terminal.start(width: width, height: height) }
    func tmux(_ arguments: [String]) throws -> ProcessResult { try terminal.run(arguments) }
    func type(_ text: String, enter: Bool = false) throws { try terminal.type(text, enter: enter) }
    func key(_ name: String) throws { try terminal.key(name) }

    @discardableResult
    func waitFor(_ text: String, timeout: Double = 20, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try terminal.waitFor(text, timeout: timeout, file: file, line: line)
    }

    func testDemoAt80x24HelpResizeAndCleanExit() throws {
        try start(width: 80, height: 24)
        try type(TestPaths.any4Binary, enter: true)
        try waitFor("synthetic demo")
        try waitFor("▲")
        try key("?")
        try waitFor("Keys")
        try key("Escape")
        // Below 80x24 a clear message, back to normal when large again.
        _ = try tmux(["resize-window", "-t", terminal.session, "-x", "70", "-y", "20"])
        try waitFor("terminal too small")
        _ = try tmux(["resize-window", "-t", terminal.session, "-x", "160", "-y", "50"])
        try waitFor("codebook (any4")
        try key("q")
        try waitFor("prompt$")
        try type("echo echo-$((20+22))", enter: true)
        let after = try waitFor("echo-42")
        XCTAssertFalse(after.contains("any4 explorer"), "the terminal is back to the shell")
    }

    func testMiniLMQuantizeAndKernelAt160x50() throws {
        let folder = try TestPaths.requireModel(TestPaths.miniLM)
        try start(width: 160, height: 50)
        try type(TestPaths.any4Binary + " " + folder, enter: true)
        try waitFor("hf-folder")
        // Filter to the layer and select it.
        try key("/")
        try type("0.intermediate.dense.w")
        try key("Enter")
        try key("Down")
        try key("Down")
        var text = try waitFor("encoder.layer.0.intermediate.dense.weight  [1536, 384] F32 linear")
        XCTAssertTrue(text.contains("▲"), "the histogram shows a codebook")
        try key("2")
        try key("Enter")
        text = try waitFor("SQNR", timeout: 60)
        XCTAssertTrue(text.contains("result: any4"), text)
        try key("3")
        text = try waitFor("median", timeout: 30)
        XCTAssertTrue(text.contains("µs"), text)
        try key("4")
        try waitFor("· 1 quantized ·")
        // Unsaved work: q asks first, y confirms.
        try key("q")
        try waitFor("q/y quits")
        try key("y")
        try waitFor("prompt$")
    }
}
