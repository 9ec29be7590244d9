/// What the GPU stack of this machine offers, part by part, for `any4 info`: the driver and its
/// devices, NVRTC, cuBLAS, and why the backend is unavailable when it is.
public struct GPUReport: Sendable {
    /// Why the backend cannot run (nil when it can).
    public var unavailable: String?
    public var driverPath: String?
    public var driverVersion: String?
    /// Why the driver could not be used (nil when it could).
    public var driverError: String?
    public var devices: [GPUDeviceInfo] = []
    public var nvrtcPath: String?
    public var nvrtcVersion: String?
    public var nvrtcError: String?
    public var cublasPath: String?
    public var cublasError: String?
    /// Where compiled kernels are cached.
    public var cacheDirectory: String?

    /// Looks at each part on its own, so that a missing compiler does not hide the devices.
    public static func gather() -> GPUReport {
        var r = GPUReport()
        r.cacheDirectory = CubinCache.directory()
        switch GPUBackend.load() {
        case .available(let backend):
            r.driverPath = backend.driverPath
            r.driverVersion = backend.driverVersion
            r.devices = backend.devices
            r.nvrtcPath = backend.nvrtcPath
            r.nvrtcVersion = backend.nvrtcVersion
            r.cublasError = backend.cublasUnavailableReason
            r.cublasPath = backend.cublasPath
            return r
        case .unavailable(let why):
            r.unavailable = why
        }
        do throws(GPUError) {
            let driver = try CUDADriver()
            r.driverPath = driver.library.path
            r.driverVersion = driver.version
            r.devices = try driver.devices()
        } catch {
            r.driverError = error.description
        }
        do throws(GPUError) {
            let nvrtc = try NVRTC()
            r.nvrtcPath = nvrtc.library.path
            r.nvrtcVersion = nvrtc.version
        } catch {
            r.nvrtcError = error.description
        }
        do throws(GPUError) {
            // Without a context no handle can be made: the library and its entry point only.
            let l = try DynamicLibrary.open("cuBLAS (libcublas.so.12)", candidates: CuBLAS.candidates)
            _ = try l.function("cublasGemmEx", as: CuBLAS.GemmEx.self)
            r.cublasPath = l.path
        } catch {
            r.cublasError = error.description
        }
        return r
    }
}
