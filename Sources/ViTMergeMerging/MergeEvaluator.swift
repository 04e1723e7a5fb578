import Foundation
import ViTMergeCore
import ViTMergeIO
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
    public var tau: [Float]
    public let finetunedValidation: Double
    public let finetunedTest: Double

    public init(
        name: String, validation: LabeledImages, test: LabeledImages, finetuned: ViTParameters,
        pretrained: ViTParameters,
        finetunedValidation: Double, finetunedTest: Double
    ) throws {
        self.name = name
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

/// Evaluates merged encoders θ_pre + Σ c_i τ_i on each task with that task's head. With
/// `linearized`, the merged model is the tangent-space one: f(x; θ_pre) + J(θ_pre)·(Σ c_i τ_i)
/// (task vectors from linearized fine-tuning; the head stays the task's own).
public final class MergeEvaluator {
    public let pretrained: ViTParameters
    public let tasks: [MergeTask]
    public let pool: ThreadPool
    public let linearized: Bool
    /// One model per class count, reused (encoder written in place, head swapped per task).
    private var models: [Int: Loaded] = [:]

    struct Loaded {
        let model: ViT
        let acts: ViTActivations
        let tangents: ViTTangents?
        /// Linearized: encoder − θ_pre over the encoder, 0 over the head.
        let tangent: UnsafeMutablePointer<Float>?
    }

    public init(pretrained: ViTParameters, tasks: [MergeTask], pool: ThreadPool = .shared, linearized: Bool = false) {
        self.pretrained = pretrained
        self.tasks = tasks
        self.pool = pool
        self.linearized = linearized
    }

    deinit { for m in models.values { m.tangent?.deallocate() } }

    var encoderCount: Int { pretrained.table.encoderEnd }

    private func model(classes: Int) -> Loaded {
        if let m = models[classes] { return m }
        var c = pretrained.config
        c.numClasses = classes
        let m = ViT(parameters: ViTParameters(config: c), pool: pool)
        var tangent: UnsafeMutablePointer<Float>? = nil
        if linearized {
            tangent = .allocate(capacity: m.table.layout.count)
            tangent!.initialize(repeating: 0, count: m.table.layout.count)
        }
        models[classes] = Loaded(
            model: m, acts: m.makeActivations(capacity: 128),
            tangents: linearized ? ViTTangents(config: c, capacity: 128) : nil, tangent: tangent)
        return models[classes]!
    }

    /// A model holding `encoder` (linearized: θ_pre, with encoder − θ_pre as its tangent) and
    /// task `index`'s head, with its reusable activations.
    func load(encoder: [Float], task index: Int) -> Loaded {
        let t = tasks[index]
        let loaded = model(classes: t.classes)
        let p = loaded.model.parameters
        if let tangent = loaded.tangent {
            p.base.update(from: pretrained.base, count: encoderCount)
            encoder.withUnsafeBufferPointer { e in
                for i in 0..<encoderCount { tangent[i] = e[i] - pretrained.base[i] }
            }
        } else {
            encoder.withUnsafeBufferPointer { p.base.update(from: $0.baseAddress!, count: encoderCount) }
        }
        let d = p.config.embedDim
        t.head.withUnsafeBufferPointer { h in
            (p.base + p.table.headW!).update(from: h.baseAddress!, count: t.classes * d)
            (p.base + p.table.headB!).update(from: h.baseAddress! + t.classes * d, count: t.classes)
        }
        return loaded
    }

    /// θ_pre + Σ coefficients[i]·vectors[i] over the encoder.
    public func encoder(_ vectors: [[Float]], _ coefficients: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: encoderCount)
        out.withUnsafeMutableBufferPointer {
            combine(
                base: pretrained.base, vectors: vectors, coefficients: coefficients, into: $0.baseAddress!,
                count: encoderCount, pool: pool)
        }
        return out
    }

    /// A standalone copy of `encoder` with task `index`'s head (for saving a merged model).
    public func model(encoder: [Float], task index: Int) -> ViTParameters {
        precondition(!linearized, "a linearized merge is θ_pre plus a tangent, not one parameter set")
        return load(encoder: encoder, task: index).model.parameters.copy()
    }

    /// Accuracy of `encoder` with task `index`'s head on its split.
    public func accuracy(encoder: [Float], task index: Int, split: Split) -> Double {
        let l = load(encoder: encoder, task: index)
        return evaluate(
            l.model, on: split == .validation ? tasks[index].validation : tasks[index].test, acts: l.acts,
            tangent: l.tangent.map { UnsafePointer($0) }, tangents: l.tangents
        ).accuracy
    }

    /// Predicted classes of `encoder` with task `index`'s head on the first `limit` images of its split.
    public func predictions(encoder: [Float], task index: Int, split: Split, limit: Int = .max) -> [Int] {
        let l = load(encoder: encoder, task: index)
        let (m, acts) = (l.model, l.acts)
        let data = split == .validation ? tasks[index].validation : tasks[index].test
        let n = min(limit, data.count)
        let k = tasks[index].classes
        var input = [Float](repeating: 0, count: acts.capacity * data.imageSize)
        var out: [Int] = []
        var start = 0
        while start < n {
            let b = min(acts.capacity, n - start)
            input.withUnsafeMutableBufferPointer { inp in
                data.fill(start..<(start + b), input: inp.baseAddress!, labels: nil)
                m.forward(input: inp.baseAddress!, batch: b, acts: acts)
                if let tangent = l.tangent, let tangents = l.tangents {
                    m.addJVP(tangent: tangent, batch: b, acts: acts, tangents: tangents)
                }
            }
            for i in 0..<b {
                var best = 0
                for j in 1..<k where acts.output[i * k + j] > acts.output[i * k + best] { best = j }
                out.append(best)
            }
            start += b
        }
        return out
    }

    /// Normalized accuracy of `encoder` on `subset` of tasks: per task acc / fine-tuned acc
    /// (validation by validation, test by test), plus the absolute accuracies.
    public func normalized(
        encoder: [Float], tasks subset: [Int], split: Split
    ) -> (mean: Double, perTask: [Double], absolute: [Double]) {
        var norm: [Double] = [], abs: [Double] = []
        for i in subset {
            let a = accuracy(encoder: encoder, task: i, split: split)
            let ft = split == .validation ? tasks[i].finetunedValidation : tasks[i].finetunedTest
            abs.append(a)
            norm.append(ft > 0 ? a / ft : 0)
        }
        return (norm.reduce(0, +) / Double(max(norm.count, 1)), norm, abs)
    }

    /// Task addition over `subset` with λ from `grid` chosen on validation (ties → smaller λ),
    /// reported on test. `direction` defaults to Σ τ over the subset.
    public func addition(
        tasks subset: [Int], direction: [Float]? = nil, grid: [Double] = lambdaGrid
    )
        -> (
            lambda: Double, validation: Double, test: Double, testPerTask: [Double], testAbsolute: [Double],
            curve: [(Double, Double)]
        )
    {
        let dir =
            direction
            ?? subset.reduce(into: [Float](repeating: 0, count: encoderCount)) { acc, i in
                for j in 0..<acc.count { acc[j] += tasks[i].tau[j] }
            }
        var curve: [(lambda: Double, score: Double)] = []
        for l in grid {
            curve.append((l, normalized(encoder: encoder([dir], [Float(l)]), tasks: subset, split: .validation).mean))
        }
        let best = selectLambda(curve)
        let test = normalized(encoder: encoder([dir], [Float(best.lambda)]), tasks: subset, split: .test)
        return (best.lambda, best.score, test.mean, test.perTask, test.absolute, curve.map { ($0.lambda, $0.score) })
    }

    /// Weight disentanglement error ξ(α1, α2) for tasks a and b on up to `limit` validation images each.
    public func disentanglement(_ a: Int, _ b: Int, alphas: [Double], limit: Int) -> [[Double]] {
        var singleA: [Double: [Int]] = [:], singleB: [Double: [Int]] = [:]
        for x in alphas {
            singleA[x] = predictions(
                encoder: encoder([tasks[a].tau], [Float(x)]), task: a, split: .validation, limit: limit)
            singleB[x] = predictions(
                encoder: encoder([tasks[b].tau], [Float(x)]), task: b, split: .validation, limit: limit)
        }
        return alphas.map { x1 in
            alphas.map { x2 in
                let merged = encoder([tasks[a].tau, tasks[b].tau], [Float(x1), Float(x2)])
                let pa = predictions(encoder: merged, task: a, split: .validation, limit: limit)
                let pb = predictions(encoder: merged, task: b, split: .validation, limit: limit)
                let da = Double(zip(pa, singleA[x1]!).filter { $0 != $1 }.count) / Double(max(pa.count, 1))
                let db = Double(zip(pb, singleB[x2]!).filter { $0 != $1 }.count) / Double(max(pb.count, 1))
                return da + db
            }
        }
    }
}
