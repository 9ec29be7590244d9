/// any-b: group scaling as int-b, then a per-row table of 2^b values learned by weighted 1-D
/// k-means over the row's group-scaled values (DESIGN.md, step 3).
///
/// The sample weight of element (r, c) is 1 (`none`), the group scale s(r, g) (`scale`, the
/// paper's default), or s(r, g) × a calibration statistic of input channel c. The table is stored
/// centred (centroid − 2^(b−1)) and rounded to the storage dtype; each code is the nearest stored
/// table entry (a value exactly between two entries takes the lower one).
public struct AnyFormat: NumericFormat {
    public let codeBits: Int
    public init(bits: Int) { codeBits = bits }
    public var name: String { "any\(codeBits)" }
    public var summary: String { "\(codeBits)-bit learned per-row LUT (k-means), asymmetric groups" }
    public var hasZeros: Bool { true }
    public var perRowTable: Bool { true }

    /// Group-scales a row for k-means: writes each group's stored scale and zero, the scaled values
    /// (in [0, 2^b − 1]) and each element's sample weight.
    public static func scaleRow(
        _ values: UnsafeBufferPointer<Float>, groups: GroupLayout, bits: Int, storage: StorageRounding,
        weighting: SampleWeighting, channelWeights: UnsafeBufferPointer<Float>?,
        scales: UnsafeMutableBufferPointer<Float>, zeros: UnsafeMutableBufferPointer<Float>,
        scaled: UnsafeMutableBufferPointer<Float>, weights: UnsafeMutableBufferPointer<Float>
    ) {
        let levels = Float((1 << bits) - 1)
        let half = Float(1 << (bits - 1))
        for g in 0..<groups.count {
            let range = groups.range(g)
            let (s, z, low) = GroupScaling.asymmetric(values, range, levels: levels, half: half, storage: storage)
            scales[g] = s
            zeros[g] = z
            for c in range {
                scaled[c] = GroupScaling.scaled(values[c], low: low, scale: s)
                switch weighting {
                case .none: weights[c] = 1
                case .scale: weights[c] = s
                case .calibration: weights[c] = s * (channelWeights?[c] ?? 1)
                }
            }
        }
    }

    public func quantizeRow(_ job: RowJob) {
        let half = Float(1 << (codeBits - 1))
        let n = job.values.count
        let ws = job.workspace
        if ws.scaled.count < n { ws.scaled = [Float](repeating: 0, count: n) }
        if ws.weights.count < n { ws.weights = [Float](repeating: 0, count: n) }
        ws.scaled.withUnsafeMutableBufferPointer { scaled in
            ws.weights.withUnsafeMutableBufferPointer { weights in
                Self.scaleRow(
                    job.values, groups: job.groups, bits: codeBits, storage: job.storage,
                    weighting: job.options.sampleWeighting, channelWeights: job.channelWeights,
                    scales: job.scales, zeros: job.zeros, scaled: scaled, weights: weights)
                // A scale or zero the storage dtype cannot hold leaves nothing to cluster; the
                // row check reports it.
                guard job.scales.allSatisfy(\.isFinite), job.zeros.allSatisfy(\.isFinite) else { return }
                let values = UnsafeBufferPointer(rebasing: scaled[0..<n])
                let w: UnsafeBufferPointer<Float>? = job.options.sampleWeighting == .none ? nil : UnsafeBufferPointer(rebasing: weights[0..<n])
                let k = 1 << codeBits
                let result =
                    switch job.options.cluster {
                    case .lloyd: KMeans1D.lloyd(values, weights: w, k: k, seed: job.options.seed &+ UInt64(job.row), workspace: ws.kmeans)
                    case .exact: KMeans1D.exact(values, weights: w, k: k, workspace: ws.kmeans)
                    }
                job.objective.pointee = result.objective
                for i in 0..<k { job.table[i] = job.storage(result.centroids[i] - half) }
                TableSearch.assignNearest(values, offset: half, table: UnsafeBufferPointer(job.table), codes: job.codes)
            }
        }
    }
}

/// Nearest-entry search in a small table.
public enum TableSearch {
    /// codes[c] = index of the entry of `table` nearest to values[c] − offset; on a tie the lower
    /// index wins (or, with `tiesToEven`, the even index: IEEE round-half-to-even for E2M1 codes).
    @inline(__always)
    public static func assignNearest(
        _ values: UnsafeBufferPointer<Float>, offset: Float, table: UnsafeBufferPointer<Float>,
        codes: UnsafeMutableBufferPointer<UInt8>, tiesToEven: Bool = false
    ) {
        for c in 0..<values.count {
            codes[c] = UInt8(nearest(values[c] - offset, table, tiesToEven: tiesToEven))
        }
    }

    @inline(__always)
    public static func nearest(_ v: Float, _ table: UnsafeBufferPointer<Float>, tiesToEven: Bool = false) -> Int {
        var best = 0
        var bestDistance = abs(v - table[0])
        for i in 1..<table.count {
            let d = abs(v - table[i])
            if d < bestDistance || (tiesToEven && d == bestDistance && best % 2 == 1 && i % 2 == 0) {
                best = i
                bestDistance = d
            }
        }
        return best
    }
}
