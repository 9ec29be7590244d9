#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writing any4 checkpoints (version 2): each quantized layer described by its own metadata, in
/// one of three containers chosen by the output path (see the README's "Checkpoint layout"):
///
/// - `*.safetensors`: one safetensors file;
/// - `*.gguf` (GGUF source only): a GGUF v3 file with every source key/value, the unquantized
///   tensors in their own ggml types, and the quantized parts as tensors of their own;
/// - anything else (Hugging Face folder or safetensors source): a Hugging Face-style folder with the
///   source's `config.json` and tokenizer files, shards `model-0000N-of-0000M.safetensors` of at
///   most `maxShardSize` bytes each, and `model.safetensors.index.json`.
///
/// Every container is written a tensor at a time (an unquantized tensor is copied from the
/// mapped input; a quantized layer's parts are made just before they are written), so memory holds
/// at most one tensor of the output besides the quantized matrices given.
extension QuantizedCheckpoint {
    /// The version these writers write: per-layer descriptions in `any4.layers`.
    public static let writtenVersion = "2"
    /// `--max-shard-size`'s default: 5 GB (5·10⁹ bytes), as Hugging Face shards.
    public static let defaultMaxShardSize = 5_000_000_000
    /// The files copied from the source folder into a folder checkpoint, when they exist.
    public static let companionFiles = [
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json", "tokenizer.model"
    ]
    /// The index of a folder checkpoint.
    public static let indexName = "model.safetensors.index.json"

    /// What `--out` writes.
    public enum Container: String, Sendable {
        case safetensors, gguf, folder
    }

    /// The container a path asks for: `.safetensors` and `.gguf` by their ending (a `.gguf`
    /// only from a GGUF source, whether or not the file exists); any other existing path that is
    /// not a folder is one safetensors file as well (as before folders were written); any other
    /// path a folder (not from a GGUF source, whose metadata a folder could not keep).
    public static func container(for path: String, source: Model) throws -> Container {
        var info = stat()
        let existsAsNonFolder = !path.isEmpty && lstat(path, &info) == 0 && !isDirectory(path)
        if path.hasSuffix(".safetensors") || path.isEmpty || (existsAsNonFolder && !path.hasSuffix(".gguf")) { return .safetensors }
        if path.hasSuffix(".gguf") {
            guard source.format == .gguf else {
                throw FileFormatError(
                    file: path, kind: .unsupported,
                    "a .gguf checkpoint is written from a GGUF model only; from this \(source.format.rawValue) model "
                        + "give a folder (a Hugging Face-style checkpoint) or a .safetensors file")
            }
            return .gguf
        }
        if source.format == .gguf {
            throw FileFormatError(
                file: path, kind: .unsupported,
                "from a GGUF model the output must end in .gguf (a GGUF checkpoint that keeps its metadata and tokenizer) "
                    + "or .safetensors")
        }
        return .folder
    }

    /// A byte size as `--max-shard-size` takes it: a whole number of bytes, or a number with a
    /// unit, decimal (`KB`, `MB`, `GB`, `TB`: powers of 1000) or binary (`KiB`, `MiB`, `GiB`,
    /// `TiB`: powers of 1024), case-insensitive, `B` optional (`500MB`, `5GB`, `2GiB`, `1.5G`).
    /// Nil for anything else, zero, or a size past Int's range.
    public static func parseByteSize(_ text: String) -> Int? {
        let t = text.trimmingPrefix(while: { $0 == " " }).lowercased()
        let digits = t.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        var unit = t.dropFirst(digits.count).trimmingPrefix(while: { $0 == " " })
        guard !digits.isEmpty, digits.filter({ $0 == "." }).count <= 1, let value = Double(digits) else { return nil }
        if unit.hasSuffix("b") { unit = unit.dropLast() }
        let scales: [Substring: Double] = [
            "": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12,
            "ki": 1024, "mi": 1_048_576, "gi": 1_073_741_824, "ti": 1_099_511_627_776
        ]
        guard let scale = scales[unit] else { return nil }
        let bytes = (value * scale).rounded(.down)
        guard bytes >= 1, bytes < 9.2e18 else { return nil }
        return Int(bytes)
    }

    /// The per-layer description written in `any4.layers` (contract version 2).
    public static func layerJSON(_ q: QuantizedMatrix) -> JSONValue { StoredLayerLayout(q).json }

    // MARK: - Output checks

    /// Refuses, before any work, an output that would replace an input or something that is not
    /// ours to replace. A file container: ``OutputGuard/check(_:inputs:)``. A folder: it must not
    /// be, or hold, any input; an existing path must be a folder that is empty or a checkpoint
    /// folder any4 wrote (its index carries `any4.version`), which is then replaced as a whole;
    /// its parent folder must exist.
    public static func checkOutput(_ path: String, container: Container, inputs: [String]) throws {
        guard container == .folder else { return try OutputGuard.check(path, inputs: inputs) }
        let path = folderPath(path)
        guard !path.isEmpty else { throw FileFormatError(file: path, kind: .io, "the output path is empty") }
        let target: String
        if let real = OutputGuard.realPath(path) {
            guard isDirectory(real) else {
                throw FileFormatError(
                    file: path, kind: .io,
                    "cannot write a folder checkpoint here: it exists and is not a folder "
                        + "(end --out in .safetensors for a single file)")
            }
            target = real
        } else {
            let folder = parentDirectory(path)
            guard let realFolder = OutputGuard.realPath(folder), isDirectory(realFolder) else {
                throw FileFormatError(file: path, kind: .io, "cannot write the output: the folder \(folder) does not exist")
            }
            target = (realFolder == "/" ? "" : realFolder) + "/" + lastComponent(path)
        }
        for input in inputs {
            guard let real = OutputGuard.realPath(input) else { continue }
            if real == target { throw OutputGuard.refusal(path, input) }
            if real.hasPrefix(target + "/") {
                throw FileFormatError(
                    file: path, kind: .outputIsInput,
                    "refusing to write: this folder is or holds the input \(input); choose another output path")
            }
        }
        if isDirectory(target), !listDirectory(target).isEmpty, !isCheckpointFolder(target) {
            throw FileFormatError(
                file: path, kind: .io,
                "refusing to write: the folder exists and is not empty (only an empty folder or a checkpoint folder "
                    + "written by any4 is replaced); choose another output path")
        }
    }

    /// Whether `folder` holds an index written by any4 (its metadata has `any4.version`).
    static func isCheckpointFolder(_ folder: String) -> Bool {
        guard let index = try? readJSONFile(folder + "/" + indexName) else { return false }
        return index["metadata"]?["any4.version"] != nil
    }

    /// `path` without trailing slashes (`ckpt/` names the folder `ckpt`).
    static func folderPath(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    static func lastComponent(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        return String(p[(p.lastIndex(of: "/").map { p.index(after: $0) } ?? p.startIndex)...])
    }

    // MARK: - Writing

    /// Writes `model` with `quantized` (by weight name) replacing its weights, in the container
    /// `path` asks for (``container(for:source:)``); each layer is described by its own matrix
    /// (format, bits, group size, dtype, method, sample weight).
    ///
    /// Refuses (``checkOutput(_:container:inputs:)``) an output that is one of the model's files.
    /// `progress` is reset to the bytes to write and advanced as they are written; cancelling it
    /// stops the write with ``QuantizationError/cancelled`` and leaves nothing at `path` (a
    /// previous output there stays as it was).
    ///
    /// With `fakeQuant`, the output instead has the input's names, shapes and dtypes (a ggml
    /// block type becomes F32), each quantized weight replaced by its dequantized values.
    public static func write(
        model: Model, quantized: [String: QuantizedMatrix], fakeQuant: Bool, to path: String,
        maxShardSize: Int = defaultMaxShardSize, progress: Progress? = nil
    ) throws {
        let container = try container(for: path, source: model)
        try checkOutput(path, container: container, inputs: model.inputFiles)
        switch container {
        case .gguf: try writeGGUF(model: model, quantized: quantized, fakeQuant: fakeQuant, to: path, progress: progress)
        case .safetensors:
            let units = try self.units(model: model, quantized: quantized, fakeQuant: fakeQuant)
            let entries = units.flatMap(\.entries)
            let metadata = self.metadata(model: model, quantized: quantized, layers: units.compactMap(\.layer), fakeQuant: fakeQuant)
            progress?.reset(total: try SafeTensorsWriter.fileSize(entries, metadata: metadata, file: path), label: "writing \(path)")
            try SafeTensorsWriter.write(planned: entries, metadata: metadata, to: path, progress: progress)
        case .folder:
            try writeFolder(
                model: model, quantized: quantized, fakeQuant: fakeQuant, to: path, maxShardSize: maxShardSize, progress: progress)
        }
    }

    /// ``write(model:quantized:fakeQuant:to:maxShardSize:progress:)`` with one description for
    /// every layer: its method and sample weight replace the matrices' own (for a learned table).
    public static func write(
        model: Model, quantized: [String: QuantizedMatrix], description: Description,
        fakeQuant: Bool, to path: String, progress: Progress? = nil
    ) throws {
        var described = quantized
        for (name, var q) in quantized where q.perRowTable {
            if !description.method.isEmpty { q.method = description.method }
            if !description.sampleWeight.isEmpty { q.sampleWeight = description.sampleWeight }
            described[name] = q
        }
        try write(model: model, quantized: described, fakeQuant: fakeQuant, to: path, progress: progress)
    }

    /// The tensors of one source tensor: a copy, a fake-quant weight, or a layer's parts (then
    /// with its `any4.layers` member). The parts of a layer always go to the same file.
    package struct Unit {
        package var entries: [SafeTensorsWriter.Planned]
        package var layer: (key: String, value: JSONValue)?
        package var bytes: Int { entries.reduce(0) { $0 + $1.byteCount } }

        package init(entries: [SafeTensorsWriter.Planned], layer: (key: String, value: JSONValue)?) {
            self.entries = entries
            self.layer = layer
        }
    }

    static func units(model: Model, quantized: [String: QuantizedMatrix], fakeQuant: Bool) throws -> [Unit] {
        try model.tensors.map { tensor in
            if let q = quantized[tensor.name] {
                if fakeQuant {
                    let target: DType =
                        if case .plain(let d) = tensor.info.encoding, d.isFloatingPoint, d != .f64 { d } else {
                            ModelQuantization.sourceDType(of: tensor)
                        }
                    return Unit(
                        entries: [
                            .init(name: tensor.name, dtype: target, shape: tensor.shape, byteCount: q.rows * q.cols * target.size) {
                                .bytes(SafeTensorsWriter.Entry(name: tensor.name, shape: tensor.shape, floats: q.dequantized(), as: target).bytes)
                            }
                        ], layer: nil)
                }
                let parts = quantizedParts(q, base: baseName(tensor.name)).map { part in
                    SafeTensorsWriter.Planned(name: part.name, dtype: part.dtype, shape: part.shape, byteCount: part.byteCount) {
                        .bytes(part.make())
                    }
                }
                return Unit(entries: parts, layer: (tensor.name, layerJSON(q)))
            }
            if case .quantized(let layout) = tensor.info.encoding {
                // A layer of a checkpoint given as the model: its parts byte for byte, its description kept.
                let parts = QuantizedCheckpoint.keptParts(of: tensor, layout, in: model)
                return Unit(entries: parts, layer: (tensor.name, layout.metadata))
            }
            return Unit(entries: [try copied(tensor, of: model)], layer: nil)
        }
    }

    /// One stored part of a quantized layer: its bytes made on demand.
    package struct Part {
        package var name: String
        package var dtype: DType
        package var shape: [Int]
        package var byteCount: Int
        package var make: () -> [UInt8]
    }

    /// `X.qweight`, `X.lut` (any-b), `X.scales`, `X.tensor_scale` (nvfp4), `X.zeros` (asymmetric).
    package static func quantizedParts(_ q: QuantizedMatrix, base: String) -> [Part] {
        let rowBytes = q.codePacking.rowBytes(cols: q.cols, codeBits: q.codeBits)
        var out = [Part(name: base + ".qweight", dtype: .u8, shape: [q.rows, rowBytes], byteCount: q.rows * rowBytes) { q.packedCodes() }]
        func floats(_ suffix: String, _ shape: [Int], _ values: @escaping () -> [Float], _ dtype: DType) -> Part {
            Part(name: base + suffix, dtype: dtype, shape: shape, byteCount: shape.reduce(1, *) * dtype.size) {
                SafeTensorsWriter.Entry(name: base + suffix, shape: shape, floats: values(), as: dtype).bytes
            }
        }
        if q.perRowTable { out.append(floats(".lut", [q.rows, q.tableSize], { q.tables }, q.storage)) }
        let groups = q.groupsPerRow
        let format = try? FormatRegistry.named(q.formatName)
        switch format?.scaleEncoding ?? .float {
        case .float:
            out.append(floats(".scales", [q.rows, groups], { q.scales }, q.storage))
        case let encoding:
            out.append(
                Part(name: base + ".scales", dtype: .u8, shape: [q.rows, groups], byteCount: q.rows * groups) {
                    q.scales.map(encoding.encode)
                })
        }
        if format?.hasTensorScale == true { out.append(floats(".tensor_scale", [1], { [q.tensorScale] }, .f32)) }
        if !q.zeros.isEmpty { out.append(floats(".zeros", [q.rows, groups], { q.zeros }, q.storage)) }
        return out
    }

    /// A tensor copied as it is: plain dtypes and ggml float types byte for byte from the mapped
    /// input; other encodings (ggml block types) decoded to F32 when written.
    /// The parts of a layer of a checkpoint given as the model, to be written byte for byte.
    static func keptParts(of tensor: ModelTensor, _ layout: QuantizedLayout, in model: Model) -> [SafeTensorsWriter.Planned] {
        let store = model.stores[tensor.fileIndex]
        return layout.parts.map { part in
            let range = part.offset..<(part.offset + part.byteCount)
            return SafeTensorsWriter.Planned(
                name: part.name, dtype: QuantizedLayout.floatDType(part.encoding) ?? .u8, shape: part.shape,
                byteCount: part.byteCount
            ) { .region(store, range) }
        }
    }

    static func copied(_ tensor: ModelTensor, of model: Model) throws -> SafeTensorsWriter.Planned {
        let store = model.stores[tensor.fileIndex]
        let range = tensor.info.offset..<(tensor.info.offset + tensor.info.byteCount)
        let dtype: DType? =
            switch tensor.info.encoding {
            case .plain(let d): d
            case .ggml(.f32): .f32
            case .ggml(.f16): .f16
            case .ggml(.bf16): .bf16
            default: nil
            }
        if let dtype {
            return .init(name: tensor.name, dtype: dtype, shape: tensor.shape, byteCount: range.count) { .region(store, range) }
        }
        try model.checkDecodable(tensor)
        let count = try Sizes.product([tensor.info.elementCount, 4], "\(tensor.name): f32 bytes")
        return .init(name: tensor.name, dtype: .f32, shape: tensor.shape, byteCount: count) {
            .bytes(SafeTensorsWriter.Entry(name: tensor.name, shape: tensor.shape, floats: try model.decode(tensor)).bytes)
        }
    }

    /// The file-level display name: the one format of every layer (quantized now, or kept from
    /// a checkpoint given as the model), "mixed", or "none".
    static func formatName(_ quantized: [String: QuantizedMatrix], kept: [(key: String, value: JSONValue)] = []) -> String {
        formatName(Set(quantized.values.map(\.formatName)), kept: kept)
    }

    /// ``formatName(_:kept:)`` from the names of the formats quantized to now.
    static func formatName(_ formats: Set<String>, kept: [(key: String, value: JSONValue)]) -> String {
        let names = formats.union(kept.compactMap { $0.value["format"]?.string })
        return names.count == 1 ? names.first! : names.isEmpty ? "none" : "mixed"
    }

    /// A safetensors file's metadata: the source's (a safetensors source; not a GGUF's, which
    /// does not fit), less any `any4.` key, plus this checkpoint's.
    static func metadata(
        model: Model, quantized: [String: QuantizedMatrix], layers: [(key: String, value: JSONValue)], fakeQuant: Bool
    ) -> [String: String] {
        var metadata: [String: String] = [:]
        if model.format != .gguf {
            for (key, value) in model.metadata where !key.hasPrefix("any4.") && metadata[key] == nil { metadata[key] = value }
        }
        metadata["any4.version"] = writtenVersion
        metadata["any4.format"] = formatName(quantized, kept: layers)
        metadata["any4.fake_quant"] = fakeQuant ? "1" : "0"
        if !fakeQuant || !layers.isEmpty { metadata["any4.layers"] = JSONValue.object(layers).serialized }
        return metadata
    }

    // MARK: - Folder

    /// One shard of a folder checkpoint.
    package struct Shard {
        package var units: [Unit] = []
        package var entries: [SafeTensorsWriter.Planned] { units.flatMap(\.entries) }
        package var layers: [(key: String, value: JSONValue)] { units.compactMap(\.layer) }
    }

    /// Packs `units` in order into shards of at most `limit` bytes each (header included); a
    /// unit larger than that alone gets a shard of its own.
    package static func shards(_ units: [Unit], limit: Int, baseMetadata: [String: String], fakeQuant: Bool) throws -> [Shard] {
        // The header grows by each entry's member (and each layer's escaped member in the
        // metadata string) plus a comma: an upper bound, offsets taken at their largest.
        var empty = baseMetadata
        empty["any4.layers"] = "{}"
        let (basePrefix, _) = try SafeTensorsWriter.layout([], metadata: empty, file: "")
        let base = basePrefix.count + 8
        let largest = max(limit, units.map(\.bytes).max() ?? 0)
        func cost(_ unit: Unit) -> Int {
            var bytes = unit.bytes
            for e in unit.entries {
                let member = JSONValue.object([
                    (
                        e.name,
                        .object([
                            ("dtype", .string(e.dtype.rawValue)), ("shape", .array(e.shape.map { JSONValue($0) })),
                            ("data_offsets", .array([JSONValue(largest), JSONValue(largest)]))
                        ])
                    )
                ]).serialized
                bytes += member.utf8.count - 2 + 1
            }
            if let layer = unit.layer {
                let member = JSONValue.object([layer]).serialized
                bytes += JSONValue.string(String(member.dropFirst().dropLast())).serialized.utf8.count - 2 + 1
            }
            return bytes
        }
        var shards: [Shard] = []
        var current = Shard()
        var size = base
        for unit in units {
            let c = cost(unit)
            if !current.units.isEmpty && size + c > limit {
                shards.append(current)
                current = Shard()
                size = base
            }
            current.units.append(unit)
            size += c
        }
        if !current.units.isEmpty || shards.isEmpty { shards.append(current) }
        return shards
    }

    static func shardName(_ index: Int, of count: Int) -> String {
        func five(_ n: Int) -> String { String(repeating: "0", count: max(0, 5 - String(n).count)) + String(n) }
        return "model-\(five(index + 1))-of-\(five(count)).safetensors"
    }

    static func writeFolder(
        model: Model, quantized: [String: QuantizedMatrix], fakeQuant: Bool, to path: String, maxShardSize: Int,
        progress: Progress?
    ) throws {
        let path = folderPath(path)
        guard maxShardSize > 0 else {
            throw FileFormatError(file: path, kind: .badShape, "the largest shard size must be positive, got \(maxShardSize)")
        }
        let units = try self.units(model: model, quantized: quantized, fakeQuant: fakeQuant)
        var baseMetadata = metadata(model: model, quantized: quantized, layers: units.compactMap(\.layer), fakeQuant: fakeQuant)
        baseMetadata["any4.layers"] = nil
        let shards = try self.shards(units, limit: maxShardSize, baseMetadata: baseMetadata, fakeQuant: fakeQuant)
        let names = shards.indices.map { shardName($0, of: shards.count) }
        var metadatas: [[String: String]] = []
        var total = 0
        for (shard, name) in zip(shards, names) {
            var m = baseMetadata
            if !fakeQuant || !shard.layers.isEmpty { m["any4.layers"] = JSONValue.object(shard.layers).serialized }
            metadatas.append(m)
            total += try SafeTensorsWriter.fileSize(shard.entries, metadata: m, file: name)
        }
        let sourceFolder: String? =
            switch model.format {
            case .huggingFace: model.huggingFace?.path ?? model.path
            case .safetensors: parentDirectory(model.path)
            default: nil
            }
        let companions = sourceFolder.map { folder in companionFiles.filter { fileExists(folder + "/" + $0) } } ?? []
        var weightMap: [(key: String, value: JSONValue)] = []
        for (shard, name) in zip(shards, names) {
            for e in shard.entries { weightMap.append((e.name, .string(name))) }
        }
        weightMap.sort { $0.key < $1.key }
        let dataSize = units.reduce(0) { $0 + $1.bytes }
        let index =
            JSONValue.object([
                ("metadata", .object([("total_size", JSONValue(dataSize)), ("any4.version", .string(writtenVersion))])),
                ("weight_map", .object(weightMap))
            ]).serialized + "\n"
        progress?.reset(total: total + index.utf8.count, label: "writing \(path)")

        removeStaleTemporaryFolders(of: path)
        let temporary = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(temporary, 0o755) == 0 else {
            throw FileFormatError(file: path, kind: .io, "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        do {
            for name in companions {
                let source = try ByteStore(mapping: sourceFolder! + "/" + name)
                let writer = try AtomicFileWriter(path: temporary + "/" + name, progress: progress)
                try writer.write(source.bytes)
                try writer.commit()
            }
            for ((shard, name), m) in zip(zip(shards, names), metadatas) {
                try SafeTensorsWriter.write(planned: shard.entries, metadata: m, to: temporary + "/" + name, progress: progress)
            }
            let writer = try AtomicFileWriter(path: temporary + "/" + indexName, progress: progress)
            try writer.write(index)
            try writer.commit()
            progress?.advance(by: index.utf8.count)
            if progress?.isCancelled == true { throw QuantizationError.cancelled }
            try install(temporary, at: path)
        } catch {
            removeFolder(temporary)
            throw error
        }
    }

    /// Renames the finished folder into place: over nothing, over an empty folder, or over a
    /// checkpoint folder of ours (moved aside first, removed once the new one is in place).
    static func install(_ temporary: String, at path: String) throws {
        func fail(_ what: String) -> FileFormatError {
            FileFormatError(file: path, kind: .io, "\(what): \(String(cString: strerror(errno)))")
        }
        if isDirectory(path) {
            if listDirectory(path).isEmpty {
                guard rmdir(path) == 0 else { throw fail("cannot replace the empty folder") }
            } else {
                guard isCheckpointFolder(path) else {
                    throw FileFormatError(file: path, kind: .io, "refusing to replace: the folder is not empty and not an any4 checkpoint")
                }
                let aside = path + ".old-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
                guard rename(path, aside) == 0 else { throw fail("cannot move the previous checkpoint aside") }
                guard rename(temporary, path) == 0 else {
                    let error = fail("cannot rename into place")
                    rename(aside, path)
                    throw error
                }
                removeFolder(aside)
                return
            }
        }
        guard rename(temporary, path) == 0 else { throw fail("cannot rename into place") }
    }

    /// Removes a folder this writer made: its regular files, then the folder (left in place if it
    /// holds anything else).
    static func removeFolder(_ folder: String) {
        for name in listDirectory(folder) {
            var info = stat()
            let file = folder + "/" + name
            if lstat(file, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG { unlink(file) }
        }
        rmdir(folder)
    }

    /// Removes the folders `path.tmp-PID-RANDOM` left by writers that died (as
    /// ``AtomicFileWriter`` does for files): only that shape of name, only a dead PID.
    static func removeStaleTemporaryFolders(of path: String) {
        let folder = parentDirectory(path)
        let prefix = lastComponent(path) + ".tmp-"
        for name in listDirectory(folder) where name.hasPrefix(prefix) {
            let parts = name.dropFirst(prefix.count).split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count == 2, let pid = Int32(parts[0]), pid > 0, UInt32(parts[1]) != nil else { continue }
            guard kill(pid, 0) != 0 && errno == ESRCH else { continue }
            let stale = folder + "/" + name
            var info = stat()
            guard lstat(stale, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { continue }
            removeFolder(stale)
        }
    }

    // MARK: - GGUF

    /// One piece of a GGUF output, in file order: the new tensors of a weight quantized now
    /// (`weight` names it), or one tensor of the source kept byte for byte (`weight` nil).
    package struct GGUFPiece {
        package var weight: String?
        /// The model tensor it comes from: the weight, the copied tensor, or the layer a kept
        /// part of a checkpoint given as the model belongs to.
        package var source: String
        package var tensors: [GGUFWriter.Tensor]
        /// The same tensors as planned entries (a kept ggml tensor as its bytes, u8).
        package var entries: [SafeTensorsWriter.Planned]
    }

    /// A GGUF output from a GGUF model, laid out before anything is written: its pieces in file
    /// order and its metadata (every source key/value less `any4.` ones, then this checkpoint's).
    /// `replaced` are the weights quantized now; `make(name, shape, target)` gives one's entries
    /// and description: its parts, or with `target` (fake-quant) its dequantized copy in that
    /// dtype and no description. `formats` are the names of the formats they are quantized to.
    package static func ggufLayout(
        model: Model, replaced: Set<String>, formats: Set<String>, fakeQuant: Bool, file: String,
        make: (_ name: String, _ shape: [Int], _ target: DType?) throws -> (entries: [SafeTensorsWriter.Planned], layer: JSONValue?)
    ) throws -> (pieces: [GGUFPiece], metadata: [(key: String, value: GGUFValue)]) {
        guard let gguf = model.gguf else {
            throw FileFormatError(file: file, kind: .unsupported, "a .gguf checkpoint is written from a GGUF model only")
        }
        let store = model.stores[0]
        func ggml(_ d: DType) -> GGMLType {
            switch d {
            case .f16: .f16
            case .bf16: .bf16
            case .u8, .i8: .i8
            default: .f32
            }
        }
        func piece(_ weight: String, _ made: [SafeTensorsWriter.Planned]) -> GGUFPiece {
            GGUFPiece(
                weight: weight, source: weight,
                tensors: made.map { .init(name: $0.name, shape: $0.shape, type: ggml($0.dtype), byteCount: $0.byteCount, payload: $0.payload) },
                entries: made)
        }
        var pieces: [GGUFPiece] = []
        var layers: [(key: String, value: JSONValue)] = []
        // A source that is itself an any4 checkpoint: its layers' parts are kept byte for byte with
        // their descriptions, unless the layer is quantized again (its new parts then go where the
        // old ones were).
        let sourceLayers = gguf.value("any4.layers")?.string.flatMap { try? JSONParser.parse($0, file: model.path) }?.members ?? []
        var owner: [String: String] = [:]
        for (layer, _) in sourceLayers {
            for suffix in [".qweight", ".lut", ".scales", ".zeros", ".tensor_scale"] { owner[baseName(layer) + suffix] = layer }
        }
        var carried = Set<String>()
        for info in gguf.tensors {
            let layer = owner[info.name]
            if let layer, replaced.contains(layer) {
                guard !carried.contains(layer) else { continue }
                carried.insert(layer)
                let made = try make(layer, [], nil)
                pieces.append(piece(layer, made.entries))
                if let description = made.layer { layers.append((layer, description)) }
                continue
            }
            if let layer, !carried.contains(layer), let description = sourceLayers.first(where: { $0.key == layer }) {
                carried.insert(layer)
                layers.append(description)
            }
            guard replaced.contains(info.name) else {
                guard case .ggml(let type) = info.encoding else {
                    throw FileFormatError(file: model.path, kind: .unsupported, "not a ggml tensor", subject: info.name)
                }
                let range = info.offset..<(info.offset + info.byteCount)
                let payload: () throws -> TensorPayload = { .region(store, range) }
                pieces.append(
                    GGUFPiece(
                        weight: nil, source: layer ?? info.name,
                        tensors: [.init(name: info.name, shape: info.shape, type: type, byteCount: info.byteCount, payload: payload)],
                        entries: [.init(name: info.name, dtype: .u8, shape: [info.byteCount], byteCount: info.byteCount, payload: payload)]))
                continue
            }
            if fakeQuant {
                let target: DType =
                    switch info.encoding {
                    case .ggml(.f16): .f16
                    case .ggml(.bf16): .bf16
                    default: .f32
                    }
                pieces.append(piece(info.name, try make(info.name, info.shape, target).entries))
                continue
            }
            let made = try make(info.name, info.shape, nil)
            pieces.append(piece(info.name, made.entries))
            if let description = made.layer { layers.append((info.name, description)) }
        }
        var metadata = gguf.metadata.filter { !$0.key.hasPrefix("any4.") }
        metadata.append(("any4.version", .string(writtenVersion)))
        metadata.append(("any4.format", .string(formatName(formats, kept: layers))))
        metadata.append(("any4.fake_quant", .string(fakeQuant ? "1" : "0")))
        if !fakeQuant || !layers.isEmpty { metadata.append(("any4.layers", .string(JSONValue.object(layers).serialized))) }
        return (pieces, metadata)
    }

    /// Writes a GGUF checkpoint from quantized matrices held in memory (the quantize command
    /// streams instead: ``CheckpointPlan/makeGGUF(model:jobs:fakeQuant:inputs:)``).
    static func writeGGUF(
        model: Model, quantized: [String: QuantizedMatrix], fakeQuant: Bool, to path: String, progress: Progress?
    ) throws {
        let (pieces, metadata) = try ggufLayout(
            model: model, replaced: Set(quantized.keys), formats: Set(quantized.values.map(\.formatName)), fakeQuant: fakeQuant,
            file: path
        ) { name, shape, target in
            let q = quantized[name]!
            if let target {
                let entry = SafeTensorsWriter.Planned(name: name, dtype: target, shape: shape, byteCount: q.rows * q.cols * target.size) {
                    .bytes(SafeTensorsWriter.Entry(name: name, shape: shape, floats: q.dequantized(), as: target).bytes)
                }
                return ([entry], nil)
            }
            let parts = quantizedParts(q, base: baseName(name)).map { part in
                SafeTensorsWriter.Planned(name: part.name, dtype: part.dtype, shape: part.shape, byteCount: part.byteCount) { .bytes(part.make()) }
            }
            return (parts, layerJSON(q))
        }
        let tensors = pieces.flatMap(\.tensors)
        progress?.reset(total: try GGUFWriter.fileSize(metadata: metadata, tensors: tensors, file: path), label: "writing \(path)")
        try GGUFWriter.write(metadata: metadata, tensors: tensors, to: path, progress: progress)
    }
}
