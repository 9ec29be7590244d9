import Any4
import CNcurses
import Dispatch
import Foundation

/// The ncurses backend: the only code that talks to the terminal. It turns keys and mouse events
/// into ``Action``s, keeps ≥ 20 frames/s while jobs run, and restores the terminal on every exit
/// path (normal, error, SIGINT, SIGTERM).
public final class CursesApp {
    var state: AppState
    let jobs = JobCenter()
    let kernel = KernelRunner()
    let histograms = HistogramCache()
    let renderer: Renderer
    let useColor: Bool
    private var lastKernelKey = ""
    /// Set by SIGINT/SIGTERM; the loop then leaves cleanly.
    private let stop = StopFlag()

    public init(model: Model, ascii: Bool, noColor: Bool) {
        state = AppState(model: model)
        renderer = Renderer(ascii: ascii)
        useColor = !noColor
    }

    /// Runs until the user quits or a signal arrives.
    public func run() {
        any4_setlocale()
        let sources = [SIGINT, SIGTERM, SIGHUP].map { sig -> DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [stop] in stop.set() }
            source.resume()
            return source
        }
        initscr()
        defer {
            endwin()
            for s in sources { s.cancel() }
        }
        cbreak()
        noecho()
        nonl()
        keypad(any4_stdscr(), true)
        curs_set(0)
        set_escdelay(25)
        timeout(50)
        mousemask(any4_all_mouse_events(), nil)
        mouseinterval(0)
        if useColor && has_colors() {
            start_color()
            use_default_colors()
            init_pair(1, Int16(COLOR_CYAN), -1)    // accent
            init_pair(2, Int16(COLOR_GREEN), -1)   // good
            init_pair(3, Int16(COLOR_YELLOW), -1)  // warn
            init_pair(4, Int16(COLOR_RED), -1)     // bad
            init_pair(5, Int16(COLOR_BLACK), Int16(COLOR_CYAN))  // title
        }
        while !state.quit && !stop.isSet {
            frame()
            let key = getch()
            if key == -1 { continue }
            handle(key)
        }
    }

    func frame() {
        let width = Int(any4_cols()), height = Int(any4_lines())
        Renderer.layout(&state, width: width, height: height)
        syncKernel()
        let screen = renderer.render(state, jobs: jobs, kernel: kernel, histograms: histograms, width: width, height: height)
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
        let result = jobs.result(for: tensor.name)
        let original = result == nil ? nil : try? state.model.decode(tensor)
        kernel.set(layer: tensor.name, matrix: result?.matrix, original: original, batch: state.batch, paused: state.kernelPaused)
    }

    func handle(_ key: Int32) {
        if key == any4_key_resize() { return }
        if key == any4_key_mouse() {
            var event = MEVENT()
            if getmouse(&event) == OK {
                if event.bstate & any4_button4_pressed() != 0 { state.apply(.wheel(up: true)) }
                else if event.bstate & any4_button5_pressed() != 0 { state.apply(.wheel(up: false)) }
                else if event.bstate & any4_button1_clicked() != 0 { state.apply(.click(row: Int(event.y), column: Int(event.x))) }
            }
            return
        }
        if state.filtering {
            switch key {
            case 27: state.apply(.cancel)
            case 10, 13, any4_key_enter(): state.apply(.endFilter)
            case 127, 8, any4_key_backspace(): state.apply(.filterBackspace)
            default:
                if key >= 32 && key < 127, let scalar = Unicode.Scalar(UInt32(key)) { state.apply(.filterInput(Character(scalar))) }
            }
            return
        }
        guard var action = Self.action(for: key, tab: state.tab, focus: state.focus) else { return }
        // In the Quantize tab, Enter on a tensor runs the quantization whichever pane has focus.
        if action == .toggle, state.tab == .quantize, state.selectedTensor != nil { action = .runQuantize }
        switch action {
        case .runQuantize, .runCompare:
            guard let tensor = state.selectedTensor, tensor.isLinear else { state.status = "select a linear layer first"; return }
            var options = QuantizationOptions()
            options.groupSize = state.groupSize
            options.cluster = state.cluster
            if action == .runQuantize { jobs.quantize(tensor, of: state.model, format: state.format, options: options) }
            else { jobs.compare(tensor, of: state.model, options: options) }
        case .cancel:
            jobs.cancel()
            state.apply(.cancel)
        default:
            state.apply(action)
        }
    }

    /// The key map (htop/lazygit habits: q quits, ? helps, Tab switches panes, / filters).
    static func action(for key: Int32, tab: Tab, focus: Pane) -> Action? {
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
        case Int32(UInt8(ascii: "[")): return .previousRow
        case Int32(UInt8(ascii: "]")): return .nextRow
        case Int32(UInt8(ascii: "r")): return .toggleRowMode
        case Int32(UInt8(ascii: "s")): return .toggleDomain
        case Int32(UInt8(ascii: "i")): return .toggleIntGrid
        case Int32(UInt8(ascii: "+")), Int32(UInt8(ascii: "=")): return .zoomIn
        case Int32(UInt8(ascii: "-")): return .zoomOut
        case Int32(UInt8(ascii: "f")): return .cycleFormat
        case Int32(UInt8(ascii: "g")): return .cycleGroupSize
        case Int32(UInt8(ascii: "m")): return .cycleCluster
        case Int32(UInt8(ascii: "c")): return .runCompare
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

final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
