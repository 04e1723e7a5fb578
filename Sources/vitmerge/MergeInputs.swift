import ArgumentParser
import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeMerging
import ViTMergeModel
import ViTMergeReport
import ViTMergeTraining
import ViTMergeExperiment

/// Inputs shared by `merge` and `disentangle`: a base and, per task, its fine-tuned model and data.
struct MergeInputs: ParsableArguments {
    @Option(help: "Pre-trained checkpoint (the base).") var pretrained: String
    @Option(
        parsing: .upToNextOption,
        help: "Fine-tuned checkpoints, one per task (their heads are used, and their accuracies normalize).")
    var finetuned: [String]
    @Option(
        parsing: .upToNextOption,
        help: "Task data (task file, IDX directory or image folder), one per fine-tuned checkpoint, same order.")
    var tasks: [String]
    @Option(help: "Image folders: cache the decoded, preprocessed images in this directory (reused when unchanged).")
    var imageCache: String?
    @Option(
        parsing: .upToNextOption,
        help: "Task vectors to use instead of θ_ft − θ_pre (checked against the base's hash), same order.")
    var taskVectors: [String] = []
    @Option(help: "Seed of the validation split (as used in fine-tuning).") var seed: UInt64 = 0
    @Option(
        help: ArgumentHelp(
            "Merges that use data (fisher, regmean, regmean++): training images per task, a seeded subset."))
    var samples = 256
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if finetuned.count != tasks.count {
            throw ValidationError(
                "give one --tasks entry per --finetuned checkpoint (\(finetuned.count) vs \(tasks.count))")
        }
        if samples < 1 { throw ValidationError("--samples must be at least 1") }
        if !taskVectors.isEmpty && taskVectors.count != finetuned.count {
            throw ValidationError("give one --task-vectors file per --finetuned checkpoint, or none")
        }
    }

    /// The evaluator over all tasks, with the fine-tuned accuracies measured here, and the
    /// pre-trained model's lineage metadata (architecture, preprocessing) for the merged checkpoints.
    func load() throws -> (MergeEvaluator, [String], lineage: [String: String]) {
        runtime.apply()
        let (pre, preMeta) = try Checkpoint.load(path: pretrained)
        let base = parameterHash(pre)
        var merged: [MergeTask] = []
        for (i, path) in finetuned.enumerated() {
            let (ft, meta) = try Checkpoint.load(path: path)
            let s = try TaskSplits(
                path: tasks[i], seed: seed, preprocessing: Checkpoint.preprocessing(meta, config: ft.config),
                cache: imageCache)
            try s.check(fits: ft.config, checkpoint: path)
            if let trained = meta["task"], trained != s.dataset.name {
                throw ValidationError(
                    "\(path) was fine-tuned on task '\(trained)' but is paired with \(tasks[i]) "
                        + "('\(s.dataset.name)'): give --finetuned and --tasks in the same order"
                )
            }
            guard ft.config.numClasses == s.dataset.classes.count else {
                throw ValidationError(
                    "\(path) has a head for \(ft.config.numClasses) classes but \(tasks[i]) has "
                        + "\(s.dataset.classes.count): pair each checkpoint with its task"
                )
            }
            let m = ViT(parameters: ft)
            var t = try MergeTask(
                name: s.dataset.name, validation: s.validation, test: s.test, finetuned: ft, pretrained: pre,
                finetunedValidation: evaluate(m, on: s.validation).accuracy,
                finetunedTest: evaluate(m, on: s.test).accuracy, samples: s.train.sample(samples, seed: seed))
            if !taskVectors.isEmpty {
                let tv = try TaskVector.load(path: taskVectors[i], table: pre.table)
                guard tv.base == base else { throw MergeError.wrongBase(task: tv.task, expected: base, found: tv.base) }
                t.tau = tv.values
            }
            merged.append(t)
        }
        return (MergeEvaluator(pretrained: pre, tasks: merged), merged.map(\.name), Checkpoint.lineage(preMeta))
    }
}
