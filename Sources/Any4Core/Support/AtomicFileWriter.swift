#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writes a file so that readers see either the old file or the complete new one, never a part.
///
/// Bytes go to a temporary file beside the destination, `DEST.tmp-PID-RANDOM`, which is flushed
/// to disk and renamed over the destination only after the last byte is written. Any error, and a
/// cancellation of the job's ``Progress`` (SIGINT, SIGTERM or SIGHUP in the CLI), removes the
/// temporary file and leaves the destination as it was.
///
/// A process killed outright (SIGKILL, a crash) cannot remove its temporary file; the next writer
/// of the same destination does: it removes every `DEST.tmp-PID-RANDOM` whose PID is no live
/// process, and never touches one of a live process (nor any other file).
public final class AtomicFileWriter {
    public let path: String
    private let temporaryPath: String
    private let progress: Progress?
    private var fd: Int32
    private var finished = false
    private var buffer: [UInt8] = []
    private let bufferLimit = 1 << 20
    /// Large writes go out in pieces of this size, cancellation checked between them.
    private let chunkLimit = 8 << 20

    /// Test hook, not for users: `ANY4_TEST_WRITE_DELAY_MS=N` sleeps N ms (at most 1000) before each
    /// ``write(_:)-([UInt8])`` so that a test can deliver a signal while an output is being written.
    /// It only slows writing down; unset (the normal case) it costs nothing.
    static let testDelayMicroseconds: UInt32 = {
        guard let text = getenv("ANY4_TEST_WRITE_DELAY_MS").map({ String(cString: $0) }), let ms = UInt32(text) else { return 0 }
        return min(ms, 1000) * 1000
    }()

    /// Opens the temporary file for `path`, after removing stale ones of dead processes.
    ///
    /// - Parameter progress: the job this write belongs to; once it is cancelled, the next
    ///   write or the commit throws ``QuantizationError/cancelled`` and nothing is written.
    public init(path: String, progress: Progress? = nil) throws {
        self.path = path
        self.progress = progress
        Self.removeStaleTemporaries(of: path)
        temporaryPath = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw FileFormatError(file: path, kind: .io, "cannot create \(temporaryPath): \(String(cString: strerror(errno)))")
        }
        buffer.reserveCapacity(bufferLimit)
    }

    deinit {
        if !finished { abandon() }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        if Self.testDelayMicroseconds > 0 { usleep(Self.testDelayMicroseconds) }
        try checkCancelled()
        if buffer.count + bytes.count > bufferLimit { try flushBuffer() }
        if bytes.count >= bufferLimit {
            try writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    public func write(_ text: String) throws {
        try write(Array(text.utf8))
    }

    /// Throws ``QuantizationError/cancelled`` (after discarding the temporary file) once the
    /// job is cancelled.
    private func checkCancelled() throws {
        if progress?.isCancelled == true {
            abandon()
            throw QuantizationError.cancelled
        }
    }

    private func flushBuffer() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            try checkCancelled()
            let n = Glibc.write(fd, bytes.baseAddress! + done, min(bytes.count - done, chunkLimit))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileFormatError(file: path, kind: .io, "write failed: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    /// Flushes, syncs and renames the temporary file over `path`.
    public func commit() throws {
        do {
            try flushBuffer()
            guard fsync(fd) == 0 else {
                throw FileFormatError(file: path, kind: .io, "fsync failed: \(String(cString: strerror(errno)))")
            }
            // The last moment a cancellation can still leave no output.
            try checkCancelled()
            close(fd)
            fd = -1
            guard rename(temporaryPath, path) == 0 else {
                throw FileFormatError(file: path, kind: .io, "cannot rename into place: \(String(cString: strerror(errno)))")
            }
            finished = true
        } catch {
            abandon()
            throw error
        }
    }

    /// Discards the temporary file; the destination is untouched.
    public func abandon() {
        guard !finished else { return }
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        unlink(temporaryPath)
        finished = true
    }

    /// Removes the temporary files `path.tmp-PID-RANDOM` left by writers that died (their PID is no
    /// live process: `kill(pid, 0)` fails with ESRCH). A live process's file, a name of another
    /// shape, and anything that is not a regular file are left alone.
    ///
    /// A PID is only meaningful in this PID namespace: a writer in another container sharing the
    /// folder looks dead from here. Two containers writing the same destination at the same time
    /// is not supported.
    static func removeStaleTemporaries(of path: String) {
        let folder = parentDirectory(path)
        let prefix = String(path[(path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex)...]) + ".tmp-"
        guard prefix.count > 5 else { return }
        for name in listDirectory(folder) where name.hasPrefix(prefix) {
            let parts = name.dropFirst(prefix.count).split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }),
                let pid = Int32(parts[0]), pid > 0, UInt32(parts[1]) != nil
            else { continue }
            guard kill(pid, 0) != 0 && errno == ESRCH else { continue }
            let stale = folder + "/" + name
            var info = stat()
            guard lstat(stale, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
            unlink(stale)
        }
    }
}
