import Any4Core

/// NVIDIA's run-time CUDA compiler (`libnvrtc.so.12`), loaded at run time from the system's
/// library folders, /usr/local/cuda, or pip's `nvidia-cuda-nvrtc-cu12` wheel.
package final class NVRTC: @unchecked Sendable {
    typealias Program = OpaquePointer?
    typealias GetSize = @convention(c) (Program, UnsafeMutablePointer<Int>?) -> Int32
    typealias GetBytes = @convention(c) (Program, UnsafeMutablePointer<CChar>?) -> Int32

    let library: DynamicLibrary
    /// "12.4"
    let version: String
    let create:
        @convention(c) (
            UnsafeMutablePointer<OpaquePointer?>?, UnsafePointer<CChar>?, UnsafePointer<CChar>?, Int32,
            UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<UnsafePointer<CChar>?>?
        ) -> Int32
    let compile: @convention(c) (Program, Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    let logSize: GetSize
    let log: GetBytes
    let cubinSize: GetSize
    let cubin: GetBytes
    let destroy: @convention(c) (UnsafeMutablePointer<OpaquePointer?>?) -> Int32
    let errorString: @convention(c) (Int32) -> UnsafePointer<CChar>?
    let supportedArchitectures: [Int]

    /// Library names and paths tried, in order: the loader's search path first, then the CUDA
    /// toolkit's folder, then pip wheels' `nvidia/cuda_nvrtc/lib` in every Python found.
    static var candidates: [String] { candidates(pythonPrefixes: DynamicLibrary.pythonPrefixes) }

    package static func candidates(pythonPrefixes: [String]) -> [String] {
        var names = ["libnvrtc.so.12", "libnvrtc.so", "/usr/local/cuda/lib64/libnvrtc.so.12", "/usr/local/cuda/lib64/libnvrtc.so"]
        for folder in DynamicLibrary.pythonPackageFolders("nvidia/cuda_nvrtc/lib", prefixes: pythonPrefixes) {
            names += listDirectory(folder).filter { $0.hasPrefix("libnvrtc.so") }.sorted().map { folder + "/" + $0 }
        }
        return names
    }

    package init(candidates: [String] = NVRTC.candidates) throws(GPUError) {
        // NVRTC opens libnvrtc-builtins itself; a wheel's copy beside it is loaded first, globally.
        let l = try DynamicLibrary.open(
            "NVRTC (libnvrtc.so.12: the CUDA toolkit, or pip install nvidia-cuda-nvrtc-cu12)",
            candidates: candidates
        ) { path in
            guard path.hasPrefix("/"), let slash = path.lastIndex(of: "/") else { return [] }
            let folder = String(path[..<slash])
            return listDirectory(folder).filter { $0.hasPrefix("libnvrtc-builtins.so") }.map { folder + "/" + $0 }
        }
        library = l
        let versionCall = try l.function(
            "nvrtcVersion", as: (@convention(c) (UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int32>?) -> Int32).self)
        var major: Int32 = 0, minor: Int32 = 0
        _ = versionCall(&major, &minor)
        version = "\(major).\(minor)"
        create = try l.function(
            "nvrtcCreateProgram",
            as: (@convention(c) (
                UnsafeMutablePointer<OpaquePointer?>?, UnsafePointer<CChar>?, UnsafePointer<CChar>?, Int32,
                UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<UnsafePointer<CChar>?>?
            ) -> Int32).self)
        compile = try l.function("nvrtcCompileProgram", as: (@convention(c) (Program, Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32).self)
        logSize = try l.function("nvrtcGetProgramLogSize", as: GetSize.self)
        log = try l.function("nvrtcGetProgramLog", as: GetBytes.self)
        cubinSize = try l.function("nvrtcGetCUBINSize", as: GetSize.self)
        cubin = try l.function("nvrtcGetCUBIN", as: GetBytes.self)
        destroy = try l.function("nvrtcDestroyProgram", as: (@convention(c) (UnsafeMutablePointer<OpaquePointer?>?) -> Int32).self)
        errorString = try l.function("nvrtcGetErrorString", as: (@convention(c) (Int32) -> UnsafePointer<CChar>?).self)
        var archs: [Int] = []
        if let count = l.optionalFunction("nvrtcGetNumSupportedArchs", as: (@convention(c) (UnsafeMutablePointer<Int32>?) -> Int32).self),
            let list = l.optionalFunction("nvrtcGetSupportedArchs", as: (@convention(c) (UnsafeMutablePointer<Int32>?) -> Int32).self)
        {
            var n: Int32 = 0
            if count(&n) == 0, n > 0 {
                var values = [Int32](repeating: 0, count: Int(n))
                if list(&values) == 0 { archs = values.map(Int.init) }
            }
        }
        supportedArchitectures = archs
    }

    private func message(_ code: Int32) -> String {
        errorString(code).map { "\(String(cString: $0)) (\(code))" } ?? "NVRTC error \(code)"
    }

    /// Compiles `source` to a cubin for `architecture` ("sm_90").
    /// - Throws: NVRTC's error and compile log.
    func compileCubin(_ source: String, name: String, architecture: String, options extra: [String]) throws(GPUError) -> [UInt8] {
        var program: OpaquePointer?
        let created = create(&program, source, name, 0, nil, nil)
        guard created == 0 else { throw GPUError("nvrtcCreateProgram failed: \(message(created))") }
        defer { _ = destroy(&program) }
        let options = ["--gpu-architecture=\(architecture)"] + extra
        let cStrings = options.map { strdupOrCrash($0) }
        defer { for p in cStrings { free(p) } }
        let status = cStrings.map { UnsafePointer<CChar>($0) }.withUnsafeBufferPointer { compile(program, Int32(options.count), $0.baseAddress) }
        guard status == 0 else {
            var size = 0
            _ = logSize(program, &size)
            var text = [CChar](repeating: 0, count: max(size, 1))
            _ = log(program, &text)
            let logText = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw GPUError("NVRTC \(version) could not compile \(name) for \(architecture): \(message(status))\n\(logText)")
        }
        var size = 0
        let sized = cubinSize(program, &size)
        guard sized == 0, size > 0 else { throw GPUError("nvrtcGetCUBINSize failed: \(message(sized))") }
        var bytes = [CChar](repeating: 0, count: size)
        let got = cubin(program, &bytes)
        guard got == 0 else { throw GPUError("nvrtcGetCUBIN failed: \(message(got))") }
        return bytes.map { UInt8(bitPattern: $0) }
    }

    private func strdupOrCrash(_ s: String) -> UnsafeMutablePointer<CChar> {
        guard let p = strdup(s) else { fatalError("out of memory") }
        return p
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
