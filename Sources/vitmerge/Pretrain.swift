import ArgumentParser
import Foundation
import ViTMergeCore
import ViTMergeExperiment
import ViTMergeIO
import ViTMergeModel
import ViTMergeTraining

/// `vitmerge pretrain`: a ViT from scratch on the pre-training data.
struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pre-train a ViT from scratch (supervised) and write a checkpoint with its config and command line.")

    @Option(
        help:
            ArgumentHelp(
                "supervised: classification on the pre-training labels; mim: masked image modeling on the images alone "
                    + "(labels unused).")
    )
    var scheme = PretrainScheme.supervised
    @Option(help: "mim: fraction of patches masked per image.") var maskRatio = 0.6
    @Option(help: "Pre-training data (task-format .safetensors).")
    var data = "data/pretrain/glyphs.safetensors"
    @Option(help: "Model config JSON or preset name.")
    var config = "vit_mini_patch4_28"
    @Option(help: "Output checkpoint.") var output: String
    @OptionGroup var stateOptions: StateOptions
    @OptionGroup var train: TrainOptions
    @OptionGroup var runtime: RuntimeOptions
    @OptionGroup var parallel: ParallelOptions

    func validate() throws {
        if !(maskRatio > 0 && maskRatio < 1) { throw ValidationError("--mask-ratio must be in (0, 1)") }
    }

    func run() throws {
        let (state, resume) = (stateOptions.state, stateOptions.resume)
        runtime.apply()
        let group = try World.join()
        let root = group.isRoot  // rank 0 checks and writes the files and the log
        if root { try ensureWritable(output, state) }
        Interrupt.install()  // Ctrl-C: save the state, stop, say how to resume
        let splits = try TaskSplits(path: data, seed: train.seed, validationFraction: 0.05)
        try checkShares(batchSize: train.batchSize, train: splits.train, group: group)
        var settings = train.settings(checkpointEvery: stateOptions.every(default: 200))
        settings.maskRatio = maskRatio
        let cfg = try loadConfig(config)
        try splits.check(fits: cfg, checkpoint: "--config \(config)")
        if root && group.size > 1 && !train.quiet {
            print(World.describe(globalBatch: min(train.batchSize, splits.train.count)))
        }
        let (params, metadata) = try pretrain(
            scheme: scheme.rawValue, splits: splits, config: cfg, settings: settings, state: state, resume: resume,
            log: root ? train.progress("pretrain-\(scheme.rawValue)") : { _ in }, group: group,
            gradientSync: parallel.gradSync)
        guard root else { return }
        try Checkpoint.save(
            params, to: output,
            metadata: metadata.merging([
                "command": CommandLine.arguments.joined(separator: " "), "data": data,
            ]) { $1 })
        print(
            "wrote \(output) ("
                + (metadata["test_accuracy"].map { "pre-training test accuracy \($0)" }
                    ?? "masked reconstruction MSE \(metadata["final_loss"] ?? "?")") + ")")
    }
}

/// Pre-trains a model from scratch with `scheme` ("supervised" or "mim") and returns the
/// checkpoint to save with its metadata: supervised keeps its classification head; mim keeps the
/// encoder only (num_classes 0; the decoder is dropped).
/// With a `group` of several ranks the training is data-parallel; only rank 0 reads `state` and
/// writes it.
func pretrain(
    scheme: String, splits: TaskSplits, config: ViTConfig, settings: TrainSettings, state: String?, resume: Bool,
    log: (StepLog) -> Void, group: Collective = SingleProcess.shared, gradientSync: GradientSync = .overlapped
)
    throws -> (ViTParameters, [String: String])
{
    var cfg = config
    let mim = scheme == "mim"
    cfg.numClasses = mim ? cfg.patchDim : splits.dataset.classes.count
    let model = ViT(config: cfg, seed: settings.seed)
    let trainer = Trainer(
        model: model, train: splits.train, mode: mim ? .masked : .full, settings: settings, group: group)
    trainer.gradientSync = gradientSync
    if group.isRoot, resume, let state, FileManager.default.fileExists(atPath: state) {
        try trainer.restoreState(from: state)
    }
    var last: Float = .nan
    try trainer.run(
        validation: mim ? nil : splits.validation,
        log: {
            last = $0.loss; log($0)
        }
    ) { t in
        if group.isRoot, let state { try t.saveState(to: state) }
    }
    var metadata = ["scheme": scheme, "settings": settings.json, "final_loss": String(format: "%.5f", last)]
    if mim { return (withHead(model.parameters, classes: 0), metadata) }
    metadata["test_accuracy"] = String(format: "%.4f", trainer.evaluateTrained(on: splits.test).accuracy)
    return (model.parameters, metadata)
}
