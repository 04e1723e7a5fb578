import Foundation
import ViTMergeIO
import ViTMergeModel

/// How the encoder and head are trained.
public enum TrainMode: String, Codable, Sendable, CaseIterable {
    /// Encoder and a fresh head jointly (also supervised pre-training).
    case full
    /// Encoder only, with the (probed) head frozen bit-identically.
    case aligned
    /// Self-supervised masked image modeling (pre-training on unlabeled images, SimMIM-style):
    /// a random `maskRatio` of each image's patches is replaced by −1 (outside the [0, 1] pixel
    /// range, so the patch embedding of a masked patch acts as a learned mask token); a per-token
    /// linear decoder (stored as the head, num_classes = patch pixels) reconstructs the masked
    /// pixels; the loss is their mean squared error. Labels are not used.
    case masked = "mim"
    /// Self-supervised masked autoencoding (He et al. 2022, `MAEObjective`): a random
    /// `maskRatio` of each image's patches is dropped, the encoder runs on the visible ones
    /// (and the prefix tokens) only, and a light decoder (`TrainSettings.mae`, its own parameters
    /// trained beside the model's) reconstructs the dropped patches; the loss is their mean squared
    /// error. Labels and the model's head are not used (the head stays frozen).
    case mae
    /// Self-distillation without labels (Caron et al. 2021, `DINOObjective`): the model (the
    /// student, num_classes 0) and a projection head (`TrainSettings.dino`, trained beside it) match
    /// on every multi-crop view the centred, sharpened output of an EMA teacher on the other global
    /// views. Labels and the model's head are not used.
    case dino
    /// Linearized (tangent-space) fine-tuning, aligned: the model is replaced by its first-order
    /// Taylor expansion at the starting point θ0, f_lin(x; θ) = f(x; θ0) + J(θ0)·(θ − θ0); the
    /// encoder trains, the (probed) head stays frozen. Forward = primal at θ0 plus a JVP; the
    /// gradient is the ordinary backward at θ0 with f_lin's loss gradient.
    case linearized
}

/// Errors that stop training.
public enum TrainingError: Error, CustomStringConvertible {
    /// The loss or a gradient became NaN or ±∞ at `step` (1-based); `tensor` is the first
    /// parameter or gradient tensor, in checkpoint order, holding a non-finite value.
    case nonFinite(step: Int, loss: Float, tensor: String)
    /// Stopped by Ctrl-C (`Interrupt`) after `step` steps, once the state had been saved.
    case interrupted(step: Int)

    public var description: String {
        switch self {
        case .nonFinite(let step, let loss, let tensor):
            "training diverged at step \(step): loss \(loss), first non-finite tensor \(tensor); the update was not "
                + "applied and no checkpoint was written for this step (the last one on disk is intact). "
                + "Lower --lr, keep --clip on, or check the data"
        case .interrupted(let step):
            "stopped by Ctrl-C after step \(step); the training state was saved at that step (when a --state file "
                + "was given): rerun the same command with --resume to continue"
        }
    }
}

/// Hyper-parameters of one training run (AdamW, warm-up + cosine, clipping).
public struct TrainSettings: Codable, Sendable, Equatable {
    public var steps: Int
    public var batchSize: Int
    public var lr: Float
    public var warmupSteps: Int
    public var weightDecay: Float
    public var clipNorm: Double
    public var seed: UInt64
    /// Validation every this many steps (0 = only at the end).
    public var evalEvery: Int
    /// Resumable state written every this many steps (0 = only at the end).
    public var checkpointEvery: Int
    /// Fraction of patches masked per image (masked image modeling and MAE only).
    public var maskRatio: Double
    /// MAE's decoder and loss (`TrainMode.mae` only; nil: `MAESettings.defaults(for:)`). Part of
    /// `json` when set, so a state is only resumed with the same decoder.
    public var mae: MAESettings?
    /// DINO's head, crops, temperatures and momenta (`TrainMode.dino` only; nil: the defaults).
    /// Part of `json` when set, so a state is only resumed with the same settings.
    public var dino: DINOSettings?
    /// Random resized crops and flips of the training images (nil: the stored images, the eval
    /// transform). Part of `json`, so a state is only resumed with the same augmentation.
    public var augmentation: Augmentation?

    public init(
        steps: Int, batchSize: Int = 32, lr: Float = 1e-3, warmupSteps: Int? = nil, weightDecay: Float = 0.05,
        clipNorm: Double = 1, seed: UInt64 = 0, evalEvery: Int = 0, checkpointEvery: Int = 0, maskRatio: Double = 0.6,
        augmentation: Augmentation? = nil, mae: MAESettings? = nil, dino: DINOSettings? = nil
    ) {
        self.steps = steps
        self.batchSize = batchSize
        self.lr = lr
        self.warmupSteps = warmupSteps ?? max(1, steps / 10)
        self.weightDecay = weightDecay
        self.clipNorm = clipNorm
        self.seed = seed
        self.evalEvery = evalEvery
        self.checkpointEvery = checkpointEvery
        self.maskRatio = maskRatio
        self.augmentation = augmentation
        self.mae = mae
        self.dino = dino
    }

    public var json: String { String(decoding: try! JSONEncoder.sorted.encode(self), as: UTF8.self) }
}

/// A masked autoencoder's decoder and loss (`TrainMode.mae`).
public struct MAESettings: Codable, Sendable, Equatable {
    /// Decoder blocks.
    public var decoderDepth: Int
    /// Decoder width (narrower than the encoder's, as in MAE).
    public var decoderDim: Int
    public var decoderHeads: Int
    /// Targets normalized per patch, (x − mean) / √(var + 1e-6) with the unbiased variance over
    /// the patch's pixels, as MAE's `norm_pix_loss`.
    public var normPixLoss: Bool

    public init(decoderDepth: Int, decoderDim: Int, decoderHeads: Int, normPixLoss: Bool = false) {
        self.decoderDepth = decoderDepth
        self.decoderDim = decoderDim
        self.decoderHeads = decoderHeads
        self.normPixLoss = normPixLoss
    }

    /// Two blocks at half the encoder's width, with the encoder's head count when it divides that
    /// width (else the largest count below it that does).
    public static func defaults(for c: ViTConfig) -> MAESettings {
        let dim = max(1, c.embedDim / 2)
        return MAESettings(decoderDepth: 2, decoderDim: dim, decoderHeads: defaultHeads(dim: dim, encoder: c))
    }

    /// The largest head count up to the encoder's that divides `dim`.
    public static func defaultHeads(dim: Int, encoder c: ViTConfig) -> Int {
        (1...max(1, min(c.numHeads, dim))).last { dim % $0 == 0 } ?? 1
    }

    /// Why these settings cannot be used, or nil.
    public var problem: String? {
        if decoderDepth < 1 { return "--decoder-depth must be ≥ 1" }
        if decoderDim < 1 || decoderHeads < 1 { return "--decoder-dim and --decoder-heads must be ≥ 1" }
        if decoderDim % decoderHeads != 0 {
            return "--decoder-dim \(decoderDim) must be divisible by --decoder-heads \(decoderHeads)"
        }
        return nil
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder { let e = JSONEncoder(); e.outputFormatting = [.sortedKeys]; return e }
}

/// One line of training progress.
public struct StepLog: Sendable {
    public let step: Int, steps: Int
    public let loss: Float
    public let lr: Float
    public let gradNorm: Double
    public let imagesPerSecond: Double
    public let secondsLeft: Double
    /// The objective's own figures (`TrainingObjective.metrics`).
    public var metrics: [(name: String, value: Double)] = []
    public var validationAccuracy: Double?
}
