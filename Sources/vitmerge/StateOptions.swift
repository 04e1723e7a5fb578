import ArgumentParser

/// The resumable training state of `finetune` and `pretrain`.
struct StateOptions: ParsableArguments {
    @Option(help: "Resumable training state (written every --checkpoint-every steps).") var state: String?
    @Option(help: "Write the state every N steps (default: 100 for finetune, 200 for pretrain).")
    var checkpointEvery: Int?
    @Flag(help: "Continue from --state.") var resume = false

    func validate() throws {
        if resume && state == nil { throw ValidationError("--resume needs --state FILE") }
    }

    /// `--checkpoint-every`, or the command's default.
    func every(default steps: Int) -> Int { checkpointEvery ?? steps }
}
