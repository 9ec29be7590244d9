#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What a quantized layer stores, known from its job before it is quantized: the parts' names,
/// dtypes, shapes and sizes, and its `any4.layers` description. The streaming writer lays out
/// every shard from these, and checks each quantized matrix against its plan before writing it.
package struct StoredLayerLayout: Equatable, Sendable {
    var formatName: String
    var rows: Int
    var cols: Int
    var codeBits: Int
    var codePacking: CodePacking
    var groupSize: Int
    var perRowTable: Bool
    var tableSize: Int
    var storage: DType
    var floatScales: Bool
    var hasTensorScale: Bool
    var hasZeros: Bool
    var method: String
    var sampleWeight: String

    /// The layout `Quantizer.quantize` gives this job's matrix.
    package init(job: LayerJob) throws {
        let tensor = job.tensor
        let sizes = try Quantizer.OutputSizes(
            rows: tensor.shape[0], cols: tensor.shape[1], name: tensor.name, format: job.format, options: job.options)
        let s = ModelQuantization.storageDType(of: tensor, options: job.options)
        formatName = job.format.name
        rows = tensor.shape[0]
        cols = tensor.shape[1]
        codeBits = job.format.codeBits
        codePacking = .written(codeBits: codeBits)
        groupSize = sizes.groupSize
        perRowTable = job.format.perRowTable
        tableSize = sizes.tableSize
        storage = job.format.scaleDType ?? (s == .f16 || s == .bf16 ? s : .f32)
        floatScales = job.format.scaleEncoding == .float
        hasTensorScale = job.format.hasTensorScale
        hasZeros = job.format.hasZeros
        method = job.format.perRowTable ? job.options.cluster.rawValue : ""
        sampleWeight = job.format.perRowTable ? job.options.sampleWeighting.name : ""
    }

    /// The layout of a quantized matrix.
    package init(_ q: QuantizedMatrix) {
        let format = try? FormatRegistry.named(q.formatName)
        formatName = q.formatName
        rows = q.rows
        cols = q.cols
        codeBits = q.codeBits
        codePacking = q.codePacking
        groupSize = q.groupSize
        perRowTable = q.perRowTable
        tableSize = q.tableSize
        storage = q.storage
        floatScales = (format?.scaleEncoding ?? .float) == .float
        hasTensorScale = format?.hasTensorScale == true
        hasZeros = !q.zeros.isEmpty
        method = q.method
        sampleWeight = q.sampleWeight
    }

    /// The stored parts, in the order ``QuantizedCheckpoint/quantizedParts(_:base:)`` makes them.
    package func parts(base: String) -> [(name: String, dtype: DType, shape: [Int], byteCount: Int)] {
        let rowBytes = codePacking.rowBytes(cols: cols, codeBits: codeBits)
        var out: [(name: String, dtype: DType, shape: [Int], byteCount: Int)] = [
            (base + ".qweight", .u8, [rows, rowBytes], rows * rowBytes)
        ]
        if perRowTable { out.append((base + ".lut", storage, [rows, tableSize], rows * tableSize * storage.size)) }
        let groups = GroupLayout(columns: cols, size: groupSize).count
        if floatScales {
            out.append((base + ".scales", storage, [rows, groups], rows * groups * storage.size))
        } else {
            out.append((base + ".scales", .u8, [rows, groups], rows * groups))
        }
        if hasTensorScale { out.append((base + ".tensor_scale", .f32, [1], 4)) }
        if hasZeros { out.append((base + ".zeros", storage, [rows, groups], rows * groups * storage.size)) }
        return out
    }

    /// The per-layer description written in `any4.layers` (contract version 2).
    package var json: JSONValue {
        .object(
            [
                ("shape", .array([JSONValue(rows), JSONValue(cols)])),
                ("format", .string(formatName)),
                ("bits", JSONValue(codeBits)),
                ("group_size", JSONValue(groupSize)),
                ("method", .string(method)),
                ("sample_weight", .string(sampleWeight)),
                ("dtype", .string(storage.rawValue.lowercased()))
            ] + (codePacking.metadataValue(codeBits: codeBits).map { [("code_packing", .string($0))] } ?? []))
    }
}

/// A 64-bit FNV-1a hash, for fingerprints of inputs and plans (an identity check against
/// mistakes, not against an adversary).
package struct FNV64 {
    package private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    package init() {}

    package mutating func add(_ bytes: UnsafeRawBufferPointer) {
        var h = value
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        value = h
    }

    package mutating func add(_ bytes: [UInt8]) { bytes.withUnsafeBytes { add($0) } }
    /// A string and a separator, so that ("ab","c") and ("a","bc") differ.
    package mutating func add(_ text: String) { add(Array(text.utf8) + [0]) }

    package var hex: String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// The whole output of a quantize run, laid out before anything is quantized: every tensor of
/// every shard with its offset, every shard's header (with the fingerprint of its inputs and
/// jobs), the index, and which shards each part of a split run writes.
///
/// Every size is known from the jobs (``StoredLayerLayout``), so each layer can be written into
/// its shard as soon as it is quantized and then dropped: memory holds a layer or two, whatever
/// the model's size.
package struct CheckpointPlan {
    /// One tensor of the source: its job (quantized), or none (copied as stored).
    package struct Unit {
        package var tensor: ModelTensor
        package var job: LayerJob?
        /// The planned layout of a quantized layer (nil for a copy or a fake-quant weight).
        package var layout: StoredLayerLayout?
        package var entries: [SafeTensorsWriter.Planned]
        package var layer: (key: String, value: JSONValue)?
        package var bytes: Int { entries.reduce(0) { $0 + $1.byteCount } }
        /// Logical weights to quantize (0 for a copy): with a copy's bytes, what parts are balanced by.
        package var work: Int { job == nil ? 0 : tensor.info.elementCount }
    }

    /// One output file: a shard of a folder, or the single file.
    package struct File {
        package var name: String
        package var units: Range<Int>
        package var header: [UInt8]
        package var size: Int
        /// Absolute offset of each entry's data, by tensor name.
        package var offsets: [String: Int]
        package var entryCount: Int
        /// The fingerprint recorded in the header (inputs, jobs, version).
        package var fingerprint: String
    }

    package var units: [Unit]
    package var files: [File]
    /// Per part, the range of `files` it writes (one part unless split).
    package var parts: [Range<Int>]
    package var fakeQuant: Bool
    /// The index (`model.safetensors.index.json`) of a folder checkpoint.
    package var index: String
    /// One value for the whole plan: every file's name, size and header.
    package var fingerprint: String
    /// The plan's jobs in words (format and options), for messages.
    package var summary: String

    /// The text a job's bytes depend on: its format and every option (the thread count aside,
    /// which does not change a byte). New options are included by reflection.
    package static func describe(_ job: LayerJob) -> String {
        var parts = [job.format.name]
        for child in Mirror(reflecting: job.options).children where child.label != "threads" {
            parts.append("\(child.label ?? "?")=\(String(describing: child.value))")
        }
        return parts.joined(separator: " ")
    }

    /// The identity of the inputs: per file its name, size and a content hash (whole for files
    /// up to 64 MiB, else the first and last MiB and 64 evenly spaced 64 KiB samples). Paths and
    /// modification times are left out on purpose: a split run's machines see the same files
    /// under other paths, and copies get new times.
    package static func inputFingerprint(_ paths: [String]) throws -> String {
        var h = FNV64()
        for path in paths where !isDirectory(path) {
            // Read, not mapped: a file that shrinks meanwhile is the model reader's to report.
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw FileFormatError(file: path, kind: .io, "cannot open: \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var info = stat()
            guard fstat(fd, &info) == 0 else { throw FileFormatError(file: path, kind: .io, "cannot stat") }
            let size = Int(info.st_size)
            func add(_ start: Int, _ count: Int) {
                var buffer = [UInt8](repeating: 0, count: max(0, count))
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(start)) }
                h.add(Array(buffer.prefix(max(0, n))))
            }
            h.add(lastComponentOf(path))
            h.add(String(size))
            let small = 64 << 20
            if size <= small {
                var start = 0
                while start < size {
                    add(start, min(8 << 20, size - start))
                    start += 8 << 20
                }
            } else {
                let mib = 1 << 20
                add(0, mib)
                let sample = 64 << 10
                for k in 0..<64 { add((size - sample) / 63 * k, sample) }
                add(size - mib, mib)
            }
        }
        return h.hex
    }

    static func lastComponentOf(_ path: String) -> String {
        String(path[(path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex)...])
    }

    /// What copying one byte of an unquantized tensor costs, in quantized weights' time: 0.1.
    /// Measured on the 1B-shaped bf16 folder (2 threads, any4 default, bench/quantize-at-scale.sh):
    /// split by weights alone, the part that also copied the 525 MB embedding took 1.65 s longer
    /// than the other two (11.9 s against 10.2 and 10.3 s for 323 M weights each), so a copied byte
    /// (read, written, fsynced: 3.1 ns) costs about a tenth of a quantized weight (31.7 ns).
    package static let copiedByteCost = 0.1

    /// Splits units into `n` contiguous parts balanced by cost: `work` quantized weights (0 for a
    /// copy) plus ``copiedByteCost`` per byte of `copied` (each part starts at a quantized layer;
    /// the copies before a part's first layer go with it). Nil when fewer layers than parts.
    package static func partition(_ work: [Int], copied: [Int] = [], parts n: Int) -> [Range<Int>]? {
        let jobs = work.indices.filter { work[$0] > 0 }
        guard n >= 1, jobs.count >= n else { return nil }
        // prefix[u] = the cost of units 0..<u.
        var prefix = [0.0]
        for u in work.indices { prefix.append(prefix[u] + Double(work[u]) + (u < copied.count ? copiedByteCost * Double(copied[u]) : 0)) }
        let total = prefix[work.count]
        var cuts = [0]  // index into jobs where each part starts
        for k in 1..<n {
            let target = total * Double(k) / Double(n)
            let low = cuts.last! + 1
            let high = jobs.count - (n - k)
            var best = low
            for c in low...high where abs(prefix[jobs[c]] - target) < abs(prefix[jobs[best]] - target) { best = c }
            cuts.append(best)
        }
        var starts = cuts.map { $0 == 0 ? 0 : jobs[$0] }
        starts.append(work.count)
        return (0..<n).map { starts[$0]..<starts[$0 + 1] }
    }

    /// Lays out the output of `jobs` on `model`.
    ///
    /// - Parameters:
    ///   - single: one file (a `.safetensors` output) instead of shards of `maxShardSize`.
    ///   - partCount: parts of a split run (1: not split); shards never cross a part's boundary.
    ///   - inputs: the fingerprint of the inputs (``inputFingerprint(_:)``).
    package static func make(
        model: Model, jobs: [LayerJob], fakeQuant: Bool, single: Bool, maxShardSize: Int, partCount: Int,
        inputs: String
    ) throws -> CheckpointPlan {
        var byName: [String: LayerJob] = [:]
        for job in jobs { byName[job.tensor.name] = job }
        var units: [Unit] = []
        for tensor in model.tensors {
            if let job = byName[tensor.name] {
                if fakeQuant {
                    let target: DType =
                        if case .plain(let d) = tensor.info.encoding, d.isFloatingPoint, d != .f64 { d } else {
                            ModelQuantization.sourceDType(of: tensor)
                        }
                    let bytes = try Sizes.product([tensor.info.elementCount, target.size], "\(tensor.name): fake-quant bytes")
                    let entry = SafeTensorsWriter.Planned(name: tensor.name, dtype: target, shape: tensor.shape, byteCount: bytes) {
                        throw QuantizationError.badOption("\(tensor.name): written from its quantized matrix")
                    }
                    units.append(Unit(tensor: tensor, job: job, layout: nil, entries: [entry], layer: nil))
                    continue
                }
                let layout = try StoredLayerLayout(job: job)
                let entries = layout.parts(base: QuantizedCheckpoint.baseName(tensor.name)).map { p in
                    SafeTensorsWriter.Planned(name: p.name, dtype: p.dtype, shape: p.shape, byteCount: p.byteCount) {
                        throw QuantizationError.badOption("\(p.name): written from its quantized matrix")
                    }
                }
                units.append(Unit(tensor: tensor, job: job, layout: layout, entries: entries, layer: (tensor.name, layout.json)))
                continue
            }
            if case .quantized(let layout) = tensor.info.encoding {
                // A layer of a checkpoint given as the model: its parts byte for byte, its description kept.
                let entries = QuantizedCheckpoint.keptParts(of: tensor, layout, in: model)
                units.append(Unit(tensor: tensor, job: nil, layout: nil, entries: entries, layer: (tensor.name, layout.metadata)))
                continue
            }
            units.append(
                Unit(
                    tensor: tensor, job: nil, layout: nil, entries: [try QuantizedCheckpoint.copied(tensor, of: model)],
                    layer: nil))
        }

        // File-level metadata: the source's (less any4. keys), the version, the one format name.
        let allLayers = units.compactMap(\.layer)
        var base: [String: String] = [:]
        if model.format != .gguf {
            for (key, value) in model.metadata where !key.hasPrefix("any4.") && base[key] == nil { base[key] = value }
        }
        base["any4.version"] = QuantizedCheckpoint.writtenVersion
        base["any4.format"] = QuantizedCheckpoint.formatName(Set(jobs.map(\.format.name)), kept: allLayers)
        base["any4.fake_quant"] = fakeQuant ? "1" : "0"
        base["any4.inputs"] = inputs
        base["any4.fingerprint"] = String(repeating: "0", count: 16)

        guard let partRanges = partition(units.map(\.work), copied: units.map { $0.job == nil ? $0.bytes : 0 }, parts: partCount) else {
            throw QuantizationError.badOption(
                "cannot split \(units.filter { $0.job != nil }.count) quantized layers into \(partCount) parts")
        }
        let limit = single ? Int.max / 4 : maxShardSize
        guard limit > 0 else { throw QuantizationError.badOption("the largest shard size must be positive, got \(limit)") }
        var fileUnits: [Range<Int>] = []
        var parts: [Range<Int>] = []
        for range in partRanges {
            let packing = units[range].map { QuantizedCheckpoint.Unit(entries: $0.entries, layer: $0.layer) }
            let shards = try QuantizedCheckpoint.shards(packing, limit: limit, baseMetadata: base, fakeQuant: fakeQuant)
            let first = fileUnits.count
            var start = range.lowerBound
            for shard in shards {
                fileUnits.append(start..<(start + shard.units.count))
                start += shard.units.count
            }
            parts.append(first..<fileUnits.count)
        }
        var files: [File] = []
        var planHash = FNV64()
        for (k, range) in fileUnits.enumerated() {
            let name = single ? "model.safetensors" : QuantizedCheckpoint.shardName(k, of: fileUnits.count)
            let fingerprint = fileFingerprint(units[range], inputs: inputs, fakeQuant: fakeQuant)
            var m = base
            m["any4.fingerprint"] = fingerprint
            let layers = units[range].compactMap(\.layer)
            if !fakeQuant || !layers.isEmpty { m["any4.layers"] = JSONValue.object(layers).serialized }
            let entries = units[range].flatMap(\.entries)
            let (prefix, ordered) = try SafeTensorsWriter.plannedLayout(entries, metadata: m, file: name)
            var offsets: [String: Int] = [:]
            var position = prefix.count
            for e in ordered {
                offsets[e.name] = position
                position += e.byteCount
            }
            files.append(
                File(
                    name: name, units: range, header: prefix, size: position, offsets: offsets, entryCount: entries.count,
                    fingerprint: fingerprint))
            planHash.add(name)
            planHash.add(String(position))
            planHash.add(prefix)
        }
        planHash.add(String(partCount))

        var weightMap: [(key: String, value: JSONValue)] = []
        for file in files {
            for u in units[file.units] { for e in u.entries { weightMap.append((e.name, .string(file.name))) } }
        }
        weightMap.sort { $0.key < $1.key }
        let dataSize = units.reduce(0) { $0 + $1.bytes }
        let index =
            JSONValue.object([
                (
                    "metadata",
                    .object([("total_size", JSONValue(dataSize)), ("any4.version", .string(QuantizedCheckpoint.writtenVersion))])
                ),
                ("weight_map", .object(weightMap))
            ]).serialized + "\n"
        return CheckpointPlan(
            units: units, files: files, parts: parts, fakeQuant: fakeQuant, index: index, fingerprint: planHash.hex,
            summary: summary(jobs))
    }

    /// The jobs in words, for messages.
    static func summary(_ jobs: [LayerJob]) -> String {
        let described = Set(jobs.map(describe)).sorted()
        return described.count == 1
            ? described[0] : "\(described.count) kinds of job: " + described.prefix(3).joined(separator: "; ")
    }

    /// The fingerprint a file of `units` records: the version, the inputs, and every unit's job
    /// and layer description.
    static func fileFingerprint(_ units: ArraySlice<Unit>, inputs: String, fakeQuant: Bool) -> String {
        var fingerprint = FNV64()
        fingerprint.add(QuantizedCheckpoint.writtenVersion)
        fingerprint.add(inputs)
        fingerprint.add(fakeQuant ? "fake-quant" : "quantized")
        for u in units { fingerprint.add(u.tensor.name + ": " + (u.job.map(describe) ?? "copy") + " " + (u.layer?.1.serialized ?? "")) }
        return fingerprint.hex
    }

    /// Lays out a `.gguf` output of `jobs` on a GGUF `model` (``QuantizedCheckpoint/ggufLayout``):
    /// one file, its header (every source key/value, then this checkpoint's; the tensor infos with
    /// their offsets) fixed before any layer is quantized, so that the streaming writer puts each
    /// layer at its offset as it is done. Byte for byte the file the in-memory writer makes. Not
    /// split, and not resumed (the header records no inputs).
    package static func makeGGUF(model: Model, jobs: [LayerJob], fakeQuant: Bool, inputs: String) throws -> CheckpointPlan {
        var byName: [String: LayerJob] = [:]
        for job in jobs { byName[job.tensor.name] = job }
        var layouts: [String: StoredLayerLayout] = [:]
        func planned(_ name: String, _ dtype: DType, _ shape: [Int], _ byteCount: Int) -> SafeTensorsWriter.Planned {
            SafeTensorsWriter.Planned(name: name, dtype: dtype, shape: shape, byteCount: byteCount) {
                throw QuantizationError.badOption("\(name): written from its quantized matrix")
            }
        }
        let name = "model.gguf"
        let (pieces, metadata) = try QuantizedCheckpoint.ggufLayout(
            model: model, replaced: Set(byName.keys), formats: Set(jobs.map(\.format.name)), fakeQuant: fakeQuant, file: name
        ) { weight, shape, target in
            let job = byName[weight]!
            if let target {
                let bytes = try Sizes.product([job.tensor.info.elementCount, target.size], "\(weight): fake-quant bytes")
                return ([planned(weight, target, shape, bytes)], nil)
            }
            let layout = try StoredLayerLayout(job: job)
            layouts[weight] = layout
            let parts = layout.parts(base: QuantizedCheckpoint.baseName(weight)).map { planned($0.name, $0.dtype, $0.shape, $0.byteCount) }
            return (parts, layout.json)
        }
        var tensorOf: [String: ModelTensor] = [:]
        for tensor in model.tensors { tensorOf[tensor.name] = tensor }
        let units: [Unit] = try pieces.map { piece in
            guard let tensor = tensorOf[piece.source] else {
                throw FileFormatError(file: model.path, kind: .badHeader, "a tensor that belongs to no tensor of the model", subject: piece.source)
            }
            return Unit(
                tensor: tensor, job: piece.weight.flatMap { byName[$0] }, layout: piece.weight.flatMap { layouts[$0] }, entries: piece.entries,
                layer: nil)
        }
        let tensors = pieces.flatMap(\.tensors)
        let (header, dataOffsets, dataSize) = try GGUFWriter.layout(metadata: metadata, tensors: tensors, file: name)
        var offsets: [String: Int] = [:]
        for (t, offset) in zip(tensors, dataOffsets) { offsets[t.name] = header.count + offset }
        let file = File(
            name: name, units: 0..<units.count, header: header, size: header.count + dataSize, offsets: offsets,
            entryCount: tensors.count, fingerprint: fileFingerprint(units[...], inputs: inputs, fakeQuant: fakeQuant))
        var planHash = FNV64()
        planHash.add(name)
        planHash.add(String(file.size))
        planHash.add(header)
        planHash.add("1")
        return CheckpointPlan(
            units: units, files: [file], parts: [0..<1], fakeQuant: fakeQuant, index: "", fingerprint: planHash.hex,
            summary: summary(jobs))
    }

    /// The file each unit is in.
    package var fileOfUnit: [Int] {
        var out = [Int](repeating: 0, count: units.count)
        for (k, f) in files.enumerated() { for u in f.units { out[u] = k } }
        return out
    }
}
