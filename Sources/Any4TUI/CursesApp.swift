import Any4Core
import CNcurses
import Dispatch
import Foundation
import Synchronization

/// The ncurses backend: the only code that talks to the terminal. It turns keys and mouse events
/// into ``Action``s for its ``Session`` (which changes the state, starts the jobs and writes the
/// files), draws the state at ≥ 20 frames/s while jobs run, and restores the terminal on every exit
/// path: quit, SIGINT, SIGTERM, SIGHUP, and a crash (SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGFPE,
/// SIGTRAP, SIGQUIT: the crash guard of the CNcurses shim, before the crash is reported).
public final class CursesApp {
    var state: AppState
    let jobs: JobCenter
    /// Runs the actions that reach beyond the state (jobs, files) in the current folder.
    let session: Session
    let kernel = KernelRunner()
    let histograms = HistogramCache()
    let renderer: Renderer
    let useColor: Bool
    private var lastKernelKey = ""
    /// The signal (SIGINT, SIGTERM, SIGHUP) that asked the loop to leave, if one has.
    private let stop = SignalLatch()

    /// When the program started (for the time-to-first-frame trace).
    let launchedAt: Double
    /// ANY4_TUI_TRACE=FILE: record time to first frame, key-to-frame latencies, job progress and
    /// model-level figures there on exit (``TraceRecorder``).
    private let tracePath = ProcessInfo.processInfo.environment["ANY4_TUI_TRACE"]
    private var trace: TraceRecorder
    private var pendingKeyAt: Double?

    /// The diff with `--diff B` (measured in the background from the start).
    let diff: DiffCenter?

    /// - Parameter evaluationText: the text the model-level error is measured on (nil: the
    ///   calibration prompt), and how many of its tokens a decoder is measured on.
    public init(
        model: Model, recipe: RecipeEditor? = nil, diff: ModelDiff? = nil, ascii: Bool, noColor: Bool,
        launchedAt: Double = Clock.now, evaluationText: String? = nil, evaluationTokens: Int? = nil
    ) {
        self.launchedAt = launchedAt
        trace = TraceRecorder(launchedAt: launchedAt)
        let (evaluator, note) = ModelEvaluator.make(for: model, textPath: evaluationText, maxTokens: evaluationTokens)
        jobs = JobCenter(evaluator: evaluator, evaluationNote: note)
        state = AppState(model: model)
        self.diff = diff.map { DiffCenter($0) }
        if let diff {
            state.diffWith = diff.b.path
            state.tab = .diff
        }
        if let recipe {
            state.recipe = recipe
            state.tab = .model
        }
        session = Session(jobs: jobs, diff: self.diff)
        renderer = Renderer(ascii: ascii)
        useColor = !noColor
    }

    /// Runs until the user quits or a signal arrives; returns the signal that ended it, if one did.
    /// The terminal is given back first, then the running job is cancelled and the kernel runner
    /// stopped (each waited for a bounded time) so that the process does not exit under them.
    @discardableResult
    public func run() -> Int32? {
        any4_setlocale()
        let sources = [SIGINT, SIGTERM, SIGHUP].map { sig -> DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [stop] in stop.raise(sig) }
            source.resume()
            return source
        }
        any4_guard_save_modes()
        initscr()
        defer {
            any4_guard_release()
            endwin()
            for s in sources { s.cancel() }
            jobs.cancelAndWait(timeout: 3)
            diff?.cancelAndWait(timeout: 3)
            kernel.stop(timeout: 1)
        }
        cbreak()
        noecho()
        nonl()
        keypad(any4_stdscr(), true)
        any4_define_alternate_keys()
        curs_set(0)
        set_escdelay(25)
        timeout(50)
        mousemask(any4_all_mouse_events(), nil)
        mouseinterval(0)
        any4_guard_install()
        diff?.start()
        if useColor && has_colors() {
            start_color()
            use_default_colors()
            init_pair(1, Int16(COLOR_CYAN), -1)  // accent
            init_pair(2, Int16(COLOR_GREEN), -1)  // good
            init_pair(3, Int16(COLOR_YELLOW), -1)  // warn
            init_pair(4, Int16(COLOR_RED), -1)  // bad
            init_pair(5, Int16(COLOR_BLACK), Int16(COLOR_CYAN))  // title
        }
        var first = true
        while !state.quit && stop.signal == nil {
            frame()
            let now = Clock.now
            if first {
                trace.firstFrame(at: now)
                first = false
                // After the first frame: the engine and the model's reference, for a small model.
                jobs.evaluator?.prepare()
            }
            if let keyAt = pendingKeyAt {
                trace.keyToFrame(now - keyAt)
                pendingKeyAt = nil
            }
            if tracePath != nil { trace.frame(at: now, jobs: jobs) }
            let key = getch()
            if key == -1 { continue }
            pendingKeyAt = Clock.now
            handle(key)
        }
        if let tracePath { try? trace.text.write(toFile: tracePath, atomically: true, encoding: .utf8) }
        return stop.signal
    }

    func frame() {
        let width = Int(any4_cols()), height = Int(any4_lines())
        state.unsaved = jobs.unsavedCount > 0
        session.refreshTableOrder(&state)
        Renderer.layout(&state, width: width, height: height)
        syncKernel()
        if state.tab == .diff { diff?.prioritize(state.selectedTensor?.name) }
        let screen = renderer.render(
            state, jobs: jobs, kernel: kernel, histograms: histograms, diff: diff, width: width, height: height)
        erase()
        for y in 0..<screen.height {
            var x = 0
            while x < screen.width {
                let style = screen.style(y, x)
                var run = ""
                var end = x
                while end < screen.width && screen.style(y, end) == style {
                    run.append(screen.cells[y * screen.width + end])
                    end += 1
                }
                _ = any4_put(Int32(y), Int32(x), run, attributes(style))
                x = end
            }
        }
        refresh()
    }

    func attributes(_ style: Style) -> Int32 {
        let colored = useColor && has_colors()
        switch style {
        case .normal: return 0
        case .bold: return any4_attr_bold()
        case .reverse: return any4_attr_reverse()
        case .dim: return any4_attr_dim()
        case .accent: return colored ? any4_color_pair(1) : 0
        case .good: return colored ? any4_color_pair(2) : 0
        case .warn: return colored ? any4_color_pair(3) : any4_attr_bold()
        case .bad: return colored ? any4_color_pair(4) | any4_attr_bold() : any4_attr_bold()
        case .title: return colored ? any4_color_pair(5) | any4_attr_bold() : any4_attr_reverse()
        }
    }

    /// Points the kernel runner at the selected layer when the kernel tab shows.
    func syncKernel() {
        guard state.tab == .kernel, let tensor = state.selectedTensor else { return }
        let key = "\(tensor.name)|\(state.batch)|\(state.kernelPaused)|\(jobs.result(for: tensor.name)?.format ?? "")"
        guard key != lastKernelKey else { return }
        lastKernelKey = key
        let model = state.model
        // A layer quantized here runs as quantized; else a checkpoint's quantized layer as stored.
        if let matrix = jobs.result(for: tensor.name)?.matrix {
            kernel.set(layer: tensor.name, matrix: matrix, original: { try model.decode(tensor) }, batch: state.batch, paused: state.kernelPaused)
        } else if tensor.info.encoding.quantizedLayout != nil {
            kernel.set(stored: tensor, of: model, batch: state.batch, paused: state.kernelPaused)
        } else {
            kernel.set(layer: tensor.name, matrix: nil, original: { [] }, batch: state.batch, paused: state.kernelPaused)
        }
    }

    func handle(_ key: Int32) {
        if key == any4_key_resize() { return }
        if key == any4_key_mouse() {
            var event = MEVENT()
            if getmouse(&event) == OK {
                if event.bstate & any4_button4_pressed() != 0 {
                    session.handle(.wheel(up: true), state: &state)
                } else if event.bstate & any4_button5_pressed() != 0 {
                    session.handle(.wheel(up: false), state: &state)
                } else if event.bstate & any4_button1_pressed() != 0 {
                    // The press selects (a click is a press and a release: acting on both
                    // toggled what the press had just selected).
                    session.handle(.click(row: Int(event.y), column: Int(event.x)), state: &state)
                }
            }
            return
        }
        if state.filtering || state.rowJump != nil || state.recipePrompt != nil {
            switch key {
            case 27: session.handle(.cancel, state: &state)
            case 10, 13, any4_key_enter(): session.handle(.endFilter, state: &state)
            case 127, 8, any4_key_backspace(): session.handle(.filterBackspace, state: &state)
            default:
                if key >= 32 && key < 127, let scalar = Unicode.Scalar(UInt32(key)) { session.handle(.filterInput(Character(scalar)), state: &state) }
            }
            return
        }
        guard let action = Self.action(for: key, tab: state.tab, focus: state.focus, recipe: state.recipe != nil) else { return }
        session.handle(action, state: &state)
    }

    /// The key map (htop/lazygit habits: q quits, ? helps, Tab switches panes, / filters).
    static func action(for key: Int32, tab: Tab, focus: Pane, recipe: Bool = false) -> Action? {
        if tab == .model {
            switch key {
            case Int32(UInt8(ascii: "[")): return .recipePrevious
            case Int32(UInt8(ascii: "]")): return .recipeNext
            case Int32(UInt8(ascii: "+")), Int32(UInt8(ascii: "=")): return .budgetUp
            case Int32(UInt8(ascii: "-")): return .budgetDown
            case Int32(UInt8(ascii: "r")): return .solveRecipe
            case Int32(UInt8(ascii: "S")): return .saveRecipe
            case Int32(UInt8(ascii: "L")): return .startRecipeLoad
            case any4_key_left() where focus == .detail && recipe: return .recipePrevious
            case any4_key_right() where focus == .detail && recipe: return .recipeNext
            default: break
            }
        }
        switch key {
        case any4_key_up(), Int32(UInt8(ascii: "k")): return .up
        case any4_key_down(), Int32(UInt8(ascii: "j")): return .down
        case any4_key_ppage(): return .pageUp
        case any4_key_npage(): return .pageDown
        case any4_key_home(): return .home
        case any4_key_end(): return .end
        case any4_key_right(), Int32(UInt8(ascii: "l")): return .expand
        case any4_key_left(), Int32(UInt8(ascii: "h")): return .collapse
        case 10, 13, any4_key_enter():
            return tab == .quantize && focus == .detail ? .runQuantize : .toggle
        case 9: return .nextPane
        case any4_key_btab(): return .previousPane
        case Int32(UInt8(ascii: "1")): return .selectTab(.histogram)
        case Int32(UInt8(ascii: "2")): return .selectTab(.quantize)
        case Int32(UInt8(ascii: "3")): return .selectTab(.kernel)
        case Int32(UInt8(ascii: "4")): return .selectTab(.model)
        case Int32(UInt8(ascii: "5")): return .selectTab(.diff)
        case Int32(UInt8(ascii: "[")): return .previousRow
        case Int32(UInt8(ascii: "]")): return .nextRow
        case Int32(UInt8(ascii: "r")): return .toggleRowMode
        case Int32(UInt8(ascii: "s")): return .toggleDomain
        case Int32(UInt8(ascii: "i")): return .toggleIntGrid
        case Int32(UInt8(ascii: "+")), Int32(UInt8(ascii: "=")): return .zoomIn
        case Int32(UInt8(ascii: "-")): return .zoomOut
        case Int32(UInt8(ascii: "f")): return .cycleFormat
        case Int32(UInt8(ascii: "g")): return tab == .histogram ? .startRowJump : .cycleGroupSize
        case Int32(UInt8(ascii: "m")): return .cycleCluster
        case Int32(UInt8(ascii: "c")): return .runCompare
        case Int32(UInt8(ascii: "a")): return .quantizeAll
        case Int32(UInt8(ascii: "w")): return .writeCheckpoint
        case Int32(UInt8(ascii: "e")): return .exportTable
        case Int32(UInt8(ascii: "o")): return .cycleSort
        case Int32(UInt8(ascii: "p")): return .cycleSampleWeight
        case Int32(UInt8(ascii: "y")): return .confirmQuit
        case Int32(UInt8(ascii: "b")): return .batchUp
        case Int32(UInt8(ascii: "B")): return .batchDown
        case Int32(UInt8(ascii: " ")): return .togglePause
        case Int32(UInt8(ascii: "/")): return .startFilter
        case Int32(UInt8(ascii: "?")), any4_key_f(1): return .toggleHelp
        case 27: return .cancel
        case Int32(UInt8(ascii: "q")), any4_key_f(10): return .quit
        default: return nil
        }
    }
}

/// The first of SIGINT, SIGTERM, SIGHUP to arrive (set from a Dispatch signal source).
final class SignalLatch: Sendable {
    private let value = Atomic<Int32>(0)
    func raise(_ signal: Int32) { _ = value.compareExchange(expected: 0, desired: signal, ordering: .relaxed) }
    var signal: Int32? {
        let v = value.load(ordering: .relaxed)
        return v == 0 ? nil : v
    }
}
