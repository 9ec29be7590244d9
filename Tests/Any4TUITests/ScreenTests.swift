import XCTest

@testable import Any4TUI

final class ScreenTests: XCTestCase {
    func testPutClipsToTheScreen() {
        var screen = Screen(width: 10, height: 2)
        screen.put(0, 8, "abcdef")
        screen.put(1, -2, "xyz█")
        screen.put(5, 0, "off screen")
        XCTAssertEqual(screen.lines, ["        ab", "z█"])
    }
}
