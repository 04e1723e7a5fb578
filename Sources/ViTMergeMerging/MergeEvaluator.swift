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

    public init(name: String, validation: LabeledImages, test: LabeledImages, finetuned: ViTParameters, pretrained: ViTParameters,
                finetunedValidation: Double, finetunedTest: Double) throws {
        self.name = name
        self.validation = validation
        self.test = test
        let t = finetuned.table
        head = Array(UnsafeBufferPointer(start: finetuned.base + t.headW!, count: finetuned.config.numClasses * finetuned.config.embedDim))
            + Array(UnsafeBufferPointer(start: finetuned.base + t.headB!, count: finetuned.config.numClasses))
        classes = finetuned.config.numClasses
        tau = try TaskVector(task: name, finetuned: finetuned, pretrained: pretrained).values
        self.finetunedValidation = finetunedValidation
        self.finetunedTest = finetunedTest
    }
}

public enum Split: String, Sendable { case validation, test }

/// Evaluates merged encoders θ_pre + Σ c_i τ_i on each task with that task's head.
public final class MergeEvaluator {
    public let pretrained: ViTParameters
    public let tasks: [MergeTask]
    public let pool: ThreadPool
    /// One model per class count, reused (encoder written in place, head swapped per task).
    private var models: [Int: (model: ViT, acts: ViTActivations)] = [:]

    public init(pretrained: ViTParameters, tasks: [MergeTask], pool: ThreadPool = .shared) {
        self.pretrained = pretrained
        self.tasks = tasks
        self.pool = pool
    }

    var encoderCount: Int { pretrained.table.encoderEnd }

    private func model(classes: Int) -> (model: ViT, acts: ViTActivations) {
        if let m = models[classes] { return m }
        var c = pretrained.config
        c.numClasses = classes
        let m = ViT(parameters: ViTParameters(config: c), pool: pool)
        models[classes] = (m, m.makeActivations(capacity: 128))
        return models[classes]!
    }

    /// A model holding `encoder` and task `index`'s head, with its reusable activations.
    func load(encoder: [Float], task index: Int) -> (model: ViT, acts: ViTActivations) {
        let t = tasks[index]
        let loaded = model(classes: t.classes)
        let p = loaded.model.parameters
        encoder.withUnsafeBufferPointer { p.base.update(from: $0.baseAddress!, count: encoderCount) }
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
            combine(base: pretrained.base, vectors: vectors, coefficients: coefficients, into: $0.baseAddress!, count: encoderCount, pool: pool)
        }
        return out
    }

    /// A standalone copy of `encoder` with task `index`'s head (for saving a merged model).
    public func model(encoder: [Float], task index: Int) -> ViTParameters {
        load(encoder: encoder, task: index).model.parameters.copy()
    }

    /// Accuracy of `encoder` with task `index`'s head on its split.
    public func accuracy(encoder: [Float], task index: Int, split: Split) -> Double {
        let (m, acts) = load(encoder: encoder, task: index)
        return evaluate(m, on: split == .validation ? tasks[index].validation : tasks[index].test, acts: acts).accuracy
    }

    /// Predicted classes of `encoder` with task `index`'s head on the first `limit` images of its split.
    public func predictions(encoder: [Float], task index: Int, split: Split, limit: Int = .max) -> [Int] {
        let (m, acts) = load(encoder: encoder, task: index)
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
    public func normalized(encoder: [Float], tasks subset: [Int], split: Split) -> (mean: Double, perTask: [Double], absolute: [Double]) {
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
    public func addition(tasks subset: [Int], direction: [Float]? = nil, grid: [Double] = lambdaGrid)
        -> (lambda: Double, validation: Double, test: Double, testPerTask: [Double], testAbsolute: [Double], curve: [(Double, Double)]) {
        let dir = direction ?? subset.reduce(into: [Float](repeating: 0, count: encoderCount)) { acc, i in
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
            singleA[x] = predictions(encoder: encoder([tasks[a].tau], [Float(x)]), task: a, split: .validation, limit: limit)
            singleB[x] = predictions(encoder: encoder([tasks[b].tau], [Float(x)]), task: b, split: .validation, limit: limit)
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
