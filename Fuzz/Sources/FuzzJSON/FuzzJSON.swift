import Any4Core

#if canImport(Glibc)
    import Glibc
#endif

/// FUZZ_VERBOSE=1 prints whether each input parsed (to check seeds: `TARGET -runs=0 corpus/TARGET`).
private let verbose = getenv("FUZZ_VERBOSE") != nil

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let value: JSONValue
    do {
        value = try JSONParser.parse(bytes, file: "fuzz.json")
    } catch let error as FileFormatError {
        if verbose { print("rejected: \(error)") }
        return 0
    } catch {
        fatalError("JSONParser threw a non-FileFormatError: \(error)")
    }
    if verbose { print("accepted: \(value.serialized.prefix(60))") }
    // Serializing and re-parsing gives the same value. Numbers compare by their Double value
    // (the writer prints 1.0 as 1, which then parses with an exact Int64), and a literal whose
    // exponent overflows to inf is written as null, so that case is skipped.
    let text = value.serialized
    do {
        let again = try JSONParser.parse(text, file: "fuzz.json (reserialized)")
        if isFinite(value) { precondition(same(value, again), "round trip changed the value: \(text)") }
    } catch {
        fatalError("reserialized JSON does not parse: \(error)\n\(text)")
    }
    _ = ModelConfig(huggingFace: value).fields
    return 0
}

private func isFinite(_ value: JSONValue) -> Bool {
    switch value {
    case .number(let d, _): d.isFinite
    case .array(let items): items.allSatisfy(isFinite)
    case .object(let members): members.allSatisfy { isFinite($0.value) }
    default: true
    }
}

private func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case let (.number(x, ex), .number(y, ey)): return x == y && (ex == nil || ex == ey)
    case let (.array(p), .array(q)): return p.count == q.count && zip(p, q).allSatisfy(same)
    case let (.object(p), .object(q)):
        return p.count == q.count && zip(p, q).allSatisfy { $0.key == $1.key && same($0.value, $1.value) }
    default: return a == b
    }
}
