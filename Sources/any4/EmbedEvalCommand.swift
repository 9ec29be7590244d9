import Any4Core
import Any4Inference
import ArgumentParser
import Foundation

struct EmbedEvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed-eval",
        abstract: "How far quantization moves an encoder's sentence embeddings (cosine to the f32 ones).",
        discussion: """
            One sentence a line. --json: {"mean_cosine", "min_cosine", "sentences", "worst"}. MODEL: a Hugging Face \
            folder or .gguf file of a BERT encoder.
            """)

    @OptionGroup var modelArgument: ModelArgument

    @Option(help: "Sentences, one a line.")
    var sentences: String

    @OptionGroup var engineQuantization: EngineQuantizationGroup

    @OptionGroup var jsonOutput: JSONOutputOption

    func run() throws {
        let json = jsonOutput.json
        let model = try openModel(modelArgument.model)
        let engine = try loadEngine(model, options: engineQuantization.engineOptions())
        guard let bert = engine as? BertEngine else {
            throw usageError("\(model.path): embed-eval needs an encoder; \(model.config.architecture ?? "this model") is a decoder (try ppl)")
        }
        let tokenizer = try loadTokenizer(model)
        let lines = try readText(sentences, what: "sentence file").split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let ids = lines.map { Array(tokenizer.encode($0, addSpecialTokens: true).prefix(bert.maxPositions)) }
        guard engineQuantization.quantize != nil else {
            throw usageError("embed-eval compares against a quantized model: give --format FORMAT")
        }
        let progress = Progress(total: lines.count, label: "embedding (f32)")
        let reference = try runProgressJob(progress, interrupted: "interrupted") {
            try EmbeddingComparison.embeddings(bert, ids, progress: progress)
        }
        let quantized = try engineQuantization.apply(to: engine, tokenizer: tokenizer, quiet: json)
        progress.reset(total: lines.count, label: "embedding (quantized)")
        let after = try runProgressJob(progress, interrupted: "interrupted") {
            try EmbeddingComparison.embeddings(bert, ids, progress: progress)
        }
        let comparison = EmbeddingComparison(reference: reference, quantized: after)
        let worst = comparison.worst!
        if json {
            print(
                JSONValue.object([
                    ("mean_cosine", JSONValue(comparison.mean)), ("min_cosine", JSONValue(worst.cosine)),
                    ("sentences", JSONValue(lines.count)), ("worst", .string(lines[worst.index])),
                    ("weights", .string(quantized ?? "as stored"))
                ]).serialized)
        } else {
            print("\(lines.count) sentences, \(quantized ?? "as stored")")
            print("mean cosine \(Formatting.fixed(comparison.mean, 6)) · min \(Formatting.fixed(worst.cosine, 6))")
            print("worst: \(lines[worst.index])")
        }
    }
}
