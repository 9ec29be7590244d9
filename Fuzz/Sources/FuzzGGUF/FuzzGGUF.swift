import Any4Core

#if canImport(Glibc)
    import Glibc
#endif

/// FUZZ_VERBOSE=1 prints whether each input parsed (to check seeds: `TARGET -runs=0 corpus/TARGET`).
private let verbose = getenv("FUZZ_VERBOSE") != nil

/// Most elements decoded per input, summed over its tensors.
private let decodeBudget = 1 << 16

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let store = ByteStore(copying: UnsafeBufferPointer(start: data, count: size), name: "fuzz.gguf")
    let file: GGUFFile
    do {
        file = try GGUFFile(store: store)
    } catch let error as FileFormatError {
        if verbose { print("rejected: \(error)") }
        return 0
    } catch {
        fatalError("GGUFFile threw a non-FileFormatError: \(error)")
    }

    if verbose { print("accepted: GGUF v\(file.version), \(file.tensors.count) tensors, \(file.metadata.count) metadata") }

    // The metadata as the CLI and TUI show it.
    for entry in file.metadata {
        _ = entry.value.description
        _ = (entry.value.int, entry.value.double, entry.value.string, entry.value.array?.count)
    }
    _ = ModelConfig(gguf: file).fields
    _ = file.architecture

    // Decode a little: every decodable tensor, until the element budget is spent.
    var budget = decodeBudget
    for tensor in file.tensors {
        precondition(tensor.offset >= file.dataOffset && tensor.offset + tensor.byteCount <= store.count)
        let count = tensor.elementCount
        _ = (tensor.rowCount, tensor.rowLength)
        guard case .ggml(let type) = tensor.encoding, type.isDecodable, count <= budget else { continue }
        budget -= count
        let values = tensor.decodeAll(from: store)
        precondition(values.count == count)
        if tensor.rowCount > 0, count > 0 {
            precondition(tensor.decodeRows(from: store, rows: 0..<1).count == tensor.rowLength)
        }
    }
    return 0
}
