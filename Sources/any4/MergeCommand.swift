import Any4Core
import ArgumentParser

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Finish a split quantize run: check every part, then write the index and config into the checkpoint folder.",
        discussion: """
            Each `quantize --shard I/N --out OUT` (or a Slurm array task / Kubernetes indexed pod) writes its \
            shards and a manifest part-I-of-N.json into OUT.partial. `any4 merge OUT.partial` checks that every \
            part 0..N-1 is there, that all were made from the same inputs, options and split, and that every \
            shard is complete (size and header as its part recorded), then writes model.safetensors.index.json \
            and renames the folder to OUT. Parts written to separate folders (machines without a shared file \
            system) are merged with `any4 merge DIR1 DIR2 ... --out OUT`: their shards are hard-linked (or \
            copied) into OUT.partial first. Nothing is written when a check fails (exit 2, naming the part or shard).
            """
    )

    @Argument(help: "The folder(s) holding the parts (OUT.partial, or one folder per part).")
    var folders: [String]

    @Option(help: "The checkpoint folder to write (default: the one folder given, less .partial).")
    var out: String?

    func run() throws {
        let written = try reportingFileErrors {
            do {
                return try CheckpointMerge.merge(folders, out: out) { printError("any4: \($0)") }
            } catch let error as QuantizationError {
                throw usageError("\(error)")
            }
        }
        print("wrote \(written)")
    }
}
