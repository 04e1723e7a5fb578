import ArgumentParser
import Foundation
import ViTMergeIO
import ViTMergeModel
import ViTMergeTraining

/// `vitmerge pretrain`: a ViT from scratch on the pre-training data.
struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pre-train a ViT from scratch (supervised) and write a checkpoint with its config and command line.")

    @Option(help: "Pre-training scheme (supervised: classification on the pre-training labels).")
    var scheme = "supervised"
    @Option(help: "Pre-training data (task-format .safetensors).")
    var data = "data/pretrain/glyphs.safetensors"
    @Option(help: "Model config JSON or preset name.")
    var config = "vit_mini_patch4_28"
    @Option(help: "Output checkpoint.") var output: String
    @Option(help: "Resumable training state (written every --checkpoint-every steps).") var state: String?
    @Option(help: "Write the state every N steps.") var checkpointEvery = 200
    @Flag(help: "Continue from --state.") var resume = false
    @OptionGroup var train: TrainOptions
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if scheme != "supervised" { throw ValidationError("--scheme: only 'supervised' is implemented in this version") }
        if resume && state == nil { throw ValidationError("--resume needs --state FILE") }
    }

    func run() throws {
        runtime.apply()
        let splits = try TaskSplits(path: data, seed: train.seed, validationFraction: 0.05)
        var cfg = try loadConfig(config)
        cfg.numClasses = splits.dataset.classes.count
        let model = ViT(config: cfg, seed: train.seed)
        let trainer = Trainer(model: model, train: splits.train, mode: .full, settings: train.settings(checkpointEvery: checkpointEvery))
        if resume, let state, FileManager.default.fileExists(atPath: state) { try trainer.restoreState(from: state) }
        try trainer.run(validation: splits.validation, log: train.progress("pretrain")) { t in
            if let state { try t.saveState(to: state) }
        }
        let (acc, _) = evaluate(model, on: splits.test)
        try Checkpoint.save(model.parameters, to: output, metadata: [
            "command": CommandLine.arguments.joined(separator: " "), "scheme": scheme, "data": data,
            "settings": train.settings().json, "test_accuracy": String(format: "%.4f", acc)])
        print(String(format: "wrote %@ (pre-training test accuracy %.4f)", output, acc))
    }
}
