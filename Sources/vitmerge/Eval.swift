import ArgumentParser
import Foundation
import ViTMergeExperiment
import ViTMergeIO
import ViTMergeModel
import ViTMergeTraining

/// `vitmerge eval`: accuracy and loss of a checkpoint on a task split.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Accuracy and mean cross-entropy of a checkpoint on a task split.")

    @Option(help: "Checkpoint with a head for the task.") var checkpoint: String
    @Option(
        help: ArgumentHelp(
            "Task: a task file (.safetensors), an IDX directory, or an image folder (train/<class>/…, "
                + "test/<class>/…) read with the checkpoint's preprocessing."))
    var task: String
    @Option(help: "The split to evaluate.") var split = DataSplit.test
    @Option(help: "Seed of the validation split (as used in training).") var seed: UInt64 = 0
    @Option(help: "Linearized checkpoints: the starting model θ0 (default: the 'base' recorded in the checkpoint).")
    var base: String?
    @Flag(help: "Print JSON.") var json = false
    @Option(help: "Image folders: cache the decoded, preprocessed images in this directory (reused when unchanged).")
    var imageCache: String?
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        runtime.apply()
        let (params, meta) = try Checkpoint.load(path: checkpoint)
        let splits = try TaskSplits(
            path: task, seed: seed, preprocessing: Checkpoint.preprocessing(meta, config: params.config),
            cache: imageCache)
        let data = splits.images(split)
        try splits.check(fits: params.config, checkpoint: checkpoint)
        guard params.config.numClasses == splits.dataset.classes.count else {
            throw ValidationError(
                "\(checkpoint) has a head for \(params.config.numClasses) classes but \(task) has "
                    + "\(splits.dataset.classes.count); probe or fine-tune on this task first"
            )
        }
        let acc: Double, loss: Double
        if meta["mode"] == "linearized" {
            guard let basePath = base ?? meta["base"] else {
                throw ValidationError("\(checkpoint) is a linearized model: give its starting checkpoint with --base")
            }
            let theta0 = try Checkpoint.load(path: basePath).parameters
            guard theta0.config == params.config else {
                throw ValidationError(
                    "--base \(basePath) has another config than \(checkpoint); give the checkpoint linearized "
                        + "fine-tuning started from"
                )
            }
            (acc, loss) = params.difference(from: theta0).withUnsafeBufferPointer {
                evaluate(ViT(parameters: theta0), on: data, tangent: $0.baseAddress!)
            }
        } else {
            (acc, loss) = evaluate(ViT(parameters: params), on: data)
        }
        if json {
            printJSON([
                "checkpoint": checkpoint, "task": splits.dataset.name, "split": split.rawValue, "accuracy": acc,
                "loss": loss,
                "count": data.count,
            ])
        } else {
            print(
                String(
                    format: "%@ %@ %@: accuracy %.4f  loss %.4f  (%d "
                        + "images)", checkpoint, splits.dataset.name, split.rawValue,
                    acc, loss, data.count))
        }
    }
}
