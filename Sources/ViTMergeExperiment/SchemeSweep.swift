import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel
import ViTMergeReport
import ViTMergeTraining

/// `experiment --schemes`: the experiment once per pre-training scheme, each pre-training from scratch with the
/// same budget (`settings.pretrainSteps` × batch 64) and data, then the same protocol on the same tasks, into
/// `<out>/<scheme>/` (a scheme whose results.json and test_outcomes.json are there already is reused, so the
/// jobs of `--plan` can run apart). Then one comparison: `<out>/results.json` (`SchemeComparison`), report.md
/// and the plots, with the differences between schemes bootstrapped over the same test images (paired; with
/// `--seeds`, from each scheme's first run).
public final class SchemeSweep {
    /// The settings every scheme shares (`scheme` unset, `out` the comparison's directory).
    public let settings: ExperimentSettings
    public let schemes: [PretrainScheme]
    let pretrainConfig: ViTConfig
    let arguments: [String]
    let log: (String) -> Void

    public init(
        settings: ExperimentSettings, schemes: [PretrainScheme], pretrainConfig: ViTConfig, arguments: [String],
        log: @escaping (String) -> Void
    ) {
        precondition(!schemes.isEmpty, "--schemes needs at least one scheme")
        self.settings = settings
        self.schemes = schemes
        self.pretrainConfig = pretrainConfig
        self.arguments = arguments
        self.log = log
    }

    /// One scheme's experiment: pre-trained by it, written to `<out>/<scheme>`.
    public func settings(for scheme: PretrainScheme) -> ExperimentSettings {
        var s = settings
        s.scheme = scheme
        s.out = "\(settings.out)/\(scheme.rawValue)"
        return s
    }

    /// Runs (or reuses) every scheme's experiment, then writes and returns the comparison.
    @discardableResult
    public func run() throws -> SchemeComparison {
        try AtomicFile.createDirectory(settings.out)
        var runs: [(scheme: String, results: ExperimentResults, metadata: [String: String])] = []
        var pooled = Outcomes(), tasks: [String]?
        for (i, scheme) in schemes.enumerated() {
            let s = settings(for: scheme)
            let (resultsPath, outcomesPath) = ("\(s.out)/results.json", "\(s.out)/test_outcomes.json")
            let fm = FileManager.default
            if fm.fileExists(atPath: resultsPath) && fm.fileExists(atPath: outcomesPath) {
                log("scheme \(i + 1)/\(schemes.count) (\(scheme.rawValue)): reusing \(resultsPath)")
            } else {
                log("scheme \(i + 1)/\(schemes.count) (\(scheme.rawValue)): experiment into \(s.out)")
                if s.seedCount > 1 {
                    try SeedSweep(settings: s, pretrainConfig: pretrainConfig, arguments: arguments, log: log).run()
                } else {
                    try ExperimentPipeline(settings: s, pretrainConfig: pretrainConfig, arguments: arguments, log: log)
                        .run()
                }
            }
            let results: ExperimentResults
            do {
                results = try ExperimentResults.decode(Data(contentsOf: URL(fileURLWithPath: resultsPath)))
            } catch {
                throw IOError.invalidFile(
                    path: resultsPath, reason: "not an experiment's results.json (\(error))",
                    hint: "delete it so the scheme's experiment runs again")
            }
            let (outcomeTasks, outcomes) = try Outcomes.read(path: outcomesPath)
            if let tasks, tasks != results.tasks || outcomeTasks != tasks {
                throw ExperimentError.schemesDisagree(
                    scheme: scheme.rawValue, tasks: results.tasks, expected: tasks, directory: s.out)
            }
            tasks = results.tasks
            pooled.add(outcomes, prefix: "\(scheme.rawValue)/")
            let metadata = try SafeTensorsFile.read(path: s.pretrainedPath).metadata
            runs.append((scheme.rawValue, results, metadata))
        }
        let names = tasks ?? []
        let sizes = names.indices.map { t in
            pooled.correct.values.compactMap { $0[t]?.count }.first ?? 0
        }
        let boot = Bootstrap(sizes: sizes, seed: settings.seed)
        func additionScore(_ scheme: String, _ mode: ExperimentMode, _ acc: (String, Int) -> Double) -> Double {
            let m = mode.rawValue
            return names.indices.map { normalized(acc("\(scheme)/addition.\(m)", $0), acc("\(scheme)/\(m)", $0)) }
                .reduce(0, +) / Double(max(names.count, 1))
        }
        var differences: [String: Estimate] = [:]
        for mode in [ExperimentMode.aligned, .full] where settings.modes.contains(mode) {
            for a in runs.map(\.scheme) {
                for b in runs.map(\.scheme) where a != b {
                    differences[SchemeComparison.additionKey(mode, a, b)] = boot.estimate(pooled) { acc in
                        additionScore(a, mode, acc) - additionScore(b, mode, acc)
                    }
                }
            }
        }
        if settings.modes.contains(.aligned) && settings.modes.contains(.full) {
            for a in runs.map(\.scheme) {
                differences[SchemeComparison.alignedVsFullKey(a)] = boot.estimate(pooled) { acc in
                    additionScore(a, .aligned, acc) - additionScore(a, .full, acc)
                }
            }
        }
        var comparison = SchemeComparison(
            tasks: names, seed: settings.seed, pretrainSteps: settings.pretrainSteps,
            pretrainBatch: settings.pretraining.batchSize, schemes: runs.map(Self.row), differences: differences,
            environment: Environment(
                cpu: runs.first?.results.environment.cpu ?? Machine.cpuModel,
                threads: runs.map(\.results.environment.threads).max() ?? ThreadPool.shared.threads,
                isa: runs.first?.results.environment.isa ?? Machine.buildISA,
                seconds: runs.map(\.results.environment.seconds).reduce(0, +),
                precision: runs.first?.results.environment.precision ?? GEMM.precision.rawValue))
        comparison.findings = comparison.decideFindings()
        try write(comparison)
        return comparison
    }

    /// A scheme's row from its experiment's results and its pre-trained checkpoint's metadata.
    static func row(_ run: (scheme: String, results: ExperimentResults, metadata: [String: String])) -> SchemeRow {
        let r = run.results, st = r.statistics
        func mean(_ d: [String: Double]?) -> Double {
            guard let d, !d.isEmpty else { return 0 }
            return d.values.reduce(0, +) / Double(d.count)
        }
        func estimate(_ key: StatisticKey, _ value: Double) -> Estimate {
            st?[key] ?? Estimate(value, low: value, high: value)
        }
        var fineTuned = PerMode<Estimate>(), addition = PerMode<SchemeAddition>()
        var count = PerMode<[TaskCount]>(), xi = PerMode<Double>()
        for mode in [ExperimentMode.aligned, .full, .linearized] {
            if let a = r.accuracy.modes[mode] { fineTuned[mode] = estimate(.meanAccuracy(mode.rawValue), mean(a)) }
            if let t = r.taskAddition[mode] {
                addition[mode] = SchemeAddition(
                    lambda: t.lambda, testNormalized: estimate(.additionNormalized(mode), t.testNormalized),
                    curve: t.curve)
            }
            count[mode] = r.taskCount[mode]?.map {
                TaskCount(k: $0.k, testNormalized: $0.testNormalized, subsets: $0.subsets)
            }
            xi[mode] = r.disentanglement[mode]?.meanError(radius: 1)
        }
        return SchemeRow(
            scheme: run.scheme, pretrainSeconds: run.metadata["pretrain_seconds"].flatMap(Double.init),
            pretrainLoss: run.metadata["final_loss"].flatMap(Double.init),
            probe: estimate(.meanAccuracy("pretrained_probe"), mean(r.accuracy.pretrainedProbe)),
            fineTuned: fineTuned, addition: addition, taskCount: count, meanXi: xi)
    }

    /// results.json, report.md, and the λ-curve and task-count plots of the comparison.
    func write(_ c: SchemeComparison) throws {
        let out = settings.out, mode = ExperimentMode.aligned
        try AtomicFile.write(c.json(), to: "\(out)/results.json")
        try AtomicFile.write(c.markdown(settings: settings.report), to: "\(out)/report.md")
        let curves = c.schemes.compactMap { r in
            r.addition[mode].map { SVG.Series(name: r.scheme, points: $0.curve.map { (x: $0.lambda, y: $0.score) }) }
        }
        try AtomicFile.write(
            SVG.lineChart(
                title: "Task addition (aligned) per pre-training scheme: validation normalized accuracy vs λ",
                xLabel: "λ", yLabel: "mean normalized accuracy (val)", series: curves, yMin: 0, yMax: 1.05),
            to: "\(out)/scheme_lambda_curves.svg")
        let counts = c.schemes.compactMap { r in
            r.taskCount[mode].map {
                SVG.Series(name: r.scheme, points: $0.map { (x: Double($0.k), y: $0.testNormalized) })
            }
        }
        try AtomicFile.write(
            SVG.lineChart(
                title: "Task addition (aligned) vs number of tasks, per pre-training scheme", xLabel: "tasks added",
                yLabel: "mean normalized accuracy (test)", series: counts, yMin: 0, yMax: 1.05),
            to: "\(out)/scheme_task_count.svg")
        log("wrote \(out)/results.json, \(out)/report.md and the scheme plots; the report is \(out)/report.md")
    }

    // MARK: Plan

    /// `--plan` with `--schemes`: every scheme's own plan (its pre-training job, its task jobs, its merge stage),
    /// each command being this one with `--scheme S --out <out>/S` in place of `--schemes` and `--out`, then
    /// this command, which reuses them and writes the comparison.
    public func planLines() throws -> [String] {
        var lines = [
            "# ViTMerge scheme comparison plan: \(schemes.count) schemes, each an experiment of its own (the "
                + "schemes' jobs are independent), then the comparison."
        ]
        for scheme in schemes {
            let s = settings(for: scheme)
            lines.append("# ---- scheme \(scheme.rawValue): \(s.out)")
            lines += try ExperimentPlan(settings: s, arguments: Self.arguments(arguments, scheme: scheme, out: s.out))
                .lines()
        }
        lines.append("# last, once every scheme's merge stage has finished: the comparison")
        lines.append(ExperimentPlan(settings: settings, arguments: arguments).command(job: nil))
        return lines
    }

    /// `arguments` with `--schemes` and `--out` (either spelling) replaced by `--scheme scheme --out out`.
    static func arguments(_ arguments: [String], scheme: PretrainScheme, out: String) -> [String] {
        var args = [arguments[0]], rest = arguments.dropFirst()
        while let a = rest.popFirst() {
            if a == "--schemes" || a == "--out" {
                _ = rest.popFirst()
                continue
            }
            if a.hasPrefix("--schemes=") || a.hasPrefix("--out=") { continue }
            args.append(a)
        }
        return args + ["--scheme", scheme.rawValue, "--out", out]
    }
}
