/// The architecture facts of a model, from `config.json` or GGUF metadata. Absent facts are nil.
public struct ModelConfig: Sendable, Equatable {
    /// Family name: `llama`, `bert`, `qwen2`, ... (GGUF `general.architecture`, HF `model_type`).
    public var architecture: String?
    /// HF class name (`LlamaForCausalLM`, `BertModel`), when known.
    public var className: String?
    public var hiddenSize: Int?
    public var layers: Int?
    public var heads: Int?
    public var kvHeads: Int?
    public var intermediateSize: Int?
    public var vocabSize: Int?
    public var contextLength: Int?
    public var ropeTheta: Double?
    public var normEpsilon: Double?
    public var tiedEmbeddings: Bool?

    public init() {}

    /// Reads a Hugging Face `config.json`.
    public init(huggingFace json: JSONValue) {
        architecture = json["model_type"]?.string
        className = json["architectures"]?.array?.first?.string
        hiddenSize = json["hidden_size"]?.int
        layers = json["num_hidden_layers"]?.int
        heads = json["num_attention_heads"]?.int
        kvHeads = json["num_key_value_heads"]?.int ?? heads
        intermediateSize = json["intermediate_size"]?.int
        vocabSize = json["vocab_size"]?.int
        contextLength = json["max_position_embeddings"]?.int
        ropeTheta = json["rope_theta"]?.double
        normEpsilon = json["rms_norm_eps"]?.double ?? json["layer_norm_eps"]?.double
        tiedEmbeddings = json["tie_word_embeddings"]?.bool
    }

    /// Reads GGUF metadata (`<arch>.block_count`, `<arch>.embedding_length`, ...).
    public init(gguf: GGUFFile) {
        let arch = gguf.architecture
        architecture = arch
        let prefix = (arch ?? "") + "."
        func int(_ key: String) -> Int? { gguf.value(prefix + key)?.int }
        hiddenSize = int("embedding_length")
        layers = int("block_count")
        heads = int("attention.head_count")
        kvHeads = int("attention.head_count_kv") ?? heads
        intermediateSize = int("feed_forward_length")
        vocabSize = int("vocab_size") ?? gguf.value("tokenizer.ggml.tokens")?.array?.count
        contextLength = int("context_length")
        ropeTheta = gguf.value(prefix + "rope.freq_base")?.double
        normEpsilon =
            gguf.value(prefix + "attention.layer_norm_rms_epsilon")?.double
            ?? gguf.value(prefix + "attention.layer_norm_epsilon")?.double
        if gguf.tensor(named: "token_embd.weight") != nil {
            tiedEmbeddings = gguf.tensor(named: "output.weight") == nil
        }
    }

    /// The known fields as (name, value) pairs, for display.
    public var fields: [(String, String)] {
        var out: [(String, String)] = []
        func add(_ name: String, _ value: (any CustomStringConvertible)?) { if let value { out.append((name, value.description)) } }
        add("architecture", architecture)
        add("class", className)
        add("hidden_size", hiddenSize)
        add("layers", layers)
        add("heads", heads)
        add("kv_heads", kvHeads)
        add("intermediate_size", intermediateSize)
        add("vocab_size", vocabSize)
        add("context_length", contextLength)
        add("rope_theta", ropeTheta)
        add("norm_eps", normEpsilon)
        add("tied_embeddings", tiedEmbeddings)
        return out
    }
}
