import Any4Bench
import Any4Core
import Any4GPU
import Any4Inference
import Any4Kernels
import ArgumentParser

// The choice options' value types. ArgumentParser parses them (their values show in `--help`); a
// value outside the choices is recorded here and `Any4Command.main` reports it as the other bad
// options are: `any4: error: --cluster must be lloyd or exact, got "kmeans"`, status 2 (not the
// parser's usage and status 64, which stay for unknown flags and non-numbers).

/// A value of a choice option that failed to parse, and the message that names the option.
enum ChoiceFailure {
    /// The value given, the option's names (the usual one first), and the message for the name
    /// the command line used.
    struct Failure {
        var value: String
        var options: [String]
        var message: (_ option: String) -> String
    }

    /// The last value that failed to parse (parsing stops at the first).
    nonisolated(unsafe) static var last: Failure?

    static func record(_ value: String, options: [String], message: @escaping (_ option: String) -> String) {
        last = Failure(value: value, options: options, message: message)
    }

    /// The message for the last failure, naming the option as `arguments` give it the value
    /// (`--opt value` or `--opt=value`; `--format` or its alias `--quantize` for a format), or by
    /// its usual name when none does.
    static func message(arguments: [String]) -> String? {
        guard let failure = last else { return nil }
        let given = failure.options.first { option in
            arguments.contains(option + "=" + failure.value)
                || zip(arguments, arguments.dropFirst()).contains { $0 == option && $1 == failure.value }
        }
        return failure.message(given ?? failure.options[0])
    }
}

/// "a", "a or b", "a, b or c".
func choiceList(_ names: [String]) -> String {
    names.count < 2 ? names.joined() : names.dropLast().joined(separator: ", ") + " or " + names.last!
}

/// An enum option whose cases are its choices (raw values as typed). Public as the core's enums
/// that conform are: ExpressibleByArgument's requirements must be as visible as they are.
public protocol ChoiceArgument: ExpressibleByArgument, CaseIterable, RawRepresentable where RawValue == String {
    /// The option's name, for the message when a value is not one of the cases.
    static var optionName: String { get }
}

extension ChoiceArgument {
    public init?(argument: String) {
        guard let value = Self(rawValue: argument) else {
            let names = Self.allCases.map(\.rawValue)
            ChoiceFailure.record(argument, options: [Self.optionName]) { "\($0) must be \(choiceList(names)), got \"\(argument)\"" }
            return nil
        }
        self = value
    }

    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
    public var defaultValueDescription: String { rawValue }
}

extension ClusterMethod: ExpressibleByArgument, ChoiceArgument {
    public static var optionName: String { "--cluster" }
}

extension CalibrationStatistic: ExpressibleByArgument, ChoiceArgument {
    public static var optionName: String { "--stat" }
}

extension KernelPath: ExpressibleByArgument, ChoiceArgument {
    public static var optionName: String { "--kernel" }
}

/// `--table-dtype`: the float dtype of LUTs, scales and zeros.
enum TableDTypeArgument: String, ChoiceArgument {
    case f16, bf16, f32
    static var optionName: String { "--table-dtype" }

    var dtype: DType {
        switch self {
        case .f16: .f16
        case .bf16: .bf16
        case .f32: .f32
        }
    }
}

extension DecodeHead: ExpressibleByArgument, ChoiceArgument {
    public static var optionName: String { "--head" }
}

extension KVPrecision: ExpressibleByArgument, ChoiceArgument {
    public static var optionName: String { "--kv-cache" }
}

extension KernelBenchmark.Device: ExpressibleByArgument, ChoiceArgument {
    public static var optionName: String { "--device" }
}

extension GPUActivationType: ExpressibleByArgument, ChoiceArgument {
    public static var optionName: String { "--gpu-activations" }
}

/// `--sample-weight`: none, scale or calib:FILE.
enum SampleWeightArgument: ExpressibleByArgument, Equatable {
    case none
    case scale
    /// Scale × a statistic of the calibration file (`--stat`).
    case calibration(path: String)

    init?(argument: String) {
        switch argument {
        case "none": self = .none
        case "scale": self = .scale
        case let s where s.hasPrefix("calib:") && s.count > 6: self = .calibration(path: String(s.dropFirst(6)))
        default:
            ChoiceFailure.record(argument, options: ["--sample-weight"]) { "\($0) must be none, scale or calib:FILE, got \"\(argument)\"" }
            return nil
        }
    }

    static var allValueStrings: [String] { ["none", "scale", "calib:FILE"] }

    var defaultValueDescription: String {
        switch self {
        case .none: "none"
        case .scale: "scale"
        case .calibration(let path): "calib:" + path
        }
    }

    /// The weighting, with `statistic` for calib:FILE.
    func weighting(_ statistic: CalibrationStatistic) -> SampleWeighting {
        switch self {
        case .none: .none
        case .scale: .scale
        case .calibration(let path): .calibration(path: path, statistic: statistic)
        }
    }
}

/// One format of the registry (`--format` of quantize and of the engine commands, which keep
/// `--quantize` as a hidden alias); its values are the registry's names.
struct FormatArgument: ExpressibleByArgument {
    let format: any NumericFormat

    init?(argument: String) {
        do {
            format = try FormatRegistry.named(argument)
        } catch {
            ChoiceFailure.record(argument, options: ["--format", "--quantize"]) { "\($0): \(error)" }
            return nil
        }
    }

    static var allValueStrings: [String] { FormatRegistry.all.map(\.name) }
    var defaultValueDescription: String { format.name }
}
