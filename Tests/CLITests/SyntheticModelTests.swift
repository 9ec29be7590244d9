import Any4Core
import Foundation
import TestSupport
import XCTest

/// scripts/make-synthetic-llama.py end to end: the tiny folder it writes has the promised shapes
/// and weights, opens in `inspect`, runs, scores, agrees with an independent numpy forward pass,
/// and its tokenizer gives the ids the Python `tokenizers` package gives.
final class SyntheticModelTests: XCTestCase {
    func any4(_ arguments: [String]) throws -> ProcessResult { try runProcess(TestPaths.any4Binary, arguments) }

    var generator: String { TestPaths.packageRoot + "/scripts/make-synthetic-llama.py" }

    /// Runs the generator for `tiny` into `folder`, failing the test on a non-zero exit.
    func generate(_ python: String, _ folder: String, _ extra: [String]) throws {
        let r = try runProcess(python, [generator, "--size", "tiny", folder, "--seed", "7"] + extra)
        XCTAssertEqual(r.status, 0, "generator failed: \(r.stderr)\n\(r.stdout)")
        XCTAssertTrue(r.stdout.contains("done: "), r.stdout)
    }

    func testTinySyntheticLlamaLoadsRunsAndTokenizesLikePython() throws {
        let python = try Python.require(["numpy", "tokenizers"])
        let dir = try TestPaths.temporaryDirectory(for: self)
        let folder = dir + "/llama-tiny"
        // Shards of at most 5 MB: the 13 MB model needs the sharded layout and its index.
        try generate(python, folder, ["--max-shard-size", "5000000"])
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        XCTAssertEqual(
            files,
            [
                "config.json", "generation_config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                "model-00003-of-00003.safetensors", "model.safetensors.index.json", "special_tokens_map.json", "tokenizer.json",
                "tokenizer_config.json"
            ])
        for file in files where file.hasSuffix(".safetensors") {
            let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: folder + "/" + file)[.size] as? Int)
            XCTAssertLessThanOrEqual(size, 5_000_000, file)
        }

        // config.json: the tiny shape, the vocabulary the tokenizer's.
        let config = try readJSONFile(folder + "/config.json")
        XCTAssertEqual(config["architectures"]?.array?.first?.string, "LlamaForCausalLM")
        XCTAssertEqual(config["torch_dtype"]?.string, "float32")
        let (h, layers, heads, kv, inter) = (256, 2, 4, 2, 512)
        XCTAssertEqual(config["hidden_size"]?.int, h)
        XCTAssertEqual(config["num_hidden_layers"]?.int, layers)
        XCTAssertEqual(config["num_attention_heads"]?.int, heads)
        XCTAssertEqual(config["num_key_value_heads"]?.int, kv)
        XCTAssertEqual(config["intermediate_size"]?.int, inter)
        let tokenizer = try readJSONFile(folder + "/tokenizer.json")
        let tokens = (tokenizer["model"]?["vocab"]?.members?.count ?? 0) + (tokenizer["added_tokens"]?.array?.count ?? 0)
        XCTAssertEqual(config["vocab_size"]?.int, tokens)
        XCTAssertEqual(tokens, 4096)

        // inspect: every tensor, the parameter count of a Llama of this shape.
        let inspect = try any4(["inspect", folder, "--json"])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        // Duplicate keys allowed: today's inspect repeats each shard's "format" under "metadata".
        var inspectText = inspect.stdout
        let report = try inspectText.withUTF8 { try JSONParser.parse(UnsafeRawBufferPointer($0), file: "stdout", rejectDuplicateKeys: false) }
        let headDim = h / heads
        let perLayer = 2 * h + h * heads * headDim * 2 + 2 * h * kv * headDim + 3 * h * inter
        XCTAssertEqual(report["params"]?.int, 2 * tokens * h + h + layers * perLayer)
        XCTAssertEqual(report["tensors"]?.array?.count, 3 + 9 * layers)

        // Weights: heavy-tailed, a few outlier input channels per projection, norms near 1.
        let model = try Model.open(folder)
        for name in ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight", "lm_head.weight"] {
            let t = try XCTUnwrap(model.tensor(named: name), name)
            let (rows, cols) = (t.shape[0], t.shape[1])
            let w = try model.decode(t)
            var columnRMS = [Double](repeating: 0, count: cols)
            for r in 0..<rows { for c in 0..<cols { columnRMS[c] += Double(w[r * cols + c] * w[r * cols + c]) } }
            columnRMS = columnRMS.map { ($0 / Double(rows)).squareRoot() }
            let median = columnRMS.sorted()[cols / 2]
            let outliers = columnRMS.indices.filter { columnRMS[$0] > 5 * median }
            XCTAssertEqual(outliers.count, 2, "\(name): columns above 5x the median column rms")
            XCTAssertGreaterThan(outliers.map { columnRMS[$0] }.min() ?? 0, 8 * median, name)
            // The other columns: Student-t(5) has kurtosis 9 (a normal 3).
            var m2 = 0.0, m4 = 0.0, n = 0.0
            for r in 0..<rows {
                for c in 0..<cols where !outliers.contains(c) {
                    let x = Double(w[r * cols + c])
                    m2 += x * x
                    m4 += x * x * x * x
                    n += 1
                }
            }
            let kurtosis = (m4 / n) / ((m2 / n) * (m2 / n))
            XCTAssertGreaterThan(kurtosis, 5, "\(name): not heavy-tailed")
            XCTAssertLessThan(kurtosis, 20, name)
        }
        for name in ["model.norm.weight", "model.layers.1.input_layernorm.weight"] {
            let w = try model.decode(try XCTUnwrap(model.tensor(named: name))).map(Double.init)
            let mean = w.reduce(0, +) / Double(w.count)
            XCTAssertEqual(mean, 1, accuracy: 0.02, name)
            let std = (w.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(w.count)).squareRoot()
            XCTAssertTrue((0.02...0.1).contains(std), "\(name): std \(std)")
        }

        // The same seed as bf16 in one file: each value the f32 one rounded to nearest even (the
        // shard size and dtype change no value before rounding).
        let single = dir + "/llama-tiny-bf16"
        try generate(python, single, ["--dtype", "bf16"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: single + "/model.safetensors"))
        let other = try Model.open(single)
        var roundedUp = 0
        for t in model.tensors {
            let u = try XCTUnwrap(other.tensor(named: t.name), t.name)
            XCTAssertEqual(u.info.byteCount, 2 * u.info.elementCount, "\(t.name): not 2 bytes a value")
            let rounded = try model.decode(t).map { x -> Float in
                let bits = x.bitPattern
                let r = (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16
                if r << 16 != bits & 0xFFFF_0000 { roundedUp += 1 }
                return Float(bitPattern: r << 16)
            }
            assertBitwiseEqual(try other.decode(u), rounded, t.name)
        }
        XCTAssertGreaterThan(roundedUp, 1000, "rounding to nearest must round some values up")

        // run: text out, and the first token is the argmax of the numpy float64 forward pass.
        let prompt = "The capital of France is"
        // --head f32: with the default q8 head the first token too goes through the int8 head (the
        // prompt pass projects only its last row, an m = 1 product), which can swap two close logits.
        let run = try any4(["run", folder, "-p", prompt, "-n", "4", "--json", "--head", "f32"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let generated = try JSONParser.parse(run.stdout, file: "stdout")
        let ids = try XCTUnwrap(generated["tokens"]?.array?.compactMap(\.int))
        XCTAssertEqual(ids.count, 4)
        XCTAssertFalse((generated["text"]?.string ?? "").isEmpty, run.stdout)
        let sanity = try runProcess(python, [generator, "--sanity", folder, "--prompt", prompt])
        XCTAssertEqual(sanity.status, 0, sanity.stderr)
        let lastLine = sanity.stdout.split(separator: "\n").last.map(String.init) ?? ""
        let reference = try JSONParser.parse(lastLine, file: "sanity stdout")
        XCTAssertEqual(reference["prompt_tokens"]?.int, generated["prompt_tokens"]?.int)
        XCTAssertEqual(reference["argmax"]?.int, ids.first, "numpy reference: \(lastLine)")
        XCTAssertTrue(reference["logit_std"]?.double.map { $0 > 0.5 && $0 < 10 } == true, lastLine)

        // ppl: finite and above 1 (random weights score no text well).
        let ppl = try any4([
            "ppl", folder, "--text", TestPaths.packageRoot + "/assets/calibration.txt", "--ctx", "64", "--chunks", "2", "--json"
        ])
        XCTAssertEqual(ppl.status, 0, ppl.stderr)
        let value = try XCTUnwrap(try JSONParser.parse(ppl.stdout, file: "stdout")["ppl"]?.double)
        XCTAssertTrue(value.isFinite && value > 1, "ppl \(value)")

        // The tokenizer: the ids of the Python package, BOS included, on text with specials, digits,
        // accents, CJK and whitespace runs.
        let samples = [
            "Hello world, the any4 format quantizes 12345678 weights.",
            "Héllo wörld! It's 2026; ünïcode 日本語 —\n\n  spaces   and\ttabs <|eot_id|> end",
            "  leading spaces\r\nCRLF line\nDON'T shout, we'll see. 3.14159"
        ]
        let textsFile = dir + "/texts.json"
        try JSONValue.array(samples.map { .string($0) }).serialized.write(toFile: textsFile, atomically: true, encoding: .utf8)
        let expected = try JSONParser.parse(
            try Python.run("tokenize_reference.py", ["encode", textsFile, folder + "/tokenizer.json"], modules: ["tokenizers"]),
            file: "tokenize_reference")
        let special = try XCTUnwrap(expected.array?.first?["special"]?.array)
        for (index, text) in samples.enumerated() {
            let r = try any4(["tokenize", folder, text, "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let ours = try JSONParser.parse(r.stdout, file: "stdout")["ids"]?.array?.compactMap(\.int)
            XCTAssertEqual(ours, special[index].array?.compactMap(\.int), "sample \(index): \(text)")
        }
    }

    /// scripts/peak-rss-anon.py: a grandchild that fills 256 MiB of anonymous memory, under a child
    /// that maps and reads a 128 MiB file (resident, not anonymous): RssAnon >= 256 MiB and short of
    /// adding the file, VmRSS both; the child's exit status passed on.
    func testPeakSamplerSeesAnonymousMemoryOfChildrenAndPassesTheStatusOn() throws {
        let python = try Python.require(["mmap"])
        let dir = try TestPaths.temporaryDirectory(for: self)
        let mapped = dir + "/file.bin"
        try Data(count: 128 << 20).write(to: URL(fileURLWithPath: mapped))
        let child = """
            import mmap, subprocess, sys, time
            f = open(sys.argv[1], "rb"); m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            total = sum(m[i] for i in range(0, len(m), 4096))
            subprocess.run([sys.executable, "-c", "import time; b = b'x' * (256 << 20); time.sleep(0.3)"])
            sys.exit(3)
            """
        let json = dir + "/peak.json"
        let r = try runProcess(
            python,
            [TestPaths.packageRoot + "/scripts/peak-rss-anon.py", "--interval-ms", "10", "--json-out", json, "--", python, "-c", child, mapped])
        XCTAssertEqual(r.status, 3, r.stderr)
        let line = try XCTUnwrap(r.stderr.split(separator: "\n").last.map(String.init))
        let report = try JSONParser.parse(line, file: "stderr")
        XCTAssertEqual(try JSONParser.parse(try String(contentsOfFile: json, encoding: .utf8), file: json), report)
        XCTAssertEqual(report["rc"]?.int, 3)
        let anon = try XCTUnwrap(report["peak_rss_anon_bytes"]?.int)
        let rss = try XCTUnwrap(report["peak_vm_rss_bytes"]?.int)
        XCTAssertGreaterThanOrEqual(anon, 256 << 20, line)
        XCTAssertLessThan(anon, (256 + 100) << 20, "the mapped file's pages counted as anonymous: \(line)")
        XCTAssertGreaterThanOrEqual(rss, (256 + 128) << 20, "the mapped file's pages are resident: \(line)")
        XCTAssertGreaterThan(report["wall_s"]?.double ?? 0, 0.3)
    }

    func testGeneratorRefusesAnExistingFolderWithoutForce() throws {
        let python = try Python.require(["numpy", "tokenizers"])
        let dir = try TestPaths.temporaryDirectory(for: self)
        let r = try runProcess(python, [generator, "--size", "tiny", dir])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("exists"), r.stderr)
    }
}
