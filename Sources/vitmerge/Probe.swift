import ArgumentParser
import Foundation
import ViTMergeExperiment
import ViTMergeIO
import ViTMergeModel
import ViTMergeTraining

/// `vitmerge probe`: a linear head on the frozen encoder.
struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Linear-probe a fresh head on a frozen encoder (features computed once) and write the model with that head."
    )

    @Option(help: "Encoder checkpoint (its head, if any, is replaced).") var checkpoint: String
    @Option(
        help: ArgumentHelp(
            "Task: a task file (.safetensors), an IDX directory, or an image folder (train/<class>/…, "
                + "test/<class>/…) read with the checkpoint's preprocessing."))
    var task: String
    @Option(help: "Output checkpoint (encoder + probed head).") var output: String
    @OptionGroup var train: TrainOptions
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        runtime.apply()
        try ensureWritable(output)
        let (base, baseMeta) = try Checkpoint.load(path: checkpoint)
        let splits = try TaskSplits(
            path: task, seed: train.seed, preprocessing: Checkpoint.preprocessing(baseMeta, config: base.config),
            cache: train.imageCache)
        try splits.check(fits: base.config, checkpoint: checkpoint)
        let model = ViT(parameters: withHead(base, classes: splits.dataset.classes.count))
        let features = extractFeatures(model, splits.train)
        linearProbe(
            model, train: splits.train, features: features, settings: train.settings(), log: train.progress("probe"))
        let (acc, _) = evaluate(model, on: splits.validation)
        try Checkpoint.save(
            model.parameters, to: output,
            metadata: [
                "command": CommandLine.arguments.joined(separator: " "), "task": splits.dataset.name,
                "base": checkpoint,
                "val_accuracy": String(format: "%.4f", acc),
            ].merging(Checkpoint.lineage(baseMeta)) { a, _ in a })
        print(String(format: "wrote %@ (validation accuracy %.4f)", output, acc))
    }
}
