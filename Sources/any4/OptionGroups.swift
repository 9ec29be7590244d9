import Any4Core
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

/// `--out` and `--max-shard-size` of `quantize`: where the checkpoint goes and in which container.
struct CheckpointOutputOption: ParsableArguments {
    @Option(
        help: """
            Where to write the checkpoint: a path ending in .safetensors (one file), in .gguf (from a GGUF \
            model: a GGUF file that keeps its metadata and tokenizer), or any other path (from a Hugging Face \
            folder or .safetensors model: a folder with config.json, the tokenizer files, sharded weights and \
            model.safetensors.index.json). An existing folder is replaced only when empty or a checkpoint \
            folder any4 wrote.
            """)
    var out: String

    @Option(
        help:
            "Largest shard of a folder checkpoint (default 5GB): bytes, or with a unit (500MB, 5GB, 2GiB; KB/MB/GB are powers of 1000). A layer larger than this gets a shard of its own."
    )
    var maxShardSize: String?

    /// `--max-shard-size` in bytes (default 5 GB); status 2 naming the option when it is not a
    /// size, or when it is given for a container that has no shards.
    func maxShardBytes(for container: QuantizedCheckpoint.Container) throws -> Int {
        guard let text = maxShardSize else { return QuantizedCheckpoint.defaultMaxShardSize }
        guard container == .folder else {
            throw usageError("--max-shard-size is for a folder checkpoint; \(out) is one \(container.rawValue) file")
        }
        guard let bytes = QuantizedCheckpoint.parseByteSize(text) else {
            throw usageError("--max-shard-size: \"\(text)\" is not a size (bytes, or a number with KB, MB, GB, KiB, MiB, GiB)")
        }
        return bytes
    }
}

/// `--json`: one JSON object on stdout instead of text (the command's description lists its keys).
struct JSONOutputOption: ParsableArguments {
    @Flag(help: "Print one JSON object instead of text.")
    var json = false
}
