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
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let file: SafeTensorsFile
    do {
        file = try SafeTensorsFile(store: ByteStore(copying: bytes, name: "fuzz.safetensors"))
    } catch let error as FileFormatError {
        if verbose { print("rejected: \(error)") }
        return 0
    } catch {
        fatalError("SafeTensorsFile threw a non-FileFormatError: \(error)")
    }

    if verbose { print("accepted: \(file.tensors.count) tensors, \(file.metadata.count) metadata") }

    // Decode a little: every tensor, until the element budget is spent.
    var budget = decodeBudget
    for tensor in file.tensors {
        precondition(tensor.offset >= 0 && tensor.offset + tensor.byteCount <= file.store.count)
        _ = file.data(of: tensor)
        let count = tensor.elementCount
        _ = (tensor.rowCount, tensor.rowLength)
        guard count <= budget else { continue }
        budget -= count
        let values = tensor.decodeAll(from: file.store)
        precondition(values.count == count)
        if tensor.rowCount > 0, count > 0 {
            _ = tensor.decodeRows(from: file.store, rows: 0..<1)
        }
    }
    _ = file.tensor(named: file.tensors.first?.name ?? "")

    // The model view over the same bytes.
    do {
        let model = try Model.inMemory(safetensors: bytes, name: "fuzz.safetensors")
        precondition(model.tensors.count == file.tensors.count)
        let blocks = model.blocks
        precondition(blocks.reduce(0) { $0 + $1.tensorIndices.count } == model.tensors.count)
        _ = (model.parameterCount, model.byteCount)
        if let first = model.tensors.first, first.info.elementCount <= decodeBudget {
            _ = try model.decode(first)
        }
    } catch {
        fatalError("Model.inMemory failed on bytes SafeTensorsFile accepted: \(error)")
    }
    return 0
}
