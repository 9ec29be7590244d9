import Any4Core
import Foundation
import TestSupport
import XCTest

/// Issue 14, part B: sizes from files and options. Every numeric option is range-checked as the
/// command line is parsed; shapes, group counts, packing, bench allocations and KV caches are
/// computed checked (an error naming the value, never a trap); allocations the machine cannot give
/// are refused up front; zero-element layers cost nothing; the engine cross-checks its
/// configuration before any work. Each refusal: status 2 and a message, the input unchanged,
/// nothing written.
final class LimitsCLITests: XCTestCase {
    func any4(_ arguments: [String], environment: [String: String]? = nil) throws -> ProcessResult {
        try runProcess(TestPaths.any4Binary, arguments, environment: environment)
    }

    // MARK: - Fixtures

    /// The words of the tiny models' WordPiece vocabulary (vocab.txt), ids 0..<10.
    static let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "a", "b", "c", "d"]

    static let llamaConfig: [String: String] = [
        "model_type": "\"llama\"", "hidden_size": "8", "num_hidden_layers": "1", "num_attention_heads": "2",
        "num_key_value_heads": "1", "intermediate_size": "16", "vocab_size": "10", "max_position_embeddings": "64",
        "rms_norm_eps": "1e-5", "tie_word_embeddings": "true"
    ]

    func write(config: [String: String], to folder: String) throws {
        let body = config.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value)" }.joined(separator: ", ")
        try "{\(body)}".write(toFile: folder + "/config.json", atomically: true, encoding: .utf8)
    }

    /// A tiny Llama Hugging Face folder with a WordPiece vocab.txt, so that every command runs it.
    /// `config` entries replace the defaults (nil removes one); `headDim` and `vocab` shape the tensors.
    func makeLlama(
        _ dir: String, name: String = "llama", config overrides: [String: String?] = [:],
        headDim: Int = 4, vocab: Int = 10
    ) throws -> String {
        let folder = dir + "/" + name
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var config = Self.llamaConfig
        for (key, value) in overrides { config[key] = value }
        try write(config: config, to: folder)
        try Self.vocabulary.joined(separator: "\n").write(toFile: folder + "/vocab.txt", atomically: true, encoding: .utf8)
        var rng = SplitMix64(seed: 5)
        func t(_ name: String, _ shape: [Int]) -> SafeTensorsWriter.Entry {
            .init(name: name, shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in Float(rng.nextGaussian() * 0.1) }, as: .f32)
        }
        let (d, q, kv, p) = (8, 2 * headDim, headDim, "model.layers.0.")
        try SafeTensorsWriter.write(
            [
                t("model.embed_tokens.weight", [vocab, d]), t("model.norm.weight", [d]),
                t(p + "input_layernorm.weight", [d]), t(p + "post_attention_layernorm.weight", [d]),
                t(p + "self_attn.q_proj.weight", [q, d]), t(p + "self_attn.k_proj.weight", [kv, d]),
                t(p + "self_attn.v_proj.weight", [kv, d]), t(p + "self_attn.o_proj.weight", [d, q]),
                t(p + "mlp.gate_proj.weight", [16, d]), t(p + "mlp.up_proj.weight", [16, d]), t(p + "mlp.down_proj.weight", [d, 16])
            ], to: folder + "/model.safetensors")
        return folder
    }

    /// A tiny BERT Hugging Face folder (hidden 8, 2 heads, 1 layer) with a vocab.txt.
    func makeBert(_ dir: String, config overrides: [String: String?] = [:], tokenTypes: Int = 2) throws -> String {
        let folder = dir + "/bert"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var config: [String: String] = [
            "model_type": "\"bert\"", "hidden_size": "8", "num_hidden_layers": "1",
            "num_attention_heads": "2", "intermediate_size": "16", "vocab_size": "10",
            "layer_norm_eps": "1e-12"
        ]
        for (key, value) in overrides { config[key] = value }
        try write(config: config, to: folder)
        try Self.vocabulary.joined(separator: "\n").write(toFile: folder + "/vocab.txt", atomically: true, encoding: .utf8)
        var rng = SplitMix64(seed: 6)
        func t(_ name: String, _ shape: [Int], _ scale: Double = 0.1, _ offset: Float = 0) -> SafeTensorsWriter.Entry {
            .init(name: name, shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in offset + Float(rng.nextGaussian() * scale) }, as: .f32)
        }
        var entries = [
            t("embeddings.word_embeddings.weight", [10, 8]), t("embeddings.position_embeddings.weight", [16, 8]),
            t("embeddings.token_type_embeddings.weight", [tokenTypes, 8]),
            t("embeddings.LayerNorm.weight", [8], 0.01, 1), t("embeddings.LayerNorm.bias", [8])
        ]
        let p = "encoder.layer.0."
        for (module, rows, cols) in [
            ("attention.self.query", 8, 8), ("attention.self.key", 8, 8), ("attention.self.value", 8, 8),
            ("attention.output.dense", 8, 8), ("intermediate.dense", 16, 8), ("output.dense", 8, 16)
        ] {
            entries += [t(p + module + ".weight", [rows, cols]), t(p + module + ".bias", [rows])]
        }
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            entries += [t(p + norm + ".weight", [8], 0.01, 1), t(p + norm + ".bias", [8])]
        }
        try SafeTensorsWriter.write(entries, to: folder + "/model.safetensors")
        return folder
    }

    /// A safetensors file written byte by byte (so that shapes no writer would produce get in):
    /// tensors are (name, dtype, shape, data).
    func writeRawSafetensors(_ path: String, _ tensors: [(String, String, [Int], [UInt8])]) throws {
        var header: [String] = []
        var data: [UInt8] = []
        for (name, dtype, shape, bytes) in tensors {
            header.append(
                "\"\(name)\": {\"dtype\": \"\(dtype)\", \"shape\": [\(shape.map(String.init).joined(separator: ", "))], "
                    + "\"data_offsets\": [\(data.count), \(data.count + bytes.count)]}")
            data += bytes
        }
        var json = Array(("{" + header.joined(separator: ", ") + "}").utf8)
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }
        let file = withUnsafeBytes(of: UInt64(json.count).littleEndian, Array.init) + json + data
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(file)))
    }

    func floatBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        var out: [UInt8] = []
        for _ in 0..<count { out += withUnsafeBytes(of: Float(rng.nextGaussian() * 0.02).bitPattern.littleEndian, Array.init) }
        return out
    }

    /// A GGUF v3 value for ``writeGGUF``.
    enum GGUFKV { case u32(UInt32), string(String), strings([String]) }

    /// A GGUF v3 file: metadata, then tensors (name, dims in GGUF order, ggml type, data), aligned to 32.
    func writeGGUF(_ path: String, _ kv: [(String, GGUFKV)], _ tensors: [(String, [UInt64], UInt32, [UInt8])]) throws {
        var out: [UInt8] = Array("GGUF".utf8)
        func u32(_ v: UInt32) { out += withUnsafeBytes(of: v.littleEndian, Array.init) }
        func u64(_ v: UInt64) { out += withUnsafeBytes(of: v.littleEndian, Array.init) }
        func string(_ s: String) {
            u64(UInt64(s.utf8.count))
            out += Array(s.utf8)
        }
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(kv.count))
        for (key, value) in kv {
            string(key)
            switch value {
            case .u32(let v):
                u32(4)
                u32(v)
            case .string(let s):
                u32(8)
                string(s)
            case .strings(let a):
                u32(9)
                u32(8)
                u64(UInt64(a.count))
                a.forEach(string)
            }
        }
        var data: [UInt8] = []
        for (name, dims, type, bytes) in tensors {
            string(name)
            u32(UInt32(dims.count))
            dims.forEach(u64)
            u32(type)
            u64(UInt64(data.count))
            data += bytes
            while data.count % 32 != 0 { data.append(0) }
        }
        while out.count % 32 != 0 { out.append(0) }
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(out + data)))
    }

    /// A tiny GGUF Llama (BERT-style vocabulary) with extra uint32 metadata.
    func makeGGUFLlama(_ path: String, _ extra: [(String, UInt32)] = [], headDim: Int = 4) throws {
        var kv: [(String, GGUFKV)] = [
            ("general.architecture", .string("llama")), ("llama.embedding_length", .u32(8)),
            ("llama.block_count", .u32(1)), ("llama.attention.head_count", .u32(2)),
            ("llama.attention.head_count_kv", .u32(1)), ("llama.feed_forward_length", .u32(16)),
            ("llama.context_length", .u32(64)), ("tokenizer.ggml.model", .string("bert")),
            ("tokenizer.ggml.tokens", .strings(Self.vocabulary)), ("tokenizer.ggml.unknown_token_id", .u32(1))
        ]
        kv += extra.map { ($0.0, .u32($0.1)) }
        var seed: UInt64 = 0
        func t(_ name: String, _ shape: [Int]) -> (String, [UInt64], UInt32, [UInt8]) {
            seed += 1
            return (name, shape.reversed().map(UInt64.init), 0, floatBytes(shape.reduce(1, *), seed: seed))
        }
        let (q, k) = (2 * headDim, headDim)
        try writeGGUF(
            path, kv,
            [
                t("token_embd.weight", [10, 8]), t("output_norm.weight", [8]), t("blk.0.attn_norm.weight", [8]),
                t("blk.0.ffn_norm.weight", [8]), t("blk.0.attn_q.weight", [q, 8]), t("blk.0.attn_k.weight", [k, 8]),
                t("blk.0.attn_v.weight", [k, 8]), t("blk.0.attn_output.weight", [8, q]), t("blk.0.ffn_gate.weight", [16, 8]),
                t("blk.0.ffn_up.weight", [16, 8]), t("blk.0.ffn_down.weight", [8, 16])
            ])
    }

    /// The bytes of every file under `dir`, to show that a refused command changed nothing.
    func snapshot(_ dir: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try FileManager.default.subpathsOfDirectory(atPath: dir) {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: dir + "/" + name, isDirectory: &isDir), !isDir.boolValue {
                files[name] = FileManager.default.contents(atPath: dir + "/" + name)
            }
        }
        return files
    }

    /// Runs each case expecting status 2 and its message, the files under `dir` unchanged and no new one.
    func assertRefused(
        _ cases: [([String], String)], in dir: String, environment: [String: String]? = nil,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let before = try snapshot(dir)
        for (arguments, message) in cases {
            let r = try any4(arguments, environment: environment)
            XCTAssertEqual(r.status, 2, "\(arguments): \(r.stderr)", file: file, line: line)
            XCTAssertTrue(r.stderr.contains(message), "\(arguments): expected \"\(message)\" in: \(r.stderr)", file: file, line: line)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line: \(r.stderr)", file: file, line: line)
            XCTAssertEqual(try snapshot(dir), before, "\(arguments) changed or left files", file: file, line: line)
        }
    }

    // MARK: - Group sizes

    /// Group sizes of 2^31 and more used to pass the quantizer and trap in the kernel packing
    /// (`run`, `embed-eval`, `bench`: "Not enough bits to represent the passed value"); every
    /// command now refuses anything past 65536 as the line is parsed.
    func testGroupSizesPastTheLimitAreRefusedByEveryCommand() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let llama = try makeLlama(dir)
        let bert = try makeBert(dir)
        try "hello world\na b c d".write(toFile: dir + "/s.txt", atomically: true, encoding: .utf8)
        let out = dir + "/q.safetensors"
        var cases: [([String], String)] = []
        for g in ["2147483648", "4294967296", "1099511627776", "4611686018427387904", "9223372036854775806", "65538"] {
            let message = "--group-size: group size \(g) is larger than 65536"
            cases += [
                (["run", llama, "-p", "hello", "-n", "2", "--format", "int4", "--group-size", g], message),
                (["embed-eval", bert, "--sentences", dir + "/s.txt", "--format", "int4", "--group-size", g], message),
                (["bench", "--shape", "64x64", "--group-size", g], message),
                (["quantize", llama, "--format", "int4", "--group-size", g, "--out", out], message),
                (["compare", llama, "--formats", "int4", "--group-size", g], message)
            ]
        }
        try assertRefused(cases, in: dir)

        // The largest group is one group per row, in the quantizer and the kernels.
        let r = try any4(["run", llama, "-p", "hello world", "-n", "2", "--format", "int4", "--group-size", "65536", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(try JSONParser.parse(r.stdout, file: "stdout")["weights"]?.string?.hasPrefix("int4 g65536") == true, r.stdout)
        let e = try any4(["embed-eval", bert, "--sentences", dir + "/s.txt", "--format", "int4", "--group-size", "65536", "--json"])
        XCTAssertEqual(e.status, 0, e.stderr)
    }

    // MARK: - bench

    /// `--shape 4294967296x4294967296` and `9223372036854775807x2` trapped; `60000x60000` aborted
    /// in malloc or ran 14 GB. Dimensions are bounded at parse time, and the run's memory is
    /// estimated and refused with its size before anything is allocated.
    func testBenchShapesAreBoundedAndItsMemoryEstimated() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        try assertRefused(
            [
                (["bench", "--shape", "4294967296x4294967296"], "--shape 4294967296x4294967296: each dimension must be in 1...1073741824"),
                (["bench", "--shape", "9223372036854775807x2"], "got 9223372036854775807"),
                (["bench", "--shape", "0x64"], "got 0"),
                (["bench", "--shape", "64x"], "expected OUTxIN"),
                (["bench", "--shape", "1073741824x1073741824"], "overflows a 64-bit size"),
                // 4 TB of f32 weights: more than any machine this runs on.
                (["bench", "--shape", "1000000x1000000", "--formats", "int4"], "bench --shape 1000000x1000000")
            ], in: dir)
        let started = Clock.now
        try assertRefused(
            [
                (
                    ["bench", "--shape", "64x64", "60000x60000", "--formats", "int4", "--batch", "1"],
                    "bench --shape 60000x60000 (its f32 weights, the copies cycled through and each format's packed form) needs "
                )
            ], in: dir, environment: ["ANY4_MEMORY_LIMIT": "2G"])
        XCTAssertLessThan(Clock.now - started, 10, "refused before any weights are made")
        let r = try any4(["bench", "--shape", "60000x60000", "--formats", "int4"], environment: ["ANY4_MEMORY_LIMIT": "2G"])
        XCTAssertTrue(r.stderr.contains("bytes), more than the 2.0 GiB this machine can give (ANY4_MEMORY_LIMIT=2G)"), r.stderr)
    }

    /// SIGTERM during a bench used to be noted and ignored until the case ended (the timed runs
    /// never looked); it now stops between runs with status 130.
    func testBenchStopsOnSIGTERM() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestPaths.any4Binary)
        process.arguments = [
            "bench", "--shape", "512x512", "--formats", "int4", "--batch", "1", "--runs", "1000000", "--hot",
            "--threads", "1"
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: 2)
        XCTAssertTrue(process.isRunning, "a million runs take far longer than 2 s")
        let sent = Clock.now
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 130)
        XCTAssertLessThan(Clock.now - sent, 3, "stopped between runs, not at the end of the case")
    }

    // MARK: - Option ranges

    /// Every numeric option is range-checked as the command line is parsed, naming the option;
    /// `ppl --chunks -1` used to run every window, negative `--threads` meant all cores, and
    /// `-n 9223372036854775807` trapped in `prompt + n`.
    func testNumericOptionsAreRangeCheckedAtParseTime() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let llama = try makeLlama(dir)
        let bert = try makeBert(dir)
        let text = dir + "/t.txt"
        try Array(repeating: "hello world a b c d", count: 8).joined(separator: " ").write(toFile: text, atomically: true, encoding: .utf8)
        let out = dir + "/o.safetensors"
        var cases: [([String], String)] = [
            (["ppl", llama, "--text", text, "--chunks", "-1"], "--chunks must be 0 (all windows) or more, got -1"),
            (["ppl", llama, "--text", text, "--chunks=-5"], "--chunks must be 0 (all windows) or more, got -5"),
            (["ppl", llama, "--text", text, "--ctx", "4"], "--ctx must be in 8...1048576, got 4"),
            (["ppl", llama, "--text", text, "--ctx", "9223372036854775807"], "--ctx must be in 8...1048576"),
            (["ppl", llama, "--text", text, "--ctx", "100"], "--ctx 100 is longer than the model's context of 64"),
            (["run", llama, "-p", "hello", "-n", "0"], "-n must be in 1...1048576, got 0"),
            (["run", llama, "-p", "hello", "-n", "-3"], "-n must be in 1...1048576, got -3"),
            (["run", llama, "-p", "hello", "-n", "9223372036854775807"], "-n must be in 1...1048576"),
            (["run", llama, "-p", "hello", "-n", "1000"], "do not fit the model's context of 64"),
            (["bench", "--runs", "0"], "--runs must be in 1...1000000, got 0"),
            (["bench", "--runs", "9223372036854775807"], "--runs must be in 1...1000000"),
            (["bench", "--batch", "0"], "--batch: expected sizes 1...64, got 0"),
            (["bench", "--batch", "65"], "--batch: expected sizes 1...64, got 65"),
            (["bench", "--batch", "1,,8"], "--batch: expected sizes 1...64")
        ]
        for threads in ["-1", "1025", "9223372036854775807"] {
            let message = "--threads must be in 0...1024 (0: all cores), got \(threads)"
            cases += [
                (["quantize", llama, "--format", "int4", "--threads", threads, "--out", out], message),
                (["compare", llama, "--formats", "int4", "--threads", threads], message),
                (["bench", "--shape", "64x64", "--threads", threads], message),
                (["calibrate", llama, "--threads", threads, "--out", out], message),
                (["run", llama, "-p", "hello", "--threads", threads], message),
                (["ppl", llama, "--text", text, "--threads", threads], message),
                (["embed-eval", bert, "--sentences", text, "--format", "int4", "--threads", threads], message)
            ]
        }
        try assertRefused(cases, in: dir)

        // More windows than the text holds means all of them (no chunks × ctx overflow).
        let r = try any4(["ppl", llama, "--text", text, "--ctx", "8", "--chunks", "9223372036854775807", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONParser.parse(r.stdout, file: "stdout")
        XCTAssertEqual(json["chunks"]?.int, (json["text_tokens"]?.int ?? 0) / 8)
        XCTAssertGreaterThanOrEqual(json["chunks"]?.int ?? 0, 5)
    }

    // MARK: - Zero-element layers and overflowing shapes

    /// A layer of 2^61 × 0 trapped in rows × table entries (`quantize --format any4`, `compare`),
    /// 10^9 × 0 spun through a billion empty rows (`--fake-quant`), and a GGUF tensor of a huge
    /// row length and no rows trapped in `compare`. A layer without elements is now left as it is,
    /// in O(1) whatever its other dimension.
    func testZeroElementLayersAreLeftAsTheyAre() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = dir + "/m.safetensors"
        let empties: [(String, String, [Int])] = [
            ("model.layers.0.mlp.up_proj.weight", "F32", [1 << 61, 0]),
            ("model.layers.0.mlp.gate_proj.weight", "BF16", [1_000_000_000, 0]),
            ("model.layers.0.self_attn.q_proj.weight", "F32", [0, 1_000_000_000]),
            ("model.layers.0.self_attn.k_proj.weight", "F16", [0, 1 << 62])
        ]
        try writeRawSafetensors(
            model,
            empties.map { ($0.0, $0.1, $0.2, []) }
                + [("model.layers.0.mlp.down_proj.weight", "F32", [16, 64], floatBytes(16 * 64, seed: 3))])
        let original = try XCTUnwrap(FileManager.default.contents(atPath: model))
        let started = Clock.now
        for (index, arguments) in [
            ["quantize", model, "--format", "any4", "--json"], ["quantize", model, "--format", "int4", "--fake-quant", "--json"],
            ["quantize", model, "--format", "nf4", "--json"]
        ].enumerated() {
            let out = dir + "/q\(index).safetensors"
            let r = try any4(arguments + ["--out", out])
            XCTAssertEqual(r.status, 0, "\(arguments): \(r.stderr)")
            let layers = try XCTUnwrap(try JSONParser.parse(r.stdout, file: "stdout")["layers"]?.array)
            XCTAssertEqual(layers.compactMap { $0["name"]?.string }, ["model.layers.0.mlp.down_proj.weight"], "\(arguments)")
            // The empty layers are copied as they are.
            let written = try SafeTensorsFile(path: out)
            for (name, dtype, shape) in empties {
                XCTAssertEqual(written.tensor(named: name)?.shape, shape, name)
                XCTAssertEqual(written.tensor(named: name)?.encoding, .plain(DType(rawValue: dtype)!), name)
            }
        }
        let c = try any4(["compare", model, "--formats", "any4,int4,nvfp4", "--json"])
        XCTAssertEqual(c.status, 0, c.stderr)
        XCTAssertEqual(try JSONParser.parse(c.stdout, file: "stdout")["layers"]?.array?.count, 1)
        XCTAssertLessThan(Clock.now - started, 30, "no work proportional to the empty layers' other dimension")
        XCTAssertEqual(FileManager.default.contents(atPath: model), original)

        // A model whose only linear layers are empty has nothing to quantize.
        let onlyEmpty = dir + "/empty/m.safetensors"
        try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
        try writeRawSafetensors(onlyEmpty, empties.map { ($0.0, $0.1, $0.2, []) })
        try assertRefused(
            [
                (["quantize", onlyEmpty, "--format", "any4", "--out", dir + "/empty/q.safetensors"], "no linear layer of"),
                (["compare", onlyEmpty, "--formats", "int4"], "no linear layer of")
            ], in: dir + "/empty")

        // GGUF: a huge row length and no rows (ne = [2^63 − 1, 0]), or no columns and 2^62 rows.
        let gguf = dir + "/g/m.gguf"
        try FileManager.default.createDirectory(atPath: dir + "/g", withIntermediateDirectories: true)
        try writeGGUF(
            gguf, [("general.architecture", .string("llama"))],
            [
                ("blk.0.ffn_up.weight", [UInt64(Int.max), 0], 0, []), ("blk.0.ffn_gate.weight", [0, 1 << 62], 0, []),
                ("blk.0.ffn_down.weight", [64, 16], 0, floatBytes(16 * 64, seed: 4))
            ])
        for arguments in [
            ["compare", gguf, "--formats", "any4,int4", "--json"],
            ["quantize", gguf, "--format", "int4", "--fake-quant", "--out", dir + "/g/q.safetensors", "--json"]
        ] {
            let r = try any4(arguments)
            XCTAssertEqual(r.status, 0, "\(arguments): \(r.stderr)")
            XCTAssertEqual(
                try JSONParser.parse(r.stdout, file: "stdout")["layers"]?.array?.compactMap { $0["name"]?.string },
                ["blk.0.ffn_down.weight"])
        }
    }

    /// A layer whose quantization needs more memory than the machine gives is refused, naming it
    /// and the size, before it is decoded.
    func testQuantizingALayerTheMachineCannotHoldIsRefusedFirst() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let model = dir + "/m.safetensors"
        try SafeTensorsWriter.write(
            [
                .init(name: "model.layers.0.mlp.up_proj.weight", shape: [4096, 1024], floats: [Float](repeating: 0.5, count: 4096 * 1024), as: .bf16)
            ], to: model)
        try assertRefused(
            [
                (
                    ["quantize", model, "--format", "any4", "--out", dir + "/q.safetensors"],
                    "quantizing model.layers.0.mlp.up_proj.weight [4096, 1024] to any4 needs"
                ),
                (["compare", model, "--formats", "int4"], "(ANY4_MEMORY_LIMIT=17M)")
            ], in: dir, environment: ["ANY4_MEMORY_LIMIT": "17M"])
    }

    // MARK: - Engine configuration

    /// config.json facts the forward pass indexes by, cross-checked before any work: each
    /// mismatch is status 2 naming the key and both values (a rope dimension past the head
    /// dimension used to run off the end of each head: SIGSEGV).
    func testLlamaConfigIsCrossCheckedBeforeAnyWork() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        var cases: [([String], String)] = []
        let bad: [(String, [String: String?], Int, Int, String)] = [
            (
                "rope-factor", ["partial_rotary_factor": "0.3"], 4, 10,
                "rope dimensions 1 (partial_rotary_factor 0.3 × head dimension 4) must be even and in 2...4"
            ),
            ("rope-factor-big", ["partial_rotary_factor": "1000"], 4, 10, "partial_rotary_factor 1000.0 is outside (0, 1]"),
            ("kv-heads", ["num_key_value_heads": "3"], 4, 10, "num_attention_heads 2 is not a multiple of num_key_value_heads 3"),
            (
                "hidden-heads", ["num_attention_heads": "3", "num_key_value_heads": "1"], 4, 10,
                "hidden_size 8 is not a multiple of num_attention_heads 3, and no head_dim gives the head dimension"
            ),
            ("head-dim", ["head_dim": "1000"], 4, 10, "shape [8, 8] where the model's configuration implies [2000, 8]"),
            ("vocab", ["vocab_size": "20"], 4, 10, "vocab_size 20 but model.embed_tokens.weight has 10 rows"),
            (
                "layers", ["num_hidden_layers": "1099511627776"], 4, 10,
                "num_hidden_layers 1099511627776 is more layers than the model's 11 tensors hold"
            ),
            ("layers-missing", ["num_hidden_layers": "2"], 4, 10, "model.layers.1.input_layernorm.weight: the model has no tensor of this name"),
            ("theta", ["rope_theta": "-1"], 4, 10, "rope_theta -1.0 is not a positive number"),
            ("context", ["max_position_embeddings": "0"], 4, 10, "lacks a positive context length (max_position_embeddings is 0)"),
            ("eps", ["rms_norm_eps": "-1"], 4, 10, "rms_norm_eps -1.0 is not a non-negative number"),
            ("scaling", ["rope_scaling": "{\"rope_type\": \"linear\", \"factor\": 0}"], 4, 10, "rope_scaling factor 0.0 is not a positive number"),
            (
                "llama3", ["rope_scaling": "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4, \"high_freq_factor\": 4}"], 4, 10,
                "llama3 needs 0 < low_freq_factor < high_freq_factor"
            ),
            ("heads-zero", ["num_attention_heads": "0"], 4, 10, "lacks a positive head count (num_attention_heads is 0)")
        ]
        for (name, overrides, headDim, vocab, message) in bad {
            let folder = try makeLlama(dir, name: name, config: overrides, headDim: headDim, vocab: vocab)
            cases.append((["run", folder, "-p", "hello", "-n", "2"], message))
        }
        let text = dir + "/t.txt"
        try Array(repeating: "hello world a b c d", count: 4).joined(separator: " ").write(toFile: text, atomically: true, encoding: .utf8)
        cases.append((["ppl", dir + "/rope-factor", "--text", text, "--ctx", "8"], "rope dimensions 1"))
        cases.append((["calibrate", dir + "/kv-heads", "--out", dir + "/c.safetensors"], "not a multiple of num_key_value_heads 3"))
        // GGUF: rope.dimension_count past the head dimension (SIGSEGV before), odd, or a key length
        // that disagrees with the tensors.
        try makeGGUFLlama(dir + "/rope1000.gguf", [("llama.rope.dimension_count", 1000)])
        try makeGGUFLlama(dir + "/rope3.gguf", [("llama.rope.dimension_count", 3)])
        try makeGGUFLlama(dir + "/value.gguf", [("llama.attention.value_length", 6)])
        cases += [
            (
                ["run", dir + "/rope1000.gguf", "-p", "hello", "-n", "2"],
                "rope dimensions 1000 (llama.rope.dimension_count) must be even and in 2...4, the head dimension (llama.embedding_length / llama.attention.head_count)"
            ),
            (["run", dir + "/rope3.gguf", "-p", "hello", "-n", "2"], "rope dimensions 3 (llama.rope.dimension_count) must be even"),
            (["run", dir + "/value.gguf", "-p", "hello", "-n", "2"], "llama.attention.value_length 6 differs from the head dimension 4")
        ]
        try assertRefused(cases, in: dir)

        // The valid neighbours run: half the head rotated, an explicit head_dim that matches the
        // tensors, and the GGUF file with its rope at the head dimension.
        let half = try makeLlama(dir, name: "rope-half", config: ["partial_rotary_factor": "0.5"])
        let explicit = try makeLlama(dir, name: "head-dim-6", config: ["head_dim": "6"], headDim: 6)
        try makeGGUFLlama(dir + "/ok.gguf", [("llama.rope.dimension_count", 4)])
        for model in [half, explicit, dir + "/ok.gguf"] {
            let r = try any4(["run", model, "-p", "hello world", "-n", "3", "--json"])
            XCTAssertEqual(r.status, 0, "\(model): \(r.stderr)")
        }
    }

    func testBertConfigIsCrossCheckedBeforeAnyWork() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        try "hello world".write(toFile: dir + "/s.txt", atomically: true, encoding: .utf8)
        var cases: [([String], String)] = []
        for (name, overrides, types, message) in [
            ("vocab", ["vocab_size": "12"], 2, "vocab_size 12 but embeddings.word_embeddings.weight has 10 rows"),
            ("heads", ["num_attention_heads": "3"], 2, "hidden_size 8 is not a multiple of num_attention_heads 3"),
            ("types", [:], 0, "0 token types; the encoder needs at least one of each"),
            ("layers", ["num_hidden_layers": "4611686018427387904"], 2, "num_hidden_layers 4611686018427387904 is more layers"),
            ("eps", ["layer_norm_eps": "-1"], 2, "layer_norm_eps -1.0 is not a non-negative number")
        ] as [(String, [String: String?], Int, String)] {
            let sub = dir + "/" + name
            try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
            let bert = try makeBert(sub, config: overrides, tokenTypes: types)
            cases.append((["embed-eval", bert, "--sentences", dir + "/s.txt", "--format", "int4"], message))
        }
        try assertRefused(cases, in: dir)
        let ok = try makeBert(dir)
        let r = try any4(["embed-eval", ok, "--sentences", dir + "/s.txt", "--format", "int4", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    /// The KV cache (layers × positions × key/value heads × head dimension × 4 bytes, keys and
    /// values) is computed checked and held to the memory check before the run starts.
    func testKVCacheMemoryIsCheckedFirst() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let llama = try makeLlama(dir, config: ["max_position_embeddings": "1048576"])
        try assertRefused(
            [
                (["run", llama, "-p", "hello", "-n", "1000000"], "positions for 1 layers of width 4 needs 30.5 MiB")
            ], in: dir, environment: ["ANY4_MEMORY_LIMIT": "20M"])
        let r = try any4(["run", llama, "-p", "hello", "-n", "4", "--json"], environment: ["ANY4_MEMORY_LIMIT": "20M"])
        XCTAssertEqual(r.status, 0, r.stderr)
    }
}
