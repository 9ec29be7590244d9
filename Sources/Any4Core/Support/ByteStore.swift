import CAny4Support

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Read-only bytes of a file or an in-memory buffer, kept alive as long as any reader holds them.
///
/// Files are memory-mapped: opening a 20 GB checkpoint costs address space, not memory, and a
/// tensor's pages are read only when it is decoded.
public final class ByteStore: @unchecked Sendable {
    /// The name used in error messages (a path, or a label for in-memory data).
    public let name: String
    public let bytes: UnsafeRawBufferPointer
    private let mapping: UnsafeMutableRawPointer?
    private let owned: UnsafeMutableRawBufferPointer?
    /// The store whose bytes a prefix view shares.
    private let parent: ByteStore?
    /// The mapping's slot in the SIGBUS guard (-1: none).
    private let guardSlot: Int32

    /// Maps the file at `path` read-only.
    ///
    /// Only regular files are opened: a FIFO would block the open (or the read) until a writer
    /// comes, a character device such as /dev/zero has no end, and a socket cannot be mapped, so
    /// each of these is refused with what it is. The file is opened non-blocking and checked
    /// again on the open descriptor, so that a path swapped between the two checks is caught too.
    /// The mapping is registered with the SIGBUS guard (`any4_mapguard.h`): a file truncated
    /// while it is read ends the process with status 2 and a message naming it, not a crash.
    ///
    /// - Parameter copyOnWrite: map the pages writable but private, so that a test can mutate
    ///   the bytes in memory without touching the file.
    public init(mapping path: String, copyOnWrite: Bool = false) throws {
        name = path
        parent = nil
        try FileKind.requireRegular(path)
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            throw FileFormatError(file: path, kind: .io, "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw FileFormatError(file: path, kind: .io, "cannot stat: \(String(cString: strerror(errno)))")
        }
        if let kind = FileKind.nonRegular(info.st_mode) {
            throw FileFormatError(file: path, kind: .io, "is \(kind), expected a regular file")
        }
        let size = Int(info.st_size)
        owned = nil
        if size == 0 {
            mapping = nil
            guardSlot = -1
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let protection = copyOnWrite ? PROT_READ | PROT_WRITE : PROT_READ
        guard let base = mmap(nil, size, protection, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw FileFormatError(file: path, kind: .io, "cannot map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        mapping = base
        bytes = UnsafeRawBufferPointer(start: base, count: size)
        guardSlot = any4_mapguard_register(base, size, path)
        Self.pauseForTestsIfAsked(path)
    }

    /// A test hook: with `ANY4_TEST_PAUSE_AFTER_MAP=DIR`, each mapping writes `DIR/mapped` (holding
    /// the path) and waits, up to 60 s, until that file is removed — so that a test can truncate
    /// the file at a known point, between the mapping and the first read.
    private static func pauseForTestsIfAsked(_ path: String) {
        guard let value = getenv("ANY4_TEST_PAUSE_AFTER_MAP") else { return }
        let marker = String(cString: value) + "/mapped"
        let fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        _ = path.withCString { write(fd, $0, strlen($0)) }
        close(fd)
        var info = stat()
        var waited = 0
        while waited < 6000 && stat(marker, &info) == 0 {
            usleep(10_000)
            waited += 1
        }
    }

    /// Copies `data` into memory owned by this store (for tests and fuzzing).
    public init(copying data: some Collection<UInt8>, name: String) {
        self.name = name
        mapping = nil
        parent = nil
        guardSlot = -1
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(data.count, 1), alignment: 64)
        buffer.copyBytes(from: data)
        owned = buffer
        bytes = UnsafeRawBufferPointer(start: buffer.baseAddress, count: data.count)
    }

    private init(prefixOf parent: ByteStore, count: Int) {
        name = parent.name
        mapping = nil
        owned = nil
        guardSlot = -1
        self.parent = parent
        bytes = UnsafeRawBufferPointer(rebasing: parent.bytes[0..<count])
    }

    /// The first `count` bytes, sharing memory with this store (a truncated file, for tests).
    public func prefix(_ count: Int) -> ByteStore {
        ByteStore(prefixOf: self, count: Swift.min(Swift.max(count, 0), bytes.count))
    }

    deinit {
        if let mapping {
            any4_mapguard_unregister(guardSlot)
            munmap(mapping, bytes.count)
        }
        owned?.deallocate()
    }

    public var count: Int { bytes.count }
}

/// What kind of file system entry a path is, for the readers that accept only regular files.
public enum FileKind {
    /// A description of a non-regular file type ("a FIFO (named pipe)", ...), nil for a regular file.
    public static func nonRegular(_ mode: mode_t) -> String? {
        switch mode & S_IFMT {
        case S_IFREG: nil
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO (named pipe)"
        case S_IFSOCK: "a socket"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFLNK: "a symbolic link"
        default: "a special file"
        }
    }

    /// Throws `FileFormatError(.io)` "is a FIFO (named pipe), expected a regular file" (and so on)
    /// when `path` exists and is not a regular file; a missing path is left to the open that follows.
    public static func requireRegular(_ path: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else { return }
        if let kind = nonRegular(info.st_mode) {
            throw FileFormatError(file: path, kind: .io, "is \(kind), expected a regular file")
        }
    }
}
