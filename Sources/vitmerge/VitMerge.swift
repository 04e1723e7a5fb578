import ArgumentParser
import ViTMergeCore

/// The `vitmerge` command line: one subcommand per file.
@main
struct VitMerge: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "vitmerge",
        abstract: "Vision Transformers, fine-tuning and task arithmetic on the CPU, in pure Swift.",
        version: version,
        subcommands: [Demo.self, Experiment.self, Doctor.self, VerifyGolden.self, Init.self, Forward.self, Pretrain.self, Probe.self, FineTune.self, Eval.self, TaskVectorCommand.self, MergeCommand.self, Disentangle.self])
}

/// Options shared by commands that compute.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "Worker threads (default: VITMERGE_THREADS or one per core).")
    var threads: Int?

    func validate() throws {
        if let t = threads, !(1...ThreadPool.shared.capacity).contains(t) {
            throw ValidationError("--threads must be between 1 and \(ThreadPool.shared.capacity) (the pool's size; set VITMERGE_THREADS to change it)")
        }
    }

    func apply() { if let t = threads { ThreadPool.shared.threads = t } }
}
