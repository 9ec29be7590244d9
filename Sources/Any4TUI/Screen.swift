/// How a cell is drawn; the backend maps styles to colours (or to plain text under NO_COLOR).
public enum Style: UInt8, Sendable {
    case normal, bold, reverse, dim, accent, good, warn, bad, title
}

/// A character grid the views draw into; the ncurses backend copies it to the terminal, and
/// tests read it back as text.
public struct Screen: Sendable {
    public let width: Int
    public let height: Int
    public private(set) var cells: [Character]
    public private(set) var styles: [Style]

    public init(width: Int, height: Int) {
        self.width = max(width, 0)
        self.height = max(height, 0)
        cells = Array(repeating: " ", count: self.width * self.height)
        styles = Array(repeating: .normal, count: self.width * self.height)
    }

    /// Writes `text` at (row, column), clipped to the screen.
    public mutating func put(_ row: Int, _ column: Int, _ text: String, _ style: Style = .normal, maxWidth: Int? = nil) {
        guard row >= 0, row < height else { return }
        var x = column
        let limit = maxWidth.map { min(width, column + $0) } ?? width
        for ch in text {
            if x >= limit { break }
            if x >= 0 {
                cells[row * width + x] = ch
                styles[row * width + x] = style
            }
            x += 1
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
