import Any4Core
import Foundation
import TestSupport
import XCTest

/// quantize at any size (#16): split parts merged equal the unsplit run byte for byte per tensor,
/// merge refuses what is missing, foreign or truncated, an interrupted run resumes from its
/// complete shards, and the schedulers' environment chooses the part.
final class StreamingQuantizeCLITests: XCTestCase {
    func any4(_ arguments: [String], environment: [String: String]? = nil) throws -> ProcessResult {
        // A test run inside a Slurm array or an indexed job must not split these runs by accident.
        var env = environment ?? [:]
        for key in ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "JOB_COMPLETION_INDEX"] where env[key] == nil {
            env[key] = ""
        }
        return try runProcess(TestPaths.any4Binary, arguments, environment: env)
    }

    /// The tiny synthetic Llama (2 blocks, 14 linear layers), made once per test.
    func tinyModel(_ dir: String) throws -> String {
        let python = try Python.require(["numpy", "tokenizers"])
        let folder = dir + "/tiny"
        let r = try runProcess(python, [TestPaths.packageRoot + "/scripts/make-synthetic-llama.py", "--size", "tiny", folder, "--seed", "5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return folder
    }

    /// Every tensor's bytes in a checkpoint folder (or file), read independently of the model
    /// reader: the 8-byte header length, the JSON header, the data offsets.
    func tensorBytes(_ path: String) throws -> [String: Data] {
        var isFolder: ObjCBool = false
        XCTAssertTrue(FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), path)
        let files =
            isFolder.boolValue
            ? try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".safetensors") }.map { path + "/" + $0 }
            : [path]
        var out: [String: Data] = [:]
        for file in files {
            let data = try Data(contentsOf: URL(fileURLWithPath: file))
            let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self).littleEndian })
            let header = try JSONParser.parse(String(decoding: data[8..<(8 + n)], as: UTF8.self), file: file)
            for (name, value) in header.members ?? [] where name != "__metadata__" {
                let offsets = try XCTUnwrap(value["data_offsets"]?.array?.compactMap(\.int))
                XCTAssertNil(out[name], "\(name) twice")
                out[name] = data[(8 + n + offsets[0])..<(8 + n + offsets[1])]
            }
        }
        return out
    }

    func assertSameTensors(_ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try tensorBytes(a)
        let y = try tensorBytes(b)
        XCTAssertEqual(x.keys.sorted(), y.keys.sorted(), file: file, line: line)
        XCTAssertGreaterThan(x.count, 20, file: file, line: line)
        for (name, bytes) in x { XCTAssertEqual(bytes, y[name], "\(name) differs", file: file, line: line) }
    }

    func listing(_ folder: String) throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: folder).sorted() }

    func testSplitPartsMergedEqualTheUnsplitRunByteForByte() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = try tinyModel(dir)
        let common = ["--format", "any4", "--max-shard-size", "300KB"]
        let whole = try any4(["quantize", model, "--out", dir + "/whole"] + common)
        XCTAssertEqual(whole.status, 0, whole.stderr)
        var layers = 0
        for i in 0..<3 {
            let r = try any4(["quantize", model, "--out", dir + "/split", "--shard", "\(i)/3", "--json"] + common)
            XCTAssertEqual(r.status, 0, r.stderr)
            let json = try JSONParser.parse(r.stdout, file: "stdout")
            XCTAssertEqual(json["part"]?.int, i)
            let count = json["layers"]?.array?.count ?? 0
            // Balanced by cost: the 4 MB embedding and head copies (0.1 weight a byte) weigh as
            // much as 420 K weights each, so the first and last parts quantize fewer layers.
            XCTAssertGreaterThanOrEqual(count, 1, "part \(i) does its share of the 14 layers")
            layers += count
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/split.partial/part-\(i)-of-3.json"))
        }
        XCTAssertEqual(layers, 14, "every layer in exactly one part")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/split"), "no checkpoint before the merge")
        let merged = try any4(["merge", dir + "/split.partial"])
        XCTAssertEqual(merged.status, 0, merged.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/split.partial"))
        try assertSameTensors(dir + "/whole", dir + "/split")
        let files = try listing(dir + "/split")
        XCTAssertTrue(files.contains("model.safetensors.index.json") && files.contains("config.json") && files.contains("tokenizer.json"), "\(files)")
        XCTAssertFalse(files.contains { $0.hasPrefix("part-") }, "manifests removed: \(files)")
        // The merged folder loads and runs.
        let run = try any4(["run", dir + "/split", "-p", "hello", "-n", "2", "--no-probe-bandwidth"])
        XCTAssertEqual(run.status, 0, run.stderr)

        // Sequential calibration split: each part runs the blocks before its own, so its statistics
        // and therefore its bytes equal the unsplit run's.
        let calibrated = try any4(["quantize", model, "--out", dir + "/cal", "--calibrate"] + common)
        XCTAssertEqual(calibrated.status, 0, calibrated.stderr)
        for i in 0..<2 {
            let r = try any4(["quantize", model, "--out", dir + "/cal-split", "--calibrate", "--shard", "\(i)/2"] + common)
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        XCTAssertEqual(try any4(["merge", dir + "/cal-split.partial"]).status, 0)
        try assertSameTensors(dir + "/cal", dir + "/cal-split")
    }

    func testMergeRefusesAMissingPartAPartWithOtherOptionsAndATruncatedShard() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = try tinyModel(dir)
        let common = ["--format", "nf4", "--max-shard-size", "300KB"]
        func part(_ i: Int, _ out: String, _ extra: [String] = []) throws {
            let r = try any4(["quantize", model, "--out", out, "--shard", "\(i)/3"] + common + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        // Separate folders (no shared file system): merged with --out.
        for i in 0..<3 { try part(i, dir + "/p\(i)") }
        let folders = (0..<3).map { dir + "/p\($0).partial" }

        var r = try any4(["merge", folders[0], folders[2], "--out", dir + "/m"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("missing part 1/3") && r.stderr.contains("part-1-of-3.json"), r.stderr)

        try part(1, dir + "/other", ["--group-size", "64"])
        r = try any4(["merge", folders[0], dir + "/other.partial", folders[2], "--out", dir + "/m"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("other.partial/part-1-of-3.json") && r.stderr.contains("groupSize=64"), r.stderr)

        let shard = try XCTUnwrap(try listing(folders[1]).first { $0.hasPrefix("model-") })
        let path = folders[1] + "/" + shard
        let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        try handle.truncate(atOffset: UInt64(size - 10))
        try handle.close()
        r = try any4(["merge"] + folders + ["--out", dir + "/m"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains(shard) && r.stderr.contains("truncated"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/m"), "nothing written on a refusal")

        try part(1, dir + "/p1")
        r = try any4(["merge"] + folders + ["--out", dir + "/m"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let whole = try any4(["quantize", model, "--out", dir + "/whole"] + common)
        XCTAssertEqual(whole.status, 0, whole.stderr)
        try assertSameTensors(dir + "/whole", dir + "/m")
    }

    func testAnInterruptedRunResumesFromItsCompleteShards() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = try tinyModel(dir)
        let out = dir + "/q"
        let common = ["quantize", model, "--format", "int4", "--max-shard-size", "300KB", "--out", out]
        // Killed outright (SIGKILL, as a crash) right after its first shard.
        let killed = try any4(common, environment: ["ANY4_TEST_KILL_AFTER_SHARDS": "1"])
        XCTAssertNotEqual(killed.status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let left = try listing(out + ".partial").filter { $0.hasPrefix("model-") }
        XCTAssertEqual(left.count, 1, "one complete shard, no temporary: \(left)")
        let shard = try XCTUnwrap(left.first)
        let count = try XCTUnwrap(Int(shard.dropFirst("model-00001-of-".count).prefix(5)))
        XCTAssertGreaterThan(count, 2)
        XCTAssertTrue(shard.hasPrefix("model-00001-of-"), shard)
        let first = out + ".partial/" + shard
        let before = try FileManager.default.attributesOfItem(atPath: first)

        let resumed = try any4(common)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("reusing shard 1/\(count) \(shard)"), resumed.stderr)
        XCTAssertFalse(resumed.stderr.contains("reusing shard 2/"), resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("reused 1 complete shard"), resumed.stdout)
        let after = try FileManager.default.attributesOfItem(atPath: out + "/" + shard)
        XCTAssertEqual(before[.systemFileNumber] as? Int, after[.systemFileNumber] as? Int, "the same file, not rewritten")
        let names = try listing(dir)
        XCTAssertFalse(names.contains { $0.contains(".partial") || $0.contains(".tmp-") }, "\(names)")
        let fresh = try any4(["quantize", model, "--format", "int4", "--max-shard-size", "300KB", "--out", dir + "/fresh"])
        XCTAssertEqual(fresh.status, 0, fresh.stderr)
        try assertSameTensors(out, dir + "/fresh")

        // A shard made with other options is not reused; --force reuses nothing.
        XCTAssertEqual(try any4(common + ["--shard", "0/2"], environment: ["ANY4_TEST_KILL_AFTER_SHARDS": "1"]).status != 0, true)
        let other = try any4(["quantize", model, "--format", "int4", "--group-size", "64", "--max-shard-size", "300KB", "--out", out])
        XCTAssertEqual(other.status, 0, other.stderr)
        XCTAssertFalse(other.stderr.contains("reusing"), other.stderr)
        _ = try any4(common, environment: ["ANY4_TEST_KILL_AFTER_SHARDS": "2"])
        let forced = try any4(common + ["--force"])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertFalse(forced.stderr.contains("reusing"), forced.stderr)
        try assertSameTensors(out, dir + "/fresh")
    }

    func testTheSchedulersEnvironmentChoosesThePart() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = try tinyModel(dir)
        let args = ["quantize", model, "--format", "int4", "--max-shard-size", "300KB"]
        var r = try any4(args + ["--out", dir + "/slurm"], environment: ["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("part 1/3 from SLURM_ARRAY_TASK_ID"), r.stderr)
        XCTAssertEqual(try listing(dir + "/slurm.partial").filter { $0.hasPrefix("part-") }, ["part-1-of-3.json"])
        let explicit = try any4(args + ["--out", dir + "/explicit", "--shard", "1/3"])
        XCTAssertEqual(explicit.status, 0, explicit.stderr)
        XCTAssertEqual(
            try listing(dir + "/slurm.partial").filter { $0.hasPrefix("model-") },
            try listing(dir + "/explicit.partial").filter { $0.hasPrefix("model-") })

        // An array --array=1-3: SLURM_ARRAY_TASK_MIN is subtracted.
        r = try any4(
            args + ["--out", dir + "/min"],
            environment: ["SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"])
        XCTAssertTrue(r.stderr.contains("part 1/3 from SLURM_ARRAY_TASK_ID"), r.stderr)
        // Kubernetes Indexed Jobs: the index, and the count from --shard-count.
        r = try any4(args + ["--out", dir + "/k8s", "--shard-count", "3"], environment: ["JOB_COMPLETION_INDEX": "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("part 2/3 from JOB_COMPLETION_INDEX"), r.stderr)
        XCTAssertEqual(try listing(dir + "/k8s.partial").filter { $0.hasPrefix("part-") }, ["part-2-of-3.json"])
        // Refusals: an index outside the count, a split into a single file.
        r = try any4(args + ["--out", dir + "/bad"], environment: ["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3"])
        XCTAssertEqual(r.status, 2, r.stderr)
        r = try any4(["quantize", model, "--format", "int4", "--out", dir + "/one.safetensors", "--shard", "0/2"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("split run"), r.stderr)
    }
}
