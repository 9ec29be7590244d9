import Any4Core
import Foundation
import TestSupport
import XCTest

/// Issue 14, part A: an output never replaces an input, a signal during the final write leaves
/// no output, and stale temporary files of dead writers are cleaned up.
final class OutputSafetyCLITests: XCTestCase {
    func any4(_ arguments: [String]) throws -> ProcessResult { try runProcess(TestPaths.any4Binary, arguments) }

    /// A small Llama-shaped model (two linear layers of width 200) in `dir/name`.
    func makeModel(_ dir: String, name: String = "m.safetensors") throws -> String {
        var rng = SplitMix64(seed: 14)
        let w = (0..<(64 * 200)).map { _ in Float(rng.nextGaussian() * 0.02) }
        let path = dir + "/" + name
        try SafeTensorsWriter.write(
            [
                .init(name: "model.embed_tokens.weight", shape: [10, 200], floats: Array(w.prefix(2000)), as: .bf16),
                .init(name: "model.layers.0.mlp.up_proj.weight", shape: [64, 200], floats: w, as: .bf16),
                .init(name: "model.layers.0.self_attn.q_proj.weight", shape: [32, 200], floats: Array(w.prefix(6400)), as: .bf16)
            ], to: path)
        return path
    }

    func contents(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    /// A hard link to `source` (a copy across file systems): a binary that wrongly replaced `path`
    /// would replace the link, never the original model.
    func linkOrCopy(_ source: String, _ path: String) throws {
        if link(source, path) != 0 { try FileManager.default.copyItem(atPath: source, toPath: path) }
    }

    /// The names in `dir` (and, one level down, in its folders), sorted.
    func listing(_ dir: String) throws -> [String] {
        let fm = FileManager.default
        var names: [String] = []
        for name in try fm.contentsOfDirectory(atPath: dir) {
            names.append(name)
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: dir + "/" + name, isDirectory: &isDir), isDir.boolValue {
                names += try fm.contentsOfDirectory(atPath: dir + "/" + name).map { name + "/" + $0 }
            }
        }
        return names.sorted()
    }

    /// Runs `arguments` and checks the refusal: status 2, the message naming the output and the
    /// input, the protected file's bytes and the folder's listing unchanged.
    func assertRefused(
        _ arguments: [String], output: String, input: String, protecting file: String, in dir: String,
        line: UInt = #line
    ) throws {
        let before = contents(file)
        let names = try listing(dir)
        let r = try any4(arguments)
        XCTAssertEqual(r.status, 2, "\(arguments): \(r.stderr)", line: line)
        XCTAssertTrue(
            r.stderr.contains("\(output): refusing to write: this is the input") && r.stderr.contains(input),
            "\(arguments): \(r.stderr)", line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line: \(r.stderr)", line: line)
        XCTAssertNotNil(before, file, line: line)
        XCTAssertEqual(contents(file), before, "\(arguments) changed \(file)", line: line)
        XCTAssertEqual(try listing(dir), names, "\(arguments) left a file", line: line)
    }

    func testQuantizeRefusesAnOutputThatIsTheModelHoweverSpelled() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = try makeModel(dir)
        try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.safetensors", withDestinationPath: model)
        XCTAssertEqual(link(model, dir + "/hard.safetensors"), 0)
        let q = ["--format", "int4"]
        for out in [model, dir + "/sub/../m.safetensors", dir + "/./m.safetensors", dir + "/link.safetensors", dir + "/hard.safetensors"] {
            try assertRefused(["quantize", model, "--out", out] + q, output: out, input: model, protecting: model, in: dir)
        }
        // The model opened through a symlink, the output its target.
        try assertRefused(
            ["quantize", dir + "/link.safetensors", "--out", model] + q,
            output: model, input: dir + "/link.safetensors", protecting: model, in: dir)
        // --fake-quant writes the same names and shapes: just as refused.
        try assertRefused(["quantize", model, "--out", model, "--fake-quant"] + q, output: model, input: model, protecting: model, in: dir)

        // A calibration file given to --sample-weight calib:FILE.
        var layers: [String: CalibrationStats.Layer] = [:]
        for name in ["model.layers.0.mlp.up_proj", "model.layers.0.self_attn.q_proj"] {
            layers[name] = .init(
                mean: Array(repeating: 0.1, count: 200), absmean: Array(repeating: 0.2, count: 200),
                sqmean: Array(repeating: 0.3, count: 200), count: 8)
        }
        let calib = dir + "/calib.safetensors"
        try CalibrationStats(layers: layers).write(to: calib)
        try assertRefused(
            ["quantize", model, "--format", "any4", "--sample-weight", "calib:" + calib, "--out", calib],
            output: calib, input: calib, protecting: calib, in: dir)

        // An output elsewhere still works, and writing over an existing output replaces it.
        let out = dir + "/q.safetensors"
        for _ in 0..<2 {
            let r = try any4(["quantize", model, "--out", out] + q)
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        XCTAssertNotNil(try QuantizedCheckpoint.read(out).layers["model.layers.0.mlp.up_proj.weight"])
        XCTAssertEqual(try listing(dir), ["calib.safetensors", "hard.safetensors", "link.safetensors", "m.safetensors", "q.safetensors", "sub"])
    }

    func testQuantizeRefusesTheFilesAndTheFolderOfAHuggingFaceModel() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let folder = dir + "/hf"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        // Two shards and an index, a config and tokenizer files.
        _ = try makeModel(folder, name: "model-00001-of-00002.safetensors")
        var rng = SplitMix64(seed: 3)
        try SafeTensorsWriter.write(
            [
                .init(name: "model.layers.1.mlp.up_proj.weight", shape: [16, 64], floats: (0..<1024).map { _ in Float(rng.nextGaussian()) })
            ], to: folder + "/model-00002-of-00002.safetensors")
        try """
        {"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
         "model.layers.0.mlp.up_proj.weight": "model-00001-of-00002.safetensors",
         "model.layers.0.self_attn.q_proj.weight": "model-00001-of-00002.safetensors",
         "model.layers.1.mlp.up_proj.weight": "model-00002-of-00002.safetensors"}}
        """.write(toFile: folder + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        try #"{"model_type": "llama", "hidden_size": 200}"#.write(toFile: folder + "/config.json", atomically: true, encoding: .utf8)
        try #"{"model": {"type": "WordPiece", "vocab": {}}}"#.write(toFile: folder + "/tokenizer.json", atomically: true, encoding: .utf8)
        try #"{"do_lower_case": true}"#.write(toFile: folder + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        try "[PAD]\n[UNK]\n".write(toFile: folder + "/vocab.txt", atomically: true, encoding: .utf8)

        for name in [
            "model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors", "model.safetensors.index.json",
            "config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"
        ] {
            let out = folder + "/" + name
            try assertRefused(["quantize", folder, "--format", "nf4", "--out", out], output: out, input: out, protecting: out, in: dir)
        }
        // The folder itself, by its name and another spelling.
        for out in [folder, dir + "/hf/../hf/."] {
            let r = try any4(["quantize", folder, "--format", "nf4", "--out", out])
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue(r.stderr.contains("refusing to write: this is the input folder \(folder)"), r.stderr)
        }
        let r = try any4(["quantize", folder, "--format", "nf4", "--out", dir + "/q.safetensors"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try QuantizedCheckpoint.read(dir + "/q.safetensors").layers.count, 3)
    }

    /// Outputs that could never be renamed into place are refused before any work.
    func testOutputsThatCannotBeWrittenAreRefusedUpFront() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = try makeModel(dir)
        XCTAssertEqual(mkfifo(dir + "/fifo", 0o644), 0)
        let cases: [(String, String)] = [
            // A folder is a folder checkpoint's place, but not one that holds the model.
            (dir, "\(dir): refusing to write: this folder is or holds the input \(dir)/m.safetensors"),
            (dir + "/fifo", "fifo: cannot write the output here: it is a FIFO (named pipe), not a regular file"),
            (dir + "/missing/q.safetensors", "cannot write the output: the folder \(dir)/missing does not exist"),
            ("", "the output path is empty")
        ]
        for (out, message) in cases {
            let r = try any4(["quantize", model, "--format", "int4", "--out", out])
            XCTAssertEqual(r.status, 2, "\(out): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(out): \(r.stderr)")
        }
        XCTAssertEqual(try listing(dir), ["fifo", "m.safetensors"])
    }

    /// `calibrate MODEL --out MODEL` replaced the model with its statistics (status 0).
    func testCalibrateRefusesToWriteOverItsModelOrPrompt() throws {
        let smol = try TestPaths.requireModel(TestPaths.smolLM2)
        let dir = try TestPaths.temporaryDirectory(for: self)
        let gguf = dir + "/smol.gguf"
        try linkOrCopy(smol, gguf)
        let prompt = dir + "/prompt.txt"
        try "The quick brown fox jumps over the lazy dog. It was not amused.".write(toFile: prompt, atomically: true, encoding: .utf8)
        try assertRefused(["calibrate", gguf, "--prompt", prompt, "--out", gguf], output: gguf, input: gguf, protecting: gguf, in: dir)
        try assertRefused(["calibrate", gguf, "--prompt", prompt, "--out", prompt], output: prompt, input: prompt, protecting: prompt, in: dir)
        try assertRefused(
            [
                "quantize", gguf, "--format", "any4", "--calibrate", "--prompt", prompt, "--layers", #"blk\.0\.attn_q"#,
                "--out", prompt
            ], output: prompt, input: prompt, protecting: prompt, in: dir)

        let minilm = try TestPaths.requireModel(TestPaths.miniLM)
        let folder = dir + "/minilm"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for name in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"] {
            try linkOrCopy(minilm + "/" + name, folder + "/" + name)
        }
        for name in ["model.safetensors", "tokenizer.json"] {
            let out = folder + "/" + name
            try assertRefused(["calibrate", folder, "--prompt", prompt, "--out", out], output: out, input: out, protecting: out, in: dir)
        }
    }
}

// MARK: - Signals during the final write

extension OutputSafetyCLITests {
    /// Starts `any4 arguments` with the write slowed by the test hook, waits until its temporary
    /// output file exists (the final write has begun), sends `sig` and returns the exit status and
    /// standard error.
    func signalDuringWrite(_ arguments: [String], output: String, sig: Int32, delayMS: Int) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestPaths.any4Binary)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(["ANY4_TEST_WRITE_DELAY_MS": "\(delayMS)"]) { $1 }
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        let folder = (output as NSString).deletingLastPathComponent
        let prefix = (output as NSString).lastPathComponent + ".tmp-\(process.processIdentifier)-"
        let deadline = Date().addingTimeInterval(60)
        while process.isRunning && Date() < deadline,
            !((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).contains(where: { $0.hasPrefix(prefix) })
        {
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTAssertTrue(process.isRunning, "the write finished before the signal; raise the delay")
        kill(process.processIdentifier, sig)
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }

    /// SIGINT and SIGTERM during the write were ignored (status 0, a complete file); SIGHUP
    /// killed the process and left the temporary file.
    func testSignalDuringTheFinalWriteLeavesNoOutput() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = try makeModel(dir)
        let out = dir + "/q.safetensors"
        for (sig, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")] {
            // No output before: none after.
            var (status, stderr) = try signalDuringWrite(
                ["quantize", model, "--format", "int4", "--out", out],
                output: out, sig: sig, delayMS: 1000)
            XCTAssertEqual(status, 130, "\(name): \(stderr)")
            XCTAssertTrue(stderr.contains("interrupted; nothing was written"), "\(name): \(stderr)")
            XCTAssertEqual(try listing(dir), ["m.safetensors"], name)
            // An existing output is kept as it was.
            try "old output".write(toFile: out, atomically: true, encoding: .utf8)
            (status, stderr) = try signalDuringWrite(
                ["quantize", model, "--format", "int4", "--out", out, "--fake-quant"],
                output: out, sig: sig, delayMS: 1000)
            XCTAssertEqual(status, 130, "\(name): \(stderr)")
            XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "old output", name)
            XCTAssertEqual(try listing(dir), ["m.safetensors", "q.safetensors"], name)
            try FileManager.default.removeItem(atPath: out)
        }
    }

    /// calibrate wrote its statistics after the signal handlers were gone: SIGINT during the write
    /// killed it and left the temporary file.
    func testSignalDuringTheCalibrationWriteLeavesNoOutput() throws {
        let smol = try TestPaths.requireModel(TestPaths.smolLM2)
        let dir = try TestPaths.temporaryDirectory(for: self)
        let prompt = dir + "/prompt.txt"
        try "The quick brown fox jumps over the lazy dog.".write(toFile: prompt, atomically: true, encoding: .utf8)
        let out = dir + "/calib.safetensors"
        let (status, stderr) = try signalDuringWrite(
            ["calibrate", smol, "--prompt", prompt, "--out", out],
            output: out, sig: SIGINT, delayMS: 20)
        XCTAssertEqual(status, 130, stderr)
        XCTAssertTrue(stderr.contains("interrupted; nothing was written"), stderr)
        XCTAssertEqual(try listing(dir), ["prompt.txt"])
    }
}

// MARK: - Stale temporary files

extension OutputSafetyCLITests {
    /// A PID that belonged to a process that has exited.
    func deadPID() throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        return process.processIdentifier
    }

    /// SIGKILL during a write left `out.tmp-PID-RANDOM` for ever; the next write of the same
    /// destination removes those of dead processes only.
    func testNextWriteRemovesStaleTemporariesOfDeadProcessesOnly() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = try makeModel(dir)
        let out = dir + "/q.safetensors"
        let dead = try deadPID()
        XCTAssertEqual(kill(dead, 0), -1, "the PID must be free")
        let live = getpid()
        let files = [
            "q.safetensors.tmp-\(dead)-12345",  // stale: removed
            "q.safetensors.tmp-\(live)-67890",  // a live process's (ours): kept
            "other.safetensors.tmp-\(dead)-12345",  // another destination's: kept
            "q.safetensors.tmp-\(dead)-12345.keep",  // not a temporary name: kept
            "q.safetensors.tmp-x\(dead)-1"  // not a temporary name: kept
        ]
        for name in files { try "partial".write(toFile: dir + "/" + name, atomically: false, encoding: .utf8) }
        let r = try any4(["quantize", model, "--format", "int4", "--out", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try listing(dir), (["m.safetensors", "q.safetensors"] + files.dropFirst()).sorted())

        // And for real: a writer killed with SIGKILL mid-write, then a second write.
        for name in files.dropFirst() { try FileManager.default.removeItem(atPath: dir + "/" + name) }
        try killDuringWrite(["quantize", model, "--format", "nf4", "--out", out], dir: dir)
        let left = try listing(dir)
        XCTAssertEqual(left.count, 3, "SIGKILL leaves the temporary file: \(left)")
        let again = try any4(["quantize", model, "--format", "int4", "--out", out])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(try listing(dir), ["m.safetensors", "q.safetensors"])
    }
}

extension OutputSafetyCLITests {
    /// Starts `any4 ARGUMENTS` with a slow write, kills it with SIGKILL once `dir` has three entries
    /// (what both callers' folders hold when the temporary output has appeared), returns its PID.
    @discardableResult
    func killDuringWrite(_ arguments: [String], dir: String) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestPaths.any4Binary)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(["ANY4_TEST_WRITE_DELAY_MS": "200"]) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        while try listing(dir).count < 3 && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return process.processIdentifier
    }
}

// MARK: - Folder checkpoints

extension OutputSafetyCLITests {
    /// A folder checkpoint is built in `OUT.partial` and renamed at the end: a signal during the
    /// write of its only shard leaves no folder at all (neither the target nor the work folder,
    /// which held no complete shard), and a writer killed outright leaves the work folder with
    /// the shard's temporary file, which the next run removes before it finishes OUT.
    func testInterruptedFolderWriteLeavesNoFolder() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = try makeModel(dir)
        let out = dir + "/ckpt"
        for sig in [SIGINT, SIGTERM] {
            let (status, stderr) = try signalDuringWrite(
                ["quantize", model, "--format", "int4", "--out", out], output: out + ".partial/model-00001-of-00001.safetensors",
                sig: sig, delayMS: 1000)
            XCTAssertEqual(status, 130, stderr)
            XCTAssertTrue(stderr.contains("interrupted; nothing was written"), stderr)
            XCTAssertEqual(try listing(dir), ["m.safetensors"])
        }
        let pid = try killDuringWrite(["quantize", model, "--format", "int4", "--out", out], dir: dir)
        let left = try listing(dir)
        XCTAssertTrue(
            left.contains { $0.hasPrefix("ckpt.partial/model-00001-of-00001.safetensors.tmp-\(pid)-") },
            "SIGKILL leaves the work folder: \(left)")
        let again = try any4(["quantize", model, "--format", "int4", "--out", out])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(
            try listing(dir), ["ckpt", "ckpt/model-00001-of-00001.safetensors", "ckpt/model.safetensors.index.json", "m.safetensors"])
    }
}

// MARK: - The TUI's w and e

extension TUIEndToEndTests {
    /// `w` writes `BASE.FORMAT.safetensors` and `e` writes `any4-layers.csv/.json` in the current
    /// folder; when those names are the model itself (here through a symlink and a hard link) they
    /// are refused in the status line and the model is untouched.
    func testWriteAndExportRefuseToReplaceTheModel() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        var rng = SplitMix64(seed: 1)
        let model = dir + "/m.any4.safetensors"
        try SafeTensorsWriter.write(
            [
                .init(name: "model.layers.0.mlp.up_proj.weight", shape: [16, 64], floats: (0..<1024).map { _ in Float(rng.nextGaussian()) })
            ], to: model)
        // Opened as m.safetensors, `w` would write m.any4.safetensors: the model's real file.
        try FileManager.default.createSymbolicLink(atPath: dir + "/m.safetensors", withDestinationPath: "m.any4.safetensors")
        XCTAssertEqual(link(model, dir + "/any4-layers.csv"), 0)
        let before = FileManager.default.contents(atPath: model)
        try start(width: 160, height: 50)
        try type("cd '\(dir)' && " + TestPaths.any4Binary + " m.safetensors", enter: true)
        try waitFor("safetensors · 1 tensors")
        try key("4")
        try key("w")
        try waitFor("write refused: m.any4.safetensors: refusing to write")
        try key("e")
        try waitFor("export refused: any4-layers.csv: refusing to write")
        try key("q")
        try waitFor("prompt$")
        XCTAssertEqual(FileManager.default.contents(atPath: model), before)
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: dir).sorted(),
            ["any4-layers.csv", "m.any4.safetensors", "m.safetensors"])
        var info = stat()
        XCTAssertEqual(lstat(dir + "/m.safetensors", &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFLNK, "the symlink is still a symlink")
    }
}
