import Any4Core
import Synchronization

/// The GPU backend: the CUDA driver and NVRTC opened at run time, the kernels of any4_gemm.cu
/// compiled once per architecture (cubin cached on disk), device memory, launches and timing.
///
/// Nothing CUDA is needed to build or run the program: when the driver, a device or NVRTC is
/// missing, ``load()`` says exactly what, and everything else works as before. cuBLAS is
/// optional (only the vendor baseline needs it).
public final class GPUBackend: @unchecked Sendable {
    public enum Status: Sendable {
        case available(GPUBackend)
        case unavailable(String)
    }

    let driver: CUDADriver
    let nvrtc: NVRTC
    let context: OpaquePointer?
    /// The device the backend runs on (the first), and all the driver sees.
    public let device: GPUDeviceInfo
    public let devices: [GPUDeviceInfo]

    /// Lazily built state: the module and its functions, cuBLAS. Pointers are kept as bit
    /// patterns so that they cross the lock as plain values.
    private struct State {
        var module: UInt?
        /// Why the kernels could not be built (kept: NVRTC is not asked again).
        var moduleError: GPUError?
        var functions: [String: UInt] = [:]
        var moduleNote = ""
        var cublas: Result<CuBLAS, GPUError>?
    }
    private let state = Mutex(State())

    private static let loaded: Status = {
        do throws(GPUError) {
            return .available(try GPUBackend())
        } catch {
            return .unavailable(error.description)
        }
    }()

    /// The backend, or why there is none (loaded once per process).
    public static func load() -> Status { loaded }

    /// The backend when one loaded.
    public static var shared: GPUBackend? {
        if case .available(let b) = loaded { return b }
        return nil
    }

    /// Why there is no backend (nil when there is one).
    public static var unavailableReason: String? {
        if case .unavailable(let why) = loaded { return why }
        return nil
    }

    private init() throws(GPUError) {
        let driver = try CUDADriver()
        let devices = try driver.devices()
        guard let first = devices.first else { throw GPUError("the CUDA driver (\(driver.library.path)) sees no device") }
        var ctx: OpaquePointer?
        try driver.check(driver.cuDevicePrimaryCtxRetain(&ctx, first.handle), "cuDevicePrimaryCtxRetain(\(first.name))")
        try driver.check(driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        self.driver = driver
        self.devices = devices
        self.device = first
        self.context = ctx
        self.nvrtc = try NVRTC()
    }

    /// Paths and versions, for `any4 info`.
    public var driverPath: String { driver.library.path }
    public var driverVersion: String { driver.version }
    public var nvrtcPath: String { nvrtc.library.path }
    public var nvrtcVersion: String { nvrtc.version }
    /// Where the kernels came from once built ("cached …" or "compiled …"), else empty.
    public var moduleNote: String { state.withLock { $0.moduleNote } }

    /// Makes the backend's context current on the calling thread (each call does).
    func makeCurrent() throws(GPUError) {
        try driver.check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
    }

    // MARK: - Kernels

    /// The architecture to compile for: the device's own when NVRTC supports it, else the
    /// newest NVRTC supports of the same major version (a cubin runs on later minor versions).
    func architecture() throws(GPUError) -> String {
        let cc = device.computeCapability.major * 10 + device.computeCapability.minor
        let supported = nvrtc.supportedArchitectures
        if supported.isEmpty || supported.contains(cc) { return device.architecture }
        if let best = supported.filter({ $0 / 10 == device.computeCapability.major && $0 <= cc }).max() { return "sm_\(best)" }
        throw GPUError(
            "NVRTC \(nvrtc.version) cannot compile for \(device.architecture) (\(device.name)); it supports "
                + supported.map { "sm_\($0)" }.joined(separator: ", ") + ": install a newer nvidia-cuda-nvrtc")
    }

    /// The compiled kernels, from the cache or NVRTC (the lock is held).
    private func loadModule(_ s: inout State) throws(GPUError) -> UInt {
        if let m = s.module { return m }
        if let e = s.moduleError { throw e }
        do throws(GPUError) {
            return try buildModule(&s)
        } catch {
            s.moduleError = error
            throw error
        }
    }

    private func buildModule(_ s: inout State) throws(GPUError) -> UInt {
        try makeCurrent()
        let arch = try architecture()
        let options: [String] = []
        let key = CubinCache.key(source: GPUKernelSource.text, architecture: arch, nvrtcVersion: nvrtc.version, options: options)
        let path = CubinCache.directory().map { $0 + "/" + CubinCache.fileName(source: GPUKernelSource.fileName, architecture: arch, key: key) }
        func load(_ cubin: [UInt8]) -> (OpaquePointer?, Int32) {
            var module: OpaquePointer?
            let status = cubin.withUnsafeBytes { driver.cuModuleLoadData(&module, $0.baseAddress) }
            return (module, status)
        }
        if let path, let cached = CubinCache.read(path) {
            let (module, status) = load(cached)
            if status == 0, let module {
                s.module = UInt(bitPattern: module)
                s.moduleNote = "cached \(path)"
                return UInt(bitPattern: module)
            }
        }
        let started = Clock.now
        let cubin = try nvrtc.compileCubin(GPUKernelSource.text, name: GPUKernelSource.fileName, architecture: arch, options: options)
        let seconds = Clock.now - started
        let (module, status) = load(cubin)
        try driver.check(status, "cuModuleLoadData (cubin for \(arch) from NVRTC \(nvrtc.version))")
        guard let module else { throw GPUError("cuModuleLoadData returned no module") }
        var note = "compiled for \(arch) by NVRTC \(nvrtc.version) in \(Formatting.fixed(seconds, 1)) s"
        if let path {
            if let problem = CubinCache.write(cubin, to: path) { note += "; \(problem)" } else { note += ", cached at \(path)" }
        }
        s.module = UInt(bitPattern: module)
        s.moduleNote = note
        return UInt(bitPattern: module)
    }

    /// Compiles (or loads) the kernels now; later launches find them ready.
    public func prepareKernels() throws(GPUError) {
        _ = try state.withLock { (s: inout State) throws(GPUError) -> UInt in try loadModule(&s) }
    }

    /// The kernel entry point `name`.
    func function(_ name: String) throws(GPUError) -> OpaquePointer {
        let bits = try state.withLock { (s: inout State) throws(GPUError) -> UInt in
            if let f = s.functions[name] { return f }
            let module = try loadModule(&s)
            var f: OpaquePointer?
            try driver.check(driver.cuModuleGetFunction(&f, OpaquePointer(bitPattern: module), name), "cuModuleGetFunction(\(name))")
            guard let f else { throw GPUError("cuModuleGetFunction(\(name)) returned nothing") }
            s.functions[name] = UInt(bitPattern: f)
            return UInt(bitPattern: f)
        }
        return OpaquePointer(bitPattern: bits)!
    }

    /// An argument of a kernel launch.
    public enum Argument {
        case buffer(GPUBuffer)
        case int(Int)
    }

    /// Enqueues `name` on the default stream: `blocks` blocks of 128 threads.
    func launch(_ name: String, blocks: Int, _ arguments: [Argument]) throws(GPUError) {
        let f = try function(name)
        try makeCurrent()
        let storage = UnsafeMutableRawPointer.allocate(byteCount: 8 * max(arguments.count, 1), alignment: 8)
        defer { storage.deallocate() }
        var pointers = [UnsafeMutableRawPointer?](repeating: nil, count: arguments.count)
        for (i, a) in arguments.enumerated() {
            let p = storage + 8 * i
            switch a {
            case .buffer(let b): p.storeBytes(of: b.address, as: UInt64.self)
            case .int(let v): p.storeBytes(of: Int32(v), as: Int32.self)
            }
            pointers[i] = p
        }
        let status = pointers.withUnsafeMutableBufferPointer { params in
            driver.cuLaunchKernel(f, UInt32(blocks), 1, 1, UInt32(GPUGeometry.threadsPerBlock), 1, 1, 0, nil, params.baseAddress, nil)
        }
        // The arguments' buffers must outlive the call, not the kernel: the driver copies the values.
        withExtendedLifetime(arguments) {}
        try driver.check(status, "cuLaunchKernel(\(name), \(blocks) blocks)")
    }

    /// cuBLAS, made on first use.
    func cublas() throws(GPUError) -> CuBLAS {
        let result = state.withLock { (s: inout State) -> Result<CuBLAS, GPUError> in
            if let c = s.cublas { return c }
            let made: Result<CuBLAS, GPUError>
            do throws(GPUError) {
                try makeCurrent()
                made = .success(try CuBLAS())
            } catch {
                made = .failure(error)
            }
            s.cublas = made
            return made
        }
        return try result.get()
    }

    /// Why cuBLAS cannot be used, or nil when it can.
    public var cublasUnavailableReason: String? {
        do throws(GPUError) {
            _ = try cublas()
            return nil
        } catch { return error.description }
    }

    /// The cuBLAS library's path, when it loaded.
    public var cublasPath: String? { try? cublas().library.path }

    // MARK: - Memory

    /// Device memory holding `values`.
    public func upload<T: BitwiseCopyable>(_ values: [T]) throws(GPUError) -> GPUBuffer {
        let bytes = values.count * MemoryLayout<T>.stride
        let buffer = try allocate(bytes: bytes)
        try makeCurrent()
        let status = values.withUnsafeBytes { driver.cuMemcpyHtoD(buffer.address, $0.baseAddress, bytes) }
        try driver.check(status, "cuMemcpyHtoD(\(bytes) bytes)")
        return buffer
    }

    /// `bytes` of uninitialised device memory.
    public func allocate(bytes: Int) throws(GPUError) -> GPUBuffer {
        try makeCurrent()
        var address: UInt64 = 0
        try driver.check(driver.cuMemAlloc(&address, max(bytes, 16)), "cuMemAlloc(\(Formatting.bytes(bytes)))")
        return GPUBuffer(backend: self, address: address, bytes: bytes)
    }

    /// The first `count` floats of `buffer` (waits for the work before it on the default stream).
    public func download(_ buffer: GPUBuffer, count: Int) throws(GPUError) -> [Float] {
        precondition(count * 4 <= buffer.bytes, "reading past the buffer")
        try makeCurrent()
        var out = [Float](repeating: 0, count: count)
        let status = out.withUnsafeMutableBytes { driver.cuMemcpyDtoH($0.baseAddress, buffer.address, count * 4) }
        try driver.check(status, "cuMemcpyDtoH(\(count * 4) bytes)")
        return out
    }

    func free(_ address: UInt64) {
        _ = driver.cuCtxSetCurrent(context)
        _ = driver.cuMemFree(address)
    }

    // MARK: - Timing

    /// Runs `launch(i)` for i in 0..<count back to back on the default stream with an event
    /// between launches; returns each launch's device time in seconds.
    public func time(_ count: Int, _ launch: (Int) throws(GPUError) -> Void) throws(GPUError) -> [Double] {
        try makeCurrent()
        var events: [OpaquePointer?] = []
        defer { for e in events { _ = driver.cuEventDestroy(e) } }
        for _ in 0...count {
            var e: OpaquePointer?
            try driver.check(driver.cuEventCreate(&e, 0), "cuEventCreate")
            events.append(e)
        }
        try driver.check(driver.cuEventRecord(events[0], nil), "cuEventRecord")
        for i in 0..<count {
            try launch(i)
            try driver.check(driver.cuEventRecord(events[i + 1], nil), "cuEventRecord")
        }
        try driver.check(driver.cuEventSynchronize(events[count]), "cuEventSynchronize")
        var times: [Double] = []
        for i in 0..<count {
            var ms: Float = 0
            try driver.check(driver.cuEventElapsedTime(&ms, events[i], events[i + 1]), "cuEventElapsedTime")
            times.append(Double(ms) * 1e-3)
        }
        return times
    }

    /// Device-to-device copy bandwidth (bytes read + written per second, GB/s), the GPU's
    /// counterpart of the CPU triad probe: the median of `repeats` copies of `bytes`.
    public func copyBandwidthGBps(bytes: Int = 1 << 30, repeats: Int = 7) throws(GPUError) -> Double {
        let a = try allocate(bytes: bytes), b = try allocate(bytes: bytes)
        try makeCurrent()
        let times = try time(repeats) { (i: Int) throws(GPUError) in
            let (src, dst) = i % 2 == 0 ? (a, b) : (b, a)
            try driver.check(driver.cuMemcpyDtoD(dst.address, src.address, bytes), "cuMemcpyDtoD")
        }
        return 2 * Double(bytes) / times.sorted()[times.count / 2] / 1e9
    }
}

/// Device memory, freed when the last reference goes.
public final class GPUBuffer: @unchecked Sendable {
    let backend: GPUBackend
    public let address: UInt64
    public let bytes: Int

    init(backend: GPUBackend, address: UInt64, bytes: Int) {
        self.backend = backend
        self.address = address
        self.bytes = bytes
    }

    deinit { backend.free(address) }
}
