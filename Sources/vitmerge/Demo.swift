import ArgumentParser

/// `vitmerge demo`: the experiment with its defaults (embedded data, committed pre-trained model).
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Run the experiment on the embedded data and committed pre-trained model (about 10 minutes on 2 cores).")
    @Option(help: "Output directory.") var out = "demo-out"
    @Flag(help: "Print the independent per-task jobs as commands and exit.") var plan = false
    @Option(help: "Run one job of --plan (a task index) and exit.") var job: String?
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        var o = try ExperimentOptions.parse(
            ["--out", out] + (plan ? ["--plan"] : []) + (job.map { ["--job", $0] } ?? []))
        o.runtime = runtime
        try o.run()
    }
}
