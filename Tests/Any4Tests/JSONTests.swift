import Any4Core
import XCTest

final class JSONTests: XCTestCase {
    func parse(_ text: String) throws -> JSONValue { try JSONParser.parse(text, file: "t.json") }

    func testValuesAndEscapes() throws {
        let v = try parse(#" {"a": [1, -2.5e3, true, false, null], "s": "x\"\\\/\n\u00e9\ud83d\ude00", "big": 9007199254740993} "#)
        XCTAssertEqual(v["a"]?.array?.count, 5)
        XCTAssertEqual(v["a"]?.array?[1].double, -2500)
        XCTAssertNil(v["a"]?.array?[1].int)
        XCTAssertEqual(v["s"]?.string, "x\"\\/\né😀")
        XCTAssertEqual(v["big"]?.int, 9_007_199_254_740_993, "integers beyond 2^53 stay exact")
        XCTAssertEqual(try parse(v.serialized), v, "writer output parses back equal")
    }

    func testRejectsMalformedWithOffsets() {
        for (text, offset) in [("{\"a\":}", 5), ("[1,]", 3), ("01", 1), ("\"\\ud800\"", 7), ("[1] x", 4), ("{\"a\":1,\"a\":2}", 7)] {
            XCTAssertThrowsError(try parse(text), text) { error in
                XCTAssertEqual((error as? FileFormatError)?.offset, offset, text)
            }
        }
        let deep = String(repeating: "[", count: 1000) + String(repeating: "]", count: 1000)
        XCTAssertThrowsError(try parse(deep), "depth limit")
    }
}
