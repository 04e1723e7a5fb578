import ArgumentParser

/// `vitmerge experiment`: the whole pipeline (ViTMergeExperiment) with every option.
struct Experiment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The whole pipeline: probe, fine-tune per mode, task vectors, addition, negation, task count, "
            + "disentanglement, other merges; writes results.json, report.md and SVG plots.")
    @OptionGroup var options: ExperimentOptions
    func run() throws { try options.run() }
}
