import Foundation
import TestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The UI under stress in a real terminal: jobs started over and over while tabs change, signals
/// during a job, crashes. Each run must end the way it should (status 0 on quit, 128 + signal),
/// with the terminal given back (no alternate screen, cursor shown, tty modes restored) and
/// nothing left running: `swift-backtrace` helpers run in the crashed process's folder, and
/// nothing may remain there. Under `scripts/tsan-stress.sh` the same tests run the TSan build
/// (TSAN_OPTIONS is passed through; a TSan report makes the UI exit with 66).
final class TUIStressTests: XCTestCase {
    var terminal: Tmux!
    var folder = ""

    override func setUpWithError() throws {
        terminal = try Tmux()
        folder = try TestPaths.temporaryDirectory(for: self)
    }

    override func tearDown() { terminal?.kill() }

    /// Starts the UI on the demo model in `folder` (its PID in `any4.pid`; the shell stays
    /// outside the folder) and waits for the first frame.
    func launchDemo() throws -> pid_t {
        var environment: [String: String] = [:]
        if let tsan = ProcessInfo.processInfo.environment["TSAN_OPTIONS"] { environment["TSAN_OPTIONS"] = tsan }
        try terminal.start(width: 120, height: 40, environment: environment)
        let run = "(cd \(Tmux.quoted([folder])) && exec sh -c 'echo $$ > any4.pid; exec \"$0\"' \(Tmux.quoted([TestPaths.any4Binary]))); echo EXIT=$?"
        try terminal.type(run, enter: true)
        try terminal.waitFor("synthetic demo", timeout: 60)
        let text = try String(contentsOfFile: folder + "/any4.pid", encoding: .utf8)
        return try XCTUnwrap(pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    /// The exit status the shell printed, waiting up to `timeout` seconds for it.
    func exitStatus(timeout: Double, file: StaticString = #filePath, line: UInt = #line) throws -> Int? {
        let text = try terminal.waitFor(matching: #"EXIT=\d+"#, timeout: timeout, file: file, line: line)
        guard let range = text.range(of: #"EXIT=\d+"#, options: .regularExpression) else { return nil }
        return Int(text[range].dropFirst(5))
    }

    /// The terminal is the shell's again: main screen, visible cursor, canonical mode with echo.
    func assertTerminalRestored(_ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try terminal.pane("alternate_on"), "0", "\(what): still on the alternate screen", file: file, line: line)
        XCTAssertEqual(try terminal.pane("cursor_flag"), "1", "\(what): cursor hidden", file: file, line: line)
        XCTAssertEqual(try terminal.pane("mouse_any_flag"), "0", "\(what): mouse reporting left on", file: file, line: line)
        // A key sent just before a crash may reach the shell instead of the UI: clear the line first.
        try terminal.key("C-u")
        try terminal.type("echo tty-$(stty -a | grep -c -e ' -icanon' -e ' -echo ')-modes", enter: true)
        try terminal.waitFor("tty-0-modes", timeout: 20, file: file, line: line)
    }

    /// Processes whose working folder is the test's folder (the UI, or a backtracer it started).
    func processesInFolder() -> [String] {
        let target = URL(fileURLWithPath: folder).resolvingSymlinksInPath().path
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { $0.allSatisfy(\.isNumber) }.compactMap { pid in
            guard let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd"), cwd == target else { return nil }
            let command = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8))?.replacingOccurrences(of: "\0", with: " ")
            return "\(pid) \(command ?? "?")"
        }
    }

    func assertNothingLeftRunning(_ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let deadline = Date().addingTimeInterval(3)
        var left = processesInFolder()
        while !left.isEmpty && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            left = processesInFolder()
        }
        XCTAssertEqual(left, [], "\(what): processes left behind", file: file, line: line)
    }

    /// Quantize-all pressed ~40 times 0.1-0.25 s apart, with tab switches, a format comparison and
    /// the live kernel between; then quit. Before: SIGILL or "double free or corruption" after
    /// 21-76 presses, the terminal left on the alternate screen with the cursor hidden.
    func testQuantizeAllPressedRepeatedlyWithTabSwitchesThenQuit() throws {
        let pid = try launchDemo()
        try terminal.key("4")
        var rng = SystemRandomNumberGenerator()
        for press in 1...40 {
            try terminal.key("a")
            switch press % 10 {
            case 3: for k in ["2", "c", "1", "]", "4"] { try terminal.key(k) }
            case 6: for k in ["3", "b", "Down", "Up", "4"] { try terminal.key(k) }
            default: break
            }
            Thread.sleep(forTimeInterval: Double.random(in: 0.1...0.25, using: &rng))
            if Glibc.kill(pid, 0) != 0 {
                XCTFail("the UI died after \(press) presses:\n\(try terminal.screen())")
                break
            }
        }
        try terminal.key("q")
        try terminal.waitFor("q/y quits")
        try terminal.key("y")
        XCTAssertEqual(try exitStatus(timeout: 10), 0)
        try assertTerminalRestored("after quit")
        assertNothingLeftRunning("after quit")
    }

    /// SIGTERM, SIGINT and SIGHUP while quantize-all runs: the job is cancelled, the terminal
    /// given back and the process leaves at once with 128 + the signal.
    func testSignalsDuringAJobRestoreTheTerminalAndExitPromptly() throws {
        for (signal, status, name) in [(SIGTERM, 143, "SIGTERM"), (SIGINT, 130, "SIGINT"), (SIGHUP, 129, "SIGHUP")] {
            terminal.kill()
            terminal = try Tmux()
            let pid = try launchDemo()
            // Exact k-means: quantize-all then takes about a second.
            for k in ["2", "m", "4", "a"] { try terminal.key(k) }
            try terminal.waitFor(matching: #"\d% · \d+/\d+ rows.* · quantizing all \d+ layers to any4"#)  // running, not "done: …"
            let sent = Date()
            XCTAssertEqual(Glibc.kill(pid, signal), 0)
            XCTAssertEqual(try exitStatus(timeout: 10), status, name)
            XCTAssertLessThan(Date().timeIntervalSince(sent), 3, "\(name): slow to leave")
            try assertTerminalRestored(name)
            assertNothingLeftRunning(name)
        }
    }

    /// A crash (a fatal signal) while the UI holds the terminal: the guard gives the terminal back
    /// first, then the runtime reports the crash (non-interactively: nothing waits for a key) and
    /// the process dies of the signal. Before: alternate screen, hidden cursor, raw tty, and a
    /// backtracer waiting 30 s for a key (or for ever, when the crashed process was killed).
    func testCrashRestoresTheTerminalAndLeavesNoBacktracer() throws {
        for (signal, status, name) in [(SIGSEGV, 139, "SIGSEGV"), (SIGABRT, 134, "SIGABRT")] {
            terminal.kill()
            terminal = try Tmux()
            let pid = try launchDemo()
            try terminal.key("4")
            try terminal.key("a")
            XCTAssertEqual(Glibc.kill(pid, signal), 0)
            XCTAssertEqual(try exitStatus(timeout: 30), status, name)
            try assertTerminalRestored(name)
            assertNothingLeftRunning(name)
        }
    }
}
