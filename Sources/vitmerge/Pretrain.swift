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
            scheme: scheme, train: splits.train, validation: splits.validation, test: splits.test,
            classes: splits.dataset.classes.count, config: cfg, settings: settings, state: state, resume: resume,
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
