/// The CUDA driver API (`libcuda.so.1`, installed with the NVIDIA driver), loaded at run time:
/// only the calls the backend makes.
package final class CUDADriver: @unchecked Sendable {
    typealias Result = Int32
    typealias Handle = OpaquePointer?
    typealias HandleOut = UnsafeMutablePointer<OpaquePointer?>?

    let library: DynamicLibrary
    let cuInit: @convention(c) (UInt32) -> Result
    let cuDriverGetVersion: @convention(c) (UnsafeMutablePointer<Int32>?) -> Result
    let cuDeviceGetCount: @convention(c) (UnsafeMutablePointer<Int32>?) -> Result
    let cuDeviceGet: @convention(c) (UnsafeMutablePointer<Int32>?, Int32) -> Result
    let cuDeviceGetName: @convention(c) (UnsafeMutablePointer<CChar>?, Int32, Int32) -> Result
    let cuDeviceGetAttribute: @convention(c) (UnsafeMutablePointer<Int32>?, Int32, Int32) -> Result
    let cuDeviceTotalMem: @convention(c) (UnsafeMutablePointer<Int>?, Int32) -> Result
    let cuDevicePrimaryCtxRetain: @convention(c) (HandleOut, Int32) -> Result
    let cuCtxSetCurrent: @convention(c) (Handle) -> Result
    let cuCtxSynchronize: @convention(c) () -> Result
    let cuModuleLoadData: @convention(c) (HandleOut, UnsafeRawPointer?) -> Result
    let cuModuleGetFunction: @convention(c) (HandleOut, Handle, UnsafePointer<CChar>?) -> Result
    let cuMemAlloc: @convention(c) (UnsafeMutablePointer<UInt64>?, Int) -> Result
    let cuMemFree: @convention(c) (UInt64) -> Result
    let cuMemcpyHtoD: @convention(c) (UInt64, UnsafeRawPointer?, Int) -> Result
    let cuMemcpyDtoH: @convention(c) (UnsafeMutableRawPointer?, UInt64, Int) -> Result
    let cuMemcpyDtoD: @convention(c) (UInt64, UInt64, Int) -> Result
    let cuLaunchKernel:
        @convention(c) (
            Handle, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, Handle,
            UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
            UnsafeMutablePointer<UnsafeMutableRawPointer?>?
        ) -> Result
    let cuEventCreate: @convention(c) (HandleOut, UInt32) -> Result
    let cuEventRecord: @convention(c) (Handle, Handle) -> Result
    let cuEventSynchronize: @convention(c) (Handle) -> Result
    let cuEventElapsedTime: @convention(c) (UnsafeMutablePointer<Float>?, Handle, Handle) -> Result
    let cuEventDestroy: @convention(c) (Handle) -> Result
    let cuGetErrorName: (@convention(c) (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Result)?

    // CUdevice_attribute values (cuda.h).
    static let attributeMultiprocessors: Int32 = 16
    static let attributeMemoryClockKHz: Int32 = 36
    static let attributeMemoryBusWidth: Int32 = 37
    static let attributeL2CacheBytes: Int32 = 38
    static let attributeComputeMajor: Int32 = 75
    static let attributeComputeMinor: Int32 = 76

    /// The library names tried, in order.
    static let candidates = [
        "libcuda.so.1", "libcuda.so", "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
        "/usr/lib64/libcuda.so.1", "/usr/lib/wsl/lib/libcuda.so.1"
    ]

    /// Opens the driver library and calls cuInit.
    /// - Throws: which library or symbol is missing, or cuInit's error (CUDA_ERROR_NO_DEVICE, …).
    package init(candidates: [String] = CUDADriver.candidates) throws(GPUError) {
        let l = try DynamicLibrary.open("the CUDA driver (libcuda.so.1, part of the NVIDIA driver)", candidates: candidates)
        library = l
        cuInit = try l.function("cuInit", as: (@convention(c) (UInt32) -> Result).self)
        cuDriverGetVersion = try l.function("cuDriverGetVersion", as: (@convention(c) (UnsafeMutablePointer<Int32>?) -> Result).self)
        cuDeviceGetCount = try l.function("cuDeviceGetCount", as: (@convention(c) (UnsafeMutablePointer<Int32>?) -> Result).self)
        cuDeviceGet = try l.function("cuDeviceGet", as: (@convention(c) (UnsafeMutablePointer<Int32>?, Int32) -> Result).self)
        cuDeviceGetName = try l.function("cuDeviceGetName", as: (@convention(c) (UnsafeMutablePointer<CChar>?, Int32, Int32) -> Result).self)
        cuDeviceGetAttribute = try l.function(
            "cuDeviceGetAttribute",
            as: (@convention(c) (UnsafeMutablePointer<Int32>?, Int32, Int32) -> Result).self)
        cuDeviceTotalMem = try l.function(
            "cuDeviceTotalMem_v2", "cuDeviceTotalMem",
            as: (@convention(c) (UnsafeMutablePointer<Int>?, Int32) -> Result).self)
        cuDevicePrimaryCtxRetain = try l.function("cuDevicePrimaryCtxRetain", as: (@convention(c) (HandleOut, Int32) -> Result).self)
        cuCtxSetCurrent = try l.function("cuCtxSetCurrent", as: (@convention(c) (Handle) -> Result).self)
        cuCtxSynchronize = try l.function("cuCtxSynchronize", as: (@convention(c) () -> Result).self)
        cuModuleLoadData = try l.function("cuModuleLoadData", as: (@convention(c) (HandleOut, UnsafeRawPointer?) -> Result).self)
        cuModuleGetFunction = try l.function(
            "cuModuleGetFunction",
            as: (@convention(c) (HandleOut, Handle, UnsafePointer<CChar>?) -> Result).self)
        cuMemAlloc = try l.function("cuMemAlloc_v2", "cuMemAlloc", as: (@convention(c) (UnsafeMutablePointer<UInt64>?, Int) -> Result).self)
        cuMemFree = try l.function("cuMemFree_v2", "cuMemFree", as: (@convention(c) (UInt64) -> Result).self)
        cuMemcpyHtoD = try l.function("cuMemcpyHtoD_v2", "cuMemcpyHtoD", as: (@convention(c) (UInt64, UnsafeRawPointer?, Int) -> Result).self)
        cuMemcpyDtoH = try l.function(
            "cuMemcpyDtoH_v2", "cuMemcpyDtoH",
            as: (@convention(c) (UnsafeMutableRawPointer?, UInt64, Int) -> Result).self)
        cuMemcpyDtoD = try l.function("cuMemcpyDtoD_v2", "cuMemcpyDtoD", as: (@convention(c) (UInt64, UInt64, Int) -> Result).self)
        cuLaunchKernel = try l.function(
            "cuLaunchKernel",
            as: (@convention(c) (
                Handle, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, Handle,
                UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
                UnsafeMutablePointer<UnsafeMutableRawPointer?>?
            ) -> Result).self)
        cuEventCreate = try l.function("cuEventCreate", as: (@convention(c) (HandleOut, UInt32) -> Result).self)
        cuEventRecord = try l.function("cuEventRecord", as: (@convention(c) (Handle, Handle) -> Result).self)
        cuEventSynchronize = try l.function("cuEventSynchronize", as: (@convention(c) (Handle) -> Result).self)
        cuEventElapsedTime = try l.function("cuEventElapsedTime", as: (@convention(c) (UnsafeMutablePointer<Float>?, Handle, Handle) -> Result).self)
        cuEventDestroy = try l.function("cuEventDestroy_v2", "cuEventDestroy", as: (@convention(c) (Handle) -> Result).self)
        cuGetErrorName = l.optionalFunction(
            "cuGetErrorName",
            as: (@convention(c) (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Result).self)
        let status = cuInit(0)
        guard status == 0 else {
            throw GPUError("cuInit failed with \(errorName(status)) in \(l.path)" + (status == 100 ? ": no CUDA device" : ""))
        }
    }

    /// `CUDA_ERROR_… (code)` for a result code.
    func errorName(_ code: Int32) -> String {
        var name: UnsafePointer<CChar>?
        if let cuGetErrorName, cuGetErrorName(code, &name) == 0, let name { return "\(String(cString: name)) (\(code))" }
        return "CUDA error \(code)"
    }

    /// Throws unless `status` is CUDA_SUCCESS, naming the call.
    func check(_ status: Int32, _ call: @autoclosure () -> String) throws(GPUError) {
        guard status == 0 else { throw GPUError("\(call()) failed: \(errorName(status))") }
    }

    /// The driver's CUDA version as "12.4".
    var version: String {
        var v: Int32 = 0
        guard cuDriverGetVersion(&v) == 0 else { return "?" }
        return "\(v / 1000).\(v % 1000 / 10)"
    }

    /// Every device the driver sees.
    func devices() throws(GPUError) -> [GPUDeviceInfo] {
        var count: Int32 = 0
        try check(cuDeviceGetCount(&count), "cuDeviceGetCount")
        var out: [GPUDeviceInfo] = []
        for ordinal in 0..<count {
            var device: Int32 = 0
            try check(cuDeviceGet(&device, ordinal), "cuDeviceGet(\(ordinal))")
            var name = [CChar](repeating: 0, count: 256)
            try check(cuDeviceGetName(&name, Int32(name.count - 1), device), "cuDeviceGetName")
            var memory = 0
            try check(cuDeviceTotalMem(&memory, device), "cuDeviceTotalMem")
            func attribute(_ a: Int32) -> Int {
                var v: Int32 = 0
                return cuDeviceGetAttribute(&v, a, device) == 0 ? Int(v) : 0
            }
            let clockKHz = attribute(Self.attributeMemoryClockKHz), busBits = attribute(Self.attributeMemoryBusWidth)
            out.append(
                GPUDeviceInfo(
                    ordinal: Int(ordinal), handle: device,
                    name: String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self),
                    computeCapability: (attribute(Self.attributeComputeMajor), attribute(Self.attributeComputeMinor)),
                    memoryBytes: memory, multiprocessors: attribute(Self.attributeMultiprocessors),
                    l2CacheBytes: attribute(Self.attributeL2CacheBytes),
                    // Double data rate: 2 transfers a clock over the bus.
                    peakBandwidthGBps: Double(clockKHz) * 1e3 * 2 * Double(busBits / 8) / 1e9))
        }
        return out
    }
}

/// A CUDA device as the driver describes it.
public struct GPUDeviceInfo: Sendable {
    public let ordinal: Int
    let handle: Int32
    public let name: String
    public let computeCapability: (major: Int, minor: Int)
    public let memoryBytes: Int
    public let multiprocessors: Int
    public let l2CacheBytes: Int
    /// Memory clock × bus width × 2 (0 when the driver does not report them).
    public let peakBandwidthGBps: Double

    /// "sm_90" for compute capability 9.0.
    public var architecture: String { "sm_\(computeCapability.major)\(computeCapability.minor)" }
}
