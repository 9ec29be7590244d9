import Dispatch

/// The built-in demo: a small, deterministic, Llama-shaped model made in memory.
///
/// Its weights are Student-t distributed (heavy tails, as trained LLM weights are) and a few
/// input channels of every linear layer are scaled up, like the outlier channels of real models,
/// so histograms and quantization errors look like a real model's. Widths include one (688)
/// that the default group size 128 does not divide. Nothing here is trained: it shows the tool,
/// not a language model.
public enum DemoModel {
    public static let hidden = 256
    public static let intermediate = 688
    public static let layers = 4
    public static let heads = 4
    public static let kvHeads = 2
    public static let vocab = 2048
    public static let name = "synthetic demo"

    public static var config: ModelConfig {
        var c = ModelConfig()
        c.architecture = "llama"
        c.className = "LlamaForCausalLM"
        c.hiddenSize = hidden
        c.layers = layers
        c.heads = heads
        c.kvHeads = kvHeads
        c.intermediateSize = intermediate
        c.vocabSize = vocab
        c.contextLength = 512
        c.ropeTheta = 10000
        c.normEpsilon = 1e-5
        c.tiedEmbeddings = false
        return c
    }

    /// Builds the model (BF16 weights, about 8 MB). Rows are generated in parallel, each from its
    /// own seeded stream, so the result does not depend on the thread count.
    public static func make(seed: UInt64 = 4) throws -> Model {
        var rng = SplitMix64(seed: seed)
        var entries: [SafeTensorsWriter.Entry] = []
        func matrix(_ name: String, _ rows: Int, _ cols: Int, outliers: Int = 3) {
            let scale = 1 / Double(cols).squareRoot()
            var channelGain = [Double](repeating: 1, count: cols)
            for _ in 0..<outliers { channelGain[Int(rng.next() % UInt64(cols))] = 6 + 10 * rng.nextUnit() }
            let matrixSeed = rng.next()
            let gains = channelGain
            var values = [Float](repeating: 0, count: rows * cols)
            values.withUnsafeMutableBufferPointer { out in
                let box = UncheckedBox(out)
                DispatchQueue.concurrentPerform(iterations: rows) { r in
                    var rowRNG = SplitMix64(seed: matrixSeed &+ UInt64(r) &* 0x9E37_79B9)
                    let rowGain = 0.7 + 0.6 * rowRNG.nextUnit()
                    for c in 0..<cols {
                        box.value[r * cols + c] = Float(rowRNG.nextStudentT4() * scale * rowGain * gains[c] * 0.7)
                    }
                }
            }
            entries.append(.init(name: name, shape: [rows, cols], floats: values, as: .bf16))
        }
        func norm(_ name: String, _ size: Int) {
            entries.append(.init(name: name, shape: [size], floats: (0..<size).map { _ in Float(1 + 0.1 * rng.nextGaussian()) }, as: .bf16))
        }
        let headDim = hidden / heads
        matrix("model.embed_tokens.weight", vocab, hidden, outliers: 0)
        for layer in 0..<layers {
            let p = "model.layers.\(layer)."
            norm(p + "input_layernorm.weight", hidden)
            matrix(p + "self_attn.q_proj.weight", hidden, hidden)
            matrix(p + "self_attn.k_proj.weight", kvHeads * headDim, hidden)
            matrix(p + "self_attn.v_proj.weight", kvHeads * headDim, hidden)
            matrix(p + "self_attn.o_proj.weight", hidden, hidden)
            norm(p + "post_attention_layernorm.weight", hidden)
            matrix(p + "mlp.gate_proj.weight", intermediate, hidden)
            matrix(p + "mlp.up_proj.weight", intermediate, hidden)
            matrix(p + "mlp.down_proj.weight", hidden, intermediate)
        }
        norm("model.norm.weight", hidden)
        matrix("lm_head.weight", vocab, hidden, outliers: 0)
        let image = try SafeTensorsWriter.image(entries, metadata: ["source": "any4 synthetic demo", "seed": String(seed)])
        return try Model.inMemory(safetensors: image, name: name, format: .demo, config: config)
    }
}
