import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel

/// How a model is pre-trained from scratch.
public enum PretrainScheme: String, Codable, Sendable, CaseIterable {
    /// Classification on the pre-training labels (`TrainMode.full`); keeps its head.
    case supervised
    /// Masked image modeling on the images alone (`TrainMode.masked`); keeps the encoder only.
    case mim
    /// Masked autoencoding on the images alone (`TrainMode.mae`, He et al. 2022); keeps the encoder
    /// and, beside it in the file, the decoder.
    case mae
    /// Self-distillation without labels (`TrainMode.dino`, Caron et al. 2021); keeps the EMA
    /// teacher's encoder (as DINO's released weights) and, beside it in the file, its head.
    case dino
    /// Image–text contrastive pre-training on the images and their captions (`TrainMode.clip`,
    /// Radford et al. 2021); keeps the encoder and, beside it in the file, the text tower, the
    /// projections and the logit scale (metadata `clip`: the towers' `CLIPSettings`).
    case clip
}

/// Where `vitmerge pretrain --scheme clip` looks for the glyphs' captions by default.
public let defaultCaptionsPath = "data/pretrain/glyphs_captions.safetensors"

/// A pre-trained model to save: the encoder (with its head for supervised pre-training), the
/// checkpoint metadata, and the tensors trained beside it (MAE's decoder), if any.
public struct PretrainedModel {
    public let parameters: ViTParameters
    public let metadata: [String: String]
    public let auxiliary: Arena?

    /// Writes the checkpoint (`Checkpoint.save`: the encoder in timm layout, the auxiliary tensors
    /// after it, skipped by `Checkpoint.load`) with `metadata` plus `extra`.
    public func save(to path: String, metadata extra: [String: String] = [:]) throws {
        try Checkpoint.save(parameters, to: path, metadata: metadata.merging(extra) { $1 }, auxiliary: auxiliary)
    }
}

/// Pre-trains a model from scratch (`ViT(config:seed: settings.seed)`) with `scheme` on `train`
/// and returns the checkpoint to save with its metadata: supervised keeps its classification
/// head (`classes` classes; validated on `validation` during training, "test_accuracy" on `test`);
/// mim keeps the encoder only (num_classes 0; the decoder is dropped); mae keeps the encoder
/// (num_classes 0) and its decoder as auxiliary tensors (`settings.mae`, or its defaults); dino keeps
/// the EMA teacher's encoder (num_classes 0; DINO's released weights are the teacher's) and the
/// teacher's head as auxiliary tensors (`dino_head.…`; `settings.dino`, or its defaults); clip
/// keeps the encoder (num_classes 0) and its towers as auxiliary tensors (`settings.clip`, or its
/// defaults for the captions' width; `train.captions` is required).
/// With a `group` of several ranks the training is data-parallel; only rank 0 reads `state`
/// (when `resume` and the file exists) and writes it.
public func pretrain(
    scheme: PretrainScheme, train: LabeledImages, validation: LabeledImages, test: LabeledImages, classes: Int,
    config: ViTConfig, settings: TrainSettings, state: String?, resume: Bool, log: (StepLog) -> Void,
    group: Collective = SingleProcess.shared, gradientSync: GradientSync = .overlapped
)
    throws -> PretrainedModel
{
    var cfg = config
    var settings = settings
    let mode: TrainMode =
        switch scheme {
        case .supervised: .full
        case .mim: .masked
        case .mae: .mae
        case .dino: .dino
        case .clip: .clip
        }
    switch mode {
    case .masked: cfg.numClasses = cfg.patchDim
    case .mae:
        cfg.numClasses = 0
        if settings.mae == nil { settings.mae = MAESettings.defaults(for: cfg) }
    case .dino:
        cfg.numClasses = 0
        if settings.dino == nil { settings.dino = DINOSettings() }
    case .clip:
        cfg.numClasses = 0
        guard let captions = train.captions else {
            throw TrainingError.missingCaptions(data: "the training set", captions: defaultCaptionsPath)
        }
        if settings.clip == nil { settings.clip = CLIPSettings.defaults(captionBytes: captions.width) }
    default: cfg.numClasses = classes
    }
    let selfSupervised = mode != .full
    let model = ViT(config: cfg, seed: settings.seed)
    let trainer = Trainer(model: model, train: train, mode: mode, settings: settings, group: group)
    trainer.gradientSync = gradientSync
    if group.isRoot, resume, let state, FileManager.default.fileExists(atPath: state) {
        try trainer.restoreState(from: state)
    }
    var last: Float = .nan
    try trainer.run(
        validation: selfSupervised ? nil : validation,
        log: {
            last = $0.loss
            log($0)
        }
    ) { t in
        if group.isRoot, let state { try t.saveState(to: state) }
    }
    var metadata = ["scheme": scheme.rawValue, "settings": settings.json, "final_loss": String(format: "%.5f", last)]
    switch mode {
    case .masked:
        return PretrainedModel(parameters: withHead(model.parameters, classes: 0), metadata: metadata, auxiliary: nil)
    case .mae:
        return PretrainedModel(
            parameters: model.parameters, metadata: metadata, auxiliary: trainer.objective.auxiliary?.parameters)
    case .dino:
        let dino = trainer.objective as! DINOObjective
        return PretrainedModel(parameters: dino.teacherEncoder(), metadata: metadata, auxiliary: dino.teacherHead())
    case .clip:
        metadata["clip"] = settings.clip?.json
        return PretrainedModel(
            parameters: model.parameters, metadata: metadata, auxiliary: trainer.objective.auxiliary?.parameters)
    default:
        metadata["test_accuracy"] = String(format: "%.4f", trainer.evaluateTrained(on: test).accuracy)
        return PretrainedModel(parameters: model.parameters, metadata: metadata, auxiliary: nil)
    }
}
