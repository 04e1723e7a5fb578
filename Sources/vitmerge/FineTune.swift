import ArgumentParser
import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel
import ViTMergeTraining

extension TrainMode: ExpressibleByArgument {}

/// `vitmerge finetune`: aligned (head frozen) or full fine-tuning.
struct FineTune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Fine-tune on a task: aligned = encoder only with the probed head frozen; full = encoder and a fresh head; linearized = aligned, in the tangent space of the starting model.")

    @Option(help: "aligned | full | linearized") var mode: TrainMode
    @Option(help: "Starting checkpoint: the probed model for aligned and linearized, the pre-trained encoder for full.") var checkpoint: String
    @Option(help: "Task file (.safetensors).") var task: String
    @Option(help: "Output checkpoint.") var output: String
    @Option(help: "Resumable training state (written every --checkpoint-every steps).") var state: String?
    @Option(help: "Write the state every N steps.") var checkpointEvery = 100
    @Flag(help: "Continue from --state.") var resume = false
    @OptionGroup var train: TrainOptions
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if resume && state == nil { throw ValidationError("--resume needs --state FILE") }
        if mode == .masked { throw ValidationError("--mode must be aligned or full (masked image modeling is `vitmerge pretrain --scheme mim`)") }
    }

    func run() throws {
        runtime.apply()
        try ensureWritable(output, state)
        Interrupt.install()  // Ctrl-C: save the state, stop, say how to resume
        let splits = try TaskSplits(path: task, seed: train.seed)
        let (start, _) = try Checkpoint.load(path: checkpoint)
        try splits.check(fits: start.config, checkpoint: checkpoint)
        let classes = splits.dataset.classes.count
        if mode != .full && start.config.numClasses != classes {
            throw ValidationError("aligned fine-tuning needs a checkpoint whose head has \(classes) classes (run `vitmerge probe` first); \(checkpoint) has \(start.config.numClasses)")
        }
        let params = withHead(start, classes: classes)
        if mode == .full { reinitializeHead(params, seed: train.seed) }
        let model = ViT(parameters: params)
        let trainer = Trainer(model: model, train: splits.train, mode: mode, settings: train.settings(checkpointEvery: checkpointEvery))
        if resume, let state, FileManager.default.fileExists(atPath: state) { try trainer.restoreState(from: state) }
        try trainer.run(validation: splits.validation, log: train.progress("finetune-\(mode.rawValue)")) { t in
            if let state { try t.saveState(to: state) }
        }
        let (acc, _) = trainer.evaluateTrained(on: splits.validation)
        // Linearized: the file holds θ; evaluating it needs θ0 = `base` (f_lin = f(θ0) + J(θ0)(θ − θ0)).
        try Checkpoint.save(trainer.trained, to: output, metadata: [
            "command": CommandLine.arguments.joined(separator: " "), "task": splits.dataset.name, "mode": mode.rawValue,
            "base": checkpoint, "val_accuracy": String(format: "%.4f", acc)])
        print(String(format: "wrote %@ (validation accuracy %.4f)", output, acc))
    }
}

/// A fresh head (truncated normal 0.02, zero bias), seeded, for full fine-tuning.
func reinitializeHead(_ p: ViTParameters, seed: UInt64) {
    guard let w = p["head.weight"], let b = p["head.bias"] else { return }
    var rng = RNG(seed: seed, stream: 0xF011)
    for i in 0..<w.count { w.pointer[i] = Float(rng.truncatedNormal(mean: 0, std: 0.02, lo: -2, hi: 2)) }
    b.fill(0)
}
