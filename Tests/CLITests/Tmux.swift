import Foundation
import TestSupport
import XCTest

/// A detached tmux session running a plain shell: the UI tests start the real binary in it, send
/// keys and read the screen and the pane's modes.
final class Tmux {
    let session = "any4-e2e-\(UInt32.random(in: 0...UInt32.max))"
    /// Each test's own tmux server (`-L`): tests that run at once never share (or stop) a server.
    let socket = "any4-e2e-\(UInt32.random(in: 0...UInt32.max))"

    /// Skips the test when tmux is missing (fails it in CI).
    init() throws {
        guard (try? run(["-V"]))?.status == 0 else {
            if TestPaths.isCI { XCTFail("tmux is missing") }
            throw XCTSkip("tmux is not installed")
        }
    }

    /// Runs tmux through the shell with its output in a file: the tmux server outlives the command
    /// and would keep any pipe it inherits open.
    @discardableResult
    func run(_ arguments: [String]) throws -> ProcessResult {
        let out = NSTemporaryDirectory() + "tmux-\(UUID().uuidString).txt"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let server = arguments == ["-V"] ? [] : ["-L", socket]
        let status = system("tmux \(Self.quoted(server + arguments)) >\(out) 2>&1 </dev/null")
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        return ProcessResult(status: status, stdout: text, stderr: text)
    }

    static func quoted(_ words: [String]) -> String {
        words.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
    }

    /// Starts a plain shell (prompt `prompt$ `) in a detached session of the given size, with a
    /// clean environment plus `environment`.
    func start(width: Int, height: Int, environment: [String: String] = [:]) throws {
        let extra = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let command =
            ["env", "-i", "PATH=/usr/bin:/bin", "TERM=xterm-256color", "LANG=C.UTF-8", "HOME=/tmp"] + extra
            + ["bash", "--norc", "--noprofile"]
        let r = try run(["new-session", "-d", "-s", session, "-x", "\(width)", "-y", "\(height)", Self.quoted(command)])
        XCTAssertEqual(r.status, 0, r.stdout)
        try type("PS1='prompt$ '", enter: true)
    }

    func type(_ text: String, enter: Bool = false) throws {
        try run(["send-keys", "-t", session, "-l", text])
        if enter { try run(["send-keys", "-t", session, "Enter"]) }
    }

    func key(_ name: String) throws { try run(["send-keys", "-t", session, name]) }

    func screen() throws -> String { try run(["capture-pane", "-t", session, "-p"]).stdout }

    /// A pane variable (`alternate_on`, `cursor_flag`, …) as tmux shows it.
    func pane(_ variable: String) throws -> String {
        try run(["display-message", "-p", "-t", session, "#{\(variable)}"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Waits until the screen contains `text` (or fails after `timeout` seconds).
    @discardableResult
    func waitFor(_ text: String, timeout: Double = 20, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try waitFor(matching: NSRegularExpression.escapedPattern(for: text), timeout: timeout, file: file, line: line)
    }

    /// Waits until a line of the screen matches the regular expression `pattern`.
    @discardableResult
    func waitFor(matching pattern: String, timeout: Double = 20, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var last = ""
        while Date() < deadline {
            last = try screen()
            if last.range(of: pattern, options: .regularExpression) != nil { return last }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("screen never showed /\(pattern)/:\n\(last)", file: file, line: line)
        return last
    }

    /// Ends the session and with it this test's tmux server.
    func kill() {
        _ = try? run(["kill-session", "-t", session])
        _ = try? run(["kill-server"])
    }
}
