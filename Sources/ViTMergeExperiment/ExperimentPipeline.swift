import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeMerging
import ViTMergeModel
import ViTMergeReport
import ViTMergeTraining

/// The whole experiment: (pre-training,) per task the probe and each fine-tuning mode, then per mode task
/// vectors, addition, task count, negation, disentanglement and the other merges; writes results.json,
/// report.md and SVG plots into `settings.out`. Every finished stage's checkpoint is reused, so an interrupted
/// run continues and the per-task jobs of a plan can run apart.
public final class ExperimentPipeline {
    public let settings: ExperimentSettings
    /// The model config of pre-training from scratch (used with `settings.scheme`).
    let pretrainConfig: ViTConfig?
    /// This run's command line, recorded in the pre-trained checkpoint and used for the jobs' commands.
    let arguments: [String]
    /// One progress line.
    let log: (String) -> Void
    let start = Date()
    /// After `run`: every scored model's test outcomes, and the test split sizes (for a seed sweep's bootstrap).
    var outcomes = Outcomes()
    var testSizes: [Int] = []

    public init(
        settings: ExperimentSettings, pretrainConfig: ViTConfig?, arguments: [String],
        log: @escaping (String) -> Void
    ) {
        self.settings = settings
        self.pretrainConfig = pretrainConfig
        self.arguments = arguments
        self.log = log
    }

    /// Per mode, per task: the fine-tuned model and its validation and test accuracy.
    struct FineTuned {
        var models: [ExperimentMode: [ViTParameters]] = [:]
        var validation: [ExperimentMode: [Double]] = [:]
        var test: [ExperimentMode: [Double]] = [:]
        /// Which test images each model classifies correctly (for the bootstrap).
        var outcomes = Outcomes()
    }

    /// Runs everything (`job` nil) and returns the results, or runs one job of the plan and returns nil.
    @discardableResult
    public func run(job: ExperimentJob? = nil) throws -> ExperimentResults? {
        let s = settings, fm = FileManager.default
        try AtomicFile.createDirectory(s.out)
        let prePath = s.pretrainedPath
        if case .task(let i) = job, !fm.fileExists(atPath: prePath) {
            let plan = ExperimentPlan(settings: s, arguments: arguments)
            throw ExperimentError.missingPretrained(job: i, path: prePath, command: plan.command(job: .pretrain))
        }
        if let scheme = s.scheme, !fm.fileExists(atPath: prePath) { try pretrain(scheme: scheme, to: prePath) }
        if job == .pretrain {
            log("job pretrain: \(prePath) is ready")
            return nil
        }
        let (pre, meta) = try Checkpoint.load(path: prePath)
        log(
            "pre-trained encoder \(prePath) (\(meta["scheme"] ?? "unknown scheme"), "
                + "\(pre.table.parameterCount) parameters)")
        let preprocessing = try Checkpoint.preprocessing(meta, config: pre.config)
        let splits = try s.tasks.map { try TaskSplits(path: $0, seed: s.seed, preprocessing: preprocessing) }
        for t in splits { try t.check(fits: pre.config, checkpoint: prePath) }
        let names = splits.map(\.dataset.name)
        var results = ExperimentResults(
            pretraining: meta["scheme"] ?? "unknown", tasks: names, seed: s.seed,
            environment: Environment(cpu: "", threads: 0, isa: "", seconds: 0))

        // Stage 1: probe, aligned, linearized, full per task (each checkpoint reused when present).
        var fineTuned = FineTuned()
        var accuracy: [ExperimentMode: [String: Double]] = [:]
        for (i, split) in splits.enumerated() {
            if case .task(let j) = job, j != i { continue }
            let perMode = try fineTune(task: i, split, pre: pre, name: names[i])
            if job != nil {
                let done = perMode.map(\.0.rawValue).joined(separator: ", ")
                log("job \(i) (\(names[i])) done: \(done) in \(s.out)/\(names[i])")
                continue
            }
            let probe = perMode[0].1
            for (mode, p) in perMode {
                let (v, t, predictions) = evaluate(p, mode: mode, probe: probe, split)
                fineTuned.outcomes.record(mode.rawValue, task: i, predictions: predictions, labels: split.test.labels)
                accuracy[mode, default: [:]][names[i]] = t
                fineTuned.models[mode, default: []].append(p)
                fineTuned.validation[mode, default: []].append(v)
                fineTuned.test[mode, default: []].append(t)
            }
            var line = String(format: "%@: test accuracy probe %.3f", names[i], accuracy[.probe]![names[i]]!)
            for mode in [ExperimentMode.aligned, .full, .linearized] {
                if let a = accuracy[mode] { line += String(format: ", \(mode.rawValue) %.3f", a[names[i]]!) }
            }
            log(line)
        }
        if job != nil { return nil }
        results.accuracy.pretrainedProbe = accuracy[.probe]
        for mode in s.modes { results.accuracy.modes[mode] = accuracy[mode] }

        // Stage 2: merges per fine-tuning mode (probe-only task vectors are zero: nothing to merge).
        var curves: [SVG.Series] = []
        var outcomes = fineTuned.outcomes
        for mode in s.modes where mode != .probe {
            curves.append(
                try merge(
                    mode: mode, pre: pre, splits: splits, names: names, fineTuned: fineTuned, into: &results,
                    outcomes: &outcomes))
        }
        testSizes = splits.map(\.test.count)
        results.statistics = statistics(outcomes, results: results, testSizes: testSizes)
        self.outcomes = outcomes
        if !curves.isEmpty {
            try write(
                SVG.lineChart(
                    title: "Task addition: validation normalized accuracy vs λ", xLabel: "λ",
                    yLabel: "mean normalized accuracy (val)", series: curves, yMin: 0, yMax: 1.05),
                "lambda_curves.svg")
            try write(taskCountChart(results), "task_count.svg")
        }
        results.environment = Environment(
            cpu: Machine.cpuModel, threads: ThreadPool.shared.threads, isa: Machine.buildISA,
            seconds: Int(Date().timeIntervalSince(start)), precision: GEMM.precision.rawValue)
        try AtomicFile.write(outcomes.json(tasks: names), to: "\(s.out)/test_outcomes.json")
        try AtomicFile.write(results.json(), to: "\(s.out)/results.json")
        try write(ReportWriter(results: results, settings: s.report).markdown(), "report.md")
        log("wrote \(s.out)/results.json, \(s.out)/report.md and SVG plots; the report is \(s.out)/report.md")
        return results
    }

    /// Test normalized accuracy against the number of tasks added, per mode, with 95% bootstrap intervals.
    func taskCountChart(_ r: ExperimentResults) -> String {
        let series = r.taskCount.sorted.map { mode, counts in
            let errors = counts.map { c in
                r.statistics?[.taskCount(mode, k: c.k)].map { (low: $0.low, high: $0.high) }
                    ?? (low: c.testNormalized, high: c.testNormalized)
            }
            return SVG.Series(
                name: mode.rawValue, points: counts.map { (x: Double($0.k), y: $0.testNormalized) }, errors: errors)
        }
        return SVG.lineChart(
            title: "Task addition vs number of tasks (95% bootstrap intervals)", xLabel: "tasks added",
            yLabel: "mean normalized accuracy (test)", series: series, yMin: 0, yMax: 1.05)
    }

    /// Pre-trains with `scheme` (resumable state in the output directory) and saves the model to `path`.
    func pretrain(scheme: PretrainScheme, to path: String) throws {
        let s = settings
        let t0 = Date()
        log("pre-training (\(scheme.rawValue)) on \(s.pretrainData) for \(s.pretrainSteps) steps")
        let data = try TaskSplits(path: s.pretrainData, seed: s.seed, validationFraction: 0.05)
        guard let config = pretrainConfig else {
            preconditionFailure("pre-training needs the pipeline's pretrainConfig")
        }
        let pretrained = try ViTMergeTraining.pretrain(
            scheme: scheme, train: data.train, validation: data.validation, test: data.test,
            classes: data.dataset.classes.count, config: config, settings: s.pretraining,
            state: "\(s.out)/pretrain_\(scheme.rawValue)_state.safetensors", resume: true
        ) { t in
            if t.step % max(1, t.steps / 10) == 0 {
                self.log(
                    String(
                        format: "pre-training step %d/%d  loss %.4f  %.0f img/s  ETA %@", t.step, t.steps, t.loss,
                        t.imagesPerSecond, formatSeconds(t.secondsLeft))
                        + t.metrics.map { String(format: "  %@ %.4f", $0.name, $0.value) }.joined())
            }
        }
        let command = [
            "data": s.pretrainData, "command": arguments.joined(separator: " "),
            "pretrain_seconds": String(format: "%.1f", Date().timeIntervalSince(t0)),
        ]
        try pretrained.save(to: path, metadata: command)
    }

    /// Task `i`'s probe, then each fine-tuning mode of the settings (probe, aligned, linearized, full order).
    func fineTune(
        task i: Int, _ split: TaskSplits, pre: ViTParameters, name: String
    ) throws
        -> [(ExperimentMode, ViTParameters)]
    {
        let s = settings, modes = s.modes
        let dir = "\(s.out)/\(name)"
        try AtomicFile.createDirectory(dir)
        let classes = split.dataset.classes.count
        let fine = s.training(s.finetuneSteps, lr: s.lr, weightDecay: 0.05)
        let probe = try stage("\(dir)/probe.safetensors", "probe \(name)", task: name) {
            let model = ViT(parameters: withHead(pre, classes: classes))
            let features = extractFeatures(model, split.train)
            linearProbe(
                model, train: split.train, features: features,
                settings: s.training(s.probeSteps, lr: s.probeLr, weightDecay: 1e-4))
            return model.parameters
        }
        var perMode: [(ExperimentMode, ViTParameters)] = [(.probe, probe)]
        if modes.contains(.aligned) {
            perMode.append(
                (
                    .aligned,
                    try stage("\(dir)/aligned.safetensors", "aligned fine-tuning \(name)", task: name) {
                        let model = ViT(parameters: probe.copy())
                        try Trainer(model: model, train: split.train, mode: .aligned, settings: fine).run()
                        return model.parameters
                    }
                ))
        }
        if modes.contains(.linearized) {
            let metadata = ["mode": "linearized", "base": "\(dir)/probe.safetensors"]
            perMode.append(
                (
                    .linearized,
                    try stage(
                        "\(dir)/linearized.safetensors", "linearized fine-tuning \(name)", task: name,
                        metadata: metadata
                    ) {
                        let trainer = Trainer(
                            model: ViT(parameters: probe.copy()), train: split.train, mode: .linearized,
                            settings: fine)
                        try trainer.run()
                        return trainer.trained
                    }
                ))
        }
        if modes.contains(.full) {
            perMode.append(
                (
                    .full,
                    try stage("\(dir)/full.safetensors", "full fine-tuning \(name)", task: name) {
                        let p = withHead(pre, classes: classes)
                        reinitializeHead(p, seed: s.fineTuneSeed &+ UInt64(i))
                        let model = ViT(parameters: p)
                        try Trainer(model: model, train: split.train, mode: .full, settings: fine).run()
                        return model.parameters
                    }
                ))
        }
        return perMode
    }

    /// Validation and test accuracy of a fine-tuned model, and its test predictions; linearized:
    /// f(θ_probe) + J(θ_probe)·(θ − θ_probe).
    func evaluate(
        _ p: ViTParameters, mode: ExperimentMode, probe: ViTParameters, _ split: TaskSplits
    ) -> (validation: Double, test: Double, predictions: [Int]) {
        let linearized = mode == .linearized
        let m = ViT(parameters: linearized ? probe : p)
        let tangent = linearized ? p.difference(from: probe) : []
        return tangent.withUnsafeBufferPointer { tv in
            let t = linearized ? tv.baseAddress! : nil
            let evaluator = Evaluator(model: m, capacity: min(128, max(split.test.count, 1)), linearized: linearized)
            let predictions = evaluator.predictions(split.test, range: 0..<split.test.count, tangent: t)
            let correct = zip(predictions, split.test.labels).filter { $0 == Int($1) }.count
            return (
                ViTMergeTraining.evaluate(m, on: split.validation, tangent: t).accuracy,
                Double(correct) / Double(max(split.test.count, 1)), predictions
            )
        }
    }

    /// Loads `path` if a previous run finished it, else runs `make` and saves atomically.
    func stage(
        _ path: String, _ what: String, task: String, metadata extra: [String: String] = [:],
        _ make: () throws -> ViTParameters
    ) throws -> ViTParameters {
        if FileManager.default.fileExists(atPath: path) {
            log("\(what): reusing \(path)")
            return try Checkpoint.load(path: path).parameters
        }
        let t0 = Date()
        let p = try make()
        try Checkpoint.save(p, to: path, metadata: extra.merging(["stage": what, "task": task]) { $1 })
        log("\(what): done in \(formatSeconds(Date().timeIntervalSince(t0)))")
        return p
    }

    /// Writes `text` to `name` in the output directory, atomically.
    func write(_ text: String, _ name: String) throws {
        try AtomicFile.write(text, to: "\(settings.out)/\(name)")
    }
}
