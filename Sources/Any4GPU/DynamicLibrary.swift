import Any4Core

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why a part of the GPU stack is missing or failed: a sentence naming the library, the symbol
/// or the call and its error code.
public struct GPUError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A shared library opened with `dlopen` at run time (no build dependency), and its symbols.
struct DynamicLibrary: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    /// The name or path that opened.
    let path: String

    /// Opens the first of `candidates` that loads; `preload` maps a candidate to libraries to open
    /// first with RTLD_GLOBAL (dependencies in the same folder, as pip's wheels ship them).
    /// - Throws: naming every candidate tried and the loader's message for the first.
    static func open(_ what: String, candidates: [String], preload: (String) -> [String] = { _ in [] }) throws(GPUError) -> DynamicLibrary {
        var firstError: String?
        var brokenFiles: [String] = []
        for name in candidates {
            for dependency in preload(name) { _ = dlopen(dependency, RTLD_NOW | RTLD_GLOBAL) }
            if let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) { return DynamicLibrary(handle: handle, path: name) }
            let message = dlerror().map { String(cString: $0) } ?? "dlopen failed"
            if firstError == nil { firstError = message }
            // A file that is there but does not load is the interesting failure: say why.
            if name.hasPrefix("/") && isFile(name) { brokenFiles.append(message) }
        }
        var text = "\(what) not found (tried \(candidates.joined(separator: ", "))"
        if let firstError { text += "; \(firstError)" }
        for message in brokenFiles where message != firstError { text += "; \(message)" }
        throw GPUError(text + ")")
    }

    /// The function `name` (or the first of its versioned names that exists) as `T`.
    func function<T>(_ names: String..., as type: T.Type) throws(GPUError) -> T {
        for name in names {
            if let p = dlsym(handle, name) { return unsafeBitCast(p, to: type) }
        }
        throw GPUError("symbol \(names.joined(separator: " / ")) missing in \(path)")
    }

    /// The function if present.
    func optionalFunction<T>(_ name: String, as type: T.Type) -> T? {
        dlsym(handle, name).map { unsafeBitCast($0, to: type) }
    }

    /// Folders named `relative` under every Python's site-packages and dist-packages in the
    /// usual prefixes (/usr/lib, /usr/local/lib, ~/.local/lib, a virtualenv's lib), where pip's
    /// NVIDIA wheels put their libraries (nvidia/cuda_nvrtc/lib, nvidia/cublas/lib).
    static func pythonPackageFolders(_ relative: String, prefixes: [String] = pythonPrefixes) -> [String] {
        var found: [String] = []
        for prefix in prefixes {
            for python in listDirectory(prefix).filter({ $0.hasPrefix("python3") }).sorted(by: >) {
                for packages in ["site-packages", "dist-packages"] {
                    let folder = "\(prefix)/\(python)/\(packages)/\(relative)"
                    if isDirectory(folder) { found.append(folder) }
                }
            }
        }
        return found
    }

    /// Where Pythons keep their packages: `lib` folders holding `python3.*`.
    static var pythonPrefixes: [String] {
        var prefixes = ["/usr/lib", "/usr/local/lib"]
        if let home = getenv("HOME").map({ String(cString: $0) }) { prefixes.append(home + "/.local/lib") }
        if let venv = getenv("VIRTUAL_ENV").map({ String(cString: $0) }) { prefixes.insert(venv + "/lib", at: 0) }
        return prefixes
    }

    static func isFile(_ path: String) -> Bool {
        var s = stat()
        return stat(path, &s) == 0 && (s.st_mode & S_IFMT) == S_IFREG
    }
}
