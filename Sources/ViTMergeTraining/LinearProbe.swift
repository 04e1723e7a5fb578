import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel

/// Linear probing: a fresh head (`initializeHead`, stream `HeadStream.probe`) trained with the
/// trainer's `AdamWOptimizer` (warm-up + cosine, seeded batches, no clipping) on `features`
/// [train.count, D] computed once by the frozen encoder (`extractFeatures`). Writes the head into
/// `model.parameters`. Returns the final training loss.
@discardableResult
public func linearProbe(
    _ model: ViT, train: LabeledImages, features: [Float], settings: TrainSettings,
    log: (StepLog) -> Void = { _ in }
) -> Float {
    let c = model.config, d = c.embedDim, k = c.numClasses
    precondition(k > 0, "linearProbe needs num_classes > 0")
    precondition(features.count == train.count * d, "linearProbe: features do not match the data")
    let p = model.parameters, pool = model.pool
    initializeHead(p, seed: settings.seed, stream: HeadStream.probe)
    // The head's own layout: head.weight [K, D] then head.bias [K], at the same relative offsets
    // as in the model's arena (both start on a cache line), so one pointer addresses both.
    var layout = Arena.Layout()
    layout.add("head.weight", Shape([k, d]))
    let biasOffset = layout.add("head.bias", Shape([k]))
    let head = p.base + p.table.headW!
    precondition(p.base + p.table.headB! == head + biasOffset, "linearProbe: the head is not laid out as expected")
    let w = UnsafePointer(head), bias = UnsafePointer(head + biasOffset)
    let optimizer = AdamWOptimizer(layout: layout, weightDecay: settings.weightDecay) { _ in true }
    let grads = Arena(layout: layout)

    let sampler = BatchSampler(count: train.count, batchSize: settings.batchSize, seed: settings.seed)
    let b = sampler.batchSize
    let schedule = LRSchedule(peak: settings.lr, warmupSteps: settings.warmupSteps, totalSteps: settings.steps)
    var x = [Float](repeating: 0, count: b * d), labels = [Int32](repeating: 0, count: b)
    var logits = [Float](repeating: 0, count: b * k), probs = logits, dlogits = logits,
        losses = [Float](repeating: 0, count: b)
    var loss: Float = 0
    let start = DispatchTime.now().uptimeNanoseconds
    for s in 0..<settings.steps {
        for (j, i) in sampler.indices(step: s).enumerated() {
            for t in 0..<d { x[j * d + t] = features[i * d + t] }
            labels[j] = train.labels[i]
        }
        // logits[b, K] = x[b, D] · Wᵀ + bias
        logits.withUnsafeMutableBufferPointer {
            Linear.forward(
                out: $0.baseAddress!, inp: x, weight: w, bias: bias, rows: b, inFeatures: d, outFeatures: k, pool: pool)
        }
        loss = CrossEntropy.forward(
            probs: &probs, losses: &losses, logits: logits, labels: labels, rows: b, classes: k, pool: pool)
        for i in 0..<dlogits.count { dlogits[i] = 0 }
        CrossEntropy.backward(
            dlogits: &dlogits, probs: probs, labels: labels, rows: b, classes: k, scale: 1 / Float(b), pool: pool)
        // dW[K, D] += dlogitsᵀ · x, db[K] += Σ dlogits (into zeroed gradients)
        grads.zero()
        Linear.backward(
            dinp: nil, dweight: grads.base, dbias: grads.base + biasOffset, dout: dlogits, inp: x, weight: w, rows: b,
            inFeatures: d, outFeatures: k, pool: pool)
        let lr = schedule.lr(step: s + 1)
        optimizer.update(parameters: head, grads: grads.base, lr: lr, maxNorm: 0, pool: pool)
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        log(
            StepLog(
                step: s + 1, steps: settings.steps, loss: loss, lr: lr, gradNorm: 0,
                imagesPerSecond: Double((s + 1) * b) / max(elapsed, 1e-9),
                secondsLeft: elapsed / Double(s + 1) * Double(settings.steps - s - 1)))
    }
    return loss
}
