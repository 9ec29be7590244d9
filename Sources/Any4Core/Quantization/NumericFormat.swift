/// A 4-bit (or 2-, 3-, 8-bit) numeric format: how a row of weights becomes codes and scales.
///
/// Every format here dequantizes the same way, which is what lets one lookup kernel serve them
/// all: `w ≈ (table[q] · scale_g + zero_g) · tensorScale`, where `table` is the row's learned
/// LUT (any-b) or the format's fixed table, `scale_g`/`zero_g` belong to the element's group,
/// and `tensorScale` is 1 except for nvfp4. A format is added by one file with a type that
/// conforms to this protocol and one entry in ``FormatRegistry``.
public protocol NumericFormat: Sendable {
    /// The name used on the command line and in files (`any4`, `nf4`, `mxfp4`, ...).
    var name: String { get }
    /// One line for `--help` and the UI.
    var summary: String { get }
    /// Bits per code.
    var codeBits: Int { get }
    /// The block size the format defines (mxfp4 32, nvfp4 16, iq4_nl 32), or nil if it takes the
    /// group size option.
    var fixedBlockSize: Int? { get }
    /// Whether each row learns its own table (any-b).
    var perRowTable: Bool { get }
    /// Whether groups carry a zero (asymmetric formats).
    var hasZeros: Bool { get }
    /// How group scales are stored: in a float dtype, or as one E8M0 (mxfp4) or E4M3 (nvfp4) byte.
    var scaleEncoding: ScaleEncoding { get }
    /// Whether the matrix carries one f32 factor over all its groups (nvfp4), stored as
    /// `X.tensor_scale` in a checkpoint.
    var hasTensorScale: Bool { get }
    /// Bits of one stored scale, or nil for the model's float dtype.
    var scaleBits: Int? { get }
    /// The float dtype the format itself fixes for its scales (iq4_nl: F16, as ggml), or nil.
    var scaleDType: DType? { get }
    /// The fixed table, for formats without per-row tables.
    var sharedTable: [Float]? { get }
    /// A factor applied to the whole tensor (nvfp4's per-tensor scale); 1 for the others.
    func tensorScale(of values: UnsafeBufferPointer<Float>) -> Float
    /// Quantizes one row.
    func quantizeRow(_ job: RowJob)
}

extension NumericFormat {
    public var fixedBlockSize: Int? { nil }
    public var perRowTable: Bool { false }
    public var hasZeros: Bool { false }
    public var scaleEncoding: ScaleEncoding { .float }
    public var hasTensorScale: Bool { false }
    public var scaleBits: Int? { scaleEncoding.byteBits ?? scaleDType.map { $0.size * 8 } }
    public var scaleDType: DType? { nil }
    public var sharedTable: [Float]? { nil }
    public func tensorScale(of values: UnsafeBufferPointer<Float>) -> Float { 1 }
    /// Number of table entries.
    public var tableSize: Int { 1 << codeBits }
}

/// How a format stores its group scales.
public enum ScaleEncoding: Sendable, Equatable {
    /// In a float dtype: the format's ``NumericFormat/scaleDType``, else the storage dtype.
    case float
    /// One byte, a power of two 2^(e − 127) (OCP MX E8M0; 0xFF is NaN): mxfp4.
    case e8m0
    /// One byte, FP8 E4M3 ("fn": no infinities, max 448): nvfp4.
    case e4m3

    /// Bits of one stored scale for the byte encodings (nil: the float dtype's).
    public var byteBits: Int? { self == .float ? nil : 8 }

    /// The encoding's name in messages ("E8M0", "E4M3"), nil for a float dtype.
    public var name: String? {
        switch self {
        case .float: nil
        case .e8m0: "E8M0"
        case .e4m3: "E4M3"
        }
    }

    /// The stored byte of `scale` (byte encodings only).
    public func encode(_ scale: Float) -> UInt8 {
        switch self {
        case .float: preconditionFailure("float scales are stored in a dtype, not as bytes")
        case .e8m0: MXFP4Format.e8m0(scale)
        case .e4m3: FP8E4M3.encode(scale)
        }
    }

    /// The scale a stored byte holds (byte encodings only).
    public func decode(_ byte: UInt8) -> Float {
        switch self {
        case .float: preconditionFailure("float scales are stored in a dtype, not as bytes")
        case .e8m0: MXFP4Format.fromE8M0(byte)
        case .e4m3: FP8E4M3.decode(byte)
        }
    }
}

/// Everything a format needs to quantize one row, and where it writes the result.
public struct RowJob {
    public let row: Int
    /// The row's weights.
    public let values: UnsafeBufferPointer<Float>
    /// Group boundaries of the row (the last group may be shorter).
    public let groups: GroupLayout
    /// Output: one code per element.
    public let codes: UnsafeMutableBufferPointer<UInt8>
    /// Output: one scale per group.
    public let scales: UnsafeMutableBufferPointer<Float>
    /// Output: one zero per group (asymmetric formats).
    public let zeros: UnsafeMutableBufferPointer<Float>
    /// Output: the row's table (per-row-table formats).
    public let table: UnsafeMutableBufferPointer<Float>
    /// Output (any-b): the row's weighted k-means objective in the group-scaled domain.
    public let objective: UnsafeMutablePointer<Double>
    /// Per-input-channel calibration weights for k-means (nil: none).
    public let channelWeights: UnsafeBufferPointer<Float>?
    public let options: QuantizationOptions
    /// The tensor scale the format chose for this matrix.
    public let tensorScale: Float
    /// Rounds a value to the storage dtype of scales, zeros and tables.
    public let storage: StorageRounding
    /// Per-thread scratch memory.
    public let workspace: QuantWorkspace
}

/// Rounding to the float dtype that scales, zeros and LUTs are stored in.
public struct StorageRounding: Sendable {
    public let dtype: DType

    public init(_ dtype: DType) {
        precondition(dtype == .f32 || dtype == .f16 || dtype == .bf16, "storage dtype must be F32, F16 or BF16")
        self.dtype = dtype
    }

    @inline(__always)
    public func callAsFunction(_ x: Float) -> Float {
        switch dtype {
        case .f16: Float(Float16(x))
        case .bf16: Float(bitPattern: UInt32(bfloat16Bits(x)) << 16)
        default: x
        }
    }

    public var bits: Int { dtype.size * 8 }

    /// The smallest positive normal value of the dtype (below it a value keeps fewer significant bits).
    public var leastNormal: Float {
        switch dtype {
        case .f16: Float(Float16.leastNormalMagnitude)
        default: Float.leastNormalMagnitude
        }
    }

    /// The smallest positive value of the dtype.
    public var leastNonzero: Float {
        switch dtype {
        case .f16: Float(Float16.leastNonzeroMagnitude)
        case .bf16: Float(bitPattern: 1 << 16)
        default: Float.leastNonzeroMagnitude
        }
    }
}

/// Scratch buffers reused across the rows one thread quantizes.
public final class QuantWorkspace: @unchecked Sendable {
    public let kmeans = KMeans1D.Workspace()
    public var scaled: [Float] = []
    public var weights: [Float] = []
    public init() {}
}

/// How to cluster for any-b.
public enum ClusterMethod: String, Sendable, CaseIterable {
    /// Lloyd's algorithm with k-means++ seeding (the paper's method).
    case lloyd
    /// The globally optimal 1-D weighted k-means (dynamic programming).
    case exact
}

/// What weighs each element in any-b's k-means.
public enum SampleWeighting: Sendable, Equatable {
    /// All elements equal.
    case none
    /// The element's group scale (the paper's default).
    case scale
    /// The group scale times a per-input-channel statistic from a calibration file.
    case calibration(path: String, statistic: CalibrationStatistic)

    /// As written on the command line and in checkpoint metadata.
    public var name: String {
        switch self {
        case .none: "none"
        case .scale: "scale"
        case let .calibration(path, statistic): "calib:\(path) (\(statistic.rawValue))"
        }
    }
}

public struct QuantizationOptions: Sendable {
    /// Group size for formats that take one; the last group of a row may be shorter.
    public var groupSize: Int = 128
    public var cluster: ClusterMethod = .lloyd
    public var sampleWeighting: SampleWeighting = .scale
    /// Refuse widths the group size does not divide instead of using a shorter last group.
    public var strictGroups = false
    /// Seed for k-means++ (each row uses seed + row).
    public var seed: UInt64 = 0
    /// Worker threads (0: all cores).
    public var threads = 0
    /// Run formats that fix their own block (mxfp4 32, nvfp4 16, iq4_nl 32) at `groupSize` instead
    /// — non-standard variants, for comparisons at equal block size.
    public var overrideFixedBlocks = false
    /// The float dtype LUTs, float scales and zeros are stored in (`--table-dtype`): F16, BF16 or
    /// F32. nil is the default rule, ``defaultStorageDType(source:)``: 16 bits, as the paper stores
    /// them. Formats that fix their scale encoding keep it (mxfp4 E8M0, nvfp4 E4M3, iq4_nl F16).
    public var storageDType: DType?

    /// The dtype tables, scales and zeros of a tensor of float dtype `source` are stored in under
    /// these options: ``storageDType`` when set, else the default rule.
    public func storageDType(source: DType) -> DType { storageDType ?? Self.defaultStorageDType(source: source) }

    /// The default rule: BF16 for a BF16 source, F16 for every other (F32, F16, GGUF block types).
    /// A layer F16 cannot hold (a scale that overflows, or one that falls below F16's normal range
    /// in a group whose weights are not constant) is stored in F32 instead, with a warning
    /// (``QuantizedMatrix/storageFallback``); an explicit ``storageDType`` is never changed.
    public static func defaultStorageDType(source: DType) -> DType { source == .bf16 ? .bf16 : .f16 }

    /// The dtypes ``storageDType`` may be.
    public static let storageDTypes: [DType] = [.f16, .bf16, .f32]

    /// The block size `format` runs with under these options.
    public func blockSize(for format: any NumericFormat) -> Int {
        overrideFixedBlocks ? groupSize : (format.fixedBlockSize ?? groupSize)
    }

    public init() {}

    /// The largest group size: the lookup kernel's int32 sum of a group's int8 products stays exact
    /// up to 2^31 / 127² = 133,143 columns, and a group wider than a row is one group per row, so a
    /// per-channel scale needs no more than the row's width.
    public static let maxGroupSize = 65536
    /// The most worker threads an option may ask for (0 means all cores).
    public static let maxThreads = 1024

    /// Throws unless the group size is an even number in 2...``maxGroupSize`` and the thread count
    /// is in 0...``maxThreads``.
    public func validate() throws(QuantizationError) {
        guard groupSize > 0, groupSize % 2 == 0 else {
            throw .badOption("group size must be a positive multiple of 2, got \(groupSize)")
        }
        guard groupSize <= Self.maxGroupSize else {
            throw .badOption(
                "group size \(groupSize) is larger than \(Self.maxGroupSize), the largest the kernels take "
                    + "(a group wider than a row is one group per row)")
        }
        guard threads >= 0, threads <= Self.maxThreads else {
            throw .badOption("threads must be in 0...\(Self.maxThreads) (0: all cores), got \(threads)")
        }
        if let storageDType, !Self.storageDTypes.contains(storageDType) {
            throw .badOption("the table dtype must be f16, bf16 or f32, got \(storageDType.rawValue.lowercased())")
        }
    }
}

public enum QuantizationError: Error, Equatable, CustomStringConvertible {
    case badOption(String)
    case unknownFormat(String)
    case nonFinite(tensor: String, row: Int, column: Int, value: Float)
    case groupsDoNotDivide(tensor: String, width: Int, groupSize: Int)
    /// A size of the quantized tensor overflows or needs more memory than the machine can give.
    case tooLarge(SizeError)
    /// A row whose scales, zeros, table or dequantized weights overflow the dtype they are stored
    /// in (weights too large for the format); `detail` says which value.
    case overflow(tensor: String, row: Int, detail: String)
    /// A row with a group scale that F16 holds only as a subnormal or zero (fewer than F16's 11
    /// significant bits) while the group's weights are not constant; `detail` says which group.
    case underflow(tensor: String, row: Int, detail: String)
    case cancelled

    public var description: String {
        switch self {
        case .badOption(let m): m
        case .unknownFormat(let name):
            "unknown format \"\(name)\" (known: \(FormatRegistry.all.map(\.name).joined(separator: ", ")))"
        case let .nonFinite(tensor, row, column, value):
            "\(tensor): weight [\(row), \(column)] is \(value); refusing to quantize non-finite weights"
        case let .groupsDoNotDivide(tensor, width, groupSize):
            "\(tensor): width \(width) is not a multiple of the group size \(groupSize) (--strict-groups)"
        case .tooLarge(let error): error.description
        case let .overflow(tensor, row, detail): "\(tensor): row \(row): \(detail)"
        case let .underflow(tensor, row, detail): "\(tensor): row \(row): \(detail)"
        case .cancelled: "cancelled"
        }
    }
}

/// The formats this build knows, by name, and the lists each one appears in.
///
/// A format is added by its file and one row here; the row says which of the lists below take it.
/// Every list of formats in the program (CLI defaults, the TUI's choices, tests) comes from here.
public enum FormatRegistry {
    /// The lists a format appears in besides ``all`` and the 4-bit ones (``fourBit``).
    public struct Lists: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// Offered by the TUI's format key (``offered``).
        public static let offered = Lists(rawValue: 1 << 0)
        /// Run by `bench` when no formats are given (``benchmarked``).
        public static let benchmarked = Lists(rawValue: 1 << 1)
        /// Put after the other 4-bit formats in `compare`'s default (``comparison``): iq4_nl, which
        /// joined that list last.
        public static let comparedLast = Lists(rawValue: 1 << 2)
    }

    /// One row per format, in the order of ``all``.
    static let rows: [(format: any NumericFormat, lists: Lists)] = [
        (AnyFormat(bits: 4), [.offered, .benchmarked]),
        (AnyFormat(bits: 3), [.offered]),
        (AnyFormat(bits: 2), []),
        (IntFormat(bits: 4), [.offered, .benchmarked]),
        (IntFormat(bits: 3), []),
        (IntFormat(bits: 2), [.offered]),
        (IntFormat(bits: 8), [.offered]),
        (TableFormat.nf4, [.offered, .benchmarked]),
        (TableFormat.fp4, [.offered]),
        (TableFormat.fp4bnb, []),
        (TableFormat.iq4nl, [.offered, .comparedLast]),
        (MXFP4Format(), [.offered]),
        (NVFP4Format(), [.offered])
    ]

    /// Every format, in the order help texts and error messages list them.
    public static let all: [any NumericFormat] = rows.map(\.format)

    /// The formats with 4-bit codes, in registry order: the TUI's comparison table.
    public static let fourBit: [any NumericFormat] = all.filter { $0.codeBits == 4 }

    /// `compare`'s default formats: the 4-bit ones in registry order, those marked
    /// ``Lists/comparedLast`` after the others.
    public static let comparison: [any NumericFormat] =
        rows.filter { $0.format.codeBits == 4 && !$0.lists.contains(.comparedLast) }.map(\.format)
        + rows.filter { $0.format.codeBits == 4 && $0.lists.contains(.comparedLast) }.map(\.format)

    /// The formats the TUI's format key cycles through: the offered 4-bit formats, then the
    /// offered formats of other widths, each in registry order.
    public static let offered: [any NumericFormat] =
        rows.filter { $0.lists.contains(.offered) && $0.format.codeBits == 4 }.map(\.format)
        + rows.filter { $0.lists.contains(.offered) && $0.format.codeBits != 4 }.map(\.format)

    /// The quantized formats `bench` runs by default (before its dense rows), in registry order.
    public static let benchmarked: [any NumericFormat] = rows.filter { $0.lists.contains(.benchmarked) }.map(\.format)

    public static func named(_ name: String) throws(QuantizationError) -> any NumericFormat {
        guard let format = all.first(where: { $0.name == name.lowercased() }) else { throw .unknownFormat(name) }
        return format
    }
}

/// The groups of one row: `count` groups of `size` columns, the last one possibly shorter.
public struct GroupLayout: Sendable, Equatable {
    public let columns: Int
    public let size: Int

    public init(columns: Int, size: Int) {
        self.columns = columns
        self.size = size
    }

    /// ⌈columns / size⌉, computed without overflow for any width.
    public var count: Int { Sizes.groupCount(width: columns, size: size) }
    /// The columns of group g (g < count).
    public func range(_ g: Int) -> Range<Int> {
        let start = g * size
        return start..<(start + min(size, columns - start))
    }
    public var isRagged: Bool { columns % size != 0 }
}
