import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel

/// Self-supervised masked image modeling (SimMIM-style, see `TrainMode.masked`): a random
/// `maskRatio` of each image's patches is replaced by −1; a per-token linear decoder (stored as
/// the model's head, num_classes = patch pixels) reconstructs the masked pixels; the loss is
/// their mean squared error (`MaskedMSE`). The masks come from RNG(seed, stream: step), so a
/// resumed run masks the same patches, and every rank draws the whole global batch's masks
/// (keeping its share's). Labels are not used.
public final class MaskedImageObjective: TrainingObjective {
    public var trainsHead: Bool { true }
    public let maskRatio: Double
    public let seed: UInt64
    /// Target pixels [capacity, patches, patchDim] (the masked patches' originals).
    let target: UnsafeMutablePointer<Float>
    /// Decoder output and its gradient [capacity, tokens, patchDim].
    let decoded: UnsafeMutablePointer<Float>, decodedGradient: UnsafeMutablePointer<Float>
    /// Gradient on the encoder's final tokens [capacity, tokens, D].
    let tokenGradient: UnsafeMutablePointer<Float>
    /// Which patches are masked [capacity, patches].
    let isMasked: UnsafeMutablePointer<Bool>
    /// Patch order drawn per image [patches] (kept, so a step allocates nothing).
    let order: UnsafeMutablePointer<Int>
    let patches: Int
    let capacity: Int

    /// The model's head is the decoder: num_classes must equal the patch's pixel count.
    public init(model: ViT, capacity b: Int, maskRatio: Double, seed: UInt64) {
        let c = model.config
        precondition(
            c.numClasses == c.patchDim,
            "masked image modeling needs num_classes = patch pixels (\(c.patchDim)): the head is the decoder")
        self.maskRatio = maskRatio
        self.seed = seed
        capacity = b
        func buffer(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
            p.initialize(repeating: 0, count: n)
            return p
        }
        target = buffer(b * c.numPatches * c.patchDim)
        decoded = buffer(b * c.tokens * c.patchDim)
        decodedGradient = buffer(b * c.tokens * c.patchDim)
        tokenGradient = buffer(b * c.tokens * c.embedDim)
        isMasked = .allocate(capacity: b * c.numPatches)
        isMasked.initialize(repeating: false, count: b * c.numPatches)
        patches = c.numPatches
        order = .allocate(capacity: c.numPatches)
        order.initialize(repeating: 0, count: c.numPatches)
    }

    deinit {
        for p in [target, decoded, decodedGradient, tokenGradient] { p.deallocate() }
        isMasked.deallocate()
        order.deallocate()
    }

    /// Patches masked per image.
    func maskedCount(patches np: Int) -> Int { min(np, max(1, Int((Double(np) * maskRatio).rounded()))) }

    /// Draws the global batch's masks for `step`; for this rank's images, keeps the masked
    /// patches' pixels of `x` [count, C, H, W] as targets and overwrites them with −1.
    func mask(_ x: UnsafeMutablePointer<Float>, config c: ViTConfig, step: Int, share: Range<Int>) {
        let (np, pd, ps, gw) = (c.numPatches, c.patchDim, c.patchSize, c.gridWidth)
        let maskedCount = maskedCount(patches: np)
        var rng = RNG(seed: seed, stream: 0x4D49_4D00 &+ UInt64(step))
        for j in 0..<np { order[j] = j }
        for image in 0..<share.upperBound {
            rng.shuffle(UnsafeMutableBufferPointer(start: order, count: np))
            guard image >= share.lowerBound else { continue }
            let i = image - share.lowerBound
            for j in 0..<np { isMasked[i * np + j] = false }
            for j in 0..<maskedCount { isMasked[i * np + order[j]] = true }
            for patch in 0..<np where isMasked[i * np + patch] {
                let (gy, gx) = (patch / gw, patch % gw)
                for ch in 0..<c.inChannels {
                    for r in 0..<ps {
                        let src = x + ((i * c.inChannels + ch) * c.imageHeight + gy * ps + r) * c.imageWidth + gx * ps
                        let dst = target + (i * np + patch) * pd + (ch * ps + r) * ps
                        for q in 0..<ps { dst[q] = src[q]; src[q] = -1 }
                    }
                }
            }
        }
    }

    public func loss(_ batch: TrainingBatch) -> Float {
        let model = batch.model, c = model.config, b = batch.count, pool = model.pool
        precondition(b <= capacity, "MaskedImageObjective: \(b) images exceed the capacity \(capacity)")
        let (np, pd, t, d) = (c.numPatches, c.patchDim, c.tokens, c.embedDim)
        let p = UnsafePointer(model.parameters.base), g = batch.grads.base
        let (decW, decB) = (model.table.headW!, model.table.headB!)
        let x = batch.input
        batch.fillImages(into: x, labels: nil)
        mask(x, config: c, step: batch.step, share: batch.share)
        model.forward(input: x, batch: b, acts: batch.acts, throughHead: false)
        // Decoder: decoded[b·T, pd] = tokens[b·T, D] · Wᵀ + bias.
        let tokens = UnsafePointer(batch.acts.tokensPointer)
        Linear.forward(
            out: decoded, inp: tokens, weight: p + decW, bias: p + decB, rows: b * t, inFeatures: d, outFeatures: pd,
            pool: pool)
        // Mean squared error over the masked pixels of the global batch.
        let scale = 1 / Float(batch.globalBatch * maskedCount(patches: np) * pd)
        let loss = MaskedMSE.forward(
            pred: decoded, target: target, mask: isMasked, images: b, tokens: t, patches: np, dim: pd, scale: scale)
        decodedGradient.update(repeating: 0, count: b * t * pd)
        MaskedMSE.backward(
            dpred: decodedGradient, pred: decoded, target: target, mask: isMasked, images: b, tokens: t, patches: np,
            dim: pd, scale: scale)
        // Decoder backward (dW += dpredᵀ·tokens, db += Σ dpred, dtokens = dpred·W), then the encoder.
        Linear.backward(
            dinp: tokenGradient, dweight: g + decW, dbias: g + decB, dout: decodedGradient, inp: tokens,
            weight: p + decW, rows: b * t, inFeatures: d, outFeatures: pd, pool: pool)
        batch.backward(tokenGradient: tokenGradient)
        return loss
    }
}
