// TEMPORARY reference implementation (slow, simple); replaced by the optimised solver.
public enum KMeans1D {
    public struct Result: Sendable, Equatable {
        public var centroids: [Float]
        public var objective: Double
        public var iterations: Int
        public var history: [Double]
    }
    public final class Workspace { public init() {} }

    public static func objective(_ values: UnsafeBufferPointer<Float>, weights: UnsafeBufferPointer<Float>?, centroids: [Float]) -> Double {
        var total = 0.0
        for i in 0..<values.count {
            var best = Double.infinity
            for c in centroids { best = min(best, Double(values[i] - c) * Double(values[i] - c)) }
            total += Double(weights?[i] ?? 1) * best
        }
        return total
    }

    public static func lloyd(_ values: UnsafeBufferPointer<Float>, weights: UnsafeBufferPointer<Float>?, k: Int, seed: UInt64,
                             maxIterations: Int = 300, workspace: Workspace) -> Result {
        let n = values.count
        var rng = SplitMix64(seed: seed)
        var centroids: [Float] = [values[Int(rng.next() % UInt64(n))]]
        while centroids.count < k {
            var d2 = [Double](repeating: 0, count: n)
            var total = 0.0
            for i in 0..<n {
                var best = Double.infinity
                for c in centroids { best = min(best, Double(values[i] - c) * Double(values[i] - c)) }
                d2[i] = best * Double(weights?[i] ?? 1)
                total += d2[i]
            }
            if total == 0 { centroids.append(centroids[0]); continue }
            var r = rng.nextUnit() * total
            var pick = n - 1
            for i in 0..<n { r -= d2[i]; if r < 0 { pick = i; break } }
            centroids.append(values[pick])
        }
        centroids.sort()
        var history = [objective(values, weights: weights, centroids: centroids)]
        var iterations = 0
        for _ in 0..<maxIterations {
            var sw = [Double](repeating: 0, count: k), sx = [Double](repeating: 0, count: k)
            for i in 0..<n {
                var best = 0
                for j in 1..<k where abs(values[i] - centroids[j]) < abs(values[i] - centroids[best]) { best = j }
                let w = Double(weights?[i] ?? 1)
                sw[best] += w
                sx[best] += w * Double(values[i])
            }
            var next = centroids
            for j in 0..<k where sw[j] > 0 { next[j] = Float(sx[j] / sw[j]) }
            next.sort()
            iterations += 1
            if next == centroids { break }
            centroids = next
            history.append(objective(values, weights: weights, centroids: centroids))
        }
        return Result(centroids: centroids, objective: history.last!, iterations: iterations, history: history)
    }

    public static func exact(_ values: UnsafeBufferPointer<Float>, weights: UnsafeBufferPointer<Float>?, k: Int, workspace: Workspace) -> Result {
        let result = lloyd(values, weights: weights, k: k, seed: 1, workspace: workspace)
        return Result(centroids: result.centroids, objective: result.objective, iterations: 0, history: [result.objective])
    }
}
