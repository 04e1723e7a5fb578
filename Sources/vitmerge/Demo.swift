import ArgumentParser

/// `vitmerge demo`: the experiment on the eight embedded tasks and the committed pre-trained model, cut to fit
/// about 12 minutes on 2 cores: one fine-tuning seed, no linearized mode, 3 task subsets per size k.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Run the experiment on the eight embedded tasks and the committed pre-trained model (about 12 minutes "
            + "on 2 cores): probe, aligned and full fine-tuning, one seed; `experiment` runs the full protocol.")
    /// What the demo changes from `experiment`'s defaults.
    static let arguments = ["--modes", "probe,aligned,full", "--seeds", "1", "--task-count-subsets", "3"]
    @Option(help: "Output directory.") var out = "demo-out"
    @Flag(help: "Print the independent per-task jobs as commands and exit.") var plan = false
    @Option(help: "Run one job of --plan (a task index) and exit.") var job: String?
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        var o = try ExperimentOptions.parse(
            ["--out", out] + Self.arguments + (plan ? ["--plan"] : []) + (job.map { ["--job", $0] } ?? []))
        o.runtime = runtime
        try o.run()
    }
}
