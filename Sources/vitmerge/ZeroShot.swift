import ArgumentParser
import Foundation
import ViTMergeExperiment
import ViTMergeIO
import ViTMergeModel
import ViTMergeTraining

/// `vitmerge zeroshot`: zero-shot classification with a CLIP checkpoint's text tower.
struct ZeroShot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zeroshot",
        abstract:
            "Zero-shot top-1 accuracy of a CLIP checkpoint (pretrain --scheme clip) on a task split: each class "
            + "name's prompt through the text tower, images classified by cosine similarity.")

    @Option(help: "Checkpoint from `pretrain --scheme clip` (encoder and text tower).") var checkpoint: String
    @Option(
        help: ArgumentHelp(
            "Task file (.safetensors) with metadata 'classes'; the pre-training data itself scores its hold-out "
                + "(data/pretrain/glyphs.safetensors, --split test)."))
    var task: String
    @Option(
        help: ArgumentHelp(
            "Prompt with {} for the class name, e.g. \"capital letter {}\" (default: the glyphs' names in the "
                + "captions' words, latin_k → \"capital letter K\", greek_gamma → \"Greek capital letter gamma\", "
                + "cyrillic_be → \"Cyrillic capital letter be\", hiragana_a → \"hiragana a\"; other names as "
                + "they are)."
        ))
    var template: String?
    @Option(help: "The split to classify.") var split = DataSplit.test
    @Option(help: "Seed of the validation split (as used in training).") var seed: UInt64 = 0
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if let template, !template.contains("{}") {
            throw ValidationError("--template must contain {} (the class name)")
        }
    }

    func run() throws {
        runtime.apply()
        let clip = try CLIPModel.load(path: checkpoint)
        let splits = try TaskSplits(path: task, seed: seed)
        try splits.check(fits: clip.encoder.config, checkpoint: checkpoint)
        let data = splits.images(split)
        let prompts = ZeroShotPrompts.prompts(classes: splits.dataset.classes, template: template)
        let result = clip.zeroShot(prompts: prompts, data: data)
        if json {
            printJSON([
                "checkpoint": checkpoint, "task": splits.dataset.name, "split": split.rawValue,
                "accuracy": result.accuracy, "correct": result.correct, "count": result.count,
                "classes": prompts.count, "prompt_example": prompts[0],
            ])
        } else {
            print(
                String(
                    format: "%@ %@ %@: zero-shot accuracy %.4f  (%d of %d images, %d classes, e.g. \"%@\")", checkpoint,
                    splits.dataset.name, split.rawValue, result.accuracy, result.correct, result.count, prompts.count,
                    prompts[0]))
        }
    }
}
