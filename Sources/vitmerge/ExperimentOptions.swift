import ArgumentParser
import Foundation
import ViTMergeExperiment
import ViTMergeMerging
import ViTMergeReport
import ViTMergeTraining

/// Options of the whole pipeline; `demo` fixes them to the embedded defaults.
struct ExperimentOptions: ParsableArguments {
    @Option(help: "Output directory (results.json, report.md, SVGs, checkpoints). Finished stages are reused.")
    var out: String
    @Option(
        parsing: .upToNextOption,
        help: "Tasks: task files, IDX directories or image folders (default: eight embedded tasks).")
    var tasks: [String] = Self.embeddedTasks
    @Option(help: "Comma-separated fine-tuning modes among probe, aligned, full, linearized.")
    var modes = "probe,aligned,full,linearized"
    @Option(help: "Pre-trained checkpoint (the committed supervised glyph model by default); ignored with --scheme.")
    var pretrained = "data/pretrained/vit_mini_glyphs.safetensors"
    @Option(help: "Pre-train from scratch with this scheme instead of loading --pretrained.")
    var scheme: PretrainScheme?
    @Option(
        help: ArgumentHelp(
            "Compare pre-training schemes, comma-separated (e.g. supervised,mae,dino,clip,mim): each pre-trained "
                + "from scratch with the same --pretrain-steps × batch 64 on the same data, then the same protocol, "
                + "into <out>/<scheme>/; <out>/results.json and report.md hold the scheme table and the papers' "
                + "ordering claims."))
    var schemes: String?
    @Option(help: "With --scheme: pre-training data.") var pretrainData = "data/pretrain/glyphs.safetensors"
    @Option(help: "With --scheme: pre-training model config (JSON file or preset).")
    var pretrainConfig = "vit_mini_patch4_28"
    @Option(help: "With --scheme: pre-training steps (batch 64, lr 1e-3).") var pretrainSteps = 3000
    @Option(help: "Linear-probe steps.") var probeSteps = 400
    @Option(help: "Fine-tuning steps per task and mode.") var finetuneSteps = 250
    @Option(help: "Fine-tuning batch size.") var batchSize = 64
    @Option(help: "Fine-tuning peak learning rate.") var lr: Float = 3e-4
    @Option(help: "Linear-probe peak learning rate.") var probeLr: Float = 3e-3
    @Option(help: "Seed (validation split, pre-training, bootstrap; fine-tuning uses seed + run).") var seed: UInt64 = 0
    @Option(
        help: ArgumentHelp(
            "Fine-tuning runs with seeds seed … seed + N − 1 (run r > 0 in <out>/seed-<r>); results.json adds the "
                + "mean ± std over runs and the verdicts use the intervals of the mean. Default 3 (1 with --plan "
                + "or --job, which fan out one run)."))
    var seeds: Int?
    @Option(help: "Disentanglement grid step over [−3, 3].") var alphaStep = 0.5
    @Option(help: "Validation images per task for the disentanglement error.") var disentangleImages = 100
    @Option(help: "Task subsets per size k for the task-count curve (all when fewer; else a seeded sample).")
    var taskCountSubsets = 10
    @Option(
        help: ArgumentHelp(
            "Merge methods for the method table on the aligned and linearized task vectors, comma-separated "
                + "(`merge --help` lists them; 'all' for every one). Default: none."))
    var mergeMethods = ""
    @Option(help: "Training images per task for the merges that use data (fisher, regmean, regmean++).")
    var mergeSamples = 256
    @Flag(
        help: ArgumentHelp(
            "Print the independent per-task jobs as commands (for a job array, e.g. scripts/slurm_experiment.sh) "
                + "and exit."))
    var plan = false
    @Option(
        help: ArgumentHelp(
            "Run one job of --plan and exit: a task index (0-based, in --tasks order) or 'pretrain'. "
                + "The full command then reuses the jobs' checkpoints."))
    var job: String?
    @OptionGroup var runtime: RuntimeOptions

    /// The paper uses eight tasks: the embedded ones with their own label spaces (digits_opencv and
    /// digits8x8 share mnist's and are left out).
    static let embeddedTasks = ["mnist", "fashion", "animals", "letters", "kana", "greek", "devanagari", "hangul"]
        .map { "data/tasks/\($0).safetensors" }

    func validate() throws {
        let jobError = "--job must be 'pretrain' or a task index between 0 and \(tasks.count - 1)"
        if let j = job {
            switch ExperimentJob(j) {
            case nil: throw ValidationError(jobError)
            case .task(let i) where !(0..<tasks.count).contains(i): throw ValidationError(jobError)
            default: break
            }
        }
        if job == "pretrain" && scheme == nil {
            throw ValidationError("--job pretrain needs --scheme (without it the pre-trained model is loaded)")
        }
        if plan && job != nil { throw ValidationError("give --plan or --job, not both") }
        if let list = try parseSchemes() {
            if scheme != nil { throw ValidationError("give --scheme or --schemes, not both") }
            if job != nil {
                throw ValidationError(
                    "--job runs one job of one scheme: use the commands that --plan prints with --schemes")
            }
            if list.isEmpty { throw ValidationError("--schemes needs at least one scheme") }
        }
        _ = try parseModes(modes)
        if tasks.count < 2 { throw ValidationError("give at least two --tasks to merge") }
        if probeSteps < 1 || finetuneSteps < 1 || batchSize < 1 {
            throw ValidationError("steps and batch size must be ≥ 1")
        }
        if !(alphaStep > 0) { throw ValidationError("--alpha-step must be positive") }
        if pretrainSteps < 1 { throw ValidationError("--pretrain-steps must be ≥ 1") }
        if let n = seeds, n < 1 { throw ValidationError("--seeds must be ≥ 1") }
        if taskCountSubsets < 1 { throw ValidationError("--task-count-subsets must be ≥ 1") }
        if mergeSamples < 1 { throw ValidationError("--merge-samples must be ≥ 1") }
        _ = try parseMergeMethods(mergeMethods)
        if let n = seeds, n > 1 && (plan || job != nil) {
            throw ValidationError("--plan and --job fan out one run; give them without --seeds (or --seeds 1)")
        }
    }

    /// `--schemes` as a list (nil when not given); unknown or repeated names are refused.
    func parseSchemes() throws -> [PretrainScheme]? {
        guard let schemes else { return nil }
        let names = schemes.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let list = try names.map { n in
            guard let s = PretrainScheme(rawValue: n) else {
                throw ValidationError(
                    "unknown scheme '\(n)' in --schemes; use "
                        + PretrainScheme.allCases.map(\.rawValue).joined(separator: ", "))
            }
            return s
        }
        if Set(list).count != list.count { throw ValidationError("--schemes lists a scheme twice: \(schemes)") }
        return list
    }

    /// The pipeline's settings (after `validate`).
    func settings() throws -> ExperimentSettings {
        var s = ExperimentSettings(
            out: out, tasks: tasks, modes: try parseModes(modes), pretrained: pretrained, scheme: scheme,
            pretrainData: pretrainData, pretrainSteps: pretrainSteps, probeSteps: probeSteps,
            finetuneSteps: finetuneSteps, batchSize: batchSize, lr: lr, probeLr: probeLr, seed: seed,
            alphaStep: alphaStep, disentangleImages: disentangleImages)
        s.seedCount = seeds ?? (plan || job != nil ? 1 : 3)
        s.taskCountSubsets = taskCountSubsets
        s.mergeMethods = try parseMergeMethods(mergeMethods)
        s.mergeSamples = mergeSamples
        return s
    }

    /// Runs the plan, one job, or the whole experiment, printing progress with the elapsed time.
    func run() throws {
        runtime.apply()
        let settings = try settings()
        if let schemes = try parseSchemes() {
            let sweep = SchemeSweep(
                settings: settings, schemes: schemes, pretrainConfig: try loadConfig(pretrainConfig),
                arguments: CommandLine.arguments, log: timedLog())
            if plan {
                for line in try sweep.planLines() { print(line) }
            } else {
                try sweep.run()
            }
            return
        }
        if plan {
            for line in try ExperimentPlan(settings: settings, arguments: CommandLine.arguments).lines() {
                print(line)
            }
            return
        }
        let config = settings.scheme == nil ? nil : try loadConfig(pretrainConfig)
        let log = timedLog()
        if settings.seedCount > 1 {
            try SeedSweep(settings: settings, pretrainConfig: config, arguments: CommandLine.arguments, log: log).run()
            return
        }
        let pipeline = ExperimentPipeline(
            settings: settings, pretrainConfig: config, arguments: CommandLine.arguments, log: log)
        try pipeline.run(job: job.flatMap(ExperimentJob.init))
    }
}

/// A progress printer that prefixes each line with the time since it was made.
func timedLog() -> (String) -> Void {
    let start = Date()
    return {
        print("[\(formatSeconds(Date().timeIntervalSince(start)))] \($0)")
        fflush(nil)
    }
}

/// `--merge-methods`: a comma-separated list of `MergeMethod` names, 'all', or empty (none).
func parseMergeMethods(_ text: String) throws -> [MergeMethod] {
    let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    if names == ["all"] { return MergeMethod.allCases }
    return try names.map { n in
        guard let m = MergeMethod(rawValue: n) else {
            throw ValidationError(
                "unknown merge method '\(n)' in --merge-methods; use one of "
                    + MergeMethod.allCases.map(\.rawValue).joined(separator: ", ") + " or 'all'")
        }
        return m
    }
}
