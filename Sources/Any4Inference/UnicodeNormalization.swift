/// Canonical Unicode normalization (NFD and NFC) over scalar values.
///
/// The standard library keeps its normalization internal (`String._nfd` is underscored SPI) and
/// the core does not import Foundation, so this runs on ``UnicodeTables``, generated from Python's
/// `unicodedata` by `scripts/generate-unicode-tables.py`. Hangul syllables are decomposed and
/// composed algorithmically (Unicode §3.12).
package enum UnicodeNormalization {
    /// The canonical decomposition of `scalars`, fully decomposed and canonically ordered.
    package static func nfd(_ scalars: some Sequence<UInt32>) -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(scalars.underestimatedCount)
        for scalar in scalars { decompose(scalar, into: &out) }
        reorder(&out)
        return out
    }

    /// The canonical composition of `scalars`: NFD, then the canonical composition algorithm.
    package static func nfc(_ scalars: some Sequence<UInt32>) -> [UInt32] {
        var text = nfd(scalars)
        guard !text.isEmpty else { return text }
        var starter = 0
        var lastClass = combiningClass(text[0]) == 0 ? 0 : 256
        var kept = 1
        for i in 1..<text.count {
            let scalar = text[i]
            let ccc = Int(combiningClass(scalar))
            if lastClass < ccc || lastClass == 0, let composite = compose(text[starter], scalar) {
                text[starter] = composite
                continue
            }
            if ccc == 0 { starter = kept }
            lastClass = ccc
            text[kept] = scalar
            kept += 1
        }
        text.removeSubrange(kept...)
        return text
    }

    /// The canonical combining class of `scalar` (0 for starters).
    static func combiningClass(_ scalar: UInt32) -> UInt8 {
        scalar < 0x300 ? 0 : tables.combiningClasses[scalar] ?? 0
    }

    // MARK: - Decomposition and ordering

    private static let hangulBase: UInt32 = 0xAC00, leadingBase: UInt32 = 0x1100
    private static let vowelBase: UInt32 = 0x1161, trailingBase: UInt32 = 0x11A7
    private static let vowelCount: UInt32 = 21, trailingCount: UInt32 = 28
    private static let syllableCount: UInt32 = 11172

    private static func decompose(_ scalar: UInt32, into out: inout [UInt32]) {
        if scalar < 0xC0 {
            out.append(scalar)
            return
        }
        let index = scalar &- hangulBase
        if index < syllableCount {
            out.append(leadingBase + index / (vowelCount * trailingCount))
            out.append(vowelBase + index % (vowelCount * trailingCount) / trailingCount)
            let trailing = index % trailingCount
            if trailing != 0 { out.append(trailingBase + trailing) }
            return
        }
        guard let parts = tables.decompositions[scalar] else {
            out.append(scalar)
            return
        }
        decompose(parts.first, into: &out)
        if let second = parts.second { decompose(second, into: &out) }
    }

    /// Sorts each run of non-starters by combining class, keeping equal classes in order.
    private static func reorder(_ text: inout [UInt32]) {
        var i = 1
        while i < text.count {
            let ccc = combiningClass(text[i])
            if ccc != 0 {
                var j = i
                while j > 0, combiningClass(text[j - 1]) > ccc {
                    text.swapAt(j, j - 1)
                    j -= 1
                }
            }
            i += 1
        }
    }

    private static func compose(_ first: UInt32, _ second: UInt32) -> UInt32? {
        if (leadingBase..<leadingBase + 19).contains(first), (vowelBase..<vowelBase + vowelCount).contains(second) {
            return hangulBase + ((first - leadingBase) * vowelCount + second - vowelBase) * trailingCount
        }
        let index = first &- hangulBase
        if index < syllableCount, index % trailingCount == 0,
            (trailingBase + 1..<trailingBase + trailingCount).contains(second)
        {
            return first + second - trailingBase
        }
        return tables.compositions[UInt64(first) << 32 | UInt64(second)]
    }

    // MARK: - Tables

    private struct Tables {
        var decompositions: [UInt32: (first: UInt32, second: UInt32?)] = [:]
        var compositions: [UInt64: UInt32] = [:]
        var combiningClasses: [UInt32: UInt8] = [:]
    }

    private static let tables: Tables = {
        var t = Tables()
        for entry in UnicodeTables.decompositions.split(whereSeparator: { $0 == ";" || $0 == "\n" || $0 == " " }) {
            let composable = entry.contains("=")
            let sides = entry.split(whereSeparator: { $0 == "=" || $0 == "!" })
            let parts = sides[1].split(separator: ",").map { UInt32($0, radix: 16)! }
            let scalar = UInt32(sides[0], radix: 16)!
            t.decompositions[scalar] = (parts[0], parts.count > 1 ? parts[1] : nil)
            if composable { t.compositions[UInt64(parts[0]) << 32 | UInt64(parts[1])] = scalar }
        }
        for entry in UnicodeTables.combiningClasses.split(whereSeparator: { $0 == ";" || $0 == "\n" || $0 == " " }) {
            let sides = entry.split(separator: ":")
            let bounds = sides[0].split(separator: "-").map { UInt32($0, radix: 16)! }
            let ccc = UInt8(sides[1])!
            for scalar in bounds[0]...(bounds.last!) { t.combiningClasses[scalar] = ccc }
        }
        return t
    }()
}
