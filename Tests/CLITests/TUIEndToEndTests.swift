import Foundation
import TestSupport
import XCTest

/// The real binary in a real terminal: tmux runs it, sends keys and reads the screen.
final class TUIEndToEndTests: XCTestCase {
    var session = ""

    /// Runs tmux through the shell with its output in a file: the tmux server outlives the command
    /// and would keep any pipe it inherits open.
    func tmux(_ arguments: [String]) throws -> ProcessResult {
        let out = NSTemporaryDirectory() + "tmux-\(UUID().uuidString).txt"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let quoted = arguments.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        let status = system("tmux \(quoted) >\(out) 2>&1 </dev/null")
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        return ProcessResult(status: status, stdout: text, stderr: text)
    }

    override func setUpWithError() throws {
        guard (try? tmux(["-V"]))?.status == 0 else {
            if TestPaths.isCI { XCTFail("tmux is missing") }
            throw XCTSkip("tmux is not installed")
        }
        session = "any4-e2e-\(UInt32.random(in: 0...UInt32.max))"
    }

    override func tearDown() {
        _ = try? tmux(["kill-session", "-t", session])
    }

    /// Starts a plain shell in a detached tmux session of the given size.
    func start(width: Int, height: Int) throws {
        let r = try tmux(["new-session", "-d", "-s", session, "-x", "\(width)", "-y", "\(height)",
                          "env -i PATH=/usr/bin:/bin TERM=xterm-256color LANG=C.UTF-8 HOME=/tmp bash --norc --noprofile"])
        XCTAssertEqual(r.status, 0, r.stdout)
        try type("PS1='prompt$ '", enter: true)
    }

    func type(_ text: String, enter: Bool = false) throws {
        _ = try tmux(["send-keys", "-t", session, "-l", text])
        if enter { _ = try tmux(["send-keys", "-t", session, "Enter"]) }
    }

    func key(_ name: String) throws { _ = try tmux(["send-keys", "-t", session, name]) }

    func screen() throws -> String { try tmux(["capture-pane", "-t", session, "-p"]).stdout }

    /// Waits until the screen contains `text` (or fails after `timeout` seconds).
    @discardableResult
    func waitFor(_ text: String, timeout: Double = 20, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var last = ""
        while Date() < deadline {
            last = try screen()
            if last.contains(text) { return last }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTFail("screen never showed \"\(text)\":\n\(last)", file: file, line: line)
        return last
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
        _ = try tmux(["resize-window", "-t", session, "-x", "70", "-y", "20"])
        try waitFor("terminal too small")
        _ = try tmux(["resize-window", "-t", session, "-x", "160", "-y", "50"])
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
