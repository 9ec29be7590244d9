import ArgumentParser

// Option groups the commands share: each option is declared, described and range-checked once.
// (The quantization options are in QuantizationOptionGroup.swift, the engine commands' in
// InferenceSupport.swift.)

/// The model a command works on.
struct ModelArgument: ParsableArguments {
    @Argument(help: "A .safetensors file, a Hugging Face model folder, or a .gguf file (`demo`: the built-in model).")
    var model: String
}

/// The model a command works on, the built-in demo when none is given.
struct OptionalModelArgument: ParsableArguments {
    @Argument(help: "A .safetensors file, a Hugging Face model folder, or a .gguf file (default: the built-in demo model).")
    var model: String?
}

/// `--threads`.
struct ThreadsOption: ParsableArguments {
    @Option(parsing: .unconditional, help: "Worker threads, 0 to 1024 (0: all cores).")
    var threads = 0

    /// Checked as the command line is parsed (status 2 naming the option).
    func validate() throws { try requireThreads(threads) }
}

/// `--group-size`.
struct GroupSizeOption: ParsableArguments {
    @Option(
        parsing: .unconditional,
        help:
            "Group size for formats that take one: an even number from 2 to 65536. Widths it does not divide get a shorter last group; a group wider than a row is one group per row."
    )
    var groupSize = 128

    /// Checked as the command line is parsed (status 2 naming the option).
    func validate() throws { try requireGroupSize(groupSize) }
}

/// `--out`: the file a command writes (to a temporary name, renamed when complete).
struct OutputFileOption: ParsableArguments {
    @Option(help: "Output .safetensors file.")
    var out: String
}

/// `--json`: one JSON object on stdout instead of text (the command's description lists its keys).
struct JSONOutputOption: ParsableArguments {
    @Flag(help: "Print one JSON object instead of text.")
    var json = false
}
