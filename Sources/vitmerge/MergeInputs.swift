import ArgumentParser
import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeMerging
import ViTMergeModel
import ViTMergeReport
import ViTMergeTraining
import ViTMergeExperiment

/// Inputs shared by `merge` and `disentangle`: a base and, per task, its fine-tuned model and data.
struct MergeInputs: ParsableArguments {
    @Option(help: "Pre-trained checkpoint (the base).") var pretrained: String?
    @Option(
        parsing: .upToNextOption,
        help: "Fine-tuned checkpoints, one per task (their heads are used, and their accuracies normalize).")
    var finetuned: [String] = []
    @Option(
        parsing: .upToNextOption,
        help: "Task data (task file, IDX directory or image folder), one per fine-tuned checkpoint, same order.")
    var tasks: [String] = []
    @Option(help: "Image folders: cache the decoded, preprocessed images in this directory (reused when unchanged).")
    var imageCache: String?
    @Option(
        parsing: .upToNextOption,
        help: "Task vectors to use instead of θ_ft − θ_pre (checked against the base's hash), same order.")
    var taskVectors: [String] = []
    @Option(help: "Seed of the validation split (as used in fine-tuning; default 0).") var seed: UInt64?
    @Option(
        help: ArgumentHelp(
            "Merges that use data (fisher, regmean, regmean++): training images per task, a seeded subset "
                + "(default 256)."))
    var samples: Int?
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if finetuned.count != tasks.count {
            throw ValidationError(
                "give one --tasks entry per --finetuned checkpoint (\(finetuned.count) vs \(tasks.count))")
        }
        if let samples, samples < 1 { throw ValidationError("--samples must be at least 1") }
        if !taskVectors.isEmpty && taskVectors.count != finetuned.count {
            throw ValidationError("give one --task-vectors file per --finetuned checkpoint, or none")
        }
    }

    /// The options given here that a recipe also sets (merge --recipe refuses them).
    var given: [String] {
        var out: [String] = []
        if pretrained != nil { out.append("--pretrained") }
        if !finetuned.isEmpty { out.append("--finetuned") }
        if !tasks.isEmpty { out.append("--tasks") }
        if !taskVectors.isEmpty { out.append("--task-vectors") }
        if imageCache != nil { out.append("--image-cache") }
        if seed != nil { out.append("--seed") }
        if samples != nil { out.append("--samples") }
        return out
    }

    /// The evaluator over all tasks, with the fine-tuned accuracies measured here, and the
    /// pre-trained model's lineage metadata (architecture, preprocessing) for the merged checkpoints.
    func load() throws -> (MergeEvaluator, [String], lineage: [String: String]) {
        guard let pretrained, !finetuned.isEmpty else {
            throw ValidationError("give --pretrained and --finetuned with their --tasks (or merge --recipe FILE)")
        }
        runtime.apply()
        return try loadMerge(
            pretrained: pretrained, finetuned: finetuned, tasks: tasks, taskVectors: taskVectors, seed: seed ?? 0,
            samples: samples ?? 256, imageCache: imageCache)
    }
}

/// Loads the base, each fine-tuned model with its task (splits as in fine-tuning with `seed`) and optional task
/// vector, scales each τ by its `weights` entry, and builds the evaluator. `check` sees the base first.
func loadMerge(
    pretrained: String, finetuned: [String], tasks: [String], taskVectors: [String], weights: [Double] = [],
    seed: UInt64, samples: Int, imageCache: String?, check: (ViTParameters) throws -> Void = { _ in }
) throws -> (MergeEvaluator, [String], lineage: [String: String]) {
    let (pre, preMeta) = try Checkpoint.load(path: pretrained)
    try check(pre)
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
        if i < taskVectors.count, !taskVectors[i].isEmpty {
            let tv = try TaskVector.load(path: taskVectors[i], table: pre.table)
            guard tv.base == base else { throw MergeError.wrongBase(task: tv.task, expected: base, found: tv.base) }
            t.tau = tv.values
        }
        if i < weights.count, weights[i] != 1 {
            let scaled = t.tau.copy()
            Elementwise.scale(scaled.base, alpha: Float(weights[i]), count: scaled.count)
            t.tau = scaled
        }
        merged.append(t)
    }
    return (MergeEvaluator(pretrained: pre, tasks: merged), merged.map(\.name), Checkpoint.lineage(preMeta))
}
