#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// Small file-system helpers (stat, readdir), shared by the readers, the writers and the GPU
// libraries' search.

/// Whether `path` names something that is not a directory. A FIFO, socket or device counts, so
/// that a reader which then opens it reports what it is ("is a FIFO (named pipe), expected a
/// regular file") instead of the file being silently taken as absent.
package func fileExists(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) != S_IFDIR
}

/// Whether `path` names a directory.
package func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
}

/// The entries of a folder (empty when it cannot be read).
package func listDirectory(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}
