import Any4Core
import Foundation
import TestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// Inputs a careless or hostile user gives (issue 14, part D): files that are not regular files,
/// name patterns that backtrack without end, a model truncated while it is read, and weights whose
/// quantized form overflows the dtype it is stored in. Each ends in exit 2 with a message naming
/// the file, option, tensor or row — never a hang, a signal or a silently wrong file.
final class HostileInputCLITests: XCTestCase {
    /// Runs `any4` with a deadline: a hang fails the test (the process is killed) instead of
    /// holding up the suite. The Swift backtracer is off, so a trap shows as a signal at once.
    func any4(
        _ arguments: [String], environment: [String: String] = [:], deadline: Double = 30,
        whileRunning: (() throws -> Void)? = nil
    ) throws -> (result: ProcessResult, signalled: Bool, seconds: Double) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestPaths.any4Binary)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(["SWIFT_BACKTRACE": "enable=no"].merging(environment) { $1 }) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let started = Date()
        try process.run()
        let group = DispatchGroup()
        nonisolated(unsafe) var outData = Data(), errData = Data()
        group.enter()
        DispatchQueue.global().async {
            outData = out.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        group.enter()
        DispatchQueue.global().async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        try whileRunning?()
        let pid = process.processIdentifier
        let killer = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + deadline, execute: killer)
        process.waitUntilExit()
        killer.cancel()
        group.wait()
        let seconds = Date().timeIntervalSince(started)
        XCTAssertLessThan(seconds, deadline, "any4 \(arguments.prefix(3).joined(separator: " ")) ran past \(deadline) s and was killed")
        let result = ProcessResult(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
        return (result, process.terminationReason == .uncaughtSignal, seconds)
    }

    /// Exit status 2 (not a signal) with `message` on stderr.
    func assertRefused(
        _ run: (result: ProcessResult, signalled: Bool, seconds: Double), _ message: String,
        _ what: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertFalse(run.signalled, "\(what): killed by signal \(run.result.status)", file: file, line: line)
        XCTAssertEqual(run.result.status, 2, "\(what): \(run.result.stderr)", file: file, line: line)
        XCTAssertTrue(run.result.stderr.contains(message), "\(what): expected \"\(message)\" in: \(run.result.stderr)", file: file, line: line)
        XCTAssertEqual(run.result.stderr.split(separator: "\n").count, 1, "\(what): one line: \(run.result.stderr)", file: file, line: line)
    }

    func contents(_ dir: String) throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir).sorted() }

    /// A small model: one linear layer [rows, cols] with the given weights, in `dtype`.
    func writeModel(
        _ path: String, name: String = "model.layers.0.mlp.up_proj.weight", rows: Int = 8, cols: Int = 64,
        dtype: DType = .f32, weights: [Float]? = nil, extra: [SafeTensorsWriter.Entry] = []
    ) throws {
        var rng = SplitMix64(seed: 14)
        let w = weights ?? (0..<(rows * cols)).map { _ in Float(rng.nextStudentT4() * 0.02) }
        try SafeTensorsWriter.write([.init(name: name, shape: [rows, cols], floats: w, as: dtype)] + extra, to: path)
    }

    /// A Unix-domain socket bound at `path` (kept open until the test ends).
    func makeSocket(_ path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(raw.count - 1)) + [0]
            raw.copyBytes(from: bytes)
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0, "bind \(path): \(String(cString: strerror(errno)))")
        addTeardownBlock { close(fd) }
    }

    // MARK: - Files that are not regular files

    /// Before: `inspect FIFO` blocked forever in open(2); a FIFO calibration file blocked
    /// `quantize --sample-weight calib:FIFO`; a FIFO config.json beside a model or in a folder was
    /// silently taken as absent; a socket said "No such device or address"; /dev/zero "not a model
    /// file". After: each is refused at once, naming the file and what it is.
    func testFilesThatAreNotRegularAreRefusedWithWhatTheyAre() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let fifo = dir + "/x.safetensors"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let socketPath = dir + "/s.safetensors"
        try makeSocket(socketPath)
        let model = dir + "/m.safetensors"
        try writeModel(model)
        let before = try Data(contentsOf: URL(fileURLWithPath: model))
        let out = dir + "/q.safetensors"

        assertRefused(try any4(["inspect", fifo]), "x.safetensors: is a FIFO (named pipe), expected a regular file", "inspect FIFO")
        assertRefused(try any4(["quantize", fifo, "--format", "int4", "--out", out]), "is a FIFO (named pipe)", "quantize FIFO")
        assertRefused(try any4(["compare", fifo]), "is a FIFO (named pipe)", "compare FIFO")
        assertRefused(try any4(["inspect", "/dev/zero"]), "/dev/zero: is a character device, expected a regular file", "/dev/zero")
        assertRefused(try any4(["inspect", socketPath]), "s.safetensors: is a socket, expected a regular file", "socket")
        assertRefused(
            try any4(["quantize", model, "--format", "any4", "--out", out, "--sample-weight", "calib:" + fifo]),
            "x.safetensors: is a FIFO (named pipe)", "calibration FIFO")

        // A folder whose config.json, or tokenizer.json, is a FIFO.
        let folder = dir + "/hf"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try writeModel(folder + "/model.safetensors")
        XCTAssertEqual(mkfifo(folder + "/tokenizer.json", 0o644), 0)
        assertRefused(try any4(["tokenize", folder, "hello"]), "tokenizer.json: is a FIFO (named pipe)", "tokenizer FIFO")
        XCTAssertEqual(mkfifo(folder + "/config.json", 0o644), 0)
        assertRefused(try any4(["inspect", folder]), "hf/config.json: is a FIFO (named pipe)", "config FIFO in a folder")
        // ... and a config.json FIFO beside a single safetensors file.
        XCTAssertEqual(mkfifo(dir + "/config.json", 0o644), 0)
        assertRefused(try any4(["inspect", model]), "config.json: is a FIFO (named pipe)", "config FIFO beside a file")

        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: model)), before, "the model is unchanged")
        XCTAssertEqual(try contents(dir), ["config.json", "hf", "m.safetensors", "s.safetensors", "x.safetensors"], "nothing written")
    }

    /// Before: a FIFO text or sentence file gave "cannot read the text (missing or unreadable)"
    /// (Foundation's reader); after: what the file is (read through the same checked opener).
    func testTextFilesThatAreNotRegularAreRefused() throws {
        let smol = try TestPaths.requireModel(TestPaths.smolLM2)
        let dir = try TestPaths.temporaryDirectory(for: self)
        let fifo = dir + "/text.txt"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        assertRefused(try any4(["ppl", smol, "--text", fifo]), "text.txt: cannot read the text: is a FIFO (named pipe)", "ppl --text FIFO")
        assertRefused(try any4(["ppl", smol, "--text", "/dev/zero"]), "cannot read the text: is a character device", "ppl --text /dev/zero")
        assertRefused(
            try any4(["quantize", smol, "--format", "any4", "--calibrate", "--prompt", fifo, "--out", dir + "/q.safetensors"]),
            "text.txt: cannot read the calibration prompt: is a FIFO (named pipe)", "--prompt FIFO")
        XCTAssertEqual(try contents(dir), ["text.txt"])
    }

    // MARK: - Name patterns

    /// Before: `(a+)+$` against a 5000-character name never returned (killed at 10 s); after:
    /// exit 2 after the 2 s bound, naming the option, the pattern and the name.
    func testBacktrackingPatternsAreStoppedAfterTheBound() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = dir + "/m.safetensors"
        let longName = String(repeating: "a", count: 5000) + ".weight"
        try writeModel(
            model, name: longName,
            extra: [
                .init(name: "model.layers.0.mlp.up_proj.weight", shape: [8, 64], floats: [Float](repeating: 0.5, count: 512))
            ])
        let before = try Data(contentsOf: URL(fileURLWithPath: model))
        let out = dir + "/q.safetensors"
        let shown = "\"" + String(repeating: "a", count: 40) + "…\" (5007 characters)"
        let cases: [([String], String)] = [
            (["inspect", model, "--filter", "(a+)+$"], "--filter: pattern \"(a+)+$\" took longer than 2 s against \(shown); simplify it"),
            (["quantize", model, "--format", "int4", "--out", out, "--layers", "(a+)+$"], "--layers: pattern \"(a+)+$\" took longer than 2 s"),
            (["quantize", model, "--format", "int4", "--out", out, "--skip", "(a|a)+$"], "--skip: pattern \"(a|a)+$\" took longer than 2 s")
        ]
        for (arguments, message) in cases {
            let run = try any4(arguments)
            assertRefused(run, message, arguments.joined(separator: " "))
            XCTAssertLessThan(run.seconds, 10, "\(arguments): the bound is 2 s")
        }
        // Ordinary patterns still select as before, on the same long name.
        let ok = try any4(["quantize", model, "--format", "int4", "--out", out, "--layers", #"^model\.layers\.0\."#, "--json"])
        XCTAssertEqual(ok.result.status, 0, ok.result.stderr)
        XCTAssertEqual(try JSONParser.parse(ok.result.stdout, file: "stdout")["layers"]?.array?.count, 1)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: model)), before)
        try FileManager.default.removeItem(atPath: out)
        XCTAssertEqual(try contents(dir), ["m.safetensors"])
    }

    // MARK: - A model that shrinks while it is read

    /// Before: truncating the model while `inspect --stats` read it killed the process with SIGBUS
    /// (status -7, no message). After: the SIGBUS guard names the file and the offset, status 2.
    /// Deterministic: `ANY4_TEST_PAUSE_AFTER_MAP` holds the process between mapping and reading.
    func testAModelTruncatedWhileReadIsAnErrorNotSIGBUS() throws {
        for command in [["inspect", "--stats"], ["quantize", "--format", "int4", "--out"], ["compare", "--formats", "int4"]] {
            let dir = try TestPaths.temporaryDirectory(for: self)
            let hook = try TestPaths.temporaryDirectory(for: self)
            let model = dir + "/m.safetensors"
            try writeModel(model, rows: 512, cols: 512)  // 1 MiB of weights, well past the first page
            var arguments = [command[0], model] + command.dropFirst()
            if command.last == "--out" { arguments.append(dir + "/q.safetensors") }
            let run = try any4(arguments, environment: ["ANY4_TEST_PAUSE_AFTER_MAP": hook]) {
                let marker = hook + "/mapped"
                let until = Date().addingTimeInterval(20)
                while !FileManager.default.fileExists(atPath: marker) && Date() < until { usleep(5000) }
                XCTAssertEqual(try String(contentsOfFile: marker, encoding: .utf8), model)
                XCTAssertEqual(truncate(model, 4096), 0)
                try FileManager.default.removeItem(atPath: marker)
            }
            assertRefused(
                run, "any4: error: \(model): the file shrank while being read (mapped region at offset 4096 is gone)",
                command.joined(separator: " "))
            XCTAssertEqual(try contents(dir), ["m.safetensors"], "\(command): no output or temporary file")
        }
    }

    // MARK: - Values that overflow the stored dtype

    /// Rows 3 and 5 of an [8, 64] layer hold finite weights of ±3e38 (F32) or ±65504 (F16).
    /// Before, F32: any4/any3/any2 exit 0 with NaN LUTs, scales and zeros and `max_abs_error 0.0`;
    /// int-b trapped (SIGILL, "Float value cannot be converted"); iq4_nl exit 0 with every
    /// scale 0 (all weights 0). F16: int-b, fp4 and iq4_nl exit 0 and `--fake-quant` wrote ±inf.
    /// After: where the format can hold the values (computed in Double where Float's range is
    /// exceeded) every stored float is finite and the error figures are finite; elsewhere exit 2
    /// naming the tensor, row 3 (the lowest), the weight and the value it overflows to. Under the
    /// default F16 tables and scales, a layer F16 cannot hold is stored in F32 with a warning (its
    /// parts are then F32, the others' F16); `--table-dtype f16` refuses it instead.
    func testWeightsThatOverflowTheStoredDTypeAreRefusedOrStoredFinite() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        var rng = SplitMix64(seed: 3)
        let name = "model.layers.0.mlp.up_proj.weight"
        func weights(_ big: Float, scale: Float) -> [Float] {
            var w = (0..<(8 * 64)).map { _ in Float(rng.nextStudentT4()) * scale }
            for r in [3, 5] {
                w[r * 64 + 10] = big
                w[r * 64 + 11] = -big
            }
            return w
        }
        let f32 = dir + "/f32.safetensors", f16 = dir + "/f16.safetensors"
        try writeModel(f32, weights: weights(3e38, scale: 0.02))
        try writeModel(f16, dtype: .f16, weights: weights(65504, scale: 1000))
        let inputs = [f32: try Data(contentsOf: URL(fileURLWithPath: f32)), f16: try Data(contentsOf: URL(fileURLWithPath: f16))]
        let refused: [String: Set<String>] = [
            f32: ["any3", "any2", "int3", "int2", "iq4_nl"],
            f16: ["iq4_nl"]  // its F16 scale is the format's own: no fallback
        ]
        let out = dir + "/q.safetensors"
        for model in [f32, f16] {
            for format in FormatRegistry.all.map(\.name) {
                for fake in [false, true] {
                    let what = "\(model.split(separator: "/").last!) \(format)\(fake ? " --fake-quant" : "")"
                    let run = try any4(["quantize", model, "--format", format, "--out", out, "--json"] + (fake ? ["--fake-quant"] : []))
                    if refused[model]!.contains(format) {
                        assertRefused(run, "\(name): row 3: ", what)
                        XCTAssertTrue(run.result.stderr.contains("\(format) cannot store weights this large"), "\(what): \(run.result.stderr)")
                        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(what) wrote a file")
                        continue
                    }
                    XCTAssertFalse(run.signalled, "\(what): signal \(run.result.status)")
                    XCTAssertEqual(run.result.status, 0, "\(what): \(run.result.stderr)")
                    let layer = try JSONParser.parse(run.result.stdout, file: "stdout")["layers"]?.array?.first
                    let maxError = try XCTUnwrap(layer?["max_abs_error"]?.double, "\(what): max_abs_error is a number")
                    XCTAssertTrue(maxError.isFinite && maxError > 0, "\(what): max_abs_error \(maxError)")
                    XCTAssertNotNil(layer?["sqnr_db"]?.double, "\(what): SQNR is a number")
                    let file = try SafeTensorsFile(path: out)
                    for t in file.tensors where t.encoding != .plain(.u8) {
                        let values = t.decodeAll(from: file.store)
                        XCTAssertNil(values.firstIndex { !$0.isFinite }, "\(what): \(t.name) holds a non-finite value")
                    }
                    // The warning says when the layer left the default F16, and the parts agree.
                    let fellBack = run.result.stderr.contains("\(name): row 3: ") && run.result.stderr.contains("stored in F32, not the default F16")
                    if !fake, let scales = file.tensors.first(where: { $0.name.hasSuffix(".scales") && $0.encoding != .plain(.u8) }) {
                        XCTAssertEqual(scales.encoding, .plain(fellBack ? .f32 : .f16), "\(what): \(scales.name); stderr \(run.result.stderr)")
                    }
                    if model == f32, ["any4", "int4", "int8", "nf4", "fp4", "fp4-bnb"].contains(format) {
                        XCTAssertTrue(fellBack, "\(what): F16 cannot hold scales of 3e38: \(run.result.stderr)")
                    }
                    try FileManager.default.removeItem(atPath: out)
                }
            }
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: model)), inputs[model], "the input is unchanged")
        }
        XCTAssertEqual(try contents(dir), ["f16.safetensors", "f32.safetensors"], "no file left behind")

        // The message names the weight and what it becomes (F16 chosen: no fallback).
        let int4 = try any4(["quantize", f16, "--format", "int4", "--table-dtype", "f16", "--out", out])
        assertRefused(int4, "\(name): row 3: weight [3, 10] = 65504.0 dequantizes to 65536.0, beyond F16's range", "int4 F16")
        let any2 = try any4(["quantize", f32, "--format", "any2", "--out", out])
        assertRefused(any2, "\(name): row 3: weight [3, 11] = -3e+38 dequantizes to -inf in F32", "any2 F32")
        let iq4 = try any4(["quantize", f32, "--format", "iq4_nl", "--out", out])
        assertRefused(iq4, "\(name): row 3: group 0 (columns 0..<32, weights -3e+38 … 3e+38): the scale is", "iq4_nl F32")
        XCTAssertTrue(iq4.result.stderr.contains("in F16"), iq4.result.stderr)
        // compare and the engine's path go through the same quantizer.
        assertRefused(try any4(["compare", f32, "--formats", "any2"]), "\(name): row 3: ", "compare any2")
    }
}
