import ArgumentParser
import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeMerging
import ViTMergeModel
import ViTMergeReport
import ViTMergeTraining

/// Options of the whole pipeline; `demo` fixes them to the embedded defaults.
struct ExperimentOptions: ParsableArguments {
    @Option(help: "Output directory (results.json, report.md, SVGs, checkpoints). Finished stages are reused.")
    var out: String
    @Option(parsing: .upToNextOption, help: "Task files.")
    var tasks: [String] = [
        "data/tasks/mnist.safetensors", "data/tasks/fashion.safetensors",
        "data/tasks/letters.safetensors", "data/tasks/kana.safetensors",
    ]
    @Option(help: "Comma-separated fine-tuning modes among probe, aligned, full, linearized.")
    var modes = "probe,aligned,full"
    @Option(help: "Pre-trained checkpoint (the committed supervised glyph model by default); ignored with --scheme.")
    var pretrained = "data/pretrained/vit_mini_glyphs.safetensors"
    @Option(help: "Pre-train from scratch with this scheme (supervised | mim) instead of loading --pretrained.")
    var scheme: String?
    @Option(help: "With --scheme: pre-training data.") var pretrainData = "data/pretrain/glyphs.safetensors"
    @Option(help: "With --scheme: pre-training model config (JSON file or preset).") var pretrainConfig =
        "vit_mini_patch4_28"
    @Option(help: "With --scheme: pre-training steps (batch 64, lr 1e-3).") var pretrainSteps = 3000
    @Option(help: "Linear-probe steps.") var probeSteps = 400
    @Option(help: "Fine-tuning steps per task and mode.") var finetuneSteps = 250
    @Option(help: "Fine-tuning batch size.") var batchSize = 64
    @Option(help: "Fine-tuning peak learning rate.") var lr: Float = 3e-4
    @Option(help: "Linear-probe peak learning rate.") var probeLr: Float = 3e-3
    @Option(help: "Seed (validation split, batches, heads).") var seed: UInt64 = 0
    @Option(help: "Disentanglement grid step over [−3, 3].") var alphaStep = 0.5
    @Option(help: "Validation images per task for the disentanglement error.") var disentangleImages = 100
    @Flag(
        help:
            "Print the independent per-task jobs as commands (for a job array, e.g. scripts/slurm_experiment.sh) and exit."
    )
    var plan = false
    @Option(
        help:
            "Run one job of --plan and exit: a task index (0-based, in --tasks order) or 'pretrain'. The full command then reuses the jobs' checkpoints."
    )
    var job: String?
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if let j = job, j != "pretrain" && Int(j).map({ !(0..<tasks.count).contains($0) }) ?? true {
            throw ValidationError("--job must be 'pretrain' or a task index between 0 and \(tasks.count - 1)")
        }
        if job == "pretrain" && scheme == nil {
            throw ValidationError("--job pretrain needs --scheme (without it the pre-trained model is loaded)")
        }
        if plan && job != nil { throw ValidationError("give --plan or --job, not both") }
        let m = modeList
        if m.isEmpty || !m.allSatisfy({ ["probe", "aligned", "full", "linearized"].contains($0) }) {
            throw ValidationError("--modes takes a comma-separated subset of probe, aligned, full, linearized")
        }
        if tasks.count < 2 { throw ValidationError("give at least two --tasks to merge") }
        if probeSteps < 1 || finetuneSteps < 1 || batchSize < 1 {
            throw ValidationError("steps and batch size must be ≥ 1")
        }
        if !(alphaStep > 0) { throw ValidationError("--alpha-step must be positive") }
        if let s = scheme, !["supervised", "mim"].contains(s) {
            throw ValidationError("--scheme must be supervised or mim")
        }
        if pretrainSteps < 1 { throw ValidationError("--pretrain-steps must be ≥ 1") }
    }

    var modeList: [String] { modes.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
}

struct Experiment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "The whole pipeline: probe, fine-tune per mode, task vectors, addition, negation, task count, disentanglement, other merges; writes results.json, report.md and SVG plots."
    )
    @OptionGroup var options: ExperimentOptions
    func run() throws { try ExperimentRunner(options: options).run() }
}

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
        try ExperimentRunner(options: o).run()
    }
}

/// Runs the stages, reusing finished checkpoints in the output directory.
final class ExperimentRunner {
    let o: ExperimentOptions
    let start = Date()
    var results: [String: Any] = [:]
    init(options: ExperimentOptions) { o = options }

    func say(_ s: String) {
        print("[\(formatSeconds(Date().timeIntervalSince(start)))] \(s)")
        fflush(nil)
    }

    func run() throws {
        o.runtime.apply()
        if o.plan { return try printPlan() }
        let fm = FileManager.default
        try fm.createDirectory(atPath: o.out, withIntermediateDirectories: true)
        let prePath = o.scheme.map { "\(o.out)/pretrained_\($0).safetensors" } ?? o.pretrained
        let job = o.job.flatMap { Int($0) }
        if job != nil && !fm.fileExists(atPath: prePath) {
            throw InputError(
                description:
                    "job \(job!) needs the pre-trained model \(prePath): run the pre-training job first (\(planCommand(job: "pretrain")))"
            )
        }
        if let scheme = o.scheme, !fm.fileExists(atPath: prePath) {
            say("pre-training (\(scheme)) on \(o.pretrainData) for \(o.pretrainSteps) steps")
            let data = try TaskSplits(path: o.pretrainData, seed: o.seed, validationFraction: 0.05)
            let settings = TrainSettings(
                steps: o.pretrainSteps, batchSize: 64, lr: 1e-3, warmupSteps: max(1, o.pretrainSteps / 20),
                weightDecay: 0.05, clipNorm: 1, seed: o.seed, checkpointEvery: 250)
            let (p, metadata) = try pretrain(
                scheme: PretrainScheme(rawValue: scheme)!, train: data.train, validation: data.validation,
                test: data.test, classes: data.dataset.classes.count, config: try loadConfig(o.pretrainConfig),
                settings: settings,
                state: "\(o.out)/pretrain_\(scheme)_state.safetensors", resume: true,
                log: { s in
                    if s.step % max(1, s.steps / 10) == 0 {
                        self.say(
                            String(
                                format: "pre-training step %d/%d  loss %.4f  %.0f img/s  ETA %@", s.step, s.steps,
                                s.loss,
                                s.imagesPerSecond, formatSeconds(s.secondsLeft)))
                    }
                })
            try Checkpoint.save(
                p, to: prePath,
                metadata: metadata.merging([
                    "data": o.pretrainData,
                    "command": CommandLine.arguments.joined(separator: " "),
                ]) { $1 })
        }
        if o.job == "pretrain" { return say("job pretrain: \(prePath) is ready") }
        let (pre, meta) = try Checkpoint.load(path: prePath)
        say(
            "pre-trained encoder \(prePath) (\(meta["scheme"] ?? "unknown scheme"), \(pre.table.parameterCount) parameters)"
        )
        let splits = try o.tasks.map { try TaskSplits(path: $0, seed: o.seed) }
        for s in splits { try s.check(fits: pre.config, checkpoint: prePath) }
        let names = splits.map(\.dataset.name)
        let modes = o.modeList
        results["pretraining"] = meta["scheme"] ?? "unknown"
        results["tasks"] = names
        results["seed"] = o.seed

        // Stage 1: probe, aligned, full per task (each checkpoint reused when present).
        var accuracy: [String: [String: Double]] = [:]
        var models: [String: [ViTParameters]] = [:]  // mode → per task
        var ftVal: [String: [Double]] = [:], ftTest: [String: [Double]] = [:]
        for (i, s) in splits.enumerated() where job == nil || job == i {
            let dir = "\(o.out)/\(names[i])"
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let classes = s.dataset.classes.count
            let probe = try stage("\(dir)/probe.safetensors", "probe \(names[i])", task: names[i]) {
                let model = ViT(parameters: withHead(pre, classes: classes))
                let features = extractFeatures(model, s.train)
                linearProbe(
                    model, train: s.train, features: features, settings: settings(o.probeSteps, lr: o.probeLr, wd: 1e-4)
                )
                return model.parameters
            }
            var perMode: [(String, ViTParameters)] = [("probe", probe)]
            if modes.contains("aligned") {
                perMode.append(
                    (
                        "aligned",
                        try stage("\(dir)/aligned.safetensors", "aligned fine-tuning \(names[i])", task: names[i]) {
                            let model = ViT(parameters: probe.copy())
                            try Trainer(
                                model: model, train: s.train, mode: .aligned,
                                settings: settings(o.finetuneSteps, lr: o.lr, wd: 0.05)
                            ).run()
                            return model.parameters
                        }
                    ))
            }
            if modes.contains("linearized") {
                perMode.append(
                    (
                        "linearized",
                        try stage(
                            "\(dir)/linearized.safetensors", "linearized fine-tuning \(names[i])", task: names[i],
                            metadata: ["mode": "linearized", "base": "\(dir)/probe.safetensors"]
                        ) {
                            let trainer = Trainer(
                                model: ViT(parameters: probe.copy()), train: s.train, mode: .linearized,
                                settings: settings(o.finetuneSteps, lr: o.lr, wd: 0.05))
                            try trainer.run()
                            return trainer.trained
                        }
                    ))
            }
            if modes.contains("full") {
                perMode.append(
                    (
                        "full",
                        try stage("\(dir)/full.safetensors", "full fine-tuning \(names[i])", task: names[i]) {
                            let p = withHead(pre, classes: classes)
                            reinitializeHead(p, seed: o.seed &+ UInt64(i))
                            let model = ViT(parameters: p)
                            try Trainer(
                                model: model, train: s.train, mode: .full,
                                settings: settings(o.finetuneSteps, lr: o.lr, wd: 0.05)
                            ).run()
                            return model.parameters
                        }
                    ))
            }
            if job != nil {
                say("job \(i) (\(names[i])) done: \(perMode.map(\.0).joined(separator: ", ")) in \(dir)")
                continue
            }
            for (mode, p) in perMode {
                let v: Double, t: Double
                if mode == "linearized" {  // f_lin = f(θ_probe) + J(θ_probe)·(θ − θ_probe)
                    let m = ViT(parameters: probe)
                    (v, t) = p.difference(from: probe).withUnsafeBufferPointer { tv in
                        (
                            evaluate(m, on: s.validation, tangent: tv.baseAddress!).accuracy,
                            evaluate(m, on: s.test, tangent: tv.baseAddress!).accuracy
                        )
                    }
                } else {
                    let m = ViT(parameters: p)
                    (v, t) = (evaluate(m, on: s.validation).accuracy, evaluate(m, on: s.test).accuracy)
                }
                accuracy[mode, default: [:]][names[i]] = t
                if mode == "probe" { accuracy["pretrained_probe", default: [:]][names[i]] = t }
                models[mode, default: []].append(p)
                ftVal[mode, default: []].append(v)
                ftTest[mode, default: []].append(t)
            }
            say(
                String(format: "%@: test accuracy probe %.3f", names[i], accuracy["probe"]![names[i]]!)
                    + (accuracy["aligned"].map { String(format: ", aligned %.3f", $0[names[i]]!) } ?? "")
                    + (accuracy["full"].map { String(format: ", full %.3f", $0[names[i]]!) } ?? "")
                    + (accuracy["linearized"].map { String(format: ", linearized %.3f", $0[names[i]]!) } ?? ""))
        }
        if job != nil { return }
        results["accuracy"] = accuracy.filter { $0.key == "pretrained_probe" || modes.contains($0.key) }

        // Stage 2: merges per fine-tuning mode (probe-only task vectors are zero: nothing to merge).
        var additions: [String: Any] = [:], counts: [String: Any] = [:], negations: [String: Any] = [:]
        var disentangle: [String: Any] = [:], merges: [String: Any] = [:]
        var curves: [SVG.Series] = [], countCurves: [SVG.Series] = []
        let all = Array(0..<splits.count)
        for mode in modes where mode != "probe" {
            let tasks = try all.map { i in
                try MergeTask(
                    name: names[i], validation: splits[i].validation, test: splits[i].test, finetuned: models[mode]![i],
                    pretrained: pre, finetunedValidation: ftVal[mode]![i], finetunedTest: ftTest[mode]![i])
            }
            for i in all {
                try TaskVector(task: names[i], base: parameterHash(pre), values: tasks[i].tau)
                    .save(to: "\(o.out)/\(names[i])/task_vector_\(mode).safetensors", table: pre.table)
            }
            let ev = MergeEvaluator(pretrained: pre, tasks: tasks, linearized: mode == "linearized")
            let add = ev.addition(tasks: all)
            say(
                String(
                    format: "%@ task addition: λ %.2f, normalized accuracy val %.3f test %.3f", mode, add.lambda,
                    add.validation, add.test))
            additions[mode] = [
                "lambda": add.lambda, "val_normalized": add.validation, "test_normalized": add.test,
                "test_absolute": Dictionary(uniqueKeysWithValues: zip(names, add.testAbsolute)),
                "test_normalized_per_task": Dictionary(uniqueKeysWithValues: zip(names, add.testPerTask)),
                "curve": add.curve.map { [$0.0, $0.1] },
            ]
            curves.append(.init(name: mode, points: add.curve.map { (x: $0.0, y: $0.1) }))

            // Accuracy vs number of tasks: every subset of size k, λ on a coarser grid.
            var perK: [[String: Any]] = []
            var pts: [(x: Double, y: Double)] = []
            let coarse = (0...10).map { Double($0) / 10 }
            for k in 2...splits.count {
                let subsets = combinations(all, k)
                let scores = subsets.map { ev.addition(tasks: $0, grid: coarse).test }
                let mean = scores.reduce(0, +) / Double(scores.count)
                perK.append(["k": k, "test_normalized": mean, "subsets": scores.count])
                pts.append((Double(k), mean))
            }
            counts[mode] = perK
            countCurves.append(.init(name: mode, points: pts))
            say(
                "\(mode) task count: "
                    + pts.map { String(format: "k=%d %.3f", Int($0.x), $0.y) }.joined(separator: ", "))

            // Negation: θ_pre − λ τ_target; control must keep ≥ 95% of its pre-trained accuracy.
            let (target, control) = (0, 1)
            let preEncoder = ev.encoder([], [])
            let controlPre = ev.accuracy(encoder: preEncoder, task: control, split: .validation)
            var bestNeg: (lambda: Double, target: Double)? = nil
            for l in lambdaGrid {
                let enc = ev.encoder([tasks[target].tau], [Float(-l)])
                let c = ev.accuracy(encoder: enc, task: control, split: .validation)
                let t = ev.accuracy(encoder: enc, task: target, split: .validation)
                if c >= 0.95 * controlPre && (bestNeg == nil || t < bestNeg!.target) { bestNeg = (l, t) }
            }
            let negL = bestNeg?.lambda ?? 0
            let negEnc = ev.encoder([tasks[target].tau], [Float(-negL)])
            negations[mode] = [
                "target": names[target], "control": names[control], "lambda": negL,
                "target_accuracy": ev.accuracy(encoder: negEnc, task: target, split: .test),
                "control_accuracy": ev.accuracy(encoder: negEnc, task: control, split: .test),
                "target_pretrained_accuracy": ev.accuracy(encoder: preEncoder, task: target, split: .test),
                "control_pretrained_accuracy": ev.accuracy(encoder: preEncoder, task: control, split: .test),
            ]

            // Weight disentanglement error for the first two tasks.
            let alphas = stride(from: -3.0, through: 3.0001, by: o.alphaStep).map { ($0 * 1000).rounded() / 1000 }
            let xi = ev.disentanglement(0, 1, alphas: alphas, limit: o.disentangleImages)
            disentangle[mode] = ["tasks": [names[0], names[1]], "alphas": alphas, "error": xi]
            try write(
                SVG.heatmap(
                    title: "Weight disentanglement error ξ (\(mode)): \(names[0]) + \(names[1])",
                    xLabel: "α2 (\(names[1]))", yLabel: "α1 (\(names[0]))", xs: alphas, ys: alphas, values: xi, vMax: 2),
                "disentanglement_\(mode).svg")
            say(
                "\(mode) disentanglement: mean ξ over |α| ≤ 1: " + String(format: "%.3f", meanXi(xi, alphas, radius: 1))
            )

            // Other merges on the aligned task vectors (hyper-parameter and λ on validation).
            if mode == "aligned" || !modes.contains("aligned") {
                let taus = tasks.map(\.tau)
                let avg = ev.normalized(encoder: ev.encoder([Merges.average(taus)], [1]), tasks: all, split: .test)
                merges["average"] = [
                    "test_normalized": avg.mean,
                    "test_absolute": Dictionary(uniqueKeysWithValues: zip(names, avg.absolute)),
                ]
                merges["task_arithmetic"] = ["lambda": add.lambda, "test_normalized": add.test]
                func tuned(_ candidates: [(Double, [Float])]) -> [String: Any] {
                    let runs = candidates.map { ($0.0, ev.addition(tasks: all, direction: $0.1)) }
                    let best = runs.max { a, b in
                        a.1.validation < b.1.validation || (a.1.validation == b.1.validation && a.0 > b.0)
                    }!
                    return [
                        "hyperparameter": best.0, "lambda": best.1.lambda, "val_normalized": best.1.validation,
                        "test_normalized": best.1.test,
                        "test_absolute": Dictionary(uniqueKeysWithValues: zip(names, best.1.testAbsolute)),
                    ]
                }
                let ties = tuned([0.1, 0.2, 0.5].map { ($0, Merges.ties(taus, keep: $0)) })
                var tiesOut = ties
                tiesOut["keep"] = ties["hyperparameter"]
                merges["ties"] = tiesOut
                var dare = tuned(
                    [0.5, 0.9].map { p in
                        (
                            p,
                            zip(taus.indices, taus).reduce(into: [Float](repeating: 0, count: taus[0].count)) {
                                acc, it in
                                let d = Merges.dare(it.1, drop: p, seed: o.seed &+ UInt64(it.0))
                                for j in 0..<acc.count { acc[j] += d[j] }
                            }
                        )
                    })
                dare["drop"] = dare["hyperparameter"]
                merges["dare"] = dare
                say(
                    String(
                        format:
                            "merges (%@): average %.3f, task arithmetic %.3f, TIES %.3f, DARE %.3f (test normalized)",
                        mode,
                        avg.mean, add.test, ties["test_normalized"] as! Double, dare["test_normalized"] as! Double))
            }
        }
        results["task_addition"] = additions
        results["task_count"] = counts
        results["negation"] = negations
        results["disentanglement"] = disentangle
        results["merges"] = merges
        if !curves.isEmpty {
            try write(
                SVG.lineChart(
                    title: "Task addition: validation normalized accuracy vs λ", xLabel: "λ",
                    yLabel: "mean normalized accuracy (val)",
                    series: curves, yMin: 0, yMax: 1.05), "lambda_curves.svg")
            try write(
                SVG.lineChart(
                    title: "Task addition vs number of tasks", xLabel: "tasks added",
                    yLabel: "mean normalized accuracy (test)",
                    series: countCurves, yMin: 0, yMax: 1.05), "task_count.svg")
        }
        results["environment"] = [
            "cpu": Machine.cpuModel, "threads": ThreadPool.shared.threads, "isa": Machine.buildISA,
            "seconds": Int(Date().timeIntervalSince(start)),
        ]
        let data = try JSONSerialization.data(withJSONObject: results, options: [.sortedKeys, .prettyPrinted])
        try data.write(to: URL(fileURLWithPath: "\(o.out)/results.json"), options: .atomic)
        try write(ReportWriter(results: results, options: o).markdown(), "report.md")
        say("wrote \(o.out)/results.json, \(o.out)/report.md and SVG plots; the report is \(o.out)/report.md")
    }

    func settings(_ steps: Int, lr: Float, wd: Float) -> TrainSettings {
        TrainSettings(
            steps: steps, batchSize: o.batchSize, lr: lr, warmupSteps: max(1, steps / 10), weightDecay: wd, clipNorm: 1,
            seed: o.seed)
    }

    /// Loads `path` if a previous run finished it, else runs `make` and saves atomically.
    func stage(
        _ path: String, _ what: String, task: String, metadata extra: [String: String] = [:],
        _ make: () throws -> ViTParameters
    ) throws -> ViTParameters {
        if FileManager.default.fileExists(atPath: path) {
            say("\(what): reusing \(path)")
            return try Checkpoint.load(path: path).parameters
        }
        let t0 = Date()
        let p = try make()
        try Checkpoint.save(p, to: path, metadata: extra.merging(["stage": what, "task": task]) { $1 })
        say("\(what): done in \(formatSeconds(Date().timeIntervalSince(t0)))")
        return p
    }

    /// This command line without --plan and --job, then `--job job` if given, quoted for a POSIX shell.
    func planCommand(job: String?) -> String {
        var args: [String] = [], rest = CommandLine.arguments.dropFirst()
        while let a = rest.popFirst() {
            if a == "--job" { _ = rest.popFirst(); continue }
            if a == "--plan" || a.hasPrefix("--job=") { continue }
            args.append(a)
        }
        return ([CommandLine.arguments[0]] + args + (job.map { ["--job", $0] } ?? [])).map(shellQuoted).joined(
            separator: " ")
    }

    /// The fan-out: optional pre-training, one independent job per task (probe, then each
    /// fine-tuning mode; it writes only OUT/<task>/), then this command without --job, which
    /// reuses the jobs' checkpoints and runs the merge stages.
    func printPlan() throws {
        let names = try o.tasks.map { try TaskDataset.open(path: $0).name }
        let stages = ["probe"] + o.modeList.filter { $0 != "probe" }
        print(
            "# ViTMerge experiment plan: \(names.count) independent jobs (0–\(names.count - 1)), then the merge stage.")
        print("# Each job writes only \(o.out)/<task>/; run them in any order or at once (one node each).")
        if let scheme = o.scheme {
            print(
                "# first: pre-training (\(scheme), \(o.pretrainSteps) steps) to \(o.out)/pretrained_\(scheme).safetensors"
            )
            print(planCommand(job: "pretrain"))
        }
        for (i, name) in names.enumerated() {
            print(
                "# job \(i): \(name): \(stages.joined(separator: ", ")) → \(o.out)/\(name)/{\(stages.joined(separator: ","))}.safetensors"
            )
            print(planCommand(job: "\(i)"))
        }
        print("# last, once every job has finished: merges, task count, negation, disentanglement, report")
        print(planCommand(job: nil))
    }

    func write(_ text: String, _ name: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: "\(o.out)/\(name)"), options: .atomic)
    }
}

/// `s` as one POSIX shell word.
func shellQuoted(_ s: String) -> String {
    let plain = !s.isEmpty && s.allSatisfy { $0.isLetter || $0.isNumber || "-_./=:,+@%".contains($0) }
    return plain ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// All k-element subsets of `items`, in lexicographic order.
func combinations(_ items: [Int], _ k: Int) -> [[Int]] {
    if k == 0 { return [[]] }
    guard items.count >= k else { return [] }
    let head = items[0], rest = Array(items.dropFirst())
    return combinations(rest, k - 1).map { [head] + $0 } + combinations(rest, k)
}

/// Mean ξ over the grid points with |α1|, |α2| ≤ radius.
func meanXi(_ xi: [[Double]], _ alphas: [Double], radius: Double) -> Double {
    var s = 0.0, n = 0
    for (i, a) in alphas.enumerated() where abs(a) <= radius {
        for (j, b) in alphas.enumerated() where abs(b) <= radius { s += xi[i][j]; n += 1 }
    }
    return n > 0 ? s / Double(n) : 0
}
