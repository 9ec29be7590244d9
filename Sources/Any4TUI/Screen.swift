/// How a cell is drawn; the backend maps styles to colours (or to plain text under NO_COLOR).
public enum Style: UInt8, Sendable {
    case normal, bold, reverse, dim, accent, good, warn, bad, title
}

/// A character grid the views draw into; the ncurses backend copies it to the terminal, and
/// tests read it back as text.
///
/// Text that does not fit ends in "…" (at any width, nothing just runs off an edge), and the grid
/// counts the cells where one `put` hid what an earlier one wrote (``overlaps``): views draw each
/// line once, so tests can require zero. Deliberate overlays (a marker over a grid line, the help
/// over the tree) say so with `overlay: true`.
public struct Screen: Sendable {
    public let width: Int
    public let height: Int
    public private(set) var cells: [Character]
    public private(set) var styles: [Style]
    /// Cells written by a `put` so far (to tell an overlap from a first write).
    private var written: [Bool]
    /// Where a `put` wrote over text an earlier `put` had left (row, column), in order.
    public private(set) var overlaps: [(row: Int, column: Int)] = []

    public init(width: Int, height: Int) {
        self.width = max(width, 0)
        self.height = max(height, 0)
        cells = Array(repeating: " ", count: self.width * self.height)
        styles = Array(repeating: .normal, count: self.width * self.height)
        written = Array(repeating: false, count: self.width * self.height)
    }

    /// Writes `text` at (row, column), clipped to the screen and to `maxWidth` columns; clipped
    /// text ends in "…". `overlay` marks a deliberate overwrite (not counted in ``overlaps``).
    public mutating func put(
        _ row: Int, _ column: Int, _ text: String, _ style: Style = .normal, maxWidth: Int? = nil, overlay: Bool = false
    ) {
        guard row >= 0, row < height else { return }
        let limit = maxWidth.map { min(width, column + max($0, 0)) } ?? width
        guard limit > max(column, 0) else { return }
        var chars = Array(text)
        if column + chars.count > limit {
            chars = Array(chars.prefix(max(limit - column, 0)))
            if !chars.isEmpty { chars[chars.count - 1] = "…" }
        }
        for (i, ch) in chars.enumerated() {
            let x = column + i
            guard x >= 0 else { continue }
            let cell = row * width + x
            if !overlay, written[cell], cells[cell] != " " { overlaps.append((row, x)) }
            cells[cell] = ch
            styles[cell] = style
            written[cell] = true
        }
    }

    /// Blanks a row segment (an overlay such as the help clears what is under it first).
    public mutating func clear(_ row: Int, from: Int, to: Int) {
        guard row >= 0, row < height else { return }
        for x in max(from, 0)..<max(min(to, width), max(from, 0)) {
            cells[row * width + x] = " "
            styles[row * width + x] = .normal
            written[row * width + x] = false
        }
    }

    /// Fills a row segment with a style (for highlighted lines).
    public mutating func highlight(_ row: Int, from: Int, to: Int, _ style: Style) {
        guard row >= 0, row < height else { return }
        for x in max(from, 0)..<min(to, width) { styles[row * width + x] = style }
    }

    /// The screen as lines of text, trailing spaces removed.
    public var lines: [String] {
        (0..<height).map { row in
            var line = String(cells[(row * width)..<((row + 1) * width)])
            while line.last == " " { line.removeLast() }
            return line
        }
    }

    public var text: String { lines.joined(separator: "\n") }

    /// Replaces every non-ASCII character by an ASCII stand-in (`--ascii`, terminals without UTF-8).
    public mutating func transliterateToASCII() {
        let map: [Character: Character] = [
            "·": "-", "▲": "^", "…": ".", "→": ">", "µ": "u", "│": "|", "█": "#",
            "▾": "v", "▸": ">", "░": ".", "↑": "^", "↓": "v", "←": "<", "σ": "s", "≈": "~"
        ]
        for i in cells.indices where !cells[i].isASCII {
            cells[i] = map[cells[i]] ?? (Renderer.eighths.contains(cells[i]) || Renderer.sparks.contains(cells[i]) ? "#" : "?")
        }
    }

    public func style(_ row: Int, _ column: Int) -> Style { styles[row * width + column] }
}
