import Foundation

/// The run settings report.md states next to the results (not part of results.json).
public struct ReportSettings: Codable, Sendable {
    /// The pre-trained checkpoint option as given (stated even when the model was pre-trained by the run).
    public var pretrained: String
    public var seed: UInt64
    public var probeSteps: Int
    public var finetuneSteps: Int
    public var batchSize: Int
    public var lr: Float

    public init(pretrained: String, seed: UInt64, probeSteps: Int, finetuneSteps: Int, batchSize: Int, lr: Float) {
        self.pretrained = pretrained
        self.seed = seed
        self.probeSteps = probeSteps
        self.finetuneSteps = finetuneSteps
        self.batchSize = batchSize
        self.lr = lr
    }
}

/// report.md from the results: tables, then the papers' findings checked one by one.
public struct ReportWriter {
    public let results: ExperimentResults
    public let settings: ReportSettings

    public init(results: ExperimentResults, settings: ReportSettings) {
        self.results = results
        self.settings = settings
    }

    /// A fraction with three decimals, "–" when absent.
    func f(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "–" }

    /// " [low, high]" of the estimate `key` when the results have statistics, else "".
    func ci(_ key: StatisticKey) -> String {
        guard let e = results.statistics?[key] else { return "" }
        return " [\(f(e.low)), \(f(e.high))]"
    }

    /// The mean over the experiment's tasks (in task order) of a per-task map; nil when empty.
    func mean(_ d: [String: Double]?) -> Double? {
        guard let d, !d.isEmpty else { return nil }
        let values = results.tasks.compactMap { d[$0] }
        guard values.count == d.count else { return d.values.reduce(0, +) / Double(d.count) }
        return values.reduce(0, +) / Double(values.count)
    }

    /// The whole report (Markdown).
    public func markdown() -> String {
        let r = results, o = settings
        let tasks = r.tasks
        var s = "# ViTMerge experiment report\n\n"
        s += "Pre-training: \(r.pretraining) (`\(o.pretrained)`); tasks: \(tasks.joined(separator: ", ")); "
        s += "seed \(o.seed); probe \(o.probeSteps) steps, fine-tuning \(o.finetuneSteps) steps × batch "
        s += "\(o.batchSize), lr \(o.lr).\n"
        s += "Machine: \(r.environment.cpu), \(r.environment.threads) threads"
        s += r.environment.precision == "fp32" ? ".\n" : ", \(r.environment.precision) matrix products.\n"
        s += accuracySection() + additionSection() + countSection() + negationSection()
        s += disentanglementSection() + mergeSection() + differencesSection() + seedsSection()
        s += "\n## The papers' findings on our data\n\n"
        for (claim, verdict, numbers) in findings() {
            s += "- **\(verdict.rawValue)** — \(claim) \(numbers)\n"
        }
        return s
    }

    func accuracySection() -> String {
        let tasks = results.tasks, acc = results.accuracy
        var s = "\n## Accuracy on test (fraction)\n\n| mode | " + tasks.joined(separator: " | ") + " | mean |\n|---|"
        s += String(repeating: "---|", count: tasks.count + 1) + "\n"
        let rows: [(String, [String: Double]?)] = [
            ("pretrained_probe", acc.pretrainedProbe), ("aligned", acc.modes.aligned), ("full", acc.modes.full),
            ("linearized", acc.modes.linearized),
        ]
        for case (let mode, let a?) in rows {
            s += "| \(mode) | " + tasks.map { f(a[$0]) }.joined(separator: " | ")
            s += " | \(f(mean(a)))\(ci(.meanAccuracy(mode))) |\n"
        }
        if let st = results.statistics {
            s += "\nIntervals: \(Int(100 * st.level))% percentile bootstrap over each task's test images "
            s += "(\(st.replicates) resamples, seed \(st.seed); every model scored on the same resamples, so "
            s += "differences are paired). Per task and model they are in results.json (`statistics`).\n"
        }
        return s
    }

    func additionSection() -> String {
        var s = "\n## Task addition (λ chosen on validation)\n\n"
        s += "| mode | λ | val normalized | test normalized | test absolute (mean) |\n|---|---|---|---|---|\n"
        for (mode, a) in results.taskAddition.sorted {
            s += "| \(mode.rawValue) | \(f(a.lambda)) | \(f(a.valNormalized)) | "
            s += "\(f(a.testNormalized))\(ci(.additionNormalized(mode))) | "
            s += "\(f(mean(a.testAbsolute)))\(ci(.additionAbsolute(mode))) |\n"
        }
        return s + "\n![λ curves](lambda_curves.svg)\n"
    }

    func countSection() -> String {
        let counts = results.taskCount.sorted
        let first = counts.first?.value ?? []
        var s = "\n## Number of tasks\n\n| mode | " + first.map { "k = \($0.k)" }.joined(separator: " | ")
        s += " |\n|---|" + String(repeating: "---|", count: first.count) + "\n"
        for (mode, c) in counts {
            s += "| \(mode.rawValue) | "
            s += c.map { f($0.testNormalized) + ci(.taskCount(mode, k: $0.k)) }.joined(separator: " | ") + " |\n"
        }
        let sampled = first.filter { ($0.possible ?? $0.subsets) > $0.subsets }
        if !sampled.isEmpty {
            s +=
                "\nSubsets evaluated: "
                + first.map { "k = \($0.k): \($0.subsets) of \($0.possible ?? $0.subsets)" }
                .joined(separator: ", ") + " (a seeded sample where not all).\n"
        }
        return s + "\n![task count](task_count.svg)\n"
    }

    func negationSection() -> String {
        var s = "\n## Task negation (test accuracy)\n\n"
        s += "| mode | target | control | λ | target: pre-trained → negated | control: pre-trained → negated |\n"
        s += "|---|---|---|---|---|---|\n"
        for (mode, n) in results.negation.sorted {
            s += "| \(mode.rawValue) | \(n.target) | \(n.control) | \(f(n.lambda)) | "
            s += "\(f(n.targetPretrainedAccuracy)) → \(f(n.targetAccuracy))\(ci(.negation(mode, "target"))) | "
            s += "\(f(n.controlPretrainedAccuracy)) → \(f(n.controlAccuracy))\(ci(.negation(mode, "control"))) |\n"
        }
        return s
    }

    func disentanglementSection() -> String {
        var s = "\n## Weight disentanglement\n\n"
        for (mode, d) in results.disentanglement.sorted {
            s += "- \(mode.rawValue): mean ξ over |α| ≤ 1: \(f(d.meanError(radius: 1))), "
            s += "over the whole grid: \(f(d.meanError(radius: 99))) — "
            s += "![ξ \(mode.rawValue)](disentanglement_\(mode.rawValue).svg)\n"
        }
        return s
    }

    func mergeSection() -> String {
        let m = results.merges
        var s = "\n## Other merges (test normalized accuracy)\n\n"
        s += "| method | hyper-parameter | λ | test normalized |\n|---|---|---|---|\n"
        if let a = m.taskArithmetic {
            s += "| task_arithmetic | – | \(f(a.lambda)) | \(f(a.testNormalized))\(ci(.merge("task_arithmetic"))) |\n"
        }
        if let a = m.average { s += "| average | – | – | \(f(a.testNormalized))\(ci(.merge("average"))) |\n" }
        if let t = m.ties {
            s += "| ties | keep \(f(t.keep)) | \(f(t.lambda)) | \(f(t.testNormalized))\(ci(.merge("ties"))) |\n"
        }
        if let d = m.dare {
            s += "| dare | drop \(f(d.drop)) | \(f(d.lambda)) | \(f(d.testNormalized))\(ci(.merge("dare"))) |\n"
        }
        return s
    }

    /// Over a seed sweep: each summary estimate (means over tasks, merges, differences; not per-task values) as
    /// mean ± standard deviation over the runs, with the bootstrap interval of the mean.
    func seedsSection() -> String {
        guard let sweep = results.seeds else { return "" }
        let tasks = Set(results.tasks)
        let keys = sweep.spread.keys.filter { !tasks.contains(String($0.split(separator: ".").last ?? "")) }.sorted()
        var s = "\n## Across fine-tuning seeds\n\n"
        s += "\(sweep.seeds.count) runs with fine-tuning seeds \(sweep.seeds.map(String.init).joined(separator: ", ")) "
        s += "(the tables above are the first run's). The findings use the interval of the mean over the runs.\n\n"
        s += "| estimate | mean ± std over runs | interval of the mean |\n|---|---|---|\n"
        for key in keys {
            let v = sweep.spread[key]!
            let e = sweep.pooled.estimates[key]
            s += "| \(key) | \(f(v.mean)) ± \(f(v.std)) | \(e.map { "[\(f($0.low)), \(f($0.high))]" } ?? "–") |\n"
        }
        return s
    }

    /// Every paired difference of the statistics, in name order (difference of accuracies; fractions).
    func differencesSection() -> String {
        guard let st = results.statistics else { return "" }
        let prefix = "difference."
        let rows = st.estimates.filter { $0.key.hasPrefix(prefix) }.sorted { $0.key < $1.key }
        guard !rows.isEmpty else { return "" }
        var s = "\n## Paired differences (test, \(Int(100 * st.level))% bootstrap intervals)\n\n"
        s += "| difference | value | interval |\n|---|---|---|\n"
        for (key, e) in rows {
            s += "| \(key.dropFirst(prefix.count)) | \(f(e.value)) | [\(f(e.low)), \(f(e.high))] |\n"
        }
        return s
    }
}
