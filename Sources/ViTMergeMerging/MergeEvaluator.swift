import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel
import ViTMergeTraining

/// One task in a merge: its data splits, its own head (from its fine-tuned model), its task
/// vector, and the fine-tuned model's accuracies used for normalization.
public struct MergeTask: Sendable {
    public let name: String
    public let validation: LabeledImages
    public let test: LabeledImages
    /// head.weight [K, D] then head.bias [K].
    public let head: [Float]
    public let classes: Int
    /// τ = θ_ft − θ_pre over the encoder, in the pretrained parameters' encoder layout.
    public var tau: EncoderVector
    public let finetunedValidation: Double
    public let finetunedTest: Double
    /// Training images for the merges that use data (Fisher, RegMean: a seeded subset of the task's
    /// training split, see `LabeledImages.sample`); nil when none were given.
    public var samples: LabeledImages?

    public init(
        name: String, validation: LabeledImages, test: LabeledImages, finetuned: ViTParameters,
        pretrained: ViTParameters,
        finetunedValidation: Double, finetunedTest: Double, samples: LabeledImages? = nil
    ) throws {
        self.name = name
        self.samples = samples
        self.validation = validation
        self.test = test
        let t = finetuned.table
        head =
            Array(
                UnsafeBufferPointer(
                    start: finetuned.base + t.headW!, count: finetuned.config.numClasses * finetuned.config.embedDim))
            + Array(UnsafeBufferPointer(start: finetuned.base + t.headB!, count: finetuned.config.numClasses))
        classes = finetuned.config.numClasses
        tau = try TaskVector(task: name, finetuned: finetuned, pretrained: pretrained).values
        self.finetunedValidation = finetunedValidation
        self.finetunedTest = finetunedTest
    }
}

public enum Split: String, Sendable { case validation, test }

/// The encoder θ_pre + Σ coefficients[i]·vectors[i], described rather than computed: the evaluator
/// writes it straight into the parameter arena of the model it evaluates (`MergeEvaluator.write`),
/// so a λ step or a grid cell allocates no encoder. The vectors are read when the encoder is used.
public struct MergedEncoder: Sendable {
    public let vectors: [EncoderVector]
    public let coefficients: [Float]

    public init(_ vectors: [EncoderVector], _ coefficients: [Float]) {
        precondition(
            vectors.count == coefficients.count,
            "MergedEncoder: \(vectors.count) vectors, \(coefficients.count) coefficients")
        self.vectors = vectors
        self.coefficients = coefficients
    }
}

/// Evaluates merged encoders θ_pre + Σ c_i τ_i on each task with that task's head. With
/// `linearized`, the merged model is the tangent-space one: f(x; θ_pre) + J(θ_pre)·(Σ c_i τ_i)
/// (task vectors from linearized fine-tuning; the head stays the task's own).
///
/// Memory: one model per class count (parameters, activations, and in linearized mode one
/// tangent arena), reused for every merge: an encoder is written in place into that model's
/// arena (or tangent), the head copied in per task.
public final class MergeEvaluator {
    public let pretrained: ViTParameters
    public let tasks: [MergeTask]
    public let pool: ThreadPool
    public let linearized: Bool
    /// One model per class count, reused (encoder written in place, head swapped per task).
    private var models: [Int: Loaded] = [:]
    /// Σ τ over a subset (the default direction of `addition`), reused.
    var sumScratch: EncoderVector?
    /// Predictions of θ_pre itself (every coefficient 0: `combine` skips the vectors, the tangent is 0) per
    /// task, split and image limit: every λ = 0 point of every subset and method asks for them again.
    private var pretrainedPredictions: [String: [Int]] = [:]
    /// AdaMerging's schedule for `direction(.adaMerging…)` (steps, learning rate, batch, seed).
    public var adaMergingOptions = AdaMergingOptions()
    /// The outcome of the last AdaMerging run (its coefficients and loss curve, for reports).
    public var lastAdaMerging: AdaMergingResult?
    /// Breadcrumbs' fraction of largest magnitudes masked out per tensor (the paper's β).
    public var breadcrumbsOutliers = 0.01
    /// Gradient arenas per class count, for the merges that run the backward (Fisher, AdaMerging).
    var gradientArenas: [Int: Arena] = [:]

    struct Loaded {
        let model: ViT
        /// The one evaluation loop (Training's `Evaluator`), batches of 128, linearized when the merge is.
        let evaluator: Evaluator
        /// Linearized: encoder − θ_pre over the encoder, 0 over the head (the model holds θ_pre).
        let tangent: Arena?
    }

    public init(pretrained: ViTParameters, tasks: [MergeTask], pool: ThreadPool = .shared, linearized: Bool = false) {
        self.pretrained = pretrained
        self.tasks = tasks
        self.pool = pool
        self.linearized = linearized
    }

    var encoderCount: Int { pretrained.table.encoderEnd }

    func model(classes: Int) -> Loaded {
        if let m = models[classes] { return m }
        var c = pretrained.config
        c.numClasses = classes
        let m = ViT(parameters: ViTParameters(config: c), pool: pool)
        var tangent: Arena? = nil
        if linearized {
            m.parameters.base.update(from: pretrained.base, count: encoderCount)
            tangent = Arena(layout: m.table.layout)
        }
        models[classes] = Loaded(
            model: m, evaluator: Evaluator(model: m, capacity: 128, linearized: linearized), tangent: tangent)
        return models[classes]!
    }

    /// out[0..<table.encoderEnd] = θ_pre + Σ c_i·τ_i (`combine`: sequential FMAs in vector order,
    /// vectors with c_i = 0 skipped).
    public func write(_ encoder: MergedEncoder, into out: UnsafeMutablePointer<Float>) {
        combine(
            base: pretrained.base, vectors: encoder.vectors, coefficients: encoder.coefficients, into: out,
            count: encoderCount, pool: pool)
    }

    /// The model for task `index` holding `encoder` (linearized: θ_pre, with encoder − θ_pre as its
    /// tangent) and the task's head, with its reusable activations. Overwrites that model's arena.
    func load(encoder: MergedEncoder, task index: Int) -> Loaded {
        let t = tasks[index]
        let loaded = model(classes: t.classes)
        let p = loaded.model.parameters
        if let tangent = loaded.tangent {
            // tangent = fl(θ_pre + Σ c τ) − θ_pre, one rounding each, as the merged encoder minus θ_pre.
            write(encoder, into: tangent.base)
            Elementwise.linearCombination(
                out: tangent.base, base: tangent.base, xs: [UnsafePointer(pretrained.base)], coefficients: [-1],
                count: encoderCount, pool: pool)
        } else {
            write(encoder, into: p.base)
        }
        let d = p.config.embedDim
        t.head.withUnsafeBufferPointer { h in
            (p.base + p.table.headW!).update(from: h.baseAddress!, count: t.classes * d)
            (p.base + p.table.headB!).update(from: h.baseAddress! + t.classes * d, count: t.classes)
        }
        return loaded
    }

    /// θ_pre + Σ coefficients[i]·vectors[i] over the encoder (evaluated where it is used).
    public func encoder(_ vectors: [EncoderVector], _ coefficients: [Float]) -> MergedEncoder {
        MergedEncoder(vectors, coefficients)
    }

    /// `encoder(_:_:)` with the vectors given as arrays (`table.encoderEnd` floats each), copied into arenas.
    @_disfavoredOverload
    public func encoder(_ vectors: [[Float]], _ coefficients: [Float]) -> MergedEncoder {
        MergedEncoder(vectors.map { EncoderVector($0, table: pretrained.table) }, coefficients)
    }

    /// A standalone copy of `encoder` with task `index`'s head (for saving a merged model).
    public func model(encoder: MergedEncoder, task index: Int) -> ViTParameters {
        precondition(!linearized, "a linearized merge is θ_pre plus a tangent, not one parameter set")
        return load(encoder: encoder, task: index).model.parameters.copy()
    }

    /// Accuracy of `encoder` with task `index`'s head on its split.
    public func accuracy(encoder: MergedEncoder, task index: Int, split: Split) -> Double {
        let l = load(encoder: encoder, task: index)
        let data = split == .validation ? tasks[index].validation : tasks[index].test
        return l.evaluator.evaluate(data, tangent: l.tangent.map { UnsafePointer($0.base) }).accuracy
    }

    /// Predicted classes of `encoder` with task `index`'s head on the first `limit` images of its split.
    public func predictions(encoder: MergedEncoder, task index: Int, split: Split, limit: Int = .max) -> [Int] {
        let data = split == .validation ? tasks[index].validation : tasks[index].test
        let count = min(limit, data.count)
        let key = "\(index) \(split.rawValue) \(count)"
        let isPretrained = encoder.coefficients.allSatisfy { $0 == 0 }
        if isPretrained, let cached = pretrainedPredictions[key] { return cached }
        let l = load(encoder: encoder, task: index)
        let p = l.evaluator.predictions(data, range: 0..<count, tangent: l.tangent.map { UnsafePointer($0.base) })
        if isPretrained { pretrainedPredictions[key] = p }
        return p
    }

    /// Normalized accuracy of `encoder` on `subset` of tasks: per task acc / fine-tuned acc
    /// (validation by validation, test by test), the absolute accuracies, and the predictions they count.
    public func normalized(
        encoder: MergedEncoder, tasks subset: [Int], split: Split
    ) -> (mean: Double, perTask: [Double], absolute: [Double], predictions: [[Int]]) {
        var norm: [Double] = [], abs: [Double] = [], predicted: [[Int]] = []
        for i in subset {
            let p = predictions(encoder: encoder, task: i, split: split)
            let labels = split == .validation ? tasks[i].validation.labels : tasks[i].test.labels
            let a = Double(zip(p, labels).filter { $0 == Int($1) }.count) / Double(max(p.count, 1))
            let ft = split == .validation ? tasks[i].finetunedValidation : tasks[i].finetunedTest
            abs.append(a)
            norm.append(ft > 0 ? a / ft : 0)
            predicted.append(p)
        }
        return (norm.reduce(0, +) / Double(max(norm.count, 1)), norm, abs, predicted)
    }
}
