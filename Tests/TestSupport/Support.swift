import Any4Core
import Foundation
import XCTest

/// Paths and helpers shared by the test targets.
public enum TestPaths {
    /// The package root (this file is Tests/TestSupport/Support.swift).
    public static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// Where `scripts/fetch-models.sh` put the real models (`ANY4_MODELS` overrides).
    public static var modelsDirectory: String {
        ProcessInfo.processInfo.environment["ANY4_MODELS"] ?? packageRoot + "/.models"
    }

    public static var smolLM2: String { modelsDirectory + "/SmolLM2-135M-Instruct.Q4_1.gguf" }
    public static var miniLM: String { modelsDirectory + "/all-MiniLM-L6-v2" }

    /// The `any4` executable built next to the test bundle (else in the build folder of this
    /// configuration: `swift test` is debug, `swift test -c release` release).
    public static var any4Binary: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let path = candidate.appendingPathComponent("any4").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        #if DEBUG
            return packageRoot + "/.build/debug/any4"
        #else
            return packageRoot + "/.build/release/any4"
        #endif
    }

    public static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// The path of a real model, or a skip (a failure in CI, where the models must be fetched).
    public static func requireModel(_ path: String) throws -> String {
        if FileManager.default.fileExists(atPath: path) { return path }
        let message = "\(path) is missing: run scripts/fetch-models.sh"
        if isCI { XCTFail(message) }
        throw XCTSkip(message)
    }

    /// A fresh temporary directory, removed when the test ends.
    public static func temporaryDirectory(for test: XCTestCase) throws -> String {
        let path = NSTemporaryDirectory() + "any4-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }
}

/// The result of running a program.
public struct ProcessResult {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// Runs `executable` with `arguments`, capturing its output.
public func runProcess(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    // Read both pipes concurrently so a full pipe never blocks the child.
    let group = DispatchGroup()
    nonisolated(unsafe) var outData = Data(), errData = Data()
    group.enter()
    DispatchQueue.global().async {
        outData = out.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    errData = err.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    return ProcessResult(
        status: process.terminationStatus,
        stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData, as: UTF8.self))
}

/// Python 3 with the PyPI packages a cross-check needs.
public enum Python {
    public static let executable: String? = {
        for candidate in ["/usr/bin/env"] where FileManager.default.isExecutableFile(atPath: candidate) {
            if let r = try? runProcess(candidate, ["python3", "-c", "import sys; print(sys.executable)"]), r.status == 0 {
                return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        return nil
    }()

    /// Skips the test (fails it in CI) unless python3 can import every module in `modules`.
    public static func require(_ modules: [String]) throws -> String {
        guard let python = executable else {
            if TestPaths.isCI { XCTFail("python3 not found") }
            throw XCTSkip("python3 not found: cross-check skipped")
        }
        let r = try runProcess(python, ["-c", "import " + modules.joined(separator: ", ")])
        guard r.status == 0 else {
            let message = "python3 lacks \(modules.joined(separator: ", ")) (pip install them): cross-check skipped"
            if TestPaths.isCI { XCTFail(message) }
            throw XCTSkip(message)
        }
        return python
    }

    /// Runs a script from Tests/Python with arguments; fails the test on a non-zero exit.
    @discardableResult
    public static func run(_ script: String, _ arguments: [String], modules: [String]) throws -> String {
        let python = try require(modules)
        let r = try runProcess(python, [TestPaths.packageRoot + "/Tests/Python/" + script] + arguments)
        guard r.status == 0 else {
            throw NSError(
                domain: "python", code: Int(r.status),
                userInfo: [NSLocalizedDescriptionKey: "\(script) failed: \(r.stderr)"])
        }
        return r.stdout
    }
}

/// Reads a file of little-endian float32 values.
public func readFloat32File(_ path: String) throws -> [Float] {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    return data.withUnsafeBytes { raw in
        (0..<(raw.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
    }
}

/// Bitwise equality of two float arrays (NaN equals NaN of the same payload), with the first
/// mismatch reported.
public func assertBitwiseEqual(
    _ actual: [Float], _ expected: [Float], _ what: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(actual.count, expected.count, "\(what): element count", file: file, line: line)
    for i in 0..<min(actual.count, expected.count) where actual[i].bitPattern != expected[i].bitPattern {
        // -0 and +0 differ in bits; a reader must keep the sign too, so no exception is made.
        XCTFail(
            "\(what): element \(i) is \(actual[i]) (0x\(String(actual[i].bitPattern, radix: 16))), expected \(expected[i]) (0x\(String(expected[i].bitPattern, radix: 16)))",
            file: file, line: line)
        return
    }
}
