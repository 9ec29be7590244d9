import Any4Core
import Foundation
import TestSupport
import XCTest

/// The options' vocabulary: choice options parsed as enums (a bad value exits 2 naming the option
/// and every choice), the shared groups, and the old spellings kept as hidden aliases.
final class OptionsCLITests: XCTestCase {
    func any4(_ arguments: [String]) throws -> ProcessResult { try runProcess(TestPaths.any4Binary, arguments) }

    /// Each choice option with a bad value: status 2, one line naming the option, the value and
    /// every choice, nothing on stdout, before any model is opened (the model path does not exist).
    func testABadChoiceExitsTwoListingTheChoices() throws {
        let missing = "/nonexistent/model.gguf"
        let formats = FormatRegistry.all.map(\.name)
        let cases: [(arguments: [String], option: String, choices: [String])] = [
            (["quantize", missing, "--format", "any4", "--out", "/tmp/never.safetensors", "--cluster", "kmeans"], "--cluster", ["lloyd", "exact"]),
            (["compare", missing, "--stat", "median"], "--stat", ["mean", "absmean", "sqmean"]),
            (["compare", missing, "--sample-weight", "calib:"], "--sample-weight", ["none", "scale", "calib:FILE"]),
            (["ppl", missing, "--text", "t.txt", "--kernel", "slow"], "--kernel", ["fast", "exact"]),
            (["bench", "--kernel=slow"], "--kernel", ["fast", "exact"]),
            (["run", missing, "-p", "x", "--head", "q4"], "--head", ["f32", "f16", "q8"]),
            (["bench", "--device", "tpu"], "--device", ["cpu", "gpu", "all"]),
            (["bench", "--gpu-activations", "f8"], "--gpu-activations", ["bf16", "f16"]),
            (["quantize", missing, "--format", "int5", "--out", "/tmp/never.safetensors"], "--format", formats),
            (["embed-eval", missing, "--sentences", "s.txt", "--quantize", "int5"], "--quantize", formats),
            (["embed-eval", missing, "--sentences", "s.txt", "--format", "int5"], "--format", formats),
            (["ppl", missing, "--text", "t.txt", "--format", "int5"], "--format", formats),
            (["ppl", missing, "--text", "t.txt", "--quantize", "int5"], "--quantize", formats),
            (["run", missing, "-p", "x", "--format=int5"], "--format", formats),
            (["run", missing, "-p", "x", "--quantize=int5"], "--quantize", formats)
        ]
        for (arguments, option, choices) in cases {
            let r = try any4(arguments)
            XCTAssertEqual(r.status, 2, "\(arguments): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("any4: error: \(option)"), "\(arguments): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line: \(r.stderr)")
            for choice in choices { XCTAssertTrue(r.stderr.contains(choice), "\(arguments) should list \(choice): \(r.stderr)") }
            XCTAssertTrue(r.stdout.isEmpty, r.stdout)
        }
        // The messages the options had before they were enums.
        var r = try any4(["quantize", missing, "--format", "any4", "--out", "/tmp/never.safetensors", "--cluster", "kmeans"])
        XCTAssertEqual(r.stderr, "any4: error: --cluster must be lloyd or exact, got \"kmeans\"\n")
        r = try any4(["compare", missing, "--stat", "median"])
        XCTAssertEqual(r.stderr, "any4: error: --stat must be mean, absmean or sqmean, got \"median\"\n")
        r = try any4(["run", missing, "-p", "x", "--head", "q4"])
        XCTAssertEqual(r.stderr, "any4: error: --head must be f32, f16 or q8, got \"q4\"\n")
        r = try any4(["compare", missing, "--sample-weight", "weights"])
        XCTAssertEqual(r.stderr, "any4: error: --sample-weight must be none, scale or calib:FILE, got \"weights\"\n")
    }

    /// Unknown flags and values that are not numbers stay the argument parser's (usage, status 64).
    func testOtherParseErrorsKeepTheParsersStatus() throws {
        var r = try any4(["compare", "demo", "--no-such-flag"])
        XCTAssertEqual(r.status, 64, r.stderr)
        r = try any4(["compare", "demo", "--threads", "many"])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertTrue(r.stderr.contains("Usage:"), r.stderr)
    }

    /// The help lists each choice option's values, the registry's formats included.
    func testHelpListsTheChoices() throws {
        let r = try any4(["quantize", "--help"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let help = r.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        XCTAssertTrue(help.contains("(values: lloyd, exact; default: lloyd)"), help)
        XCTAssertTrue(help.contains("(values: " + FormatRegistry.all.map(\.name).joined(separator: ", ") + ")"), help)
        XCTAssertTrue(help.contains("USAGE: any4 quantize [<options>] <model> --out <out>") && help.contains("--recipe <recipe>"), help)
        let inspect = try any4(["inspect", "--help"])
        XCTAssertTrue(inspect.stdout.contains("[<model>]"), "the positional is `model` everywhere: \(inspect.stdout)")
    }

    /// compare and bench take --format (a comma-separated list); the old --formats still works,
    /// and neither the alias nor a removed spelling shows in the help.
    func testFormatsIsAHiddenAliasOfFormat() throws {
        let canonical = try any4(["compare", "demo", "--format", "int4,nf4", "--layers", "layers\\.0\\.mlp"])
        XCTAssertEqual(canonical.status, 0, canonical.stderr)
        let alias = try any4(["compare", "demo", "--formats", "int4,nf4", "--layers", "layers\\.0\\.mlp"])
        XCTAssertEqual(alias.status, 0, alias.stderr)
        let sqnr = { (r: ProcessResult) in r.stdout.split(separator: "\n").filter { $0.hasPrefix("model.") } }
        XCTAssertEqual(sqnr(alias), sqnr(canonical))
        XCTAssertFalse(sqnr(canonical).isEmpty, canonical.stdout)

        let bad = try any4(["compare", "demo", "--formats", "int9"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.hasPrefix("any4: error: --formats: unknown format \"int9\""), bad.stderr)

        let bench = try any4(["bench", "--shape", "64x256", "--batch", "1", "--formats", "f32", "--runs", "1", "--hot", "--json"])
        XCTAssertEqual(bench.status, 0, bench.stderr)
        let rows = try JSONParser.parse(bench.stdout, file: "stdout")["results"]?.array ?? []
        XCTAssertEqual(Set(rows.compactMap { $0["format"]?.string }), ["f32"])

        for command in ["compare", "bench"] {
            let help = try any4([command, "--help"]).stdout
            XCTAssertTrue(help.contains("--format <format"), help)
            XCTAssertFalse(help.contains("--formats"), help)
        }
    }

    /// run, ppl and embed-eval take --format too; --quantize, their old spelling, still works (the
    /// same option under another name), is not in the help, and a bad value names the spelling
    /// typed. Giving both is refused before any model is opened.
    func testQuantizeIsAHiddenAliasOfFormat() throws {
        let missing = "/nonexistent/model.gguf"
        for command in ["run", "ppl", "embed-eval"] {
            let r = try any4([command, "--help"])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("--format <format>"), r.stdout)
            XCTAssertFalse(r.stdout.contains("--quantize"), r.stdout)
            XCTAssertTrue(r.stdout.contains("With --format: calibrate"), r.stdout)
        }
        for option in ["--format", "--quantize"] {
            let r = try any4(["ppl", missing, "--text", "t.txt", option, "int9"])
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue(r.stderr.hasPrefix("any4: error: \(option): unknown format \"int9\""), r.stderr)
            XCTAssertTrue(r.stdout.isEmpty, r.stdout)
        }
        // The alias reaches the same option: it gets past parsing to the model, as --format does.
        for option in ["--format", "--quantize"] {
            let r = try any4(["ppl", missing, "--text", "t.txt", option, "any4"])
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue(r.stderr.contains(missing), r.stderr)
        }
        let both = try any4(["ppl", missing, "--text", "t.txt", "--format", "any4", "--quantize", "int4"])
        XCTAssertEqual(both.status, 2, both.stderr)
        XCTAssertEqual(both.stderr, "any4: error: --format and --quantize are the same option (--quantize is its old name); give it once\n")
    }
}
