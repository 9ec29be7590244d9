import Any4Core
import Any4TUI
import Foundation
import TestSupport
import XCTest

/// The TUI's side effects without a terminal: state + action → effect → status, files.
final class SessionTests: XCTestCase {
    static let demo = try! DemoModel.make()

    /// A one-layer safetensors model `m.safetensors` in a fresh folder.
    func makeModel(_ dir: String, file: String = "m.safetensors") throws -> String {
        var rng = SplitMix64(seed: 1)
        let path = dir + "/" + file
        try SafeTensorsWriter.write(
            [
                .init(name: "model.layers.0.mlp.up_proj.weight", shape: [16, 64], floats: (0..<1024).map { _ in Float(rng.nextGaussian()) })
            ], to: path)
        return path
    }

    func waitForJob(_ jobs: JobCenter) throws {
        let deadline = Date().addingTimeInterval(60)
        while jobs.isBusy && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertFalse(jobs.isBusy, "the job finishes")
        XCTAssertNil(jobs.job?.error)
    }

    func testActionsMapToEffects() throws {
        var state = AppState(model: Self.demo)
        let layer = try XCTUnwrap(state.selectedTensor).name
        XCTAssertEqual(Session.effect(of: .writeCheckpoint, in: state), .writeCheckpoint(path: "demo.any4.safetensors"))
        XCTAssertEqual(Session.effect(of: .exportTable, in: state), .exportTable)
        XCTAssertEqual(Session.effect(of: .quantizeAll, in: state), .quantizeAll)
        XCTAssertEqual(Session.effect(of: .runCompare, in: state), .compare(tensor: layer))
        XCTAssertEqual(Session.effect(of: .cancel, in: state), .cancelJob)
        XCTAssertNil(Session.effect(of: .toggle, in: state), "Enter opens the detail pane outside the Quantize tab")
        XCTAssertNil(Session.effect(of: .down, in: state))
        state.apply(.selectTab(.quantize))
        XCTAssertEqual(Session.effect(of: .toggle, in: state), .quantize(tensor: layer), "Enter on a tensor in the Quantize tab quantizes it")
        state.apply(.home)  // a block header
        XCTAssertEqual(Session.effect(of: .runQuantize, in: state), .status("select a linear layer first"))
        state.apply(.cycleFormat)
        XCTAssertEqual(Session.effect(of: .writeCheckpoint, in: state), .writeCheckpoint(path: "demo.int4.safetensors"))
        state.apply(.startFilter)
        XCTAssertNil(Session.effect(of: .cancel, in: state), "Esc while filtering ends the filter, not the job")
        XCTAssertNil(Session.effect(of: .exportTable, in: state))
    }

    func testStatusWhenNothingToQuantizeAndEscClearsIt() {
        var state = AppState(model: Self.demo)
        let session = Session(jobs: JobCenter())
        state.apply(.home)
        session.handle(.runQuantize, state: &state)
        XCTAssertEqual(state.status, "select a linear layer first")
        XCTAssertNil(session.jobs.job, "no job started")
        session.handle(.cancel, state: &state)
        XCTAssertEqual(state.status, "")
    }

    func testExportWritesBothFilesInTheModelTabsOrder() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        var state = AppState(model: Self.demo)
        let session = Session(jobs: JobCenter(), folder: dir)
        state.apply(.selectTab(.quantize))
        let layer = try XCTUnwrap(state.selectedTensor).name
        session.handle(.toggle, state: &state)  // Enter: quantize the layer to any4
        try waitForJob(session.jobs)
        XCTAssertEqual(session.jobs.result(for: layer)?.format, "any4")
        session.handle(.exportTable, state: &state)
        XCTAssertEqual(state.status, "exported any4-layers.csv and any4-layers.json")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["any4-layers.csv", "any4-layers.json"])

        let linear = Self.demo.tensors.filter(\.isLinear).map(\.name)
        let csv = try String(contentsOfFile: dir + "/any4-layers.csv", encoding: .utf8)
        let lines = csv.split(separator: "\n")
        XCTAssertEqual(lines.first, "layer,shape,format,sqnr_db,mse,max_abs_error,output_rel_error,bits_per_weight,seconds")
        XCTAssertEqual(lines.dropFirst().map { String($0.split(separator: ",")[0]) }, linear, "every linear layer, by name")
        let row = try XCTUnwrap(lines.first { $0.hasPrefix(layer + ",") }).split(separator: ",", omittingEmptySubsequences: false)
        XCTAssertEqual(row.count, 9)
        XCTAssertEqual(row[2], "any4")
        XCTAssertNotNil(Double(String(row[3])))
        XCTAssertTrue(lines.contains { $0.hasSuffix(",float,,,,,,") }, "layers not quantized have empty figures")

        let json = try JSONParser.parse(try String(contentsOfFile: dir + "/any4-layers.json", encoding: .utf8), file: "json")
        XCTAssertEqual(json["model"]?.string, Self.demo.path)
        let layers = try XCTUnwrap(json["layers"]?.array)
        XCTAssertEqual(layers.compactMap { $0["name"]?.string }, linear)
        let quantized = try XCTUnwrap(layers.first { $0["name"]?.string == layer })
        XCTAssertEqual(quantized["sqnr_db"]?.double, session.jobs.result(for: layer)?.metrics.sqnrDB)
        XCTAssertNotNil(quantized["output_rel_error"]?.double)

        // The table follows the tab's sort.
        state.apply(.cycleSort)  // by SQNR: the quantized layer first
        XCTAssertEqual(Session.exportedTable(state, session.jobs.results).layers.first?.name, layer)
    }

    func testExportIsRefusedWhenATargetIsAModelFile() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        // The model's only file is also reachable as any4-layers.csv (a hard link).
        let model = try makeModel(dir)
        XCTAssertEqual(link(model, dir + "/any4-layers.csv"), 0)
        let before = FileManager.default.contents(atPath: model)
        var state = AppState(model: try Model.open(model))
        let session = Session(jobs: JobCenter(), folder: dir)
        session.handle(.exportTable, state: &state)
        XCTAssertTrue(state.status.hasPrefix("export refused: \(dir)/any4-layers.csv: refusing to write"), state.status)
        XCTAssertEqual(FileManager.default.contents(atPath: model), before, "the model is untouched")
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["any4-layers.csv", "m.safetensors"],
            "neither file is written")
    }

    func testWriteNamesTheCheckpointAndIsRefusedOverTheModel() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        var state = AppState(model: try Model.open(try makeModel(dir)))
        let session = Session(jobs: JobCenter(), folder: dir)
        session.handle(.quantizeAll, state: &state)
        try waitForJob(session.jobs)
        XCTAssertEqual(session.jobs.unsavedCount, 1)
        session.handle(.writeCheckpoint, state: &state)
        XCTAssertEqual(state.status, "wrote 1 quantized layer to \(dir)/m.any4.safetensors")
        XCTAssertEqual(session.jobs.unsavedCount, 0)
        let (description, quantized) = try QuantizedCheckpoint.read(dir + "/m.any4.safetensors")
        XCTAssertEqual(description.format, "any4")
        XCTAssertEqual(Array(quantized.keys), ["model.layers.0.mlp.up_proj.weight"])

        // Opened through m.safetensors → m.any4.safetensors, `w` would write over the model itself.
        let other = try TestPaths.temporaryDirectory(for: self) + "/linked"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        let real = try makeModel(other, file: "m.any4.safetensors")
        try FileManager.default.createSymbolicLink(atPath: other + "/m.safetensors", withDestinationPath: "m.any4.safetensors")
        let before = FileManager.default.contents(atPath: real)
        var linked = AppState(model: try Model.open(other + "/m.safetensors"))
        let refusing = Session(jobs: JobCenter(), folder: other)
        refusing.handle(.writeCheckpoint, state: &linked)
        XCTAssertTrue(linked.status.hasPrefix("write refused: \(other)/m.any4.safetensors: refusing to write"), linked.status)
        XCTAssertEqual(FileManager.default.contents(atPath: real), before)
    }

    /// `w` writes every quantized layer with the settings it was quantized with: one layer any4
    /// g128 (exact k-means), another int4 g64 (asymmetric, with zeros) in one file, both read back
    /// with their own format, group size and table method, equal to what the jobs produced.
    func testWriteMixesLayersQuantizedWithDifferentSettings() throws {
        let dir = try TestPaths.temporaryDirectory(for: self)
        var rng = SplitMix64(seed: 5)
        let path = dir + "/m.safetensors"
        try SafeTensorsWriter.write(
            [
                .init(
                    name: "model.layers.0.mlp.up_proj.weight", shape: [16, 256], floats: (0..<4096).map { _ in Float(rng.nextGaussian()) }, as: .bf16),
                .init(
                    name: "model.layers.0.self_attn.q_proj.weight", shape: [8, 256], floats: (0..<2048).map { _ in Float(rng.nextGaussian()) },
                    as: .bf16)
            ], to: path)
        var state = AppState(model: try Model.open(path))
        let session = Session(jobs: JobCenter(), folder: dir)
        state.formatIndex = try XCTUnwrap(AppState.formats.firstIndex(of: "any4"))
        state.groupSize = 128
        state.cluster = .exact
        session.perform(.quantize(tensor: "model.layers.0.mlp.up_proj.weight"), state: &state)
        try waitForJob(session.jobs)
        state.formatIndex = try XCTUnwrap(AppState.formats.firstIndex(of: "int4"))
        state.groupSize = 64
        state.cluster = .lloyd
        session.perform(.quantize(tensor: "model.layers.0.self_attn.q_proj.weight"), state: &state)
        try waitForJob(session.jobs)
        session.handle(.writeCheckpoint, state: &state)
        XCTAssertEqual(state.status, "wrote 2 quantized layers to \(dir)/m.int4.safetensors")

        let file = try SafeTensorsFile(path: dir + "/m.int4.safetensors")
        XCTAssertEqual(file.metadata["any4.version"], "2")
        XCTAssertEqual(file.metadata["any4.format"], "mixed")
        let layers = try JSONParser.parse(try XCTUnwrap(file.metadata["any4.layers"]), file: "any4.layers")
        let up = try XCTUnwrap(layers["model.layers.0.mlp.up_proj.weight"])
        XCTAssertEqual(up["format"]?.string, "any4")
        XCTAssertEqual(up["group_size"]?.int, 128)
        XCTAssertEqual(up["method"]?.string, "exact")
        XCTAssertEqual(up["dtype"]?.string, "bf16")
        XCTAssertEqual(up["shape"]?.array?.compactMap(\.int), [16, 256])
        let q = try XCTUnwrap(layers["model.layers.0.self_attn.q_proj.weight"])
        XCTAssertEqual(q["format"]?.string, "int4")
        XCTAssertEqual(q["group_size"]?.int, 64)
        XCTAssertEqual(q["method"]?.string, "", "no learned table")
        XCTAssertEqual(file.tensor(named: "model.layers.0.self_attn.q_proj.zeros")?.shape, [8, 4])
        XCTAssertNil(file.tensor(named: "model.layers.0.self_attn.q_proj.lut"))

        let (_, read) = try QuantizedCheckpoint.read(dir + "/m.int4.safetensors")
        for name in ["model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight"] {
            let written = try XCTUnwrap(session.jobs.result(for: name)?.matrix)
            let back = try XCTUnwrap(read[name])
            XCTAssertEqual(back.formatName, written.formatName, name)
            XCTAssertEqual(back.groupSize, written.groupSize, name)
            XCTAssertEqual(back.method, written.method, name)
            XCTAssertEqual(back.dequantized(), written.dequantized(), name)
        }
    }
}
