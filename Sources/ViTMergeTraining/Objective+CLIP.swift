import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel

/// Image–text contrastive pre-training (Radford et al. 2021, `TrainMode.clip`). Each image of the
/// global batch is paired with its caption (`LabeledImages.captions`, the same row); the encoder's
/// pooled features go through `visual.proj`, the caption through the text tower (`CLIPTowers`,
/// its parameters in `auxiliary`), both are L2-normalized, and the loss is the symmetric InfoNCE
/// (`ContrastiveLoss`) with logits exp(logit_scale)·I·Tᵀ over the whole global batch.
///
/// Data-parallel: the loss couples every pair of the global batch. Each rank writes its rows'
/// normalized embeddings into zero-filled global buffers [N, E] and sums them across the ranks
/// (adding zeros is exact, so every rank holds the same bits), computes the full loss and its
/// gradient for all rows identically, and backpropagates its own rows only; the sum of the ranks'
/// gradients is the global one. logit_scale's gradient, computed identically everywhere, is added
/// on rank 0 only. After each update logit_scale is clamped to [0, ln 100] (open_clip's clamp).
public final class CLIPObjective: TrainingObjective {
    public var trainsHead: Bool { false }
    public let settings: CLIPSettings
    public let towers: CLIPTowers
    /// Text tower, projections and logit scale, with their gradients and AdamW state.
    public let towerParameters: AuxiliaryParameters
    public var auxiliary: AuxiliaryParameters? { towerParameters }
    let capacity: Int
    let textActs: CLIPTextActivations
    /// Token ids [capacity, T], end-of-text positions [capacity].
    let ids: UnsafeMutablePointer<Int32>, eot: UnsafeMutablePointer<Int32>
    /// This rank's image embeddings before / after normalization [capacity, E] and norms [capacity];
    /// the same for the text; the gradient of a raw embedding [capacity, E].
    let imageRaw, imageUnit, imageNorms, textUnit, textNorms, draw: UnsafeMutablePointer<Float>
    /// Global buffers, grown on the first step of a larger global batch: embeddings [2, N, E] (images,
    /// then texts), their gradients [2, N, E], logits and the two softmaxes [N, N] each.
    var global: UnsafeMutablePointer<Float>, dglobal: UnsafeMutablePointer<Float>
    var logits: UnsafeMutablePointer<Float>, rowProbs: UnsafeMutablePointer<Float>
    var colProbs: UnsafeMutablePointer<Float>
    var globalCapacity = 0
    /// The last step's logit scale exp(t) and image→text top-1 accuracy over the global batch.
    public private(set) var lastScale = 0.0, lastAccuracy = 0.0

    /// For batches of up to `capacity` images; the towers from `settings.clip` (required),
    /// initialized from `settings.seed`.
    public init(model: ViT, capacity b: Int, settings s: TrainSettings) {
        guard let clip = s.clip else { preconditionFailure("CLIPObjective: TrainSettings.clip is required") }
        precondition(clip.problem == nil, "CLIPObjective: \(clip.problem ?? "")")
        precondition(model.config.numClasses == 0, "CLIPObjective: the encoder must have no head (num_classes 0)")
        settings = clip
        capacity = b
        towers = clip.towers(encoder: model.config)
        towerParameters = AuxiliaryParameters(layout: towers.layout, weightDecay: s.weightDecay)
        towers.initialize(towerParameters.parameters, seed: s.seed)
        textActs = towers.makeActivations(capacity: b)
        func buffer<T>(_ n: Int, _ value: T) -> UnsafeMutablePointer<T> {
            let p = UnsafeMutablePointer<T>.allocate(capacity: max(n, 1))
            p.initialize(repeating: value, count: max(n, 1))
            return p
        }
        let e = clip.embedDim
        ids = buffer(b * towers.contextLength, 0)
        eot = buffer(b, 0)
        (imageRaw, imageUnit, textUnit, draw) = (buffer(b * e, 0), buffer(b * e, 0), buffer(b * e, 0), buffer(b * e, 0))
        (imageNorms, textNorms) = (buffer(b, 0), buffer(b, 0))
        (global, dglobal, logits, rowProbs, colProbs) = (
            buffer(1, 0), buffer(1, 0), buffer(1, 0), buffer(1, 0), buffer(1, 0)
        )
    }

    deinit {
        ids.deallocate()
        eot.deallocate()
        for p in [
            imageRaw, imageUnit, imageNorms, textUnit, textNorms, draw, global, dglobal, logits, rowProbs, colProbs,
        ] {
            p.deallocate()
        }
    }

    /// Makes room for a global batch of `n` (allocates only when it grows).
    func reserve(global n: Int) {
        guard n > globalCapacity else { return }
        for p in [global, dglobal, logits, rowProbs, colProbs] { p.deallocate() }
        let e = settings.embedDim
        func buffer(_ count: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
            p.initialize(repeating: 0, count: count)
            return p
        }
        (global, dglobal) = (buffer(2 * n * e), buffer(2 * n * e))
        (logits, rowProbs, colProbs) = (buffer(n * n), buffer(n * n), buffer(n * n))
        globalCapacity = n
    }

    public var metrics: [(name: String, value: Double)] { [("logit_scale", lastScale), ("acc_i2t", lastAccuracy)] }

    /// Clamps logit_scale to [0, ln 100] after each update, as open_clip does.
    public func didUpdate(step: Int, of steps: Int) {
        let t = towerParameters.parameters.base + towers.logitScale
        t[0] = min(max(t[0], 0), CLIPTowers.maxLogScale)
    }

    /// Tokenizes the captions of this rank's images into `ids` and `eot`.
    func fillTokens(_ batch: TrainingBatch) {
        guard let captions = batch.data.captions else {
            preconditionFailure("CLIPObjective: the training images have no captions")
        }
        let t = towers.contextLength, w = captions.width, first = batch.indices.startIndex
        captions.bytes.withUnsafeBufferPointer { bytes in
            for j in 0..<batch.count {
                let row = bytes.baseAddress! + batch.indices[first + j] * w
                eot[j] = towers.tokenize(row, width: w, into: ids + j * t)
            }
        }
    }

    public func loss(_ batch: TrainingBatch) -> Float {
        let model = batch.model, b = batch.count, pool = model.pool
        precondition(b <= capacity, "CLIPObjective: \(b) images exceed the capacity \(capacity)")
        let n = batch.globalBatch, e = settings.embedDim, lo = batch.share.lowerBound
        reserve(global: n)
        let aux = towerParameters
        let p = UnsafePointer(aux.parameters.base), g = aux.gradients.base
        batch.fillImages(labels: nil)
        fillTokens(batch)
        // Images: features [b, D] → visual.proj → unit rows; texts: the tower → unit rows.
        model.forward(input: batch.input, batch: b, acts: batch.acts)
        let features = UnsafePointer(batch.acts.output)
        towers.forwardImage(out: imageRaw, features: features, rows: b, params: p, pool: pool)
        L2Normalize.forward(out: imageUnit, norms: imageNorms, inp: imageRaw, rows: b, cols: e)
        let textRaw = towers.forwardText(ids: ids, eot: eot, batch: b, params: p, acts: textActs, pool: pool)
        L2Normalize.forward(out: textUnit, norms: textNorms, inp: textRaw, rows: b, cols: e)
        // Every rank's rows into zero-filled global buffers, summed: the same bits everywhere.
        global.update(repeating: 0, count: 2 * n * e)
        (global + lo * e).update(from: imageUnit, count: b * e)
        (global + (n + lo) * e).update(from: textUnit, count: b * e)
        if batch.group.size > 1 { batch.group.allreduceSum(global, count: 2 * n * e) }
        let t = p[towers.logitScale], scale = Float(exp(Double(t)))
        let (loss, correct) = ContrastiveLoss.forward(
            logits: logits, rowProbs: rowProbs, colProbs: colProbs, image: global, text: global + n * e, count: n,
            dim: e, scale: scale)
        let dlogScale = ContrastiveLoss.backward(
            dimage: dglobal, dtext: dglobal + n * e, logits: logits, rowProbs: rowProbs, colProbs: colProbs,
            image: global, text: global + n * e, count: n, dim: e, scale: scale)
        if batch.group.rank == 0 { g[towers.logitScale] += Float(dlogScale) }
        (lastScale, lastAccuracy) = (Double(scale), Double(correct) / Double(n))
        // This rank's rows back through the text tower, then the image projection and the encoder.
        draw.update(repeating: 0, count: b * e)  // L2Normalize.backward accumulates
        L2Normalize.backward(
            dinp: draw, dout: dglobal + (n + lo) * e, out: textUnit, norms: textNorms, rows: b, cols: e)
        towers.backwardText(dout: draw, ids: ids, eot: eot, batch: b, params: p, grads: g, acts: textActs, pool: pool)
        draw.update(repeating: 0, count: b * e)
        L2Normalize.backward(dinp: draw, dout: dglobal + lo * e, out: imageUnit, norms: imageNorms, rows: b, cols: e)
        towers.backwardImage(
            dfeatures: batch.acts.outputGradient, dout: draw, features: features, rows: b, params: p, grads: g,
            pool: pool)
        batch.backward(options: BackwardOptions(head: false, encoder: true))
        return shareOfMean(Float(loss), count: b, global: n)
    }
}
