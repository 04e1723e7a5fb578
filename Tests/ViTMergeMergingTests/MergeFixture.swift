import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel
import ViTMergeTraining

@testable import ViTMergeMerging

/// A tiny ViT, random images and fine-tuned models made by perturbing the encoder, for merge tests.
enum MergeFixture {
    static let config = ViTConfig(
        imageSize: 8, patchSize: 4, inChannels: 1, numClasses: 3, embedDim: 16, depth: 1, numHeads: 2)

    static func images(_ n: Int, seed: UInt64) -> LabeledImages {
        var rng = RNG(seed: seed)
        return LabeledImages(
            count: n, channels: 1, height: 8, width: 8, images: (0..<(n * 64)).map { _ in UInt8(rng.int(below: 256)) },
            labels: (0..<n).map { Int32($0 % 3) })
    }

    static func pretrained() -> ViTParameters {
        let pre = ViTParameters(config: config)
        pre.initialize(seed: 1)
        return pre
    }

    /// Two tasks: τ_a = a random perturbation of the encoder (std 0.03, about the init scale), τ_b
    /// one of std `scaleB` (0: τ_b = 0); random head weights (std 1) with centred biases
    /// (`centerHead`) so the models predict several classes.
    static func evaluator(scaleB: Double = 0, linearized: Bool = false) throws -> MergeEvaluator {
        let pre = pretrained()
        let ftA = pre.copy(), ftB = pre.copy()
        var rng = RNG(seed: 2)
        for i in 0..<pre.table.encoderEnd { ftA.base[i] += Float(rng.normal() * 0.03) }
        for i in pre.table.encoderEnd..<pre.arena.count {
            ftA.base[i] = Float(rng.normal()); ftB.base[i] = Float(rng.normal())
        }
        if scaleB != 0 {
            var rngB = RNG(seed: 7)
            for i in 0..<pre.table.encoderEnd { ftB.base[i] += Float(rngB.normal() * scaleB) }
        }
        let (valA, valB) = (images(40, seed: 3), images(40, seed: 5))
        centerHead(ftA, on: valA)
        centerHead(ftB, on: valB)
        let a = try MergeTask(
            name: "a", validation: valA, test: images(40, seed: 4), finetuned: ftA, pretrained: pre,
            finetunedValidation: 0.5, finetunedTest: 0.8)
        let b = try MergeTask(
            name: "b", validation: valB, test: images(40, seed: 6), finetuned: ftB, pretrained: pre,
            finetunedValidation: 0.25, finetunedTest: 0.5)
        return MergeEvaluator(pretrained: pre, tasks: [a, b], linearized: linearized)
    }

    /// Sets the head bias to minus the mean logit over `data` (of the weights alone), so the
    /// class depends on how an image's features differ from the mean: random images then get
    /// several classes instead of the one a random bias favours.
    static func centerHead(_ p: ViTParameters, on data: LabeledImages) {
        let k = p.config.numClasses, b = p.base + p.table.headB!
        b.update(repeating: 0, count: k)
        let m = ViT(parameters: p)
        let acts = m.makeActivations(capacity: data.count)
        var input = [Float](repeating: 0, count: data.count * data.imageSize)
        input.withUnsafeMutableBufferPointer { data.fill(0..<data.count, input: $0.baseAddress!, labels: nil) }
        m.forward(input: input, batch: data.count, acts: acts)
        for j in 0..<k {
            var sum: Float = 0
            for i in 0..<data.count { sum += acts.output[i * k + j] }
            b[j] = -sum / Float(data.count)
        }
    }

    /// A task with `classes` classes: the encoder of `pre` perturbed with `seed`, a random head.
    static func task(_ name: String, classes: Int, seed: UInt64, pretrained pre: ViTParameters) throws -> MergeTask {
        var c = config
        c.numClasses = classes
        let ft = ViTParameters(config: c)
        ft.base.update(from: pre.base, count: pre.table.encoderEnd)
        var rng = RNG(seed: seed)
        for i in 0..<pre.table.encoderEnd { ft.base[i] += Float(rng.normal() * 0.2) }
        for i in pre.table.encoderEnd..<ft.arena.count { ft.base[i] = Float(rng.normal()) }
        return try MergeTask(
            name: name, validation: images(40, seed: seed &+ 1), test: images(40, seed: seed &+ 2), finetuned: ft,
            pretrained: pre, finetunedValidation: 0.5, finetunedTest: 0.5)
    }

    /// θ_pre[i] + Σ c_j·v_j[i] for i < count: a plain scalar loop, sequential FMAs in vector order,
    /// vectors with c_j = 0 skipped (the contract of `combine`).
    static func referenceMerge(
        _ pre: UnsafePointer<Float>, _ vectors: [EncoderVector], _ cs: [Float], count n: Int
    ) -> [Float] {
        (0..<n).map { i in
            var acc = pre[i]
            for (v, c) in zip(vectors, cs) where c != 0 { acc = acc.addingProduct(c, v[i]) }
            return acc
        }
    }

    /// A fresh parameter set: `encoder` followed by task `t`'s head.
    static func parameters(encoder: [Float], task t: MergeTask) -> ViTParameters {
        var c = config
        c.numClasses = t.classes
        let p = ViTParameters(config: c)
        encoder.withUnsafeBufferPointer { p.base.update(from: $0.baseAddress!, count: $0.count) }
        let kd = t.classes * c.embedDim
        t.head.withUnsafeBufferPointer { h in
            (p.base + p.table.headW!).update(from: h.baseAddress!, count: kd)
            (p.base + p.table.headB!).update(from: h.baseAddress! + kd, count: t.classes)
        }
        return p
    }

    /// Argmax predictions of a fresh model on all of `data`, in one batch (as the evaluator for ≤ 128 images);
    /// `tangent` (the model's whole layout) adds J·tangent to the logits.
    static func predictions(_ p: ViTParameters, _ data: LabeledImages, tangent: [Float]? = nil) -> [Int] {
        let m = ViT(parameters: p)
        let acts = m.makeActivations(capacity: data.count)
        var input = [Float](repeating: 0, count: data.count * data.imageSize)
        input.withUnsafeMutableBufferPointer { data.fill(0..<data.count, input: $0.baseAddress!, labels: nil) }
        m.forward(input: input, batch: data.count, acts: acts)
        if let tangent {
            m.addJVP(
                tangent: tangent, batch: data.count, acts: acts,
                tangents: ViTTangents(config: p.config, capacity: data.count))
        }
        let k = p.config.numClasses
        return (0..<data.count).map { i in
            var best = 0
            for j in 1..<k where acts.output[i * k + j] > acts.output[i * k + best] { best = j }
            return best
        }
    }

    static func bits(_ xs: some Sequence<Float>) -> [UInt32] { xs.map(\.bitPattern) }
}
