import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel

/// Masked autoencoding (He et al. 2022, `TrainMode.mae`). Per image, a seeded random `maskRatio`
/// of the patches is dropped: the permutation of the patches drawn from (seed, step, position in
/// the global batch), as the augmentation's crops are, so every rank count, thread count and
/// resumed run drops the same patches; the first ⌊NP·(1 − ratio)⌋ of it (at least 1, at most
/// NP − 1) stay visible. The encoder embeds every patch with its position embedding, keeps the
/// prefix tokens and the visible patches (in grid order), and runs its blocks and norm on those
/// only (`ViT.forward(input:batch:keep:acts:)`); the decoder (`MAEDecoder`, its parameters in
/// `auxiliary`) reconstructs every patch from them and learned mask tokens; the loss is the mean
/// squared error over the dropped patches' pixels (im2col order), against the pixels or, with
/// `normPixLoss`, each patch normalized by its mean and unbiased variance (eps 1e-6). Labels and
/// the model's head are not used.
public final class MAEObjective: TrainingObjective {
    public var trainsHead: Bool { false }
    public let maskRatio: Double
    public let seed: UInt64
    public let settings: MAESettings
    public let decoder: MAEDecoder
    /// The decoder's parameters, gradients and AdamW state.
    public let decoderParameters: AuxiliaryParameters
    public var auxiliary: AuxiliaryParameters? { decoderParameters }
    /// Patches per image, visible ones among them, prefix tokens.
    public let patches: Int, visible: Int, prefix: Int
    let capacity: Int
    let encoderActs: VisibleActivations
    let decoderActs: MAEDecoderActivations
    /// Encoder rows kept [capacity, prefix + visible]; decoder rows' sources [capacity, T] (−1: mask token).
    let keep: UnsafeMutablePointer<Int32>, index: UnsafeMutablePointer<Int32>
    /// Which patches are dropped [capacity, NP].
    let isMasked: UnsafeMutablePointer<Bool>
    /// Targets [capacity, NP, PD], gradient of the predictions [capacity, T, PD], of the kept tokens [capacity, K, D].
    let target: UnsafeMutablePointer<Float>, dpred: UnsafeMutablePointer<Float>, dencoded: UnsafeMutablePointer<Float>
    /// The permutation drawn per image [NP] (kept, so a step allocates nothing).
    let order: UnsafeMutablePointer<Int>

    /// Patches left visible out of `patches` at `ratio`: ⌊patches·(1 − ratio)⌋ within 1...patches − 1.
    public static func visibleCount(patches: Int, ratio: Double) -> Int {
        min(patches - 1, max(1, Int(Double(patches) * (1 - ratio))))
    }

    /// For batches of up to `capacity` images; the decoder from `settings.mae` (or its defaults),
    /// initialized from `settings.seed`.
    public init(model: ViT, capacity b: Int, settings s: TrainSettings) {
        let c = model.config
        let mae = s.mae ?? MAESettings.defaults(for: c)
        precondition(mae.problem == nil, "MAEObjective: \(mae.problem ?? "")")
        precondition(c.numPatches >= 2, "MAE needs at least 2 patches per image (one visible, one masked)")
        precondition(!mae.normPixLoss || c.patchDim >= 2, "--norm-pix-loss needs at least 2 pixels per patch")
        maskRatio = s.maskRatio
        seed = s.seed
        settings = mae
        capacity = b
        (patches, prefix) = (c.numPatches, c.numPrefixTokens)
        visible = Self.visibleCount(patches: c.numPatches, ratio: s.maskRatio)
        decoder = MAEDecoder(encoder: c, depth: mae.decoderDepth, dim: mae.decoderDim, heads: mae.decoderHeads)
        decoderParameters = AuxiliaryParameters(layout: decoder.layout, weightDecay: s.weightDecay)
        decoder.initialize(decoderParameters.parameters, seed: s.seed)
        encoderActs = VisibleActivations(config: c, capacity: b, visible: visible)
        decoderActs = decoder.makeActivations(capacity: b)
        let (k, t, pd) = (prefix + visible, c.tokens, c.patchDim)
        func buffer<T>(_ n: Int, _ value: T) -> UnsafeMutablePointer<T> {
            let p = UnsafeMutablePointer<T>.allocate(capacity: n)
            p.initialize(repeating: value, count: n)
            return p
        }
        keep = buffer(b * k, 0)
        index = buffer(b * t, 0)
        isMasked = buffer(b * patches, false)
        target = buffer(b * patches * pd, 0)
        dpred = buffer(b * t * pd, 0)
        dencoded = buffer(b * k * c.embedDim, 0)
        order = buffer(patches, 0)
    }

    deinit {
        keep.deallocate()
        index.deallocate()
        isMasked.deallocate()
        for p in [target, dpred, dencoded] { p.deallocate() }
        order.deallocate()
    }

    /// Draws the masks of this rank's images of global batch `step` (image i is at position
    /// `share.lowerBound + i`) and fills `keep`, `index` and `isMasked`.
    func drawMasks(step: Int, share: Range<Int>) {
        let (np, k, t) = (patches, prefix + visible, prefix + patches)
        for i in 0..<share.count {
            var rng = RNG(
                seed: (seed ^ 0x6D61_652D_6D61_736B) &+ UInt64(step) &* 0x9E37_79B9_7F4A_7C15,
                stream: UInt64(share.lowerBound + i))
            for j in 0..<np { order[j] = j }
            rng.shuffle(UnsafeMutableBufferPointer(start: order, count: np))
            let m = isMasked + i * np
            for j in 0..<np { m[j] = true }
            for j in 0..<visible { m[order[j]] = false }
            let kr = keep + i * k, ir = index + i * t
            for r in 0..<prefix {
                kr[r] = Int32(r)
                ir[r] = Int32(r)
            }
            var next = prefix
            for p in 0..<np {
                if m[p] {
                    ir[prefix + p] = -1
                } else {
                    kr[next] = Int32(prefix + p)
                    ir[prefix + p] = Int32(next)
                    next += 1
                }
            }
        }
    }

    /// target[i, p] = the patch's pixels, or with `normPixLoss` (x − mean) / √(var + 1e-6) over
    /// its pixels (unbiased variance, as torch's `var`), from the encoder's im2col patches.
    func fillTargets(images b: Int, patchDim pd: Int) {
        let src = UnsafePointer(encoderActs.patchesPointer)
        guard settings.normPixLoss else {
            target.update(from: src, count: b * patches * pd)
            return
        }
        for row in 0..<(b * patches) {
            let x = src + row * pd, y = target + row * pd
            var sum = 0.0
            for q in 0..<pd { sum += Double(x[q]) }
            let mean = sum / Double(pd)
            var sq = 0.0
            for q in 0..<pd { sq += (Double(x[q]) - mean) * (Double(x[q]) - mean) }
            let inv = 1 / (sq / Double(pd - 1) + 1e-6).squareRoot()
            for q in 0..<pd { y[q] = Float((Double(x[q]) - mean) * inv) }
        }
    }

    public func loss(_ batch: TrainingBatch) -> Float {
        let model = batch.model, c = model.config, b = batch.count, pool = model.pool
        precondition(b <= capacity, "MAEObjective: \(b) images exceed the capacity \(capacity)")
        let (t, pd, k) = (c.tokens, c.patchDim, prefix + visible)
        let aux = decoderParameters
        batch.fillImages(labels: nil)
        drawMasks(step: batch.step, share: batch.share)
        // Encoder on [B, prefix + visible, D]; decoder on [B, T, Dd] → pred [B, T, PD].
        model.forward(input: batch.input, batch: b, keep: keep, acts: encoderActs)
        let encoded = UnsafePointer(encoderActs.tokensPointer)
        let pred = decoder.forward(
            encoded: encoded, kept: k, index: index, batch: b, params: aux.parameters.base, acts: decoderActs,
            pool: pool)
        fillTargets(images: b, patchDim: pd)
        // Mean squared error over the dropped patches' pixels of the global batch.
        let scale = 1 / Float(batch.globalBatch * (patches - visible) * pd)
        let loss = MaskedMSE.forward(
            pred: pred, target: target, mask: isMasked, images: b, tokens: t, patches: patches, dim: pd, scale: scale)
        dpred.update(repeating: 0, count: b * t * pd)
        MaskedMSE.backward(
            dpred: dpred, pred: pred, target: target, mask: isMasked, images: b, tokens: t, patches: patches, dim: pd,
            scale: scale)
        // Decoder backward (its gradients into `auxiliary`), then the encoder from dLoss/d(kept tokens).
        decoder.backward(
            dpred: dpred, dencoded: dencoded, encoded: encoded, kept: k, index: index, batch: b,
            params: aux.parameters.base, grads: aux.gradients.base, acts: decoderActs, pool: pool)
        batch.reducer?.begin()
        model.backward(
            batch: b, keep: keep, acts: encoderActs, grads: batch.grads, tokenGradient: dencoded,
            gradientReady: batch.reducer?.hook)
        return loss
    }
}
