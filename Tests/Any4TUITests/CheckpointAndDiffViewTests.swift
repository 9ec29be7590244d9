import Any4Core
import Any4TUI
import TestSupport
import XCTest

/// Issue 18's "open checkpoints" and "diff two models" in the explorer, without a terminal: a
/// checkpoint's quantized layer shows its stored codes on its stored table and runs on the kernel
/// as stored; the Diff tab lists tensors worst first with the histogram of B − A.
final class CheckpointAndDiffViewTests: XCTestCase {
    static let demo = try! DemoModel.make()
    static let layer = "model.layers.0.mlp.down_proj.weight"

    /// The demo with `layer` quantized to any4 at group 64 (the form's default is 128), written and
    /// opened again; and the matrix written.
    func checkpoint() throws -> (model: Model, matrix: QuantizedMatrix) {
        let dir = try TestPaths.temporaryDirectory(for: self)
        let tensor = try XCTUnwrap(Self.demo.tensor(named: Self.layer))
        var options = QuantizationOptions()
        options.groupSize = 64
        let matrix = try XCTUnwrap(
            try ModelQuantization.quantize(tensor, of: Self.demo, format: FormatRegistry.named("any4"), options: options).matrix)
        try QuantizedCheckpoint.write(model: Self.demo, quantized: [Self.layer: matrix], fakeQuant: false, to: dir + "/q.safetensors")
        return (try Model.open(dir + "/q.safetensors"), matrix)
    }

    func render(_ state: AppState, kernel: KernelRunner = KernelRunner(), diff: DiffCenter? = nil, width: Int = 120, height: Int = 40) -> String {
        var state = state
        Renderer.layout(&state, width: width, height: height)
        return Renderer(ascii: false).render(
            state, jobs: JobCenter(), kernel: kernel, histograms: HistogramCache(), diff: diff, width: width, height: height
        ).text
    }

    func testStoredLayerHistogramIsItsCodesOnItsStoredLUT() throws {
        let (model, written) = try checkpoint()
        let tensor = try XCTUnwrap(model.tensor(named: Self.layer))
        let layout = try XCTUnwrap(tensor.info.encoding.quantizedLayout)
        XCTAssertEqual(layout.groupSize, 64)
        let row = 5
        let cache = HistogramCache()
        let data = cache.data(model: model, tensor: tensor, row: row, scaled: true, bins: 64, groupSize: 128)
        // The row's stored table (shifted to [0, 15]) and how many weights use each code, from the
        // matrix written (not from a new quantization at the form's group 128).
        let offset = GroupScaling.offset(bits: 4)
        XCTAssertEqual(data.codebook, written.tables[(row * 16)..<(row * 16 + 16)].map { $0 + offset })
        var usage = [Int](repeating: 0, count: 16)
        for c in written.codes[(row * written.cols)..<((row + 1) * written.cols)] { usage[Int(c)] += 1 }
        XCTAssertEqual(data.usage, usage)
        XCTAssertEqual(data.counts.reduce(0, +), written.cols)
        // Every weight sits on its code's entry: the bins holding weights are the entries' bins.
        let binned = Set(data.codebook.enumerated().filter { usage[$0.offset] > 0 }.map { Int((($0.element + 0.5) / 16 * 64).rounded(.down)) })
        XCTAssertEqual(Set(data.counts.indices.filter { data.counts[$0] > 0 }), binned)
        XCTAssertTrue(data.note.contains("stored any4 codes"), data.note)

        var state = AppState(model: model)
        state.select(tensorNamed: Self.layer)
        state.histogramRow = row
        let text = render(state)
        XCTAssertTrue(text.contains("stored any4 g64 · \(Formatting.fixed(layout.bitsPerElement, 2)) bits/w: its LUT and weights per code:"), text)
        XCTAssertTrue(text.contains("any4 g64"), text)
        // The tree and the Model tab show the stored format and bits.
        XCTAssertTrue(text.contains("down_proj.weight any4 \(Formatting.fixed(layout.bitsPerElement, 2))b"), text)
        state.apply(.selectTab(.model))
        state.modelOrder = Renderer.tableRows(state, [:], nil)
        let tab = render(state)
        let bits = Formatting.fixed(layout.bitsPerElement, 2).replacingOccurrences(of: ".", with: "\\.")
        XCTAssertNotNil(tab.range(of: #"down_proj\.weight +any4 +- +- +"# + bits, options: .regularExpression), tab)
        XCTAssertTrue(tab.contains("0 quantized · 1 stored quantized"), tab)
    }

    func testKernelTabRunsAStoredLayerAsStored() throws {
        let (model, written) = try checkpoint()
        let tensor = try XCTUnwrap(model.tensor(named: Self.layer))
        let runner = KernelRunner()
        defer { runner.stop(timeout: 2) }
        runner.set(stored: tensor, of: model, batch: 2, paused: false)
        let deadline = Date().addingTimeInterval(20)
        while runner.snapshot().totalError == nil && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let snap = runner.snapshot()
        XCTAssertEqual(snap.layer, Self.layer)
        XCTAssertEqual(snap.bitsPerWeight, tensor.info.encoding.quantizedLayout?.bitsPerElement)
        XCTAssertEqual(snap.bitsPerWeight ?? 0, written.bitsPerWeight, accuracy: 1e-12)
        // Against the f32 product of the stored weights (dequantized): only the kernel's own error.
        XCTAssertLessThan(try XCTUnwrap(snap.relError), 3e-2)
        XCTAssertLessThan(try XCTUnwrap(snap.totalError), 3e-2)
    }

    func testDiffTabListsTheChangedTensorFirstWithItsHistogram() throws {
        let (checkpoint, written) = try checkpoint()
        let center = DiffCenter(try ModelDiff(Self.demo, checkpoint), threads: 2)
        try center.runToEnd()
        var state = AppState(model: Self.demo)
        state.apply(.selectTab(.diff))
        XCTAssertEqual(state.tab, .histogram, "no Diff tab without --diff")
        state.diffWith = checkpoint.path
        let session = Session(jobs: JobCenter(), diff: center)
        session.handle(.selectTab(.diff), state: &state)
        XCTAssertEqual(state.tab, .diff)
        session.handle(.nextPane, state: &state)
        session.handle(.home, state: &state)
        XCTAssertEqual(state.modelOrder.first, Self.layer, "the only changed tensor is the worst")
        XCTAssertEqual(state.selectedTensor?.name, Self.layer, "Home in the table selects its first row")
        let weights = try Self.demo.decode(try XCTUnwrap(Self.demo.tensor(named: Self.layer)))
        let metrics = ErrorMetrics(original: weights, approximation: written.dequantized())
        let text = render(state, diff: center)
        XCTAssertTrue(text.contains("\(center.diff.pairs.count)/\(center.diff.pairs.count) tensors measured"), text)
        XCTAssertNotNil(
            text.range(
                of: #"down_proj\.weight +"# + Formatting.fixed(metrics.sqnrDB, 2).replacingOccurrences(of: ".", with: "\\."),
                options: .regularExpression),
            text)
        XCTAssertTrue(text.contains("identical"), text)
        XCTAssertTrue(text.contains("BF16 → any4 g64 bf16"), text)
        XCTAssertTrue(text.contains("|d| p50"), text)
        XCTAssertTrue(text.contains("log counts"), text)
        // Down walks the table: the next row is an identical tensor, and says so.
        session.handle(.down, state: &state)
        XCTAssertEqual(state.selectedTensor?.name, state.modelOrder[1])
        XCTAssertTrue(render(state, diff: center).contains("identical: every difference is 0"))
        // 80x24: still drawn, nothing past the edges.
        let small = render(state, diff: center, width: 80, height: 24)
        XCTAssertTrue(small.contains("Diff"), small)
    }
}
