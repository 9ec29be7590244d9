import Any4

/// A character grid the views draw into; the ncurses backend copies it to the terminal, and
/// tests read it back as text.
public struct Screen: Sendable {
    public let width: Int
    public let height: Int
    public private(set) var cells: [Character]

    public init(width: Int, height: Int) {
        self.width = width
        self.height = height
        cells = Array(repeating: " ", count: width * height)
    }

    /// Writes `text` at (row, column), clipped to the screen.
    public mutating func put(_ row: Int, _ column: Int, _ text: String) {
        guard row >= 0, row < height else { return }
        var x = column
        for ch in text {
            if x >= width { break }
            if x >= 0 { cells[row * width + x] = ch }
            x += 1
        }
    }

    /// The screen as lines of text, trailing spaces removed.
    public var lines: [String] {
        (0..<height).map { row in
            var line = String(cells[(row * width)..<((row + 1) * width)])
            while line.last == " " { line.removeLast() }
            return line
        }
    }
}
