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
    /// Image–text contrastive pre-training (Radford et al. 2021, `CLIPObjective`): the encoder's
    /// pooled features and a small text tower over each image's caption (`LabeledImages.captions`;
    /// `TrainSettings.clip`, its parameters trained beside the model's) are projected to a joint
    /// space, L2-normalized, and trained with the symmetric InfoNCE over the global batch. Labels
    /// and the model's head are not used.
    case clip
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
    /// Image–text pre-training was given images without captions; `captions` is the file to pass.
    case missingCaptions(data: String, captions: String)
    /// A checkpoint has no CLIP text tower (metadata `clip` and its auxiliary tensors).
    case noTextTower(path: String, reason: String)

    public var description: String {
        switch self {
        case .nonFinite(let step, let loss, let tensor):
            "training diverged at step \(step): loss \(loss), first non-finite tensor \(tensor); the update was not "
                + "applied and no checkpoint was written for this step (the last one on disk is intact). "
                + "Lower --lr, keep --clip on, or check the data"
        case .interrupted(let step):
            "stopped by Ctrl-C after step \(step); the training state was saved at that step (when a --state file "
                + "was given): rerun the same command with --resume to continue"
        case .missingCaptions(let data, let captions):
            "--scheme clip needs a caption per image and \(data) has none: pass --captions PATH (default "
                + "\(captions); train.captions and test.captions U8 [N, W] aligned with the images)"
        case .noTextTower(let path, let reason):
            "\(path) has no CLIP text tower (\(reason)): zero-shot classification needs a checkpoint from "
                + "`vitmerge pretrain --scheme clip`"
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
    /// CLIP's text tower and joint space (`TrainMode.clip` only; required there). Part of `json`.
    public var clip: CLIPSettings?

    public init(
        steps: Int, batchSize: Int = 32, lr: Float = 1e-3, warmupSteps: Int? = nil, weightDecay: Float = 0.05,
        clipNorm: Double = 1, seed: UInt64 = 0, evalEvery: Int = 0, checkpointEvery: Int = 0, maskRatio: Double = 0.6,
        augmentation: Augmentation? = nil, mae: MAESettings? = nil, dino: DINOSettings? = nil,
        clip: CLIPSettings? = nil
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
        self.clip = clip
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

/// CLIP's text tower and joint space (`TrainMode.clip`).
public struct CLIPSettings: Codable, Sendable, Equatable {
    /// Text blocks, width and heads.
    public var textDepth: Int
    public var textDim: Int
    public var textHeads: Int
    /// Width of the joint image–text space.
    public var embedDim: Int
    /// Caption bytes per sequence (the captions' width W; the text tower sees W + 1 tokens).
    public var captionBytes: Int

    public init(textDepth: Int, textDim: Int, textHeads: Int, embedDim: Int, captionBytes: Int) {
        self.textDepth = textDepth
        self.textDim = textDim
        self.textHeads = textHeads
        self.embedDim = embedDim
        self.captionBytes = captionBytes
    }

    /// Two text blocks of width 64 with 4 heads (64 per head would be 1), a joint space of 64.
    public static func defaults(captionBytes: Int) -> CLIPSettings {
        CLIPSettings(textDepth: 2, textDim: 64, textHeads: 4, embedDim: 64, captionBytes: captionBytes)
    }

    /// Why these settings cannot be used, or nil.
    public var problem: String? {
        if textDepth < 1 { return "--text-depth must be ≥ 1" }
        if textDim < 1 || textHeads < 1 || embedDim < 1 {
            return "--text-dim, --text-heads and --embed-dim must be ≥ 1"
        }
        if textDim % textHeads != 0 { return "--text-dim \(textDim) must be divisible by --text-heads \(textHeads)" }
        if captionBytes < 1 { return "the captions must be at least 1 byte wide" }
        return nil
    }

    public var json: String { String(decoding: try! JSONEncoder.sorted.encode(self), as: UTF8.self) }

    /// The towers these settings describe, for `encoder`.
    public func towers(encoder: ViTConfig) -> CLIPTowers {
        CLIPTowers(
            encoder: encoder, captionBytes: captionBytes, depth: textDepth, dim: textDim, heads: textHeads,
            embedDim: embedDim)
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
