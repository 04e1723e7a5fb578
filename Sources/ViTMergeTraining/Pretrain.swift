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
}

/// Pre-trains a model from scratch (`ViT(config:seed: settings.seed)`) with `scheme` on `train`
/// and returns the checkpoint to save with its metadata: supervised keeps its classification
/// head (`classes` classes; validated on `validation` during training, "test_accuracy" on `test`);
/// mim keeps the encoder only (num_classes 0; the decoder is dropped).
/// With a `group` of several ranks the training is data-parallel; only rank 0 reads `state`
/// (when `resume` and the file exists) and writes it.
public func pretrain(
    scheme: PretrainScheme, train: LabeledImages, validation: LabeledImages, test: LabeledImages, classes: Int,
    config: ViTConfig, settings: TrainSettings, state: String?, resume: Bool, log: (StepLog) -> Void,
    group: Collective = SingleProcess.shared, gradientSync: GradientSync = .overlapped
)
    throws -> (ViTParameters, [String: String])
{
    var cfg = config
    let mim = scheme == .mim
    cfg.numClasses = mim ? cfg.patchDim : classes
    let model = ViT(config: cfg, seed: settings.seed)
    let trainer = Trainer(model: model, train: train, mode: mim ? .masked : .full, settings: settings, group: group)
    trainer.gradientSync = gradientSync
    if group.isRoot, resume, let state, FileManager.default.fileExists(atPath: state) {
        try trainer.restoreState(from: state)
    }
    var last: Float = .nan
    try trainer.run(
        validation: mim ? nil : validation,
        log: {
            last = $0.loss
            log($0)
        }
    ) { t in
        if group.isRoot, let state { try t.saveState(to: state) }
    }
    var metadata = ["scheme": scheme.rawValue, "settings": settings.json, "final_loss": String(format: "%.5f", last)]
    if mim { return (withHead(model.parameters, classes: 0), metadata) }
    metadata["test_accuracy"] = String(format: "%.4f", trainer.evaluateTrained(on: test).accuracy)
    return (model.parameters, metadata)
}
