import Any4Core
import Foundation
import TestSupport
import XCTest

/// The write side of issue 14: outputs never replace inputs (``OutputGuard``), writes honour
/// cancellation, stale temporary files are cleaned, and a header no reader accepts is refused.
final class AtomicWriteTests: XCTestCase {
    func names(_ dir: String) throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir).sorted() }

    func kind(_ body: () throws -> Void) -> FileFormatError.Kind? {
        do {
            try body()
            return nil
        } catch { return (error as? FileFormatError)?.kind }
    }

    func testOutputGuardComparesByIdentity() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let fm = FileManager.default
        let input = dir + "/in.safetensors"
        try "model".write(toFile: input, atomically: false, encoding: .utf8)
        try fm.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: dir + "/link", withDestinationPath: input)
        try fm.createSymbolicLink(atPath: dir + "/subLink", withDestinationPath: dir + "/sub")
        try fm.createSymbolicLink(atPath: dir + "/dangling", withDestinationPath: dir + "/nowhere")
        XCTAssertEqual(link(input, dir + "/hard"), 0)
        try "other".write(toFile: dir + "/other", atomically: false, encoding: .utf8)

        for output in [input, dir + "/sub/../in.safetensors", dir + "/subLink/../in.safetensors", dir + "/link", dir + "/hard"] {
            XCTAssertEqual(kind { try OutputGuard.check(output, inputs: [input]) }, .outputIsInput, output)
            // Whichever side is spelled differently.
            XCTAssertEqual(kind { try OutputGuard.check(input, inputs: [output]) }, .outputIsInput, output)
        }
        do {
            try OutputGuard.check(dir + "/link", inputs: [dir + "/missing", input])
            XCTFail("not refused")
        } catch let error as FileFormatError {
            XCTAssertEqual(
                error.description,
                "\(dir)/link: refusing to write: this is the input file \(input) (the same file on disk); choose another output path")
        }
        XCTAssertEqual(kind { try OutputGuard.check(dir + "/sub", inputs: [dir + "/subLink"]) }, .outputIsInput, "an input folder")
        // Not inputs: allowed.
        for output in [dir + "/other", dir + "/new.safetensors", dir + "/sub/new", dir + "/subLink/new", dir + "/dangling"] {
            XCTAssertNil(kind { try OutputGuard.check(output, inputs: [input, dir + "/missing", dir + "/sub"]) }, output)
        }
        XCTAssertNil(kind { try OutputGuard.check("relative-new.safetensors", inputs: [input]) })
        // Outputs that could never be renamed into place.
        XCTAssertEqual(mkfifo(dir + "/fifo", 0o644), 0)
        for output in [dir + "/sub", dir + "/fifo", "/dev/null", dir + "/missing/x", dir + "/other/x", ""] {
            XCTAssertEqual(kind { try OutputGuard.check(output, inputs: [input]) }, .io, output)
        }
    }

    func testModelInputFilesListEveryFileItReads() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let folder = dir + "/hf"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let entry = SafeTensorsWriter.Entry(name: "a.weight", shape: [2, 2], floats: [1, 2, 3, 4])
        try SafeTensorsWriter.write([entry], to: folder + "/model.safetensors")
        try "{}".write(toFile: folder + "/config.json", atomically: false, encoding: .utf8)
        try "a\nb\n".write(toFile: folder + "/vocab.txt", atomically: false, encoding: .utf8)
        XCTAssertEqual(
            try Model.open(folder).inputFiles,
            [folder, folder + "/model.safetensors", folder + "/config.json", folder + "/vocab.txt"])
        XCTAssertEqual(
            try Model.open(folder + "/model.safetensors").inputFiles,
            [folder + "/model.safetensors", folder + "/config.json", folder + "/vocab.txt"])
        XCTAssertEqual(try DemoModel.make().inputFiles, [])
    }

    func testCancelledWriteLeavesNothingAndKeepsTheOldFile() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let path = dir + "/out.safetensors"
        let progress = Progress(total: 1)
        progress.cancel()
        let entries = [SafeTensorsWriter.Entry(name: "a", shape: [3], floats: [1, 2, 3])]
        XCTAssertThrowsError(try SafeTensorsWriter.write(entries, to: path, progress: progress)) {
            XCTAssertEqual($0 as? QuantizationError, .cancelled)
        }
        XCTAssertEqual(try names(dir), [])

        try "old".write(toFile: path, atomically: false, encoding: .utf8)
        // Cancelled half-way through a large write, between its 8 MiB pieces.
        let live = Progress(total: 1)
        let writer = try AtomicFileWriter(path: path, progress: live)
        try writer.write([UInt8](repeating: 7, count: 100))
        live.cancel()
        XCTAssertThrowsError(try writer.write([UInt8](repeating: 1, count: 20 << 20))) {
            XCTAssertEqual($0 as? QuantizationError, .cancelled)
        }
        XCTAssertEqual(try names(dir), ["out.safetensors"], "the temporary file is gone")
        XCTAssertThrowsError(try writer.commit())
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "old")

        // Cancelled after the last byte, before the rename.
        let late = Progress(total: 1)
        let second = try AtomicFileWriter(path: path, progress: late)
        try second.write("new")
        late.cancel()
        XCTAssertThrowsError(try second.commit()) { XCTAssertEqual($0 as? QuantizationError, .cancelled) }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "old")
        XCTAssertEqual(try names(dir), ["out.safetensors"])
    }

    func testStaleTemporariesOfDeadProcessesAreRemoved() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        let dead = process.processIdentifier
        let stale = ["out.bin.tmp-\(dead)-1", "out.bin.tmp-\(dead)-4294967295"]
        let kept = [
            "out.bin.tmp-\(getpid())-2", "out.bin.tmp-1-3",  // live processes (ours, init)
            "out.bin.tmp-\(dead)-", "out.bin.tmp-\(dead)-1-2", "out.bin.tmp-+\(dead)-1", "out.bin.tmp-\(dead)-x",
            "xout.bin.tmp-\(dead)-1", "out.bi.tmp-\(dead)-1"
        ]
        for name in stale + kept { try "x".write(toFile: dir + "/" + name, atomically: false, encoding: .utf8) }
        try FileManager.default.createDirectory(atPath: dir + "/out.bin.tmp-\(dead)-9", withIntermediateDirectories: false)
        let writer = try AtomicFileWriter(path: dir + "/out.bin")
        try writer.write("data")
        try writer.commit()
        XCTAssertEqual(try names(dir), (kept + ["out.bin", "out.bin.tmp-\(dead)-9"]).sorted())
    }

    /// A header over the safetensors limit (500 000 quantized layers made one of 179 MB) is refused before
    /// any file exists.
    func testHeaderOverTheLimitIsRefusedBeforeWriting() throws {
        let entries = (0..<40).map { SafeTensorsWriter.Entry(name: "layer.\($0).weight", shape: [1], floats: [Float($0)]) }
        let (prefix, _) = try SafeTensorsWriter.layout(entries, metadata: [:], file: "t", headerLimit: 4096)
        let size = prefix.count - 8
        XCTAssertThrowsError(try SafeTensorsWriter.layout(entries, metadata: [:], file: "t", headerLimit: size - 1)) {
            let error = $0 as? FileFormatError
            XCTAssertEqual(error?.kind, .tooLarge)
            XCTAssertEqual(
                error?.description,
                "t: the header would be \(size) bytes (40 tensors, 0 metadata keys), over the safetensors limit of \(size - 1) bytes that readers enforce; nothing was written"
            )
        }
        XCTAssertNoThrow(try SafeTensorsWriter.layout(entries, metadata: [:], file: "t", headerLimit: size))

        // Through the writer: refused before any file exists.
        let dir = try TestPaths.temporaryDirectory(for: self)
        XCTAssertThrowsError(
            try SafeTensorsWriter.write(
                entries, metadata: [:], to: dir + "/t.safetensors", progress: nil,
                headerLimit: size - 1)
        ) {
            XCTAssertEqual(($0 as? FileFormatError)?.kind, .tooLarge)
        }
        XCTAssertEqual(try names(dir), [])
        try SafeTensorsWriter.write(entries, metadata: [:], to: dir + "/t.safetensors", progress: nil, headerLimit: size)
        XCTAssertEqual(try SafeTensorsFile(path: dir + "/t.safetensors").tensors.count, 40)
        XCTAssertEqual(SafeTensorsFile.maxHeaderLength, 100_000_000, "the public writer's limit is the readers'")
    }
}
