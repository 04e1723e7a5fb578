import Foundation
import ViTMergeIO
import ViTMergeModel

/// Bad input found while running the experiment (or a command using its data), with what to do about it.
public enum ExperimentError: Error, CustomStringConvertible {
    /// A split of the task file at `path` has no images.
    case emptySplit(path: String, split: String)
    /// The task's images (channels × height × width) do not fit the checkpoint's config.
    case imageSize(task: String, found: (Int, Int, Int), checkpoint: String, expected: (Int, Int, Int))
    /// A per-task job started before the pre-training job wrote the model; `command` runs that job.
    case missingPretrained(job: Int, path: String, command: String)
    /// `experiment --schemes`: a scheme's experiment in `directory` was run on other tasks than the first one's.
    case schemesDisagree(scheme: String, tasks: [String], expected: [String], directory: String)

    public var description: String {
        switch self {
        case .emptySplit(let path, let split):
            return "\(path): the \(split) split is empty"
                + (split == "validation"
                    ? " (it is drawn from train: give at least 2 training images per class)"
                    : "; prepare the task with images in every split")
        case .imageSize(let task, let f, let checkpoint, let e):
            return "\(task) has \(f.0)×\(f.1)×\(f.2) images but \(checkpoint) expects \(e.0)×\(e.1)×\(e.2); "
                + "resize the task (scripts/prepare_data.py) or use a model made for this size"
        case .missingPretrained(let job, let path, let command):
            return "job \(job) needs the pre-trained model \(path): run the pre-training job first (\(command))"
        case .schemesDisagree(let scheme, let tasks, let expected, let directory):
            return "\(directory) (scheme \(scheme)) has results for tasks \(tasks.joined(separator: ", ")), not "
                + "\(expected.joined(separator: ", ")) as the schemes before it: delete \(directory)/results.json "
                + "so it is rerun on the same tasks, or give another --out"
        }
    }
}

/// A task file split into train / validation (seeded, stratified, from train only) / test.
public struct TaskSplits {
    public let dataset: TaskDataset
    public let train: LabeledImages, validation: LabeledImages, test: LabeledImages

    /// Opens `path` (a task file, an IDX directory, or an image folder read with `preprocessing`, cached in
    /// `cache`); its validation split, or `validationFraction` of train drawn with `seed`.
    public init(
        path: String, seed: UInt64, validationFraction: Double = 0.2, preprocessing: Preprocessing? = nil,
        cache: String? = nil
    ) throws {
        dataset = try TaskDataset.load(path: path, preprocessing: preprocessing, cache: cache)
        if let v = dataset.validation {
            train = dataset.train
            validation = v
        } else {
            (train, validation) = dataset.splitValidation(fraction: validationFraction, seed: seed)
        }
        test = dataset.test
        for (name, split) in [("train", train), ("validation", validation), ("test", test)] where split.count == 0 {
            throw ExperimentError.emptySplit(path: path, split: name)
        }
    }

    /// Throws unless the task's images have the channels and size `config` (from `checkpoint`) expects.
    public func check(fits config: ViTConfig, checkpoint: String) throws {
        let t = train
        guard (t.channels, t.height, t.width) == (config.inChannels, config.imageHeight, config.imageWidth) else {
            throw ExperimentError.imageSize(
                task: dataset.name, found: (t.channels, t.height, t.width), checkpoint: checkpoint,
                expected: (config.inChannels, config.imageHeight, config.imageWidth))
        }
    }
}
