#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Refuses an output path that would replace something the command reads.
///
/// Outputs are compared with inputs by identity, not by spelling: an existing output is the same
/// file as an input when both have the same device and inode (so `./d/../m.safetensors`, a symlink
/// and a hard link are all caught), and a new output is compared by its would-be real path (its
/// folder resolved with `realpath`). Every command that writes (quantize, calibrate, the TUI's
/// checkpoint and table export) calls ``check(_:inputs:)`` before any work.
public enum OutputGuard {
    /// Throws unless writing `output` leaves every path in `inputs` untouched.
    ///
    /// Also refused up front, before any work, rather than when the file is renamed into place:
    /// an empty path, an existing output that is not a regular file (a folder, a device, a FIFO),
    /// and an output whose folder does not exist.
    ///
    /// - Parameter inputs: every file and folder the command reads (``Model/inputFiles``, a
    ///   calibration file, a prompt file); paths that do not exist are ignored.
    public static func check(_ output: String, inputs: [String]) throws {
        guard !output.isEmpty else { throw FileFormatError(file: output, kind: .io, "the output path is empty") }
        var target = stat()
        if stat(output, &target) == 0 {
            for input in inputs {
                var info = stat()
                if stat(input, &info) == 0 && info.st_dev == target.st_dev && info.st_ino == target.st_ino {
                    throw refusal(output, input)
                }
            }
            guard (target.st_mode & S_IFMT) == S_IFREG else {
                throw FileFormatError(
                    file: output, kind: .io,
                    "cannot write the output here: it is \(FileKind.nonRegular(target.st_mode) ?? "a special file"), not a regular file")
            }
            return
        }
        var link = stat()
        if lstat(output, &link) == 0 { return }  // a dangling symlink: the rename replaces the link itself
        let folder = parentDirectory(output)
        guard let realFolder = realPath(folder), isDirectory(realFolder) else {
            throw FileFormatError(file: output, kind: .io, "cannot write the output: the folder \(folder) does not exist")
        }
        let name = String(output[(output.lastIndex(of: "/").map { output.index(after: $0) } ?? output.startIndex)...])
        let wouldBe = (realFolder == "/" ? "" : realFolder) + "/" + name
        for input in inputs where realPath(input) == wouldBe {
            throw refusal(output, input)
        }
    }

    static func refusal(_ output: String, _ input: String) -> FileFormatError {
        let what = isDirectory(input) ? "input folder" : "input file"
        return FileFormatError(
            file: output, kind: .outputIsInput,
            "refusing to write: this is the \(what) \(input) (the same file on disk); choose another output path")
    }

    /// `realpath(3)`: the absolute path with every symlink, `.` and `..` resolved; nil when it
    /// does not exist.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
