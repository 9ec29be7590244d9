import Any4Core
import Foundation
import TestSupport
import XCTest

/// `--table-dtype`: what a written checkpoint stores, read back by an independent reader.
final class TableDTypeCLITests: XCTestCase {
    func any4(_ arguments: [String]) throws -> ProcessResult { try runProcess(TestPaths.any4Binary, arguments) }

    /// Two linear layers, one of a width (200) that the group size 64 does not divide, in `dtype`.
    func makeModel(_ path: String, dtype: DType) throws {
        var rng = SplitMix64(seed: 17)
        let w = (0..<(96 * 256)).map { _ in Float(rng.nextStudentT4() * 0.02) }
        try SafeTensorsWriter.write(
            [
                .init(name: "model.layers.0.mlp.up_proj.weight", shape: [96, 200], floats: Array(w.prefix(96 * 200)), as: dtype),
                .init(name: "model.layers.0.self_attn.q_proj.weight", shape: [64, 256], floats: Array(w.prefix(64 * 256)), as: dtype)
            ], to: path)
    }

    /// The LUT, scales and zeros of a written checkpoint are stored in the chosen dtype (the
    /// default: f16 for an f32 source, bf16 for a bf16 one); dequantized from the file by
    /// Tests/Python/table_dtype_check.py (its own reader and arithmetic), each layer reproduces the
    /// SQNR `quantize --json` reported, and its parts' bytes are the reported bits per weight.
    func testCheckpointPartsAreInTheChosenDTypeAndReproduceTheReportedSQNR() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let f32 = dir + "/f32.safetensors", bf16 = dir + "/bf16.safetensors"
        try makeModel(f32, dtype: .f32)
        try makeModel(bf16, dtype: .bf16)
        let out = dir + "/q.safetensors"
        let runs: [(model: String, option: String?, stored: String)] = [
            (f32, nil, "F16"), (f32, "f16", "F16"), (f32, "bf16", "BF16"), (f32, "f32", "F32"),
            (bf16, nil, "BF16"), (bf16, "f16", "F16")
        ]
        for (model, option, stored) in runs {
            // Every dtype with any4, and the default with the formats that have no LUT and with dense 2- and 3-bit codes.
            for format in option == nil && model == f32 ? ["any4", "int4", "nf4", "any3", "int3", "any2"] : ["any4"] {
                let what = "\(format) \(option ?? "default") from \(model.split(separator: "/").last!)"
                var args = ["quantize", model, "--format", format, "--group-size", "64", "--out", out, "--json"]
                if let option { args += ["--table-dtype", option] }
                let r = try any4(args)
                XCTAssertEqual(r.status, 0, "\(what): \(r.stderr)")
                XCTAssertEqual(r.stderr, "", "\(what): no warning")
                let reported = try XCTUnwrap(try JSONParser.parse(r.stdout, file: "stdout")["layers"]?.array, what)
                let checked = try JSONParser.parse(
                    try Python.run("table_dtype_check.py", [out, model], modules: ["numpy"]), file: "table_dtype_check.py")
                XCTAssertEqual(reported.count, 2, what)
                for layer in reported {
                    let name = try XCTUnwrap(layer["name"]?.string)
                    let shape = try XCTUnwrap(layer["shape"]?.array?.compactMap(\.int))
                    let file = try XCTUnwrap(checked[name], "\(what): \(name) in the checkpoint")
                    XCTAssertEqual(file["dtype"]?.string, stored.lowercased(), "\(what): \(name) declared dtype")
                    for (part, dtype) in file["parts"]?.members ?? [] where part != ".qweight" {
                        XCTAssertEqual(dtype.string, stored, "\(what): \(name)\(part)")
                    }
                    XCTAssertEqual(
                        try XCTUnwrap(file["sqnr_db"]?.double), try XCTUnwrap(layer["sqnr_db"]?.double), accuracy: 1e-9,
                        "\(what): \(name): SQNR from the file's parts")
                    XCTAssertEqual(
                        try XCTUnwrap(file["bits"]?.double) / Double(shape[0] * shape[1]),
                        try XCTUnwrap(layer["bits_per_weight"]?.double), accuracy: 1e-12, "\(what): \(name): bits")
                }
                try FileManager.default.removeItem(atPath: out)
            }
        }
        let bad = try any4(["quantize", f32, "--format", "any4", "--table-dtype", "f8", "--out", out])
        XCTAssertEqual(bad.status, 2, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("--table-dtype must be f16, bf16 or f32, got \"f8\""), bad.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}
