import Any4Core

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Compiled kernels kept on disk, so NVRTC runs once per architecture and compiler:
/// `$XDG_CACHE_HOME/any4/` (or `~/.cache/any4/`), one file per kernel source, architecture,
/// NVRTC version and options, named `any4_gemm-sm_90-<hash>.cubin`.
public enum CubinCache {
    /// The folder for `environment` (the process's by default): `$XDG_CACHE_HOME/any4` when that
    /// is an absolute path, else `$HOME/.cache/any4`; nil when neither is known.
    public static func directory(environment: [String: String]? = nil) -> String? {
        func value(_ name: String) -> String? {
            if let environment { return environment[name] }
            return getenv(name).map { String(cString: $0) }
        }
        if let xdg = value("XDG_CACHE_HOME"), xdg.hasPrefix("/") { return xdg + "/any4" }
        if let home = value("HOME"), !home.isEmpty { return home + "/.cache/any4" }
        return nil
    }

    /// A stable key: FNV-1a 64 over the source, architecture, NVRTC version and options, as 16
    /// hex digits. (Stable across runs and machines, unlike Swift's seeded `Hasher`.)
    public static func key(source: String, architecture: String, nvrtcVersion: String, options: [String]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func feed(_ text: String) {
            for byte in text.utf8 {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01b3
            }
            hash ^= 0xff  // a separator no UTF-8 text contains
            hash = hash &* 0x0000_0100_0000_01b3
        }
        feed("any4-cubin-v1")
        feed(source)
        feed(architecture)
        feed(nvrtcVersion)
        for o in options { feed(o) }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The file name for a kernel source name ("any4_gemm.cu"), architecture and key.
    public static func fileName(source name: String, architecture: String, key: String) -> String {
        let stem = name.hasSuffix(".cu") ? String(name.dropLast(3)) : name
        return "\(stem)-\(architecture)-\(key).cubin"
    }

    /// The cached bytes at `path`, or nil.
    package static func read(_ path: String) -> [UInt8]? {
        guard DynamicLibrary.isFile(path), let store = try? ByteStore(mapping: path), store.count > 0 else { return nil }
        return Array(store.bytes)
    }

    /// Writes `bytes` to `path` atomically, creating the folders; failures are ignored (the cache
    /// is an optimisation) and returned as a note.
    @discardableResult
    package static func write(_ bytes: [UInt8], to path: String) -> String? {
        guard let slash = path.lastIndex(of: "/") else { return "bad cache path \(path)" }
        makeDirectories(String(path[..<slash]))
        do {
            let writer = try AtomicFileWriter(path: path)
            try writer.write(bytes)
            try writer.commit()
            return nil
        } catch {
            return "could not cache the cubin: \(error)"
        }
    }

    /// `mkdir -p`.
    static func makeDirectories(_ path: String) {
        var current = ""
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            current += "/" + part
            if !isDirectory(current) { _ = mkdir(current, 0o755) }
        }
    }
}
