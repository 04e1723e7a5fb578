import ViTMergeCore
import ViTMergeIO

/// Deterministic mini-batches: epoch e visits the examples in the order of a permutation drawn
/// from `RNG(seed:stream: e)`, and the last incomplete batch of an epoch is dropped. Batch s is a
/// pure function of (seed, s), so a resumed run sees exactly the batches an uninterrupted one does.
public struct BatchSampler: Sendable {
    public let count: Int
    public let batchSize: Int
    public let seed: UInt64
    public var stepsPerEpoch: Int { max(1, count / batchSize) }

    public init(count: Int, batchSize: Int, seed: UInt64) {
        precondition(count >= 1 && batchSize >= 1, "BatchSampler: empty data or batch")
        self.count = count
        self.batchSize = min(batchSize, count)
        self.seed = seed
    }

    /// The order in which epoch `epoch` visits the examples.
    public func order(epoch: Int) -> [Int] {
        var order = Array(0..<count)
        var rng = RNG(seed: seed, stream: UInt64(epoch))
        rng.shuffle(&order)
        return order
    }

    /// Example indices of 0-based `step` (draws the epoch's order; `Trainer` caches it instead).
    public func indices(step: Int) -> ArraySlice<Int> {
        let within = step % stepsPerEpoch
        return order(epoch: step / stepsPerEpoch)[(within * batchSize)..<((within + 1) * batchSize)]
    }
}

extension LabeledImages {
    /// Floats per image.
    public var imageSize: Int { channels * height * width }

    /// Writes images `indices` scaled to [0, 1] into `input` [n, C, H, W] and their labels.
    public func fill<C: Collection>(
        _ indices: C, input: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>?
    ) where C.Element == Int {
        let size = imageSize
        images.withUnsafeBufferPointer { src in
            for (j, i) in indices.enumerated() {
                let s = src.baseAddress! + i * size, d = input + j * size
                for p in 0..<size { d[p] = Float(s[p]) * (1 / 255) }
                labels?[j] = self.labels[i]
            }
        }
    }
}
