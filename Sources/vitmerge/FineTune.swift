import ArgumentParser
import Foundation
import ViTMergeCore
import ViTMergeExperiment
import ViTMergeIO
import ViTMergeModel
import ViTMergeTraining

/// `vitmerge finetune`: aligned (head frozen) or full fine-tuning.
struct FineTune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract:
            "Fine-tune on a task: aligned = encoder only with the probed head frozen; full = encoder and a fresh "
            + "head; linearized = aligned, in the tangent space of the starting model."
    )

    @Option(help: "The fine-tuning mode.") var mode: TrainMode
    @Option(help: "Starting checkpoint: the probed model for aligned and linearized, the pre-trained encoder for full.")
    var checkpoint: String
    @Option(
        help: ArgumentHelp(
            "Task: a task file (.safetensors), an IDX directory, or an image folder (train/<class>/…, "
                + "test/<class>/…) read with the checkpoint's preprocessing."))
    var task: String
    @Option(help: "Output checkpoint.") var output: String
    @Flag(
        help: ArgumentHelp(
            "Train on seeded random resized crops (scale 0.08–1, aspect 3/4–4/3) with horizontal flips of the "
                + "images, as timm's training transform (for photos: a flip changes a glyph). Off: the eval "
                + "transform's images."))
    var augment = false
    @OptionGroup var stateOptions: StateOptions
    @OptionGroup var train: TrainOptions
    @OptionGroup var runtime: RuntimeOptions
    @OptionGroup var parallel: ParallelOptions

    func validate() throws {
        if mode == .masked || mode == .mae || mode == .dino || mode == .clip {
            throw ValidationError(
                "--mode must be aligned or full (or linearized); masked image modeling is `vitmerge pretrain "
                    + "--scheme mim`, masked autoencoding `vitmerge pretrain --scheme mae`, self-distillation "
                    + "`vitmerge pretrain --scheme dino`, image–text pre-training `vitmerge pretrain --scheme clip`")
        }
    }

    func run() throws {
        let (state, resume) = (stateOptions.state, stateOptions.resume)
        runtime.apply()
        let group = try World.join()
        let root = group.isRoot  // rank 0 checks and writes the files and the log
        if root { try ensureWritable(output, state) }
        Interrupt.install()  // Ctrl-C: save the state, stop, say how to resume
        let (start, startMeta) = try Checkpoint.load(path: checkpoint)
        let preprocessing = try Checkpoint.preprocessing(startMeta, config: start.config)
        let splits = try TaskSplits(
            path: task, seed: train.seed, preprocessing: preprocessing, cache: train.imageCache)
        try checkShares(batchSize: train.batchSize, train: splits.train, group: group)
        try splits.check(fits: start.config, checkpoint: checkpoint)
        let classes = splits.dataset.classes.count
        if mode != .full && start.config.numClasses != classes {
            throw ValidationError(
                "aligned fine-tuning needs a checkpoint whose head has \(classes) classes (run `vitmerge probe` "
                    + "first); \(checkpoint) has \(start.config.numClasses)"
            )
        }
        let params = withHead(start, classes: classes)
        if mode == .full { reinitializeHead(params, seed: train.seed) }
        let model = ViT(parameters: params)
        var settings = train.settings(checkpointEvery: stateOptions.every(default: 100))
        if augment { settings.augmentation = Augmentation(interpolation: preprocessing.interpolation) }
        let trainer = Trainer(model: model, train: splits.train, mode: mode, settings: settings, group: group)
        trainer.gradientSync = parallel.gradSync
        // Under MPI only rank 0 reads the state; `run` gives every rank its parameters and moments.
        if root, resume, let state, FileManager.default.fileExists(atPath: state) {
            try trainer.restoreState(from: state)
        }
        if root && group.size > 1 && !train.quiet {
            print(World.describe(globalBatch: min(train.batchSize, splits.train.count)))
        }
        try trainer.run(
            validation: splits.validation, log: root ? train.progress("finetune-\(mode.rawValue)") : { _ in }
        ) { t in
            if root, let state { try t.saveState(to: state) }
        }
        let (acc, _) = trainer.evaluateTrained(on: splits.validation)
        guard root else { return }
        if group.size > 1 && !train.quiet { print(describeCommunication(trainer)) }
        if trainer.resynchronizations > 0 {
            print(
                "note: the ranks' parameters differed \(trainer.resynchronizations) time(s) at a save and were reset "
                    + "to rank 0's"
            )
        }
        // Linearized: the file holds θ; evaluating it needs θ0 = `base` (f_lin = f(θ0) + J(θ0)(θ − θ0)).
        try Checkpoint.save(
            trainer.trained, to: output,
            metadata: [
                "command": CommandLine.arguments.joined(separator: " "), "task": splits.dataset.name,
                "mode": mode.rawValue,
                "base": checkpoint, "val_accuracy": String(format: "%.4f", acc),
            ].merging(Checkpoint.lineage(startMeta)) { a, _ in a })
        print(String(format: "wrote %@ (validation accuracy %.4f)", output, acc))
    }
}

/// Rank 0's gradient traffic and the time its collectives took, for the log.
func describeCommunication(_ t: Trainer) -> String {
    let n = t.group.size
    let bytes = Double(t.gradientBytesPerStep)
    // A ring all-reduce sends (and receives) 2(N−1)/N of the buffer per rank.
    return String(
        format:
            "communication: %.2f MB of gradients summed per step (ring all-reduce: %.2f MB sent per rank); %.1f ms "
            + "per step in collectives on rank 0 (%@)",
        bytes / 1e6, bytes * 2 * Double(n - 1) / Double(n) / 1e6, t.communicationSecondsPerStep * 1e3,
        t.gradientSync.rawValue)
}

/// Throws unless every rank of `group` gets at least one image of each global batch.
func checkShares(batchSize: Int, train: LabeledImages, group: Collective) throws {
    let global = min(batchSize, train.count)
    if global < group.size {
        throw InputError(
            description:
                "a global batch of \(global) images cannot be shared by \(group.size) ranks: use --batch-size ≥ "
                + "\(group.size) (the global batch is split across the ranks) or fewer ranks"
        )
    }
}
