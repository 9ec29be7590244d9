import Any4Core
import Any4Inference
import Any4TUI
import Foundation
import TestSupport
import XCTest

/// The model-level error the TUI measures after each job (issue 18 item 1), through the Session
/// and its JobCenter as the curses loop drives them, without a terminal.
final class ModelErrorTests: XCTestCase {
    /// A session on `model` whose jobs are followed by the evaluator (on the text's first
    /// `tokens` tokens, to keep the test short).
    func session(_ model: Model, tokens: Int = 32) throws -> Session {
        let (evaluator, note) = ModelEvaluator.make(for: model, maxTokens: tokens)
        XCTAssertNil(note)
        return Session(jobs: JobCenter(evaluator: try XCTUnwrap(evaluator)))
    }

    /// Waits for the job, then for the evaluator to measure what it changed.
    func settle(_ jobs: JobCenter, timeout: Double = 180) throws -> ModelEvaluator.Snapshot {
        let deadline = Date().addingTimeInterval(timeout)
        while jobs.isBusy && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertNil(jobs.job?.error)
        let evaluator = try XCTUnwrap(jobs.evaluator)
        while Date() < deadline {
            let snap = evaluator.snapshot()
            if !evaluator.isBusy, snap.phase != .running { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        let snap = evaluator.snapshot()
        XCTAssertEqual(snap.phase, .idle, "the evaluation finished")
        XCTAssertEqual(snap.pending, 0)
        return snap
    }

    func quantize(_ session: Session, _ state: inout AppState, to format: String) throws -> ModelEvaluator.Snapshot {
        state.formatIndex = try XCTUnwrap(AppState.formats.firstIndex(of: format))
        session.handle(.runQuantize, state: &state)
        return try settle(session.jobs)
    }

    /// Quantizing a layer to int2 costs the model more than quantizing it to int8: KL from the
    /// unquantized model and perplexity. The reference is computed once, and the whole model with
    /// one layer quantized is that layer's figure.
    func testInt2CostsTheModelMoreThanInt8() throws {
        let model = try Model.open(try TestPaths.requireModel(TestPaths.smolLM2))
        let session = try session(model)
        var state = AppState(model: model)
        session.handle(.selectTab(.quantize), state: &state)
        let layer = try XCTUnwrap(state.selectedTensor).name

        let int2 = try quantize(session, &state, to: "int2")
        let cost2 = try XCTUnwrap(int2.layers[layer])
        XCTAssertEqual(cost2.format, "int2")
        let reference = try XCTUnwrap(int2.reference)
        XCTAssertEqual(int2.model?.layers, 1)
        XCTAssertEqual(int2.model?.figures, cost2.figures, "one layer quantized: the model is that layer alone")

        let int8 = try quantize(session, &state, to: "int8")
        let cost8 = try XCTUnwrap(int8.layers[layer])
        XCTAssertEqual(cost8.format, "int8")
        XCTAssertEqual(int8.reference, reference, "the reference is computed once and kept")

        let kl2 = try XCTUnwrap(cost2.figures.kl), kl8 = try XCTUnwrap(cost8.figures.kl)
        XCTAssertGreaterThan(kl2, 100 * kl8, "int2 \(kl2) nats/token, int8 \(kl8)")
        XCTAssertLessThan(kl8, 1e-3)
        XCTAssertGreaterThan(kl8, 0, "int8 changes the logits a little")
        let ppl2 = try XCTUnwrap(cost2.figures.ppl), ppl8 = try XCTUnwrap(cost8.figures.ppl), ppl = try XCTUnwrap(reference.ppl)
        XCTAssertEqual(ppl8, ppl, accuracy: ppl * 0.01, "int8 keeps the perplexity")
        XCTAssertGreaterThan(abs(ppl2 - ppl), abs(ppl8 - ppl))
        XCTAssertGreaterThan(cost2.figures.cost, cost8.figures.cost)
        XCTAssertEqual(try XCTUnwrap(int8.model?.change), kl8 - kl2, accuracy: 1e-12, "the change since the last measure")

        // The Quantize tab shows it.
        let screen = Renderer(ascii: false).render(
            state, jobs: session.jobs, kernel: KernelRunner(), histograms: HistogramCache(), width: 160, height: 50
        ).text
        XCTAssertTrue(screen.contains("model, this layer alone: KL \(Formatting.scientific(kl8, 2))"), screen)
        XCTAssertTrue(screen.contains("unquantized ppl \(Formatting.fixed(ppl, 2)) on calibration.txt, 32 tokens"), screen)
    }

    /// A job that starts while a pass runs stops it, and what is left is measured after the job:
    /// in the end every layer has its own figure and the model's holds all of them. The Model
    /// tab's sort by model error puts the costliest layer first.
    func testANewJobPausesTheEvaluationAndEveryLayerIsMeasuredAfter() throws {
        let model = try Model.open(try TestPaths.requireModel(TestPaths.smolLM2))
        let session = try session(model)
        var state = AppState(model: model)
        session.handle(.selectTab(.quantize), state: &state)
        let evaluator = try XCTUnwrap(session.jobs.evaluator)
        var layers: [String] = []
        for format in ["int2", "int8", "int4"] {
            layers.append(try XCTUnwrap(state.selectedTensor).name)
            state.formatIndex = try XCTUnwrap(AppState.formats.firstIndex(of: format))
            session.handle(.runQuantize, state: &state)
            // The next layer as soon as this one's quantization ends (its evaluation is running).
            while session.jobs.isBusy { Thread.sleep(forTimeInterval: 0.002) }
            repeat { state.apply(.down) } while state.selectedTensor?.isLinear != true
        }
        let snap = try settle(session.jobs)
        XCTAssertEqual(Set(snap.layers.keys), Set(layers))
        XCTAssertEqual(snap.layers[layers[1]]?.format, "int8")
        XCTAssertEqual(snap.model?.layers, 3)
        XCTAssertGreaterThan(try XCTUnwrap(snap.model?.figures.kl), 0)

        // Sorted by model error: int2's layer first, then int4's, then int8's, then the rest.
        while state.sort != .modelError { session.handle(.cycleSort, state: &state) }
        session.handle(.selectTab(.model), state: &state)
        XCTAssertEqual(Array(state.modelOrder.prefix(3)), [layers[0], layers[2], layers[1]], "\(evaluator.costs)")
    }

    /// An encoder's cost is the cosine of its sentence embeddings with the unquantized model's.
    func testEncoderCosineDropsMoreAtInt2ThanAtInt8() throws {
        let model = try Model.open(try TestPaths.requireModel(TestPaths.miniLM))
        let session = try session(model)
        var state = AppState(model: model)
        state.select(tensorNamed: "encoder.layer.0.intermediate.dense.weight")
        session.handle(.selectTab(.quantize), state: &state)
        let layer = try XCTUnwrap(state.selectedTensor).name
        XCTAssertEqual(layer, "encoder.layer.0.intermediate.dense.weight")
        let int2 = try XCTUnwrap(try quantize(session, &state, to: "int2").layers[layer]?.figures)
        let int8 = try XCTUnwrap(try quantize(session, &state, to: "int8").layers[layer]?.figures)
        XCTAssertNil(int2.kl)
        let (c2, c8) = (try XCTUnwrap(int2.cosine), try XCTUnwrap(int8.cosine))
        XCTAssertLessThan(c2, c8)
        XCTAssertGreaterThan(c8, 0.9999)
        XCTAssertLessThanOrEqual(try XCTUnwrap(int2.worstCosine), c2)
    }

    /// A model the engine does not run says so instead of trying.
    func testTheDemoModelSaysWhyThereIsNoModelError() throws {
        let demo = try DemoModel.make()
        let (evaluator, note) = ModelEvaluator.make(for: demo)
        XCTAssertNil(evaluator)
        let jobs = JobCenter(evaluator: evaluator, evaluationNote: note)
        var state = AppState(model: demo)
        state.apply(.selectTab(.model))
        state.modelOrder = Renderer.modelRows(state, jobs.results).map(\.0.name)
        let screen = Renderer(ascii: false).render(
            state, jobs: jobs, kernel: KernelRunner(), histograms: HistogramCache(), width: 120, height: 30
        ).text
        XCTAssertTrue(screen.contains("model error: the demo model has no engine"), screen)
    }
}
