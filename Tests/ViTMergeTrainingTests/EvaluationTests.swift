import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel
@testable import ViTMergeTraining

/// The one evaluation loop (`Evaluator`) and the probe on the trainer's optimizer.
final class EvaluationTests: XCTestCase {
    func setup() throws -> (ViT, LabeledImages) {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let task = try TaskDataset.load(path: repo.appendingPathComponent("data/tasks/mnist.safetensors").path)
        let config = ViTConfig(
            imageSize: 28, patchSize: 7, inChannels: 1, numClasses: 10, embedDim: 16, depth: 1, numHeads: 2, mlpRatio: 2
        )
        return (ViT(config: config, seed: 2), task.train.take(Array(0..<45)))
    }

    /// Predictions, accuracy and loss agree with a forward pass per batch written out here, for a
    /// capacity that leaves a short last batch, linearized too (f + J·v added to the logits).
    func testEvaluatorMatchesAnExplicitLoopAndLinearizes() throws {
        let (model, data) = try setup()
        let k = model.config.numClasses
        let tangent = ViTParameters(config: model.config)
        tangent.initialize(seed: 9)
        for v in [nil, UnsafePointer(tangent.base)] {
            let evaluator = Evaluator(model: model, capacity: 7, linearized: v != nil)
            let predicted = evaluator.predictions(data, range: 3..<45, tangent: v)
            let (correct, lossSum) = evaluator.sums(data, range: 3..<45, tangent: v)
            // The same by hand.
            let acts = model.makeActivations(capacity: 7), tangents = ViTTangents(config: model.config, capacity: 7)
            var input = [Float](repeating: 0, count: 7 * data.imageSize), labels = [Int32](repeating: 0, count: 7)
            var want: [Int] = [], wantLoss = 0.0
            for first in stride(from: 3, to: 45, by: 7) {
                let b = min(7, 45 - first)
                data.fill(first..<(first + b), input: &input, labels: &labels)
                model.forward(input: input, batch: b, acts: acts)
                if let v { model.addJVP(tangent: v, batch: b, acts: acts, tangents: tangents) }
                for i in 0..<b {
                    let row = Array(UnsafeBufferPointer(start: acts.output + i * k, count: k))
                    want.append(row.firstIndex(of: row.max()!)!)
                }
                wantLoss += Double(model.crossEntropy(labels: labels, batch: b, acts: acts)) * Double(b)
            }
            XCTAssertEqual(predicted, want, "linearized: \(v != nil)")
            XCTAssertEqual(correct, zip(want, data.labels[3..<45]).filter { $0 == Int($1) }.count)
            XCTAssertEqual(lossSum.bitPattern, wantLoss.bitPattern)
        }
        // A zero tangent is the primal model.
        let zero = ViTParameters(config: model.config)
        let lin = Evaluator(model: model, capacity: 7, linearized: true)
        XCTAssertEqual(
            lin.predictions(data, range: 0..<45, tangent: zero.base),
            Evaluator(model: model, capacity: 7).predictions(data, range: 0..<45))
    }

    /// `linearProbe` on `AdamWOptimizer` gives bit for bit the head of the raw per-tensor
    /// `AdamW.update` loop it replaced (written out here).
    func testLinearProbeMatchesTheRawAdamWLoopBitForBit() throws {
        let (model, data) = try setup()
        let features = extractFeatures(model, data, batchSize: 16)
        let settings = TrainSettings(steps: 12, batchSize: 10, lr: 1e-2, weightDecay: 0.1, seed: 4)
        linearProbe(model, train: data, features: features, settings: settings)
        let got = model.parameters["head.weight"]!.array + model.parameters["head.bias"]!.array

        let c = model.config, d = c.embedDim, k = c.numClasses
        var w = [Float](repeating: 0, count: k * d), bias = [Float](repeating: 0, count: k)
        var rng = RNG(seed: settings.seed, stream: 0x4EAD)
        for i in 0..<(k * d) { w[i] = Float(rng.truncatedNormal(mean: 0, std: 0.02, lo: -2, hi: 2)) }
        let sampler = BatchSampler(count: data.count, batchSize: settings.batchSize, seed: settings.seed)
        let b = sampler.batchSize
        let schedule = LRSchedule(peak: settings.lr, warmupSteps: settings.warmupSteps, totalSteps: settings.steps)
        var x = [Float](repeating: 0, count: b * d), labels = [Int32](repeating: 0, count: b)
        var logits = [Float](repeating: 0, count: b * k), probs = logits, dlogits = logits
        var losses = [Float](repeating: 0, count: b)
        var gw = [Float](repeating: 0, count: k * d), gb = [Float](repeating: 0, count: k)
        var mw = gw, vw = gw, mb = gb, vb = gb
        for s in 0..<settings.steps {
            for (j, i) in sampler.indices(step: s).enumerated() {
                for t in 0..<d { x[j * d + t] = features[i * d + t] }
                labels[j] = data.labels[i]
            }
            sgemm(
                transA: false, transB: true, m: b, n: k, k: d, a: x, lda: d, b: w, ldb: d, beta: 0, c: &logits, ldc: k)
            logits.withUnsafeMutableBufferPointer {
                Elementwise.biasAddForward(out: $0.baseAddress!, bias: bias, rows: b, cols: k)
            }
            _ = CrossEntropy.forward(
                probs: &probs, losses: &losses, logits: logits, labels: labels, rows: b, classes: k)
            for i in 0..<dlogits.count { dlogits[i] = 0 }
            CrossEntropy.backward(
                dlogits: &dlogits, probs: probs, labels: labels, rows: b, classes: k, scale: 1 / Float(b))
            sgemm(
                transA: true, transB: false, m: k, n: d, k: b, a: dlogits, lda: k, b: x, ldb: d, beta: 0, c: &gw, ldc: d
            )
            for i in 0..<k { gb[i] = 0 }
            Elementwise.biasAddBackward(dbias: &gb, dout: dlogits, rows: b, cols: k)
            let lr = schedule.lr(step: s + 1)
            AdamW.update(
                params: &w, grads: gw, m: &mw, v: &vw, count: k * d, step: s + 1, lr: lr, beta1: 0.9, beta2: 0.999,
                eps: 1e-8, weightDecay: settings.weightDecay)
            AdamW.update(
                params: &bias, grads: gb, m: &mb, v: &vb, count: k, step: s + 1, lr: lr, beta1: 0.9, beta2: 0.999,
                eps: 1e-8, weightDecay: 0)
        }
        XCTAssertEqual(got.map(\.bitPattern), (w + bias).map(\.bitPattern))
    }
}
