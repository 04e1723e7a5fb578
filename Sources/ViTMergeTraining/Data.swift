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
        var order = [Int](repeating: 0, count: count)
        self.order(epoch: epoch, into: &order)
        return order
    }

    /// Writes epoch `epoch`'s order into `order` (`count` elements; allocates nothing).
    public func order(epoch: Int, into order: inout [Int]) {
        precondition(order.count == count, "BatchSampler: the order needs \(count) elements")
        for i in 0..<count { order[i] = i }
        var rng = RNG(seed: seed, stream: UInt64(epoch))
        rng.shuffle(&order)
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
        for (j, i) in indices.enumerated() { fill(image: i, at: j, input: input, labels: labels) }
    }

    /// `fill` for a batch of the sampler's order (an index loop: allocates nothing, even unoptimized).
    public func fill(
        _ indices: ArraySlice<Int>, input: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>?
    ) {
        let first = indices.startIndex
        for j in 0..<indices.count { fill(image: indices[first + j], at: j, input: input, labels: labels) }
    }

    /// `fill` for consecutive images.
    public func fill(_ indices: Range<Int>, input: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>?) {
        let first = indices.lowerBound
        for j in 0..<indices.count { fill(image: first + j, at: j, input: input, labels: labels) }
    }

    /// Image `i` scaled to [0, 1] (then normalized, with `normalization`) into `input[j]` [C, H, W], its label
    /// into `labels[j]`.
    @inline(__always)
    func fill(image i: Int, at j: Int, input: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>?) {
        let size = imageSize
        images.withUnsafeBufferPointer { src in convert(src.baseAddress! + i * size, into: input + j * size) }
        labels?[j] = self.labels[i]
    }

    /// d[C, H, W] = s[C, H, W] / 255, then normalized with `normalization`.
    @inline(__always)
    func convert(_ s: UnsafePointer<UInt8>, into d: UnsafeMutablePointer<Float>) {
        if let n = normalization {
            // torch's order of operations: ToTensor divides by 255, Normalize subtracts and divides.
            let plane = height * width
            for c in 0..<channels {
                let (m, sd) = (n.mean[c], n.std[c])
                for p in (c * plane)..<((c + 1) * plane) { d[p] = (Float(s[p]) / 255 - m) / sd }
            }
        } else {
            for p in 0..<imageSize { d[p] = Float(s[p]) * (1 / 255) }
        }
    }

    /// `fill` with each image replaced by its augmented crop: image `indices[j]` is at position
    /// `firstPosition + j` of global batch `step`, and gets `augmentation.crop(seed:step:position:…)`,
    /// resized back to H × W (then scaled and normalized as `fill` does). The images are processed
    /// on `pool`'s threads, each by one thread, so the result does not depend on the thread count.
    /// Allocates a few image-sized buffers per image.
    public func fill(
        _ indices: ArraySlice<Int>, augmentation: Augmentation, seed: UInt64, step: Int, firstPosition: Int,
        input: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>?, pool: ThreadPool = .shared
    ) {
        let first = indices.startIndex, n = indices.count, size = imageSize
        pool.run(threads: max(1, min(pool.threads, n))) { ith, nth in
            var crop = [UInt8](repeating: 0, count: size)
            for j in ThreadPool.split(n, ith, nth) {
                let i = indices[first + j]
                let c = augmentation.crop(
                    seed: seed, step: step, position: firstPosition + j, height: height, width: width)
                images.withUnsafeBufferPointer { src in
                    crop.withUnsafeMutableBufferPointer { dst in
                        augmentation.apply(
                            c, image: src.baseAddress! + i * size, channels: channels, height: height, width: width,
                            into: dst.baseAddress!)
                        convert(dst.baseAddress!, into: input + j * size)
                    }
                }
            }
        }
        for j in 0..<n { labels?[j] = self.labels[indices[first + j]] }
    }
}
