import ArgumentParser
import Foundation
import ViTMergeIO
import ViTMergeModel
import ViTMergeTraining

/// `vitmerge eval`: accuracy and loss of a checkpoint on a task split.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Accuracy and mean cross-entropy of a checkpoint on a task split.")

    @Option(help: "Checkpoint with a head for the task.") var checkpoint: String
    @Option(help: "Task file (.safetensors).") var task: String
    @Option(help: "train | val | test") var split = "test"
    @Option(help: "Seed of the validation split (as used in training).") var seed: UInt64 = 0
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        runtime.apply()
        let splits = try TaskSplits(path: task, seed: seed)
        let data = try splits.split(split)
        let (params, _) = try Checkpoint.load(path: checkpoint)
        guard params.config.numClasses == splits.dataset.classes.count else {
            throw ValidationError("\(checkpoint) has a head for \(params.config.numClasses) classes but \(task) has \(splits.dataset.classes.count); probe or fine-tune on this task first")
        }
        let (acc, loss) = evaluate(ViT(parameters: params), on: data)
        if json {
            printJSON(["checkpoint": checkpoint, "task": splits.dataset.name, "split": split, "accuracy": acc, "loss": loss, "count": data.count])
        } else {
            print(String(format: "%@ %@ %@: accuracy %.4f  loss %.4f  (%d images)", checkpoint, splits.dataset.name, split, acc, loss, data.count))
        }
    }
}
