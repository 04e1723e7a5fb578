import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel

/// This rank's share of one global batch, as a training objective sees it: where to put the
/// images, the model's activation and gradient storage, and the backward that sums gradients
/// across ranks while it runs. The gradient arena is zeroed before the objective is called.
public struct TrainingBatch {
    public let model: ViT
    /// The global batch's 0-based index (the optimizer step it is for).
    public let step: Int
    /// This rank's examples of the global batch, in order.
    public let indices: ArraySlice<Int>
    /// The training set the indices point into.
    public let data: LabeledImages
    /// This rank's images within the global batch.
    public let share: Range<Int>
    /// Images in the global batch (losses and gradients are scaled by 1 / globalBatch).
    public let globalBatch: Int
    /// Room for this rank's images [share.count, C, H, W] and labels [share.count].
    public let input: UnsafeMutablePointer<Float>
    public let labels: UnsafeMutablePointer<Int32>
    public let acts: ViTActivations
    /// Accumulates (+=) the loss's gradient, laid out like the parameters.
    public let grads: Arena
    let reducer: GradientReducer?
    /// Random crops and flips of the images (nil: the stored images, as evaluation sees them).
    public let augmentation: Augmentation?
    /// The run's seed (`TrainSettings.seed`), from which the crops are drawn.
    public let seed: UInt64
    /// The ranks sharing the global batch (objectives whose loss couples the images of a batch,
    /// such as a contrastive one, gather through it; every rank makes the same calls).
    public let group: Collective

    /// Images in this rank's share.
    public var count: Int { share.count }

    /// Writes this rank's images of the batch [count, C, H, W] into `images` (default: `input`)
    /// and, unless nil, their labels into `labels`: the stored images, or with `augmentation` each
    /// one's crop for (seed, step, position in the global batch), so every rank count, thread count
    /// and resumed run trains on the same crops.
    public func fillImages(into images: UnsafeMutablePointer<Float>? = nil, labels: UnsafeMutablePointer<Int32>?) {
        let x = images ?? input
        if let augmentation {
            data.fill(
                indices, augmentation: augmentation, seed: seed, step: step, firstPosition: share.lowerBound,
                input: x, labels: labels, pool: model.pool)
        } else {
            data.fill(indices, input: x, labels: labels)
        }
    }

    /// `model.backward` for the batch's forward into `grads`, starting from `acts.outputGradient`
    /// (or from `tokenGradient` [count, T, D]); gradients summed across ranks as they become final.
    /// Call it last: gradients the objective accumulates itself (e.g. a decoder's) come first.
    public func backward(options: BackwardOptions = BackwardOptions(), tokenGradient: UnsafePointer<Float>? = nil) {
        reducer?.begin()
        model.backward(
            input: input, batch: count, acts: acts, grads: grads, options: options, tokenGradient: tokenGradient,
            gradientReady: reducer?.hook)
    }
}

/// What a training step minimises. `Trainer` owns the loop, the optimizer, the reduction of
/// gradients across ranks, the NaN guard and the resumable state; an objective turns a batch
/// into a loss and its gradient. Supervised (full or aligned), linearized and masked image
/// modeling and masked autoencoding are the built-in ones (`TrainMode`); DINO or CLIP objectives
/// plug in the same way (towers and heads of their own in `auxiliary`).
public protocol TrainingObjective: AnyObject {
    /// Whether the head trains (full, masked) or stays frozen bit-identically (aligned, linearized).
    var trainsHead: Bool { get }
    /// The parameters the optimizer updates when they are not the model's (linearized: θ, with
    /// the model holding θ0); nil for the model's own.
    var trainedParameters: ViTParameters? { get }
    /// Parameters the objective trains besides the model's (MAE's decoder), nil for none.
    var auxiliary: AuxiliaryParameters? { get }
    /// Tensors the objective keeps but does not train (DINO's EMA teacher and centre), saved and
    /// restored with the training state under their layout names; nil for none.
    var state: Arena? { get }
    /// The objective's own figures of the last step, shown in the progress line (DINO's teacher
    /// entropy and KL divergence).
    var metrics: [(name: String, value: Double)] { get }
    /// Called by `Trainer` after each optimizer update (`step` updates done, of `steps`).
    func didUpdate(step: Int, of steps: Int)
    /// Fills this rank's share of the global batch, runs the model and returns the share's part of
    /// the global batch's mean loss (Σ over the ranks = the mean), with its gradient (scaled by
    /// 1 / globalBatch) accumulated into `batch.grads`.
    func loss(_ batch: TrainingBatch) -> Float
}

extension TrainingObjective {
    public var trainedParameters: ViTParameters? { nil }
    public var auxiliary: AuxiliaryParameters? { nil }
    public var state: Arena? { nil }
    public var metrics: [(name: String, value: Double)] { [] }
    public func didUpdate(step: Int, of steps: Int) {}
}

/// Parameters an objective trains besides the model's (a decoder, a second tower, a head), in an
/// arena of their own with timm-style names that do not clash with the encoder's. `Trainer` zeroes
/// `gradients` before each step (the objective accumulates into them), sums them across ranks,
/// clips them with the model's gradients as one (a single global norm), updates them with
/// `optimizer` (AdamW, the run's weight decay, none on 1-D tensors, tokens and position
/// embeddings), and saves and restores them (and their moments) with the training state.
public final class AuxiliaryParameters {
    public let parameters: Arena
    public let gradients: Arena
    public let optimizer: AdamWOptimizer
    public var layout: Arena.Layout { parameters.layout }

    public init(layout: Arena.Layout, weightDecay: Float) {
        parameters = Arena(layout: layout)
        gradients = Arena(layout: layout)
        optimizer = AdamWOptimizer(layout: layout, weightDecay: weightDecay) { _ in true }
    }
}

/// This rank's part of the global mean: `loss` is the share's own mean over `count` images.
@inline(__always)
func shareOfMean(_ loss: Float, count b: Int, global: Int) -> Float {
    b == global ? loss : Float(Double(loss) * Double(b) / Double(global))
}

/// Cross-entropy on the labels: full (encoder and head) or aligned (the head frozen).
public final class SupervisedObjective: TrainingObjective {
    public let trainsHead: Bool

    public init(trainsHead: Bool) { self.trainsHead = trainsHead }

    public func loss(_ batch: TrainingBatch) -> Float {
        let model = batch.model, b = batch.count
        batch.fillImages(labels: batch.labels)
        model.forward(input: batch.input, batch: b, acts: batch.acts)
        let loss = model.crossEntropy(
            labels: batch.labels, batch: b, acts: batch.acts, gradientScale: 1 / Float(batch.globalBatch))
        batch.backward(options: BackwardOptions(head: trainsHead, encoder: true))
        return shareOfMean(loss, count: b, global: batch.globalBatch)
    }
}

/// Linearized (tangent-space) fine-tuning, aligned: the model is its first-order Taylor expansion
/// at θ0 (held by the model), f_lin(x; θ) = f(x; θ0) + J(θ0)·(θ − θ0); θ trains, the head stays
/// frozen. The gradient is the ordinary backward at θ0 with f_lin's loss gradient.
public final class LinearizedObjective: TrainingObjective {
    public var trainsHead: Bool { false }
    /// θ, starting at a copy of the model's parameters.
    public let theta: ViTParameters
    public var trainedParameters: ViTParameters? { theta }
    /// θ − θ0 [parameters].
    let delta: UnsafeMutablePointer<Float>
    let tangents: ViTTangents

    /// For batches of up to `capacity` images.
    public init(model: ViT, capacity: Int) {
        theta = model.parameters.copy()
        delta = .allocate(capacity: model.table.layout.count)
        delta.initialize(repeating: 0, count: model.table.layout.count)
        tangents = ViTTangents(config: model.config, capacity: capacity)
    }

    deinit { delta.deallocate() }

    public func loss(_ batch: TrainingBatch) -> Float {
        let model = batch.model, b = batch.count
        batch.fillImages(labels: batch.labels)
        // δ = θ − θ0 as copy + axpy(−1): the same single FMA per element as `theta.difference`,
        // without its per-call arrays.
        let n = model.table.layout.count
        delta.update(from: theta.base, count: n)
        Elementwise.axpy(y: delta, x: model.parameters.base, alpha: -1, count: n, pool: model.pool)
        // f_lin = f(θ0) + J(θ0)·(θ − θ0), written over the primal logits for the loss.
        model.forward(input: batch.input, batch: b, acts: batch.acts, tangent: delta, tangents: tangents)
        let loss = model.crossEntropy(
            labels: batch.labels, batch: b, acts: batch.acts, gradientScale: 1 / Float(batch.globalBatch))
        batch.backward(options: BackwardOptions(head: false, encoder: true))
        return shareOfMean(loss, count: b, global: batch.globalBatch)
    }
}

extension TrainMode {
    /// The built-in objective for this mode, for batches of up to `capacity` images.
    public func objective(model: ViT, settings: TrainSettings, capacity: Int) -> TrainingObjective {
        switch self {
        case .full: SupervisedObjective(trainsHead: true)
        case .aligned: SupervisedObjective(trainsHead: false)
        case .linearized: LinearizedObjective(model: model, capacity: capacity)
        case .masked:
            MaskedImageObjective(
                model: model, capacity: capacity, maskRatio: settings.maskRatio, seed: settings.seed)
        case .mae: MAEObjective(model: model, capacity: capacity, settings: settings)
        case .dino: DINOObjective(model: model, capacity: capacity, settings: settings)
        case .clip: CLIPObjective(model: model, capacity: capacity, settings: settings)
        }
    }
}
