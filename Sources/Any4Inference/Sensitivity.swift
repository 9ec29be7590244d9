import Any4Core

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What `any4 plan` measures, and how.
public struct SensitivityOptions: Sendable {
    /// The choices per layer.
    public var candidates = PlanCandidate.defaultLadder
    /// Options every candidate quantizes with (its group size replaces `groupSize`).
    public var base = QuantizationOptions()
    public var selection = LayerSelection()
    /// Rows of a layer whose error is measured, evenly spaced (all when the layer has fewer).
    public var sampleRows = 256
    /// The candidate a probed layer is quantized to, alone, to measure the model's divergence.
    public var probe = PlanCandidate.keep
    /// Seconds the probes may take in all (0: no probes); layers not probed in time take a
    /// sensitivity interpolated from probed layers of the same kind.
    public var probeSeconds = 120.0
    /// Tokens of the probe sequence (a prefix of the first calibration sequence).
    public var probeTokens = 128
    /// Statistics for `calib:FILE` sample weighting, when the base options use it.
    public var calibration: CalibrationStats?

    public init() {
        probe = try! PlanCandidate(spec: "int4:g128")
    }
}

/// A measured sensitivity table with how each layer's sensitivity was obtained.
public struct SensitivityReport: Sendable {
    public var table: SensitivityTable
    /// Per layer: the factor from weighted output error to predicted model error.
    public var sensitivity: [Double]
    /// Per layer: whether its sensitivity was probed (else interpolated or the proxy).
    public var probed: [Bool]
    /// Per layer, per candidate: Σ_ij h_j (W − Ŵ)²_ij (nil where not applicable).
    public var outputError: [[Double?]]
    /// Seconds spent on statistics, per-layer errors and probes.
    public var statisticsSeconds = 0.0
    public var errorSeconds = 0.0
    public var probeSeconds = 0.0
}

/// Per-layer, per-candidate predicted model error, measured on the model's own activations.
///
/// For layer l with weights W and input statistic h_j = E[x_j²] (a forward pass over the
/// calibration prompt), candidate c's output error is E_l(c) = Σ_ij h_j (W − Ŵ_c)²_ij: the expected
/// squared error of the layer's outputs when inputs are uncorrelated across channels. It is
/// measured on evenly spaced rows and scaled to the whole layer. A probe quantizes layer l alone
/// to the probe candidate, runs the model from l's block on the cached hidden states, and takes the
/// mean KL divergence of its next-token distributions from the unquantized model's (encoders: the
/// relative squared error of the final hidden states); s_l = KL_l / E_l(probe). Predicted error of
/// c on l is s_l · E_l(c): for small errors KL is quadratic in the weight error, so linear in E.
/// Probes run in an order spread over depth until their time is spent; an unprobed layer takes s
/// interpolated (geometrically, in depth) from probed layers of its kind (`attn_q`, `ffn_down`…),
/// else the relative-error proxy below scaled to the probed layers. Without any probe, s_l = 1 / Σ_ij h_j W²_ij: the predicted error
/// is the sum of relative output errors.
public enum Sensitivity {
    public static func measure(
        _ engine: any TransformerEngine, sequences: [[Int]], options: SensitivityOptions, progress: Progress? = nil
    ) throws -> SensitivityReport {
        let model = engine.model
        let clock0 = Clock.now
        let stats = try EngineQuantization.calibrate(engine, sequences: sequences, progress: progress)
        let statisticsSeconds = Clock.now - clock0

        // The planned layers, in the engine's order, with their blocks.
        var planned: [(linear: Linear, tensor: ModelTensor, block: Int)] = []
        var seen = Set<String>()
        for b in 0...engine.blockCount {
            let linears = b < engine.blockCount ? engine.linears(ofBlock: b) : engine.linears
            for l in linears where !seen.contains(l.name) {
                guard let t = EngineQuantization.tensor(of: l, in: engine, selection: options.selection) else { continue }
                seen.insert(l.name)
                planned.append((l, t, b))
            }
        }
        guard !planned.isEmpty else { throw QuantizationError.badOption("no linear layer of \(model.path) is selected") }
        let plannedNames = Set(planned.map(\.tensor.name))
        var otherBits = 0, otherParameters = 0
        for t in model.tensors where !plannedNames.contains(t.name) {
            otherBits += t.info.byteCount * 8
            otherParameters += t.info.elementCount
        }

        // Output errors of every candidate on every layer.
        let candidates = options.candidates
        let clock1 = Clock.now
        progress?.reset(total: planned.count, label: "measuring candidates")
        var outputError: [[Double?]] = []
        var bits: [[Int?]] = []
        var energy: [Double] = []
        var channelStats: [[Float]] = []
        for (linear, tensor, _) in planned {
            if progress?.isCancelled == true { throw QuantizationError.cancelled }
            progress?.setLabel("measuring \(linear.name)")
            let h = channelStatistic(stats, linear)
            channelStats.append(h)
            let w = linear.decodedWeights()
            let rows = linear.rows, cols = linear.cols
            let sample = sampleRows(rows, options.sampleRows)
            var sampled = [Float](repeating: 0, count: sample.count * cols)
            for (i, r) in sample.enumerated() {
                for c in 0..<cols { sampled[i * cols + c] = w[r * cols + c] }
            }
            let scale = Double(rows) / Double(sample.count)
            energy.append(weightedError(w, nil, h, cols: cols))
            var errors: [Double?] = [], layerBits: [Int?] = []
            for candidate in candidates {
                guard let format = candidate.numericFormat else {
                    errors.append(0)
                    layerBits.append(tensor.info.byteCount * 8)
                    continue
                }
                let opts = candidate.options(base: options.base)
                do {
                    let channels = try ModelQuantization.channelWeights(for: tensor, options: opts, calibration: options.calibration)
                    let q = try Quantizer.quantize(
                        sampled, rows: sample.count, cols: cols, name: tensor.name, format: format, options: opts,
                        storage: ModelQuantization.storageDType(of: tensor, options: opts), channelWeights: channels)
                    errors.append(scale * weightedError(sampled, q.dequantized(), h, cols: cols))
                    // At the dtype the rows were stored in (F32 where F16 would overflow).
                    layerBits.append(
                        try Quantizer.storedBits(rows: rows, cols: cols, format: format, options: opts, storage: q.storage))
                } catch QuantizationError.cancelled {
                    throw QuantizationError.cancelled
                } catch is QuantizationError {
                    // Not applicable to this layer (a group that does not divide under
                    // --strict-groups, values the format cannot store).
                    errors.append(nil)
                    layerBits.append(nil)
                }
            }
            outputError.append(errors)
            bits.append(layerBits)
            progress?.advance()
        }
        let errorSeconds = Clock.now - clock1

        // Probes.
        let clock2 = Clock.now
        var sensitivity = [Double](repeating: .nan, count: planned.count)
        var probed = [Bool](repeating: false, count: planned.count)
        if options.probeSeconds > 0, let probeFormat = options.probe.numericFormat, let tokens = sequences.first, tokens.count >= 2 {
            let m = min(tokens.count, max(2, options.probeTokens))
            let probeTokens = Array(tokens.prefix(m))
            let reference = try ProbeReference(engine, tokens: probeTokens)
            let order = probeOrder(planned.map(\.block), blocks: engine.blockCount)
            progress?.reset(total: order.count, label: "probing")
            for l in order {
                if progress?.isCancelled == true { throw QuantizationError.cancelled }
                guard Clock.now - clock2 < options.probeSeconds else { break }
                let (linear, tensor, block) = planned[l]
                progress?.setLabel("probing \(linear.name)")
                let opts = options.probe.options(base: options.base)
                let w = linear.decodedWeights()
                let q: QuantizedMatrix
                do {
                    let channels = try ModelQuantization.channelWeights(for: tensor, options: opts, calibration: options.calibration)
                    q = try Quantizer.quantize(
                        w, rows: linear.rows, cols: linear.cols, name: tensor.name, format: probeFormat, options: opts,
                        storage: ModelQuantization.storageDType(of: tensor, options: opts), channelWeights: channels)
                } catch QuantizationError.cancelled {
                    throw QuantizationError.cancelled
                } catch is QuantizationError {
                    continue
                }
                let e = weightedError(w, q.dequantized(), channelStats[l], cols: linear.cols)
                try engine.replaceWeight(name: linear.name, with: q)
                let divergence = reference.divergence(from: block)
                engine.restoreWeight(name: linear.name)
                sensitivity[l] = e > 0 ? divergence / e : 0
                probed[l] = true
                progress?.advance()
            }
        }
        let probeSeconds = Clock.now - clock2
        let anyProbed = probed.contains(true)
        if anyProbed {
            sensitivity = interpolate(
                sensitivity, probed: probed, kinds: planned.map { kind(of: $0.linear.name) }, blocks: planned.map(\.block),
                energy: energy)
        } else {
            sensitivity = energy.map { $0 > 0 ? 1 / $0 : 0 }
        }
        let isEncoder = !(engine is LlamaEngine)
        let measure =
            anyProbed
            ? (isEncoder
                ? "predicted relative squared error of the final hidden states (probes with \(options.probe.spec))"
                : "predicted KL divergence, nats per token (probes with \(options.probe.spec))")
            : "sum of relative output errors Σ h (W−Ŵ)² / Σ h W² (no probes)"
        var entries: [[SensitivityTable.Entry?]] = []
        for l in planned.indices {
            entries.append(
                candidates.indices.map { c in
                    guard let e = outputError[l][c], let b = bits[l][c] else { return nil }
                    return SensitivityTable.Entry(bits: b, error: max(0, sensitivity[l] * e))
                })
        }
        let table = SensitivityTable(
            layers: planned.map(\.tensor.name), parameters: planned.map(\.tensor.info.elementCount), candidates: candidates,
            entries: entries, otherBits: otherBits, otherParameters: otherParameters, errorMeasure: measure)
        return SensitivityReport(
            table: table, sensitivity: sensitivity, probed: probed, outputError: outputError,
            statisticsSeconds: statisticsSeconds, errorSeconds: errorSeconds, probeSeconds: probeSeconds)
    }

    // MARK: - Pieces

    /// `count` row indices spread evenly over 0..<rows (all rows when there are no more).
    static func sampleRows(_ rows: Int, _ count: Int) -> [Int] {
        guard count > 0, rows > count else { return Array(0..<rows) }
        return (0..<count).map { $0 * rows / count }
    }

    /// Σ_ij h_j (W − Ŵ)²_ij (Ŵ nil: Σ h_j W²_ij).
    static func weightedError(_ w: [Float], _ approximation: [Float]?, _ h: [Float], cols: Int) -> Double {
        var total = 0.0
        let rows = w.count / max(cols, 1)
        w.withUnsafeBufferPointer { w in
            for r in 0..<rows {
                var row = 0.0
                for c in 0..<cols {
                    let d = Double(w[r * cols + c]) - Double(approximation?[r * cols + c] ?? 0)
                    row += Double(h[c]) * d * d
                }
                total += row
            }
        }
        return total
    }

    /// The layer's E[x_j²] (ones when the layer saw no input).
    static func channelStatistic(_ stats: CalibrationStats, _ linear: Linear) -> [Float] {
        if let layer = stats.layer(forWeight: linear.name), layer.sqmean.count == linear.cols { return layer.sqmean }
        return [Float](repeating: 1, count: linear.cols)
    }

    /// A layer's kind: its name with the block index taken out ("blk.7.attn_q.weight" → "blk.#.attn_q.weight").
    static func kind(of name: String) -> String {
        name.split(separator: ".", omittingEmptySubsequences: false).map { $0.allSatisfy(\.isNumber) && !$0.isEmpty ? "#" : String($0) }
            .joined(separator: ".")
    }

    /// Layer indices ordered so that any prefix spreads over depth: blocks in bit-reversed order.
    static func probeOrder(_ blocks: [Int], blocks count: Int) -> [Int] {
        func radicalInverse(_ i: Int) -> Double {
            var (x, f, r) = (i, 0.5, 0.0)
            while x > 0 {
                if x & 1 == 1 { r += f }
                x >>= 1
                f /= 2
            }
            return r
        }
        return blocks.indices.sorted { a, b in
            let (ka, kb) = (radicalInverse(blocks[a]), radicalInverse(blocks[b]))
            return ka != kb ? ka < kb : a < b
        }
    }

    /// Fills unprobed sensitivities: geometric interpolation in depth between the nearest probed
    /// layers of the same kind; for a kind never probed, the relative-output-error proxy
    /// 1 / Σ h W² scaled by the geometric mean of s · Σ h W² over the probed layers.
    static func interpolate(_ s: [Double], probed: [Bool], kinds: [String], blocks: [Int], energy: [Double]) -> [Double] {
        var out = s
        let positive = s.indices.filter { probed[$0] && s[$0] > 0 }
        let scaled = positive.filter { energy[$0] > 0 }
        let factor = scaled.isEmpty ? 0 : exp(scaled.map { log(s[$0] * energy[$0]) }.reduce(0, +) / Double(scaled.count))
        for l in s.indices where !probed[l] {
            let same = positive.filter { kinds[$0] == kinds[l] }
            let below = same.filter { blocks[$0] <= blocks[l] }.max { blocks[$0] < blocks[$1] }
            let above = same.filter { blocks[$0] >= blocks[l] }.min { blocks[$0] < blocks[$1] }
            switch (below, above) {
            case let (a?, b?) where blocks[a] != blocks[b]:
                let t = Double(blocks[l] - blocks[a]) / Double(blocks[b] - blocks[a])
                out[l] = exp(log(s[a]) * (1 - t) + log(s[b]) * t)
            case let (a?, _): out[l] = s[a]
            case let (_, b?): out[l] = s[b]
            default: out[l] = energy[l] > 0 ? factor / energy[l] : 0
            }
        }
        return out
    }
}

/// The unquantized model's hidden states at each block's input and its outputs on a probe
/// sequence, and the divergence of the model as it is now from them.
package final class ProbeReference {
    let engine: any TransformerEngine
    let m: Int
    /// Hidden states entering block i (i = blockCount: the last block's output).
    var inputs: [[Float]] = []
    /// Decoders: log-softmax of the reference logits [m, vocab]; encoders: empty.
    var logProbabilities: [Double] = []
    var finalHidden: [Float] = []

    package init(_ engine: any TransformerEngine, tokens: [Int]) throws {
        self.engine = engine
        m = tokens.count
        var h = try engine.embed(tokens)
        for i in 0..<engine.blockCount {
            inputs.append(h)
            engine.runBlock(i, hidden: &h, m: m)
        }
        inputs.append(h)
        finalHidden = h
        if let llama = engine as? LlamaEngine {
            let logits = llama.logitsOf(h, rows: 0..<m)
            let vocab = llama.config.vocab
            logProbabilities = [Double](repeating: 0, count: m * vocab)
            for r in 0..<m { Self.logSoftmax(logits, row: r, vocab: vocab, into: &logProbabilities) }
        }
    }

    static func logSoftmax(_ logits: [Float], row r: Int, vocab: Int, into out: inout [Double]) {
        var mx = -Double.infinity
        for i in 0..<vocab { mx = max(mx, Double(logits[r * vocab + i])) }
        var sum = 0.0
        for i in 0..<vocab { sum += exp(Double(logits[r * vocab + i]) - mx) }
        let lse = log(sum) + mx
        for i in 0..<vocab { out[r * vocab + i] = Double(logits[r * vocab + i]) - lse }
    }

    /// The divergence of the model as it is now, run from block `block` on the reference inputs:
    /// mean KL(reference ‖ now) per position (decoders), or Σ(h − ref)² / Σ ref² of the final
    /// hidden states (encoders).
    package func divergence(from block: Int) -> Double {
        var h = inputs[min(block, inputs.count - 1)]
        for i in min(block, engine.blockCount)..<engine.blockCount { engine.runBlock(i, hidden: &h, m: m) }
        if let llama = engine as? LlamaEngine {
            let logits = llama.logitsOf(h, rows: 0..<m)
            let vocab = llama.config.vocab
            var now = [Double](repeating: 0, count: vocab * m)
            var kl = 0.0
            for r in 0..<m {
                Self.logSoftmax(logits, row: r, vocab: vocab, into: &now)
                var row = 0.0
                for i in 0..<vocab {
                    let lp = logProbabilities[r * vocab + i]
                    row += exp(lp) * (lp - now[r * vocab + i])
                }
                kl += max(0, row)
            }
            return kl / Double(m)
        }
        var num = 0.0, den = 0.0
        for i in h.indices {
            let d = Double(h[i]) - Double(finalHidden[i])
            num += d * d
            den += Double(finalHidden[i]) * Double(finalHidden[i])
        }
        return den > 0 ? num / den : 0
    }
}
