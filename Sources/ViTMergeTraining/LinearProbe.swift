import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel

/// Pooled features [count, D] of `data` under a frozen encoder (the head's input).
public func extractFeatures(_ model: ViT, _ data: LabeledImages, batchSize: Int = 128) -> [Float] {
    let d = model.config.embedDim
    let capacity = min(batchSize, max(data.count, 1))
    let acts = model.makeActivations(capacity: capacity)
    var input = [Float](repeating: 0, count: capacity * data.imageSize)
    var out = [Float](repeating: 0, count: data.count * d)
    var start = 0
    while start < data.count {
        let b = min(capacity, data.count - start)
        input.withUnsafeMutableBufferPointer { inp in
            data.fill(start..<(start + b), input: inp.baseAddress!, labels: nil)
            model.forward(input: inp.baseAddress!, batch: b, acts: acts, throughHead: false)
        }
        out.withUnsafeMutableBufferPointer {
            ($0.baseAddress! + start * d).update(from: acts.featuresPointer, count: b * d)
        }
        start += b
    }
    return out
}

/// Linear probing: a fresh head trained with AdamW (warm-up + cosine, seeded batches) on
/// features computed once by the frozen encoder. Writes the head into `model.parameters`.
/// Returns the final training loss.
@discardableResult
public func linearProbe(
    _ model: ViT, train: LabeledImages, features: [Float], settings: TrainSettings,
    log: (StepLog) -> Void = { _ in }
) -> Float {
    let c = model.config, d = c.embedDim, k = c.numClasses
    precondition(k > 0, "linearProbe needs num_classes > 0")
    precondition(features.count == train.count * d, "linearProbe: features do not match the data")
    let table = model.table, p = model.parameters.base, pool = model.pool
    let w = p + table.headW!, bias = p + table.headB!
    // Fresh head: timm's init (truncated normal 0.02, zero bias), seeded.
    var rng = RNG(seed: settings.seed, stream: 0x4EAD)
    for i in 0..<(k * d) { w[i] = Float(rng.truncatedNormal(mean: 0, std: 0.02, lo: -2, hi: 2)) }
    bias.update(repeating: 0, count: k)

    let sampler = BatchSampler(count: train.count, batchSize: settings.batchSize, seed: settings.seed)
    let b = sampler.batchSize
    let schedule = LRSchedule(peak: settings.lr, warmupSteps: settings.warmupSteps, totalSteps: settings.steps)
    var x = [Float](repeating: 0, count: b * d), labels = [Int32](repeating: 0, count: b)
    var logits = [Float](repeating: 0, count: b * k), probs = logits, dlogits = logits,
        losses = [Float](repeating: 0, count: b)
    var gw = [Float](repeating: 0, count: k * d), gb = [Float](repeating: 0, count: k)
    var mw = gw, vw = gw, mb = gb, vb = gb
    var loss: Float = 0
    let start = DispatchTime.now().uptimeNanoseconds
    for s in 0..<settings.steps {
        for (j, i) in sampler.indices(step: s).enumerated() {
            for t in 0..<d { x[j * d + t] = features[i * d + t] }
            labels[j] = train.labels[i]
        }
        sgemm(
            transA: false, transB: true, m: b, n: k, k: d, a: x, lda: d, b: w, ldb: d, beta: 0, c: &logits, ldc: k,
            pool: pool)
        logits.withUnsafeMutableBufferPointer {
            Elementwise.biasAddForward(out: $0.baseAddress!, bias: bias, rows: b, cols: k, pool: pool)
        }
        loss = CrossEntropy.forward(
            probs: &probs, losses: &losses, logits: logits, labels: labels, rows: b, classes: k, pool: pool)
        for i in 0..<dlogits.count { dlogits[i] = 0 }
        CrossEntropy.backward(
            dlogits: &dlogits, probs: probs, labels: labels, rows: b, classes: k, scale: 1 / Float(b), pool: pool)
        sgemm(
            transA: true, transB: false, m: k, n: d, k: b, a: dlogits, lda: k, b: x, ldb: d, beta: 0, c: &gw, ldc: d,
            pool: pool)
        for i in 0..<k { gb[i] = 0 }
        Elementwise.biasAddBackward(dbias: &gb, dout: dlogits, rows: b, cols: k, pool: pool)
        let lr = schedule.lr(step: s + 1)
        AdamW.update(
            params: w, grads: gw, m: &mw, v: &vw, count: k * d, step: s + 1, lr: lr, beta1: 0.9, beta2: 0.999,
            eps: 1e-8,
            weightDecay: settings.weightDecay, pool: pool)
        AdamW.update(
            params: bias, grads: gb, m: &mb, v: &vb, count: k, step: s + 1, lr: lr, beta1: 0.9, beta2: 0.999, eps: 1e-8,
            weightDecay: 0, pool: pool)
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        log(
            StepLog(
                step: s + 1, steps: settings.steps, loss: loss, lr: lr, gradNorm: 0,
                imagesPerSecond: Double((s + 1) * b) / max(elapsed, 1e-9),
                secondsLeft: elapsed / Double(s + 1) * Double(settings.steps - s - 1)))
    }
    return loss
}
