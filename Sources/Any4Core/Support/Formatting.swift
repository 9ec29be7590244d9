/// Number formatting shared by the CLI and the TUI.
public enum Formatting {
    /// `1536` → `1.5 KiB`.
    public static func bytes(_ count: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : fixed(value, 1) + " " + units[unit]
    }

    /// `134515008` → `134.5M`.
    public static func count(_ n: Int) -> String {
        let value = Double(n)
        if n >= 1_000_000_000 { return fixed(value / 1e9, 2) + "G" }
        if n >= 1_000_000 { return fixed(value / 1e6, 1) + "M" }
        if n >= 10_000 { return fixed(value / 1e3, 1) + "K" }
        return String(n)
    }

    /// `[576, 1536]`.
    public static func shape(_ dims: [Int]) -> String { "[" + dims.map(String.init).joined(separator: ", ") + "]" }

    /// Fixed-point text with `digits` decimals (no Foundation).
    public static func fixed(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return value.isNaN ? "nan" : (value < 0 ? "-inf" : "inf") }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let negative = value < 0
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9e15 else { return scientific(value, digits) }
        let integer = Int(scaled)
        var text = String(integer)
        if digits > 0 {
            while text.count <= digits { text = "0" + text }
            text.insert(".", at: text.index(text.endIndex, offsetBy: -digits))
        }
        return (negative && scaled != 0 ? "-" : "") + text
    }

    /// Scientific notation with `digits` decimals in the mantissa: `-1.23e-04`.
    public static func scientific(_ value: Double, _ digits: Int = 2) -> String {
        guard value.isFinite else { return fixed(value, 0) }
        if value == 0 { return fixed(0, digits) + "e+00" }
        var exponent = Int((abs(value)).log10Floor)
        var mantissa = value / pow10(exponent)
        if abs((abs(mantissa) * pow10(digits)).rounded()) >= 10 * pow10(digits) {
            exponent += 1
            mantissa = value / pow10(exponent)
        }
        let sign = exponent < 0 ? "-" : "+"
        let e = abs(exponent)
        return fixed(mantissa, digits) + "e" + sign + (e < 10 ? "0" : "") + String(e)
    }

    /// A compact number: fixed for moderate magnitudes, scientific otherwise.
    public static func number(_ value: Double, _ digits: Int = 4) -> String {
        let magnitude = abs(value)
        if value == 0 || (magnitude >= 1e-3 && magnitude < 1e5) { return fixed(value, digits) }
        return scientific(value, 2)
    }

    static func pow10(_ n: Int) -> Double {
        var result = 1.0
        for _ in 0..<abs(n) { result *= 10 }
        return n < 0 ? 1 / result : result
    }

    /// Left-pads or right-pads `text` to `width` characters.
    public static func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
        let n = text.count
        guard n < width else { return text }
        let fill = String(repeating: " ", count: width - n)
        return right ? fill + text : text + fill
    }
}

extension Double {
    /// ⌊log10(|self|)⌋ for a finite non-zero value.
    var log10Floor: Double {
        var e = 0.0
        var v = abs(self)
        while v >= 10 {
            v /= 10
            e += 1
        }
        while v < 1 {
            v *= 10
            e -= 1
        }
        return e
    }
}
