/// What a tensor does in the network, as far as its name and shape tell.
public enum TensorRole: String, Sendable, CaseIterable {
    /// A 2-D weight used as y = x·Wᵀ: the tensors any4 quantizes (the LM head included).
    case linear
    case embedding
    case norm
    case bias
    case other
}

/// One tensor of a model, placed in its block and module.
public struct ModelTensor: Sendable, Hashable {
    public let info: TensorInfo
    /// Which of the model's files holds it.
    public let fileIndex: Int
    /// The block prefix (`blk.3`, `model.layers.3`, `encoder.layer.3`), nil outside blocks.
    public let block: String?
    public let blockIndex: Int?
    /// The module path inside the block (`attn_q`, `self_attn.q_proj`), or the name less its leaf.
    public let module: String
    public let role: TensorRole

    public var name: String { info.name }
    public var shape: [Int] { info.shape }
    public var isLinear: Bool { role == .linear }
}

/// A block of the model (a transformer layer, or the tensors outside any layer).
public struct ModelBlock: Sendable {
    /// `blk.0`, `model.layers.0`, ..., or nil for the tensors outside layers.
    public let name: String?
    public let index: Int?
    /// Indices into ``Model/tensors``.
    public let tensorIndices: [Int]
    public let parameters: Int
    public let bytes: Int
}

/// How a model was given to us.
public enum ModelFormat: String, Sendable {
    case safetensors
    case gguf
    case huggingFace = "hf-folder"
    case demo
}

/// A model opened lazily from any supported source: headers are read, weights are not.
///
/// Shapes are `[out, in]` for matrices whatever the file's own convention. Tensors are
/// decoded to Float only when asked, a row range at a time if need be.
public final class Model: Sendable {
    public let path: String
    public let format: ModelFormat
    public let stores: [ByteStore]
    /// The model's tensors as a network sees them: each quantized layer of an any4 checkpoint is
    /// one virtual tensor `X.weight` [out, in] of encoding ``TensorEncoding/quantized(_:)``, listed
    /// instead of its stored parts (`X.qweight`, `X.lut`, ...).
    public let tensors: [ModelTensor]
    /// Every tensor as stored in the files (quantized layers as their parts), for `inspect --stored`.
    public let storedTensors: [ModelTensor]
    public let config: ModelConfig
    /// File-level metadata for display: safetensors `__metadata__` or GGUF key/values.
    public let metadata: [(key: String, value: String)]
    public let gguf: GGUFFile?
    public let huggingFace: HFFolder?
    /// GGUF version, when the model is a GGUF file.
    public var ggufVersion: Int? { gguf.map { Int($0.version) } }

    /// Every file and folder the model was opened from or is read from later, as given: the GGUF
    /// or safetensors file; for a Hugging Face folder the folder, its shards and index; and the
    /// config and tokenizer files that exist beside the weights. Empty for in-memory models.
    /// An output must be none of them (``OutputGuard``).
    public var inputFiles: [String] {
        switch format {
        case .demo: return []
        case .gguf: return [path]
        case .safetensors, .huggingFace:
            let folder = huggingFace?.path ?? parentDirectory(path)
            let weights = huggingFace.map { [$0.path] + $0.weightFiles } ?? [path]
            let companions = ["config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
            return weights + companions.map { folder + "/" + $0 }.filter(fileExists)
        }
    }

    /// - Parameters:
    ///   - tensors: every stored tensor and the index of its file in `stores`.
    ///   - quantizationMetadata: per file, the string metadata that may declare quantized layers
    ///     (`any4.layers`, ...; see ``QuantizedLayout``).
    init(
        path: String, format: ModelFormat, stores: [ByteStore], tensors: [(TensorInfo, Int)],
        quantizationMetadata: [[String: String]], config: ModelConfig, metadata: [(key: String, value: String)],
        gguf: GGUFFile? = nil, huggingFace: HFFolder? = nil
    ) throws {
        self.path = path
        self.format = format
        self.stores = stores
        self.config = config
        self.metadata = metadata
        self.gguf = gguf
        self.huggingFace = huggingFace
        func placed(_ list: [(TensorInfo, Int)]) -> [ModelTensor] {
            list.map { Model.place($0.0, fileIndex: $0.1) }.sorted { Model.naturalLess($0.name, $1.name) }
        }
        self.storedTensors = placed(tensors)
        self.tensors = placed(
            try Model.virtualTensors(stored: tensors, files: stores.map(\.name), metadata: quantizationMetadata))
    }

    /// The tensors a network sees: the stored ones, with the parts of each quantized layer that
    /// the files' metadata declares replaced by one virtual tensor.
    static func virtualTensors(
        stored: [(TensorInfo, Int)], files: [String], metadata: [[String: String]]
    ) throws -> [(TensorInfo, Int)] {
        guard metadata.contains(where: { $0["any4.layers"] != nil }) else { return stored }
        var storedNames: [String: Int] = [:]
        for (info, file) in stored { storedNames[info.name] = file }
        var consumed = Set<String>()
        var virtual: [(TensorInfo, Int)] = []
        var layerFiles: [String: Int] = [:]
        for (index, meta) in metadata.enumerated() where meta["any4.layers"] != nil {
            let own = stored.filter { $0.1 == index }.map(\.0)
            for (name, layout) in try QuantizedLayout.layers(file: files[index], metadata: meta, tensors: own) {
                if let other = layerFiles[name] {
                    throw FileFormatError(
                        file: files[index], kind: .badHeader, "quantized layer also declared in \(files[other])", subject: name)
                }
                if storedNames[name] != nil {
                    throw FileFormatError(
                        file: files[index], kind: .badHeader,
                        "declared quantized in any4.layers but also stored as a tensor of this name", subject: name)
                }
                layerFiles[name] = index
                for part in layout.parts {
                    guard consumed.insert(part.name).inserted else {
                        throw FileFormatError(
                            file: files[index], kind: .badHeader, "tensor is a part of two quantized layers", subject: part.name)
                    }
                }
                let info = TensorInfo(
                    name: name, shape: [layout.rows, layout.cols], encoding: .quantized(layout),
                    offset: layout.qweight.offset, byteCount: layout.byteCount)
                virtual.append((info, index))
            }
        }
        return stored.filter { !consumed.contains($0.0.name) } + virtual
    }

    /// Opens a `.safetensors` file, a `.gguf` file or a Hugging Face folder.
    public static func open(_ path: String) throws -> Model {
        if isDirectory(path) {
            let folder = try HFFolder(path: path)
            var stores: [ByteStore] = []
            var tensors: [(TensorInfo, Int)] = []
            var metadata: [(key: String, value: String)] = []
            var fileMetadata: [[String: String]] = []
            var seen = Set<String>()
            for (index, file) in folder.weightFiles.enumerated() {
                let st = try SafeTensorsFile(path: file)
                stores.append(st.store)
                for info in st.tensors {
                    guard seen.insert(info.name).inserted else {
                        throw FileFormatError(file: file, kind: .badHeader, "tensor also appears in another shard", subject: info.name)
                    }
                    tensors.append((info, index))
                }
                // Keys shared by the shards appear once; a value that differs from an earlier
                // shard's is shown under `key@shard`.
                for (key, value) in st.metadata.sorted(by: { $0.key < $1.key }) {
                    if let earlier = metadata.first(where: { $0.key == key }) {
                        if earlier.value != value { metadata.append((key + "@" + lastPathComponent(file), value)) }
                    } else {
                        metadata.append((key, value))
                    }
                }
                fileMetadata.append(st.metadata)
            }
            if let index = folder.indexPath {
                // Every tensor the index maps must be in the shard it names.
                let held = Set(tensors.map { "\($0.1)/\($0.0.name)" })
                for (name, shard) in folder.weightMap {
                    guard let file = folder.weightFiles.firstIndex(of: folder.path + "/" + shard),
                        held.contains("\(file)/\(name)")
                    else {
                        throw FileFormatError(
                            file: index, kind: .badHeader, "the index maps this tensor to \(shard), which does not hold it",
                            subject: name)
                    }
                }
            }
            let config = folder.config.map(ModelConfig.init(huggingFace:)) ?? ModelConfig()
            return try Model(
                path: path, format: .huggingFace, stores: stores, tensors: tensors, quantizationMetadata: fileMetadata,
                config: config, metadata: metadata, huggingFace: folder)
        }
        let store = try ByteStore(mapping: path)
        if store.count >= 4, store.bytes.loadUnaligned(as: UInt32.self) == UInt32(0x4655_4747).littleEndian {
            let file = try GGUFFile(store: store)
            let metadata = file.metadata.map { (key: $0.key, value: $0.value.description) }
            var strings: [String: String] = [:]
            for (key, value) in file.metadata where key.hasPrefix("any4.") {
                guard let text = value.string else {
                    throw FileFormatError(file: path, kind: .badHeader, "must be a STRING, got \(value)", subject: key)
                }
                strings[key] = text
            }
            return try Model(
                path: path, format: .gguf, stores: [store], tensors: file.tensors.map { ($0, 0) },
                quantizationMetadata: [strings], config: ModelConfig(gguf: file), metadata: metadata, gguf: file)
        }
        if !path.hasSuffix(".safetensors") && !looksLikeSafetensors(store) {
            throw FileFormatError(
                file: path, kind: .badMagic,
                "not a model file: neither GGUF (magic \"GGUF\") nor safetensors (8-byte header length, then a JSON object)",
                offset: 0)
        }
        let file = try SafeTensorsFile(store: store)
        var config = ModelConfig()
        let folder = parentDirectory(path)
        if fileExists(folder + "/config.json") {
            config = ModelConfig(huggingFace: try readJSONFile(folder + "/config.json"))
        }
        return try Model(
            path: path, format: .safetensors, stores: [store], tensors: file.tensors.map { ($0, 0) },
            quantizationMetadata: [file.metadata], config: config,
            metadata: file.metadata.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
    }

    /// Wraps an in-memory safetensors image (the demo model, tests).
    public static func inMemory(
        safetensors bytes: [UInt8], name: String, format: ModelFormat = .demo,
        config: ModelConfig = ModelConfig()
    ) throws -> Model {
        let file = try SafeTensorsFile(store: ByteStore(copying: bytes, name: name))
        return try Model(
            path: name, format: format, stores: [file.store], tensors: file.tensors.map { ($0, 0) },
            quantizationMetadata: [file.metadata], config: config,
            metadata: file.metadata.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
    }

    // MARK: - Decoding

    public func tensor(named name: String) -> ModelTensor? { tensors.first { $0.name == name } }

    /// Throws unless this tensor's storage can be decoded to Float.
    public func checkDecodable(_ tensor: ModelTensor) throws {
        if case .ggml(let type) = tensor.info.encoding, !type.isDecodable {
            throw FileFormatError(
                file: stores[tensor.fileIndex].name, kind: .unsupported,
                "ggml type \(type.name) cannot be decoded yet", subject: tensor.name)
        }
    }

    /// The whole tensor as Float (a quantized layer: dequantized, bit for bit as
    /// ``QuantizedMatrix/dequantize(rows:into:)``). Throws a ``SizeError`` when its f32 form is
    /// more than the machine can give (a small block-quantized file can decode to many times its size).
    public func decode(_ tensor: ModelTensor) throws -> [Float] {
        try checkDecodable(tensor)
        try MemoryBudget.check(
            try Sizes.product([tensor.info.elementCount, 4], "\(tensor.name): f32 bytes"),
            for: "decoding \(tensor.name) \(Formatting.shape(tensor.shape)) to f32")
        if tensor.info.encoding.quantizedLayout != nil { return try decodeRows(tensor, rows: 0..<tensor.info.rowCount) }
        return tensor.info.decodeAll(from: stores[tensor.fileIndex])
    }

    /// Rows `rows` of the tensor (outermost index) as Float, row-major.
    public func decodeRows(_ tensor: ModelTensor, rows: Range<Int>) throws -> [Float] {
        try checkDecodable(tensor)
        precondition(rows.lowerBound >= 0 && rows.upperBound <= tensor.info.rowCount, "rows out of range")
        try MemoryBudget.check(
            try Sizes.product([rows.count, tensor.info.rowLength, 4], "\(tensor.name): f32 bytes"),
            for: "decoding rows \(rows.lowerBound)..<\(rows.upperBound) of \(tensor.name) to f32")
        if let layout = tensor.info.encoding.quantizedLayout {
            return try quantizedRows(layout, rows: rows, of: tensor).dequantized()
        }
        return tensor.info.decodeRows(from: stores[tensor.fileIndex], rows: rows)
    }

    /// The quantized layer behind `tensor` (codes unpacked), or nil when it is not quantized.
    ///
    /// Its parts were checked against the file's metadata when the model was opened (shapes,
    /// dtypes, group size); this also checks that every code is inside the format's table, and
    /// throws a ``FileFormatError`` naming the file and the `.qweight` tensor when one is not.
    public func quantizedMatrix(_ tensor: ModelTensor) throws -> QuantizedMatrix? {
        guard let layout = tensor.info.encoding.quantizedLayout else { return nil }
        try MemoryBudget.check(
            try Sizes.product([layout.rows, layout.cols], "\(tensor.name): codes"),
            for: "unpacking the codes of \(tensor.name) \(Formatting.shape(tensor.shape))")
        return try quantizedRows(layout, rows: 0..<layout.rows, of: tensor)
    }

    func quantizedRows(_ layout: QuantizedLayout, rows: Range<Int>, of tensor: ModelTensor) throws -> QuantizedMatrix {
        let store = stores[tensor.fileIndex]
        let (matrix, badCodes) = layout.matrix(rows: rows, from: store)
        if let first = badCodes.first {
            let row = rows.lowerBound + first / layout.cols, column = first % layout.cols
            let q = layout.qweight
            let (offset, code) = layout.codePacking.code(
                row: row, column: column, cols: layout.cols, codeBits: layout.codeBits,
                in: UnsafeRawBufferPointer(rebasing: store.bytes[q.offset..<(q.offset + q.byteCount)]))
            let at = q.offset + offset
            throw FileFormatError(
                file: store.name, kind: .badShape,
                "code \(code) at row \(row), column \(column) is out of range for \(layout.format) "
                    + "(\(layout.codeBits) bits, codes 0..<\(layout.tableSize))",
                offset: at, subject: layout.qweight.name)
        }
        return matrix
    }

    // MARK: - Structure

    /// Tensors grouped into blocks: the tensors outside layers first, then the layers in order.
    public var blocks: [ModelBlock] { Model.blocks(of: tensors) }

    /// `list` grouped into blocks (``ModelBlock/tensorIndices`` index `list`): the tensors outside
    /// layers first, then the layers in order. `blocks(of: storedTensors)` groups the stored parts.
    public static func blocks(of tensors: [ModelTensor]) -> [ModelBlock] {
        var groups: [String?: [Int]] = [:]
        var order: [String?] = []
        for (i, t) in tensors.enumerated() {
            if groups[t.block] == nil { order.append(t.block) }
            groups[t.block, default: []].append(i)
        }
        order.sort { a, b in
            switch (a, b) {
            case (nil, _): return b != nil
            case (_, nil): return false
            case let (a?, b?): return Model.naturalLess(a, b)
            }
        }
        return order.map { name in
            let indices = groups[name]!
            return ModelBlock(
                name: name, index: indices.first.flatMap { tensors[$0].blockIndex }, tensorIndices: indices,
                parameters: indices.reduce(0) { $0 + tensors[$1].info.elementCount },
                bytes: indices.reduce(0) { $0 + tensors[$1].info.byteCount })
        }
    }

    public var parameterCount: Int { tensors.reduce(0) { $0 + $1.info.elementCount } }
    public var byteCount: Int { tensors.reduce(0) { $0 + $1.info.byteCount } }

    /// Names of the components that introduce a numbered layer.
    static let blockKeywords: Set<String> = ["blk", "layers", "layer", "h", "blocks", "block"]

    package static func place(_ info: TensorInfo, fileIndex: Int) -> ModelTensor {
        let parts = info.name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        var block: String?
        var blockIndex: Int?
        var moduleStart = 0
        for i in 1..<max(parts.count - 1, 1) where blockKeywords.contains(parts[i - 1]) {
            if let n = Int(parts[i]), n >= 0 {
                block = parts[0...i].joined(separator: ".")
                blockIndex = n
                moduleStart = i + 1
                break
            }
        }
        let leaf = parts.last ?? ""
        let module = parts.count - 1 > moduleStart ? parts[moduleStart..<(parts.count - 1)].joined(separator: ".") : leaf
        return ModelTensor(
            info: info, fileIndex: fileIndex, block: block, blockIndex: blockIndex,
            module: module, role: role(of: info.name, leaf: leaf, rank: info.shape.count))
    }

    static func role(of name: String, leaf: String, rank: Int) -> TensorRole {
        let lower = name.lowercased()
        if leaf == "bias" || leaf == "beta" { return lower.contains("norm") ? .norm : .bias }
        let isNorm = lower.contains("norm") || lower.contains(".ln") || lower.hasPrefix("ln")
        if rank == 1 { return isNorm || leaf == "gamma" ? .norm : .other }
        if rank == 2 {
            let embedLike = lower.contains("embed") || lower.contains("token_embd") || lower.contains("wte") || lower.contains("wpe")
            if embedLike && leaf == "weight" {
                return .embedding
            }
            if leaf == "weight" && !isNorm { return .linear }
        }
        return .other
    }

    /// Orders names so that `blk.2` comes before `blk.10`.
    public static func naturalLess(_ a: String, _ b: String) -> Bool {
        var i = a.unicodeScalars.makeIterator(), j = b.unicodeScalars.makeIterator()
        var ca = i.next(), cb = j.next()
        while let x = ca, let y = cb {
            if x.properties.numericType != nil, ("0"..."9").contains(x), ("0"..."9").contains(y) {
                var na = "", nb = ""
                while let d = ca, ("0"..."9").contains(d) {
                    na.unicodeScalars.append(d)
                    ca = i.next()
                }
                while let d = cb, ("0"..."9").contains(d) {
                    nb.unicodeScalars.append(d)
                    cb = j.next()
                }
                let va = na.drop { $0 == "0" }, vb = nb.drop { $0 == "0" }
                if va.count != vb.count { return va.count < vb.count }
                if va != vb { return va < vb }
                continue
            }
            if x != y { return x.value < y.value }
            ca = i.next()
            cb = j.next()
        }
        return ca == nil && cb != nil
    }
}

/// A cheap sniff: a plausible header length followed by `{`.
func looksLikeSafetensors(_ store: ByteStore) -> Bool {
    guard store.count >= 10 else { return false }
    let length = UInt64(littleEndian: store.bytes.loadUnaligned(as: UInt64.self))
    return length >= 2 && length <= UInt64(store.count - 8) && store.bytes[8] == UInt8(ascii: "{")
}

func lastPathComponent(_ path: String) -> String {
    path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
}

package func parentDirectory(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}
