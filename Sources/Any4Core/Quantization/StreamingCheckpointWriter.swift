#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writes the files of a ``CheckpointPlan`` as their layers are quantized, in any order: each file
/// is opened under a temporary name (`NAME.tmp-PID-RANDOM`) with its header written and its
/// size set, each tensor written at its planned offset, and once its last tensor is in, the file
/// is fsynced and renamed to its name. A file that is not complete is never under its name.
package final class StreamingCheckpointWriter {
    final class OpenFile {
        let fd: Int32
        let temporary: String
        var remaining: Int
        init(fd: Int32, temporary: String, remaining: Int) {
            self.fd = fd
            self.temporary = temporary
            self.remaining = remaining
        }
    }

    package let plan: CheckpointPlan
    package let folder: String
    let progress: Progress?
    let log: (String) -> Void
    let fileOfUnit: [Int]
    /// Files this run writes (the others are reused, or another part's).
    package let writing: Set<Int>
    var open: [Int: OpenFile] = [:]
    package private(set) var completed = 0
    /// Where a single-file output goes instead of `folder/NAME` (nil: in the folder).
    let singlePath: String?

    /// Test hook, not for users: `ANY4_TEST_KILL_AFTER_SHARDS=N` sends this process SIGKILL once
    /// it has completed N files, so that a test can interrupt a run as a crash would.
    static let killAfter: Int? = getenv("ANY4_TEST_KILL_AFTER_SHARDS").flatMap { Int(String(cString: $0)) }

    package init(
        plan: CheckpointPlan, folder: String, writing: Set<Int>, singlePath: String? = nil, progress: Progress?,
        log: @escaping (String) -> Void
    ) {
        self.plan = plan
        self.folder = folder
        self.writing = writing
        self.singlePath = singlePath
        self.progress = progress
        self.log = log
        fileOfUnit = plan.fileOfUnit
    }

    deinit { abandon() }

    package func path(ofFile k: Int) -> String { singlePath ?? (folder + "/" + plan.files[k].name) }

    /// Whether unit `u` is written by this run.
    package func writes(unit u: Int) -> Bool { writing.contains(fileOfUnit[u]) }

    /// Writes unit `u`: a quantized layer from `matrix` (checked against its plan), or a copy
    /// from the source when it has no job.
    package func put(unit u: Int, matrix: QuantizedMatrix?) throws {
        let k = fileOfUnit[u]
        guard writing.contains(k) else { return }
        let file = plan.files[k]
        let unit = plan.units[u]
        let handle = try openFile(k)
        let destination = path(ofFile: k)
        if unit.job != nil {
            guard let q = matrix else {
                throw FileFormatError(file: destination, kind: .badShape, "no quantized matrix for a planned layer", subject: unit.tensor.name)
            }
            if plan.fakeQuant && unit.layout == nil {
                let entry = unit.entries[0]
                let bytes = SafeTensorsWriter.Entry(name: entry.name, shape: entry.shape, floats: q.dequantized(), as: entry.dtype).bytes
                try write(bytes, file: k, handle: handle, entry: entry.name, expecting: entry.byteCount)
            } else {
                let made = StoredLayerLayout(q)
                if let warning = q.storageFallback, var planned = unit.layout, made != planned {
                    planned.storage = made.storage
                    if planned == made { throw StorageFallback(tensor: unit.tensor.name, storage: made.storage, warning: warning) }
                }
                guard made == unit.layout else {
                    throw FileFormatError(
                        file: destination, kind: .badShape,
                        "the quantized layer does not match its plan (\(made.json.serialized) against \(unit.layout?.json.serialized ?? "none"))",
                        subject: unit.tensor.name)
                }
                for part in QuantizedCheckpoint.quantizedParts(q, base: QuantizedCheckpoint.baseName(unit.tensor.name)) {
                    guard let planned = unit.entries.first(where: { $0.name == part.name }), planned.dtype == part.dtype,
                        planned.shape == part.shape, planned.byteCount == part.byteCount
                    else {
                        throw FileFormatError(file: destination, kind: .badShape, "a part that is not in the plan", subject: part.name)
                    }
                    try write(part.make(), file: k, handle: handle, entry: part.name, expecting: part.byteCount)
                }
            }
        } else {
            for entry in unit.entries {
                switch try entry.payload() {
                case .bytes(let bytes): try write(bytes, file: k, handle: handle, entry: entry.name, expecting: entry.byteCount)
                case .region(let store, let range):
                    try write(
                        UnsafeRawBufferPointer(rebasing: store.bytes[range]), file: k, handle: handle, entry: entry.name,
                        expecting: entry.byteCount)
                }
            }
        }
        _ = file
        handle.remaining -= unit.entries.count
        if handle.remaining == 0 { try finish(k, handle) }
    }

    func openFile(_ k: Int) throws -> OpenFile {
        if let handle = open[k] { return handle }
        let file = plan.files[k]
        let destination = path(ofFile: k)
        AtomicFileWriter.removeStaleTemporaries(of: destination)
        let temporary = destination + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw FileFormatError(file: destination, kind: .io, "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        let handle = OpenFile(fd: fd, temporary: temporary, remaining: file.entryCount)
        open[k] = handle
        guard ftruncate(fd, off_t(file.size)) == 0 else {
            throw FileFormatError(file: destination, kind: .io, "cannot size \(temporary): \(String(cString: strerror(errno)))")
        }
        try file.header.withUnsafeBytes { try pwriteAll(fd, $0, at: 0, file: destination) }
        if handle.remaining == 0 { try finish(k, handle) }
        return handle
    }

    func write(_ bytes: [UInt8], file k: Int, handle: OpenFile, entry: String, expecting: Int) throws {
        try bytes.withUnsafeBytes { try write($0, file: k, handle: handle, entry: entry, expecting: expecting) }
    }

    func write(_ raw: UnsafeRawBufferPointer, file k: Int, handle: OpenFile, entry: String, expecting: Int) throws {
        if AtomicFileWriter.testDelayMicroseconds > 0 { usleep(AtomicFileWriter.testDelayMicroseconds) }
        let destination = path(ofFile: k)
        guard raw.count == expecting, let offset = plan.files[k].offsets[entry] else {
            throw FileFormatError(file: destination, kind: .badShape, "made \(raw.count) bytes, expected \(expecting)", subject: entry)
        }
        let piece = 16 << 20
        var start = 0
        while start < raw.count {
            if progress?.isCancelled == true { throw QuantizationError.cancelled }
            let end = min(start + piece, raw.count)
            try pwriteAll(handle.fd, UnsafeRawBufferPointer(rebasing: raw[start..<end]), at: offset + start, file: destination)
            start = end
        }
    }

    func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, file: String) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileFormatError(file: file, kind: .io, "write failed: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    func finish(_ k: Int, _ handle: OpenFile) throws {
        let destination = path(ofFile: k)
        guard fsync(handle.fd) == 0 else {
            throw FileFormatError(file: destination, kind: .io, "fsync failed: \(String(cString: strerror(errno)))")
        }
        if progress?.isCancelled == true { throw QuantizationError.cancelled }
        close(handle.fd)
        open[k] = nil
        guard rename(handle.temporary, destination) == 0 else {
            unlink(handle.temporary)
            throw FileFormatError(file: destination, kind: .io, "cannot rename into place: \(String(cString: strerror(errno)))")
        }
        completed += 1
        if singlePath == nil { log("wrote shard \(k + 1)/\(plan.files.count) \(plan.files[k].name)") }
        if let n = Self.killAfter, completed >= n { kill(getpid(), SIGKILL) }
    }

    /// Closes and removes every file not complete.
    package func abandon() {
        for (_, handle) in open {
            close(handle.fd)
            unlink(handle.temporary)
        }
        open = [:]
    }

    /// Files still open (planned tensors not written).
    package var unfinished: [String] { open.keys.sorted().map { plan.files[$0].name } }
}

/// A layer stored in another dtype than planned (the default 16-bit tables could not hold it):
/// the plan must be made again with the layer pinned to `storage`.
package struct StorageFallback: Error {
    package var tensor: String
    package var storage: DType
    package var warning: String
}

// MARK: - Work folder, parts, merge

extension CheckpointPlan {
    /// The folder a folder checkpoint is built in: `OUT.partial` beside `OUT`.
    package static func workFolder(for out: String) -> String { QuantizedCheckpoint.folderPath(out) + ".partial" }

    /// The name of part `i`'s manifest (parts numbered from 0, as `--shard I/N`).
    package static func manifestName(part i: Int, of n: Int) -> String { "part-\(i)-of-\(n).json" }

    /// Whether file `k` is complete in `folder`: its size and header are the plan's (the header
    /// holds the fingerprint of its inputs and jobs, and every tensor's offset).
    package func isComplete(_ k: Int, in folder: String) -> Bool {
        let file = files[k]
        let path = folder + "/" + file.name
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, Int(info.st_size) == file.size else { return false }
        guard let store = try? ByteStore(mapping: path), store.count >= file.header.count else { return false }
        return file.header.withUnsafeBytes { planned in
            memcmp(planned.baseAddress!, store.bytes.baseAddress!, planned.count) == 0
        }
    }

    /// The manifest of part `i`: the plan's fingerprint, its files (name, size, header hash),
    /// and the whole index, so that a merge needs nothing but the parts.
    package func manifest(part i: Int) -> String {
        let shards: [JSONValue] = files[parts[i]].map { f in
            var h = FNV64()
            h.add(f.header)
            return .object([("name", .string(f.name)), ("size", JSONValue(f.size)), ("header", .string(h.hex))])
        }
        return JSONValue.object([
            ("any4.version", .string(QuantizedCheckpoint.writtenVersion)),
            ("plan", .string(fingerprint)), ("part", JSONValue(i)), ("parts", JSONValue(parts.count)),
            ("jobs", .string(summary)), ("files", JSONValue(files.count)),
            ("shards", .array(shards)), ("index", .string(index))
        ]).serialized + "\n"
    }

    /// Makes the work folder (refusing a path that is not a folder); with `force`, removes the
    /// files a previous run left in it (shards, manifests, temporaries: names of our shapes only).
    package static func prepareWorkFolder(_ folder: String, force: Bool, inputs: [String] = []) throws {
        for input in inputs {
            guard let real = OutputGuard.realPath(input), let target = OutputGuard.realPath(folder) else { continue }
            if real == target || real.hasPrefix(target + "/") { throw OutputGuard.refusal(folder, input) }
        }
        var info = stat()
        if lstat(folder, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw FileFormatError(file: folder, kind: .io, "the work folder exists and is not a folder; move it away")
            }
            if force { for name in listDirectory(folder) where isOurs(name) { unlink(folder + "/" + name) } }
        } else {
            // Another part may make it at the same moment.
            guard mkdir(folder, 0o755) == 0 || (errno == EEXIST && isDirectory(folder)) else {
                throw FileFormatError(file: folder, kind: .io, "cannot create the work folder: \(String(cString: strerror(errno)))")
            }
        }
    }

    /// A file name this writer makes in a work folder.
    static func isOurs(_ name: String) -> Bool {
        (name.hasPrefix("model-") && name.contains(".safetensors")) || (name.hasPrefix("part-") && name.contains(".json"))
            || QuantizedCheckpoint.companionFiles.contains(where: { name == $0 || name.hasPrefix($0 + ".tmp-") })
            || name.hasPrefix(QuantizedCheckpoint.indexName)
    }

    /// Copies the source's config and tokenizer files into `folder` (each atomically).
    package static func copyCompanions(of model: Model, into folder: String) throws {
        let source: String? =
            switch model.format {
            case .huggingFace: model.huggingFace?.path ?? model.path
            case .safetensors: parentDirectory(model.path)
            default: nil
            }
        guard let source else { return }
        for name in QuantizedCheckpoint.companionFiles where fileExists(source + "/" + name) {
            let bytes = try ByteStore(mapping: source + "/" + name)
            let writer = try AtomicFileWriter(path: folder + "/" + name)
            try writer.write(bytes.bytes)
            try writer.commit()
        }
    }

    /// Finishes a work folder whose shards are all complete: removes every other file of ours
    /// (manifests, stale shards of another plan, temporaries), writes the index, and renames the
    /// folder to `out` (replacing an empty folder or a checkpoint folder of ours there).
    package static func finish(folder: String, index: String, shards: Set<String>, out: String) throws {
        for name in listDirectory(folder) where isOurs(name) && !shards.contains(name) {
            if !QuantizedCheckpoint.companionFiles.contains(name) { unlink(folder + "/" + name) }
        }
        for name in listDirectory(folder) where QuantizedCheckpoint.companionFiles.contains(where: { name.hasPrefix($0 + ".tmp-") }) {
            unlink(folder + "/" + name)
        }
        let writer = try AtomicFileWriter(path: folder + "/" + QuantizedCheckpoint.indexName)
        try writer.write(index)
        try writer.commit()
        try QuantizedCheckpoint.install(folder, at: QuantizedCheckpoint.folderPath(out))
    }
}

/// Merging the parts of a split run.
package enum CheckpointMerge {
    package struct Part {
        var folder: String
        var file: String
        var part: Int
        var parts: Int
        var plan: String
        var jobs: String
        var shards: [(name: String, size: Int, header: String)]
        var index: String
    }

    static func read(_ folder: String, _ name: String) throws -> Part {
        let path = folder + "/" + name
        let json = try readJSONFile(path)
        func fail(_ what: String) -> FileFormatError { FileFormatError(file: path, kind: .badHeader, "not a part manifest: \(what)") }
        guard let part = json["part"]?.int, let parts = json["parts"]?.int, let plan = json["plan"]?.string,
            let index = json["index"]?.string, let list = json["shards"]?.array
        else { throw fail("part, parts, plan, index or shards missing") }
        var shards: [(name: String, size: Int, header: String)] = []
        for s in list {
            guard let n = s["name"]?.string, let size = s["size"]?.int, let h = s["header"]?.string, !n.contains("/") else {
                throw fail("a shard entry without name, size or header")
            }
            shards.append((n, size, h))
        }
        return Part(
            folder: folder, file: path, part: part, parts: parts, plan: plan, jobs: json["jobs"]?.string ?? "?", shards: shards,
            index: index)
    }

    /// Checks that the parts in `folders` (their `part-I-of-N.json` manifests) are all there, made
    /// from the same plan, and complete (every shard of the right size and header), then gathers
    /// them in `OUT.partial` (hard links, or copies across file systems), writes the index and
    /// renames it to `out`. With one folder `X.partial` and no `out`, the output is `X`.
    /// Returns the output path.
    package static func merge(_ folders: [String], out: String?, log: (String) -> Void) throws -> String {
        let folders = folders.map(QuantizedCheckpoint.folderPath)
        guard !folders.isEmpty else { throw QuantizationError.badOption("give the folder(s) the parts were written to") }
        let out: String =
            if let out { QuantizedCheckpoint.folderPath(out) } else if folders.count == 1, folders[0].hasSuffix(".partial") {
                String(folders[0].dropLast(".partial".count))
            } else {
                throw QuantizationError.badOption("give --out: the parts are not in one OUT.partial folder")
            }
        var parts: [Part] = []
        for folder in folders {
            guard isDirectory(folder) else { throw FileFormatError(file: folder, kind: .io, "not a folder") }
            for name in listDirectory(folder).sorted() where name.hasPrefix("part-") && name.hasSuffix(".json") {
                parts.append(try read(folder, name))
            }
        }
        guard let first = parts.first else {
            throw FileFormatError(file: folders[0], kind: .badHeader, "no part manifest (part-I-of-N.json) here: no part has finished")
        }
        var byIndex: [Int: Part] = [:]
        for p in parts {
            guard p.parts == first.parts, p.plan == first.plan else {
                throw FileFormatError(
                    file: p.file, kind: .badHeader,
                    "this part was made with other inputs, options or split (plan \(p.plan), \(p.parts) parts: \(p.jobs)) "
                        + "than \(first.file) (plan \(first.plan), \(first.parts) parts: \(first.jobs)); redo it with the same command")
            }
            guard (0..<p.parts).contains(p.part) else { throw FileFormatError(file: p.file, kind: .badHeader, "part \(p.part) of \(p.parts)") }
            if byIndex[p.part] == nil { byIndex[p.part] = p }
        }
        let missing = (0..<first.parts).filter { byIndex[$0] == nil }
        guard missing.isEmpty else {
            throw FileFormatError(
                file: folders.joined(separator: ", "), kind: .badHeader,
                "missing part\(missing.count == 1 ? "" : "s") \(missing.map { "\($0)/\(first.parts)" }.joined(separator: ", ")) "
                    + "(no \(missing.map { CheckpointPlan.manifestName(part: $0, of: first.parts) }.joined(separator: ", "))): "
                    + "run quantize --shard for \(missing.count == 1 ? "it" : "them") first")
        }
        // Every shard complete: its size and its header as the part recorded.
        var shardNames = Set<String>()
        for i in 0..<first.parts {
            let p = byIndex[i]!
            for s in p.shards {
                let path = p.folder + "/" + s.name
                var info = stat()
                guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
                    throw FileFormatError(file: path, kind: .io, "shard of part \(i)/\(first.parts) missing")
                }
                guard Int(info.st_size) == s.size else {
                    throw FileFormatError(
                        file: path, kind: .truncated,
                        "shard of part \(i)/\(first.parts) is \(info.st_size) bytes, expected \(s.size) (truncated or damaged; redo the part)")
                }
                let store = try ByteStore(mapping: path)
                guard store.count >= 8 else { throw FileFormatError(file: path, kind: .truncated, "no header") }
                let length = store.bytes.loadUnaligned(as: UInt64.self).littleEndian
                guard length < UInt64(store.count - 8) else { throw FileFormatError(file: path, kind: .truncated, "header past the end") }
                var h = FNV64()
                h.add(UnsafeRawBufferPointer(rebasing: store.bytes[0..<(8 + Int(length))]))
                guard h.hex == s.header else {
                    throw FileFormatError(file: path, kind: .badHeader, "shard header differs from the one part \(i)/\(first.parts) recorded")
                }
                shardNames.insert(s.name)
            }
        }
        let index = try JSONParser.parse(first.index, file: first.file)
        for (_, value) in index["weight_map"]?.members ?? [] {
            guard let name = value.string, shardNames.contains(name) else {
                throw FileFormatError(file: first.file, kind: .badHeader, "the index names a shard no part wrote: \(value.string ?? "?")")
            }
        }
        // Gather into the work folder of `out`.
        let work = CheckpointPlan.workFolder(for: out)
        try QuantizedCheckpoint.checkOutput(out, container: .folder, inputs: [])
        try CheckpointPlan.prepareWorkFolder(work, force: false)
        let realWork = OutputGuard.realPath(work)
        for i in 0..<first.parts {
            let p = byIndex[i]!
            if OutputGuard.realPath(p.folder) == realWork { continue }
            for s in p.shards { try place(p.folder + "/" + s.name, in: work + "/" + s.name) }
            for name in QuantizedCheckpoint.companionFiles where fileExists(p.folder + "/" + name) && !fileExists(work + "/" + name) {
                try place(p.folder + "/" + name, in: work + "/" + name)
            }
        }
        log("merging \(first.parts) parts, \(shardNames.count) shards into \(out)")
        try CheckpointPlan.finish(folder: work, index: first.index, shards: shardNames, out: out)
        return out
    }

    /// A hard link of `source` at `destination` (replacing it), or a copy when linking fails.
    static func place(_ source: String, in destination: String) throws {
        unlink(destination)
        if link(source, destination) == 0 { return }
        let bytes = try ByteStore(mapping: source)
        let writer = try AtomicFileWriter(path: destination)
        try writer.write(bytes.bytes)
        try writer.commit()
    }
}
