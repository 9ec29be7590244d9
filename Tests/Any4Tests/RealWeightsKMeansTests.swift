import Any4Core
import Dispatch
import Foundation
import TestSupport
import XCTest

/// k-means on every row of the real MiniLM encoder weights, group-scaled as any4 does.
final class RealWeightsKMeansTests: XCTestCase {
    func testExactNeverWorseThanLloydAndLloydNeverRises() throws {
        let model = try Model.open(try TestPaths.requireModel(TestPaths.miniLM))
        let layers = model.tensors.filter { $0.isLinear && $0.name.hasPrefix("encoder.") }
        XCTAssertEqual(layers.count, 36)
        var rowsChecked = 0
        for layer in layers {
            let w = try model.decode(layer)
            let rows = layer.shape[0], cols = layer.shape[1]
            let failures = FailureLog()
            DispatchQueue.concurrentPerform(iterations: 2) { worker in
                let ws = KMeans1D.Workspace()
                let groups = GroupLayout(columns: cols, size: 128)
                let scaled = UnsafeMutableBufferPointer<Float>.allocate(capacity: cols)
                let weights = UnsafeMutableBufferPointer<Float>.allocate(capacity: cols)
                let scales = UnsafeMutableBufferPointer<Float>.allocate(capacity: groups.count)
                let zeros = UnsafeMutableBufferPointer<Float>.allocate(capacity: groups.count)
                defer {
                    scaled.deallocate()
                    weights.deallocate()
                    scales.deallocate()
                    zeros.deallocate()
                }
                for r in stride(from: worker, to: rows, by: 2) {
                    w.withUnsafeBufferPointer { all in
                        AnyFormat.scaleRow(
                            UnsafeBufferPointer(rebasing: all[(r * cols)..<((r + 1) * cols)]), groups: groups, bits: 4,
                            storage: StorageRounding(.f32), weighting: .scale, channelWeights: nil,
                            scales: scales, zeros: zeros, scaled: scaled, weights: weights)
                    }
                    do {
                        let v = UnsafeBufferPointer(scaled), wt = UnsafeBufferPointer(weights)
                        do {
                            let lloyd = KMeans1D.lloyd(v, weights: wt, k: 16, seed: UInt64(r), workspace: ws)
                            let exact = KMeans1D.exact(v, weights: wt, k: 16, workspace: ws)
                            if exact.objective > lloyd.objective * (1 + 1e-9) + 1e-12 {
                                failures.add("\(layer.name) row \(r): exact \(exact.objective) > lloyd \(lloyd.objective)")
                            }
                            for (a, b) in zip(lloyd.history, lloyd.history.dropFirst()) where b > a * (1 + 1e-12) + 1e-15 {
                                failures.add("\(layer.name) row \(r): Lloyd objective rose from \(a) to \(b)")
                            }
                        }
                    }
                }
            }
            for message in failures.messages.prefix(5) { XCTFail(message) }
            rowsChecked += rows
        }
        XCTAssertEqual(rowsChecked, 6 * (4 * 384 + 1536 + 384))
    }
}

final class FailureLog: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var messages: [String] = []
    func add(_ message: String) {
        lock.lock()
        messages.append(message)
        lock.unlock()
    }
}
