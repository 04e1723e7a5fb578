import ArgumentParser
import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeMerging
import ViTMergeModel
import ViTMergeReport
import ViTMergeTraining

/// `vitmerge task-vector`: τ = θ_ft − θ_pre over the encoder, bound to the base by hash.
struct TaskVectorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "task-vector",
        abstract: "Write the task vector τ = θ_finetuned − θ_pretrained (encoder only, bound to the base by "
            + "SHA-256).")
    @Option(help: "Pre-trained checkpoint (the base).") var pretrained: String
    @Option(help: "Fine-tuned checkpoint.") var finetuned: String
    @Option(help: "Output task-vector file (.safetensors).") var output: String
    @Option(help: "Task name stored in the file (default: the fine-tuned file's name).") var name: String?

    func run() throws {
        let pre = try Checkpoint.load(path: pretrained).parameters
        let ft = try Checkpoint.load(path: finetuned).parameters
        let task = name ?? URL(fileURLWithPath: finetuned).deletingPathExtension().lastPathComponent
        let tv = try TaskVector(task: task, finetuned: ft, pretrained: pre)
        try tv.save(to: output, table: pre.table)
        let norm = tv.values.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        print(
            String(
                format: "wrote %@ (task %@, %d values, ‖τ‖ = %.4f, base "
                    + "%@…)", output, task, tv.values.count, norm,
                String(tv.base.prefix(12))))
    }
}
