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
        abstract: "Write the task vector τ = θ_finetuned − θ_pretrained (encoder only, bound to the base by SHA-256).")
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
                format: "wrote %@ (task %@, %d values, ‖τ‖ = %.4f, base %@…)", output, task, tv.values.count, norm,
                String(tv.base.prefix(12))))
    }
}

/// Inputs shared by `merge` and `disentangle`: a base and, per task, its fine-tuned model and data.
struct MergeInputs: ParsableArguments {
    @Option(help: "Pre-trained checkpoint (the base).") var pretrained: String
    @Option(
        parsing: .upToNextOption,
        help: "Fine-tuned checkpoints, one per task (their heads are used, and their accuracies normalize).")
    var finetuned: [String]
    @Option(
        parsing: .upToNextOption,
        help: "Task data (.safetensors or IDX directory), one per fine-tuned checkpoint, same order.")
    var tasks: [String]
    @Option(
        parsing: .upToNextOption,
        help: "Task vectors to use instead of θ_ft − θ_pre (checked against the base's hash), same order.")
    var taskVectors: [String] = []
    @Option(help: "Seed of the validation split (as used in fine-tuning).") var seed: UInt64 = 0
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if finetuned.count != tasks.count {
            throw ValidationError(
                "give one --tasks entry per --finetuned checkpoint (\(finetuned.count) vs \(tasks.count))")
        }
        if !taskVectors.isEmpty && taskVectors.count != finetuned.count {
            throw ValidationError("give one --task-vectors file per --finetuned checkpoint, or none")
        }
    }

    /// The evaluator over all tasks, with the fine-tuned accuracies measured here.
    func load() throws -> (MergeEvaluator, [String]) {
        runtime.apply()
        let pre = try Checkpoint.load(path: pretrained).parameters
        let base = parameterHash(pre)
        var merged: [MergeTask] = []
        for (i, path) in finetuned.enumerated() {
            let s = try TaskSplits(path: tasks[i], seed: seed)
            let (ft, meta) = try Checkpoint.load(path: path)
            try s.check(fits: ft.config, checkpoint: path)
            if let trained = meta["task"], trained != s.dataset.name {
                throw ValidationError(
                    "\(path) was fine-tuned on task '\(trained)' but is paired with \(tasks[i]) ('\(s.dataset.name)'): give --finetuned and --tasks in the same order"
                )
            }
            guard ft.config.numClasses == s.dataset.classes.count else {
                throw ValidationError(
                    "\(path) has a head for \(ft.config.numClasses) classes but \(tasks[i]) has \(s.dataset.classes.count): pair each checkpoint with its task"
                )
            }
            let m = ViT(parameters: ft)
            var t = try MergeTask(
                name: s.dataset.name, validation: s.validation, test: s.test, finetuned: ft, pretrained: pre,
                finetunedValidation: evaluate(m, on: s.validation).accuracy,
                finetunedTest: evaluate(m, on: s.test).accuracy)
            if !taskVectors.isEmpty {
                let tv = try TaskVector.load(path: taskVectors[i], table: pre.table)
                guard tv.base == base else { throw MergeError.wrongBase(task: tv.task, expected: base, found: tv.base) }
                t.tau = tv.values
            }
            merged.append(t)
        }
        return (MergeEvaluator(pretrained: pre, tasks: merged), merged.map(\.name))
    }
}

/// `vitmerge merge`: task addition (or averaging, TIES, DARE) with λ chosen on validation.
struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract:
            "Merge task vectors into the base: θ_pre + λ·Σ τ (or average / TIES / DARE), λ chosen on validation, reported on test."
    )
    @OptionGroup var inputs: MergeInputs
    @Option(help: "sum (task arithmetic) | average | ties | dare") var method = "sum"
    @Option(help: "TIES: fraction of each τ kept (top-k by magnitude).") var keep = 0.2
    @Option(help: "DARE: drop probability.") var drop = 0.9
    @Option(help: "Use this λ instead of searching {0, 0.05, …, 1} on validation.") var lambda: Double?
    @Option(help: "Directory for the merged model, one checkpoint per task head (<task>.safetensors).") var output:
        String?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if !["sum", "average", "ties", "dare"].contains(method) {
            throw ValidationError("--method must be sum, average, ties or dare")
        }
        if !(keep > 0 && keep <= 1) { throw ValidationError("--keep must be in (0, 1]") }
        if !(drop >= 0 && drop < 1) { throw ValidationError("--drop must be in [0, 1)") }
        if let l = lambda, !(l.isFinite && l >= -10 && l <= 10) {
            throw ValidationError("--lambda must be a number in [−10, 10]")
        }
    }

    func run() throws {
        let (ev, names) = try inputs.load()
        let taus = ev.tasks.map(\.tau)
        let all = Array(names.indices)
        let direction: EncoderVector
        switch method {
        case "average": direction = Merges.average(taus)
        case "ties": direction = Merges.ties(taus, keep: keep)
        case "dare": direction = Merges.dareSum(taus, drop: drop, seed: inputs.seed)
        default: direction = Merges.sum(taus)
        }
        // Averaging is a fixed merge (λ = 1 on the mean) unless a λ is given.
        let grid = lambda.map { [$0] } ?? (method == "average" ? [1] : lambdaGrid)
        let r = ev.addition(tasks: all, direction: direction, grid: grid)
        if let output {
            try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
            let enc = ev.encoder([direction], [Float(r.lambda)])
            for i in all {
                let p = ev.model(encoder: enc, task: i)
                try Checkpoint.save(
                    p, to: "\(output)/\(names[i]).safetensors",
                    metadata: [
                        "stage": "merge \(method) λ=\(r.lambda)",
                        "command": CommandLine.arguments.joined(separator: " "),
                    ])
            }
        }
        if json {
            printJSON([
                "method": method, "lambda": r.lambda, "val_normalized": r.validation, "test_normalized": r.test,
                "test_normalized_per_task": Dictionary(uniqueKeysWithValues: zip(names, r.testPerTask)),
                "test_absolute": Dictionary(uniqueKeysWithValues: zip(names, r.testAbsolute)),
                "curve": r.curve.map { [$0.0, $0.1] },
            ])
            return
        }
        print(
            String(
                format: "%@ merge of %d tasks: λ = %.2f (chosen on validation: mean normalized %.4f)", method,
                names.count, r.lambda, r.validation))
        print("task".padding(toLength: 14, withPad: " ", startingAt: 0) + "  fine-tuned  merged  normalized")
        for i in all {
            print(
                names[i].padding(toLength: 14, withPad: " ", startingAt: 0)
                    + String(
                        format: "  %10.4f  %6.4f  %10.4f", ev.tasks[i].finetunedTest, r.testAbsolute[i],
                        r.testPerTask[i]))
        }
        print(String(format: "mean normalized test accuracy %.4f", r.test))
        if let output { print("wrote merged checkpoints to \(output)/") }
    }
}

/// `vitmerge disentangle`: weight disentanglement error ξ(α1, α2) for two tasks, as JSON and SVG.
struct Disentangle: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Weight disentanglement error ξ(α1, α2) of two tasks over a grid of coefficients; writes a heatmap SVG.")
    @OptionGroup var inputs: MergeInputs
    @Option(help: "Grid step over [−range, range].") var alphaStep = 0.5
    @Option(help: "Grid half-width.") var range = 3.0
    @Option(help: "Validation images per task.") var images = 100
    @Option(help: "Heatmap SVG to write.") var svg = "disentanglement.svg"
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if inputs.finetuned.count != 2 {
            throw ValidationError("disentangle takes exactly two tasks (two --finetuned and two --tasks)")
        }
        if !(alphaStep > 0) || !(range > 0) || range / alphaStep > 100 {
            throw ValidationError("--alpha-step and --range must be positive, at most 201 grid points")
        }
        if images < 1 { throw ValidationError("--images must be ≥ 1") }
    }

    func run() throws {
        let (ev, names) = try inputs.load()
        let alphas = stride(from: -range, through: range + 1e-9, by: alphaStep).map { ($0 * 1000).rounded() / 1000 }
        let xi = ev.disentanglement(0, 1, alphas: alphas, limit: images)
        let chart = SVG.heatmap(
            title: "Weight disentanglement error ξ: \(names[0]) + \(names[1])", xLabel: "α2 (\(names[1]))",
            yLabel: "α1 (\(names[0]))", xs: alphas, ys: alphas, values: xi, vMax: 2)
        do { try Data(chart.utf8).write(to: URL(fileURLWithPath: svg), options: .atomic) } catch {
            throw IOError.cannotWrite(path: svg, reason: error.localizedDescription)
        }
        if json {
            printJSON(["tasks": names, "alphas": alphas, "error": xi, "svg": svg])
            return
        }
        print("ξ(α1, α2) for \(names[0]) (rows, α1) and \(names[1]) (columns, α2) on \(images) validation images each:")
        print("α1\\α2 " + alphas.map { String(format: "%5.1f", $0) }.joined(separator: " "))
        for (i, row) in xi.enumerated() {
            print(String(format: "%5.1f ", alphas[i]) + row.map { String(format: "%5.2f", $0) }.joined(separator: " "))
        }
        print(String(format: "mean ξ over |α| ≤ 1: %.4f; wrote %@", meanXi(xi, alphas, radius: 1), svg))
    }
}
