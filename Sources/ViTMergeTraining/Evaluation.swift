import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel

/// Index of the largest of `row[0..<count]`; the first one on ties (and NaNs never win).
// row[count] → argmax
@inline(__always)
public func argmax(_ row: UnsafePointer<Float>, count: Int) -> Int {
    var best = 0
    for j in 1..<count where row[j] > row[best] { best = j }
    return best
}

extension ViT {
    /// The primal forward, then, with `tangent` (laid out like the parameters), the JVP added to
    /// the outputs: acts.output = f(x; θ) + J(θ)·tangent (the linearized model f_lin). With
    /// `forBackward` false and no tangent, an inference forward (`forward(…forBackward:)`).
    @inline(__always)
    public func forward(
        input: UnsafePointer<Float>, batch: Int, acts: ViTActivations, tangent: UnsafePointer<Float>?,
        tangents: ViTTangents?, throughHead: Bool = true, forBackward: Bool = true
    ) {
        forward(
            input: input, batch: batch, acts: acts, throughHead: throughHead, forBackward: forBackward || tangent != nil
        )
        if let tangent {
            precondition(throughHead, "the linearized model is evaluated through the head")
            addJVP(tangent: tangent, batch: batch, acts: acts, tangents: tangents!)
        }
    }
}

/// The one batching loop of evaluation, feature extraction and merge evaluation: fills batches
/// of at most `acts.capacity` images of a `LabeledImages` range, runs the model (linearized when
/// a tangent is given) and hands each batch's outputs to a closure. Owns its input buffers, so
/// evaluating again allocates nothing.
public final class Evaluator {
    public let model: ViT
    public let acts: ViTActivations
    /// Tangent storage (only for linearized evaluation).
    public let tangents: ViTTangents?
    /// Images [capacity, C, H, W] and labels [capacity] of the current batch (`forEachBatch` fills them;
    /// a caller's backward reads the images from here).
    public let input: UnsafeMutablePointer<Float>
    public let labels: UnsafeMutablePointer<Int32>
    let imageSize: Int

    /// Batches of up to `acts.capacity` images (`capacity` when `acts` is nil); `linearized`
    /// allocates tangent storage unless `tangents` is given.
    public init(
        model: ViT, capacity: Int = 128, acts: ViTActivations? = nil, linearized: Bool = false,
        tangents: ViTTangents? = nil
    ) {
        self.model = model
        self.acts = acts ?? model.makeActivations(capacity: capacity)
        let c = model.config, n = self.acts.capacity
        self.tangents = linearized ? (tangents ?? ViTTangents(config: c, capacity: n)) : nil
        imageSize = c.inChannels * c.imageHeight * c.imageWidth
        input = .allocate(capacity: n * imageSize)
        input.initialize(repeating: 0, count: n * imageSize)
        labels = .allocate(capacity: n)
        labels.initialize(repeating: 0, count: n)
    }

    deinit {
        input.deallocate()
        labels.deallocate()
    }

    public var capacity: Int { acts.capacity }

    /// For each batch of examples `range` of `data`, in order: fill, forward (through the head
    /// unless `throughHead` is false; plus J·tangent when `tangent` is given), then
    /// `body(first, count, labels)`, with the outputs in `acts.output` (features in
    /// `acts.featuresPointer`) for examples first..<first + count. The forwards are inference
    /// forwards unless `forBackward` (for a `body` that runs the backward).
    public func forEachBatch(
        _ data: LabeledImages, range: Range<Int>, tangent: UnsafePointer<Float>? = nil, throughHead: Bool = true,
        forBackward: Bool = false, _ body: (_ first: Int, _ count: Int, _ labels: UnsafePointer<Int32>) -> Void
    ) {
        precondition(
            data.imageSize == imageSize, "Evaluator: images of \(data.imageSize) floats, model wants \(imageSize)")
        precondition(tangent == nil || tangents != nil, "Evaluator: a tangent needs an evaluator made linearized")
        var start = range.lowerBound
        while start < range.upperBound {
            let b = min(capacity, range.upperBound - start)
            data.fill(start..<(start + b), input: input, labels: labels)
            model.forward(
                input: input, batch: b, acts: acts, tangent: tangent, tangents: tangents, throughHead: throughHead,
                forBackward: forBackward)
            body(start, b, labels)
            start += b
        }
    }

    /// Correct predictions and summed cross-entropy over examples `range` of `data`.
    public func sums(
        _ data: LabeledImages, range: Range<Int>, tangent: UnsafePointer<Float>? = nil
    ) -> (correct: Int, lossSum: Double) {
        let k = model.config.numClasses
        precondition(k > 0, "evaluate needs a model with a head")
        var correct = 0, lossSum = 0.0
        forEachBatch(data, range: range, tangent: tangent) { _, b, labels in
            lossSum += Double(model.crossEntropy(labels: labels, batch: b, acts: acts)) * Double(b)
            let logits = acts.output
            for i in 0..<b where argmax(logits + i * k, count: k) == Int(labels[i]) { correct += 1 }
        }
        return (correct, lossSum)
    }

    /// Accuracy and mean cross-entropy over all of `data`.
    public func evaluate(
        _ data: LabeledImages, tangent: UnsafePointer<Float>? = nil
    ) -> (accuracy: Double, loss: Double) {
        let (correct, lossSum) = sums(data, range: 0..<data.count, tangent: tangent)
        return (Double(correct) / Double(max(data.count, 1)), lossSum / Double(max(data.count, 1)))
    }

    /// Predicted classes of examples `range` of `data`, written to `out[0..<range.count]`.
    public func predictions(
        _ data: LabeledImages, range: Range<Int>, tangent: UnsafePointer<Float>? = nil,
        into out: UnsafeMutablePointer<Int>
    ) {
        let k = model.config.numClasses
        precondition(k > 0, "predictions need a model with a head")
        forEachBatch(data, range: range, tangent: tangent) { first, b, _ in
            let logits = acts.output, o = out + (first - range.lowerBound)
            for i in 0..<b { o[i] = argmax(logits + i * k, count: k) }
        }
    }

    /// Predicted classes of examples `range` of `data`.
    public func predictions(_ data: LabeledImages, range: Range<Int>, tangent: UnsafePointer<Float>? = nil) -> [Int] {
        [Int](unsafeUninitializedCapacity: range.count) { buf, initialized in
            predictions(data, range: range, tangent: tangent, into: buf.baseAddress!)
            initialized = range.count
        }
    }

    /// Pooled features (the head's input) of examples `range` of `data`, written to
    /// `out[range.count, D]`.
    public func features(_ data: LabeledImages, range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let d = model.config.embedDim
        forEachBatch(data, range: range, throughHead: false) { first, b, _ in
            (out + (first - range.lowerBound) * d).update(from: acts.featuresPointer, count: b * d)
        }
    }
}

/// Accuracy and mean cross-entropy of `model` on `data`.
/// `acts` may be passed in to reuse one activation arena across many evaluations (allocating
/// and first-touching it costs more than a forward pass of a small model).
/// With `tangent` (laid out like the parameters) the linearized model is evaluated:
/// f_lin = f(x; θ_model) + J(θ_model)·tangent (tangent-space models and their merges).
public func evaluate(
    _ model: ViT, on data: LabeledImages, batchSize: Int = 128, acts reused: ViTActivations? = nil,
    tangent: UnsafePointer<Float>? = nil, tangents reusedTangents: ViTTangents? = nil
)
    -> (accuracy: Double, loss: Double)
{
    let (correct, lossSum) = evaluateSums(
        model, on: data, range: 0..<data.count, batchSize: batchSize, acts: reused,
        tangent: tangent, tangents: reusedTangents)
    return (Double(correct) / Double(max(data.count, 1)), lossSum / Double(max(data.count, 1)))
}

/// Correct predictions and summed cross-entropy over examples `range` of `data` (see `evaluate`).
func evaluateSums(
    _ model: ViT, on data: LabeledImages, range: Range<Int>, batchSize: Int = 128, acts reused: ViTActivations? = nil,
    tangent: UnsafePointer<Float>? = nil, tangents reusedTangents: ViTTangents? = nil
) -> (correct: Int, lossSum: Double) {
    let evaluator = Evaluator(
        model: model, capacity: min(batchSize, max(range.count, 1)), acts: reused, linearized: tangent != nil,
        tangents: reusedTangents)
    return evaluator.sums(data, range: range, tangent: tangent)
}

/// Pooled features [count, D] of `data` under a frozen encoder (the head's input).
public func extractFeatures(_ model: ViT, _ data: LabeledImages, batchSize: Int = 128) -> [Float] {
    let d = model.config.embedDim
    let evaluator = Evaluator(model: model, capacity: min(batchSize, max(data.count, 1)))
    return [Float](unsafeUninitializedCapacity: data.count * d) { buf, initialized in
        evaluator.features(data, range: 0..<data.count, into: buf.baseAddress!)
        initialized = data.count * d
    }
}
