import ArgumentParser
import Foundation
import ViTMergeIO
import ViTMergeMerging
import ViTMergeModel

/// `vitmerge merge`: task addition or another merge method, with its hyper-parameters and λ chosen on validation.
struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract:
            "Merge task vectors into the base: θ_pre + λ·Σ τ, or one of the methods below; "
            + "hyper-parameters and λ chosen on validation unless given, reported on test.")
    @OptionGroup var inputs: MergeInputs
    @Option(
        help: ArgumentHelp(
            "sum (task arithmetic), average, ties, dare, tsv (TSV-M), iso-c, iso-cts, magmax, consensus (TALL masks), "
                + "breadcrumbs; with data: fisher, regmean, regmean++ (training samples), adamerging, "
                + "adamerging-layer (unlabeled test images); emr (per-task masks: one model per task). "
                + "Default: sum."))
    var method: MergeMethod?
    @Option(
        help: ArgumentHelp(
            "A mergekit-style YAML recipe: method, base, models with their tasks, parameters (fixed, searched "
                + "or per tensor filter); it replaces the options above and below but --output and --json."))
    var recipe: String?
    @Option(help: "TIES: fraction of each τ kept (top-k by magnitude; default 0.2).") var keep: Double?
    @Option(help: "DARE: drop probability (default 0.9).") var drop: Double?
    @Option(
        help: ArgumentHelp(
            "Iso-CTS: fraction of each matrix's rank given to the common subspace (default: searched on "
                + "validation over 0.6, 0.7, 0.8, 0.9)."))
    var commonFraction: Double?
    @Option(
        help: ArgumentHelp(
            "Consensus: task i's mask keeps |τ_i| ≥ s·|Σ τ − τ_i| (default: searched on validation "
                + "over 0.2, 0.4, 0.6)."))
    var maskScale: Double?
    @Option(
        help: ArgumentHelp(
            "Breadcrumbs: fraction of each tensor kept below the outliers (default: searched over 0.1, 0.3, 0.5)."))
    var density: Double?
    @Option(help: "Breadcrumbs: fraction of each tensor's largest magnitudes masked out (default 0.01).")
    var outliers: Double?
    @Option(
        help: ArgumentHelp(
            "RegMean, RegMean++: scale of the Gram matrices' off-diagonal (default: searched over 0.5, 0.7, 0.9)."))
    var alpha: Double?
    @Option(help: "AdaMerging: optimization steps (default 100).") var adaSteps: Int?
    @Option(help: "AdaMerging: Adam learning rate on the coefficients (default 0.01).") var adaLr: Double?
    @Option(help: "AdaMerging: unlabeled test images per task and step (default 16).") var adaBatch: Int?
    @Option(
        help: ArgumentHelp(
            "Overall scale: use this λ instead of searching {0, 0.05, …, 1} (tsv, iso-c, iso-cts: "
                + "{0, 0.05, …, 2}; average, fisher, regmean, adamerging: 1) on validation."))
    var lambda: Double?
    @Option(
        help: ArgumentHelp(
            "Directory for the merged model, one checkpoint per task head (<task>.safetensors; with --recipe, "
                + "over the recipe's output)."))
    var output: String?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if let keep, !(keep > 0 && keep <= 1) { throw ValidationError("--keep must be in (0, 1]") }
        if let drop, !(drop >= 0 && drop < 1) { throw ValidationError("--drop must be in [0, 1)") }
        if let f = commonFraction, !(f >= 0 && f <= 1) { throw ValidationError("--common-fraction must be in [0, 1]") }
        if let s = maskScale, !(s >= 0 && s <= 10) { throw ValidationError("--mask-scale must be in [0, 10]") }
        if let d = density, !(d > 0 && d <= 1) { throw ValidationError("--density must be in (0, 1]") }
        if let outliers, !(outliers >= 0 && outliers < 1) { throw ValidationError("--outliers must be in [0, 1)") }
        if let a = alpha, !(a >= 0 && a <= 1) { throw ValidationError("--alpha must be in [0, 1]") }
        if (adaSteps ?? 1) < 1 || !(1...128).contains(adaBatch ?? 1) || !((adaLr ?? 1) > 0 && (adaLr ?? 1).isFinite) {
            throw ValidationError("--ada-steps ≥ 1, --ada-batch in 1…128 and --ada-lr > 0")
        }
        if let l = lambda, !(l.isFinite && l >= -10 && l <= 10) {
            throw ValidationError("--lambda must be a number in [−10, 10]")
        }
    }

    /// The options given here that a recipe sets (merge --recipe refuses them).
    var given: [String] {
        let named: [(String, Any?)] = [
            ("--method", method), ("--keep", keep), ("--drop", drop), ("--common-fraction", commonFraction),
            ("--mask-scale", maskScale), ("--density", density), ("--outliers", outliers), ("--alpha", alpha),
            ("--ada-steps", adaSteps), ("--ada-lr", adaLr), ("--ada-batch", adaBatch), ("--lambda", lambda),
        ]
        return inputs.given + named.compactMap { $0.1 == nil ? nil : $0.0 }
    }

    /// The hyper-parameter candidates for `method`: the one given, or the method's searched defaults.
    func candidates(_ method: MergeMethod) -> [Double] {
        switch method {
        case .ties: [keep ?? 0.2]
        case .dare: [drop ?? 0.9]
        case .isoCTS: commonFraction.map { [$0] } ?? method.defaultCandidates
        case .consensus: maskScale.map { [$0] } ?? method.defaultCandidates
        case .breadcrumbs: density.map { [$0] } ?? method.defaultCandidates
        case .regMean, .regMeanPlusPlus: alpha.map { [$0] } ?? method.defaultCandidates
        case .sum, .average, .tsv, .isoC, .magMax, .fisher, .adaMerging, .adaMergingLayer, .emr: []
        }
    }

    func run() throws {
        if let recipe { return try runRecipe(recipe) }
        let method = method ?? .sum
        let (ev, names, lineage) = try inputs.load()
        ev.breadcrumbsOutliers = outliers ?? 0.01
        ev.adaMergingOptions.steps = adaSteps ?? 100
        ev.adaMergingOptions.learningRate = adaLr ?? 0.01
        ev.adaMergingOptions.batch = adaBatch ?? 16
        ev.adaMergingOptions.seed = inputs.seed ?? 0
        if method == .emr { return try runEMR(ev, names: names, lineage: lineage, output: output) }
        let r = try ev.merge(method, candidates: candidates(method), seed: inputs.seed ?? 0, grid: lambda.map { [$0] })
        try report(r, ev: ev, names: names, lineage: lineage, output: output, recipe: nil)
    }

    /// `merge --recipe FILE`: every input and parameter from the recipe; --output and --json from here.
    func runRecipe(_ path: String) throws {
        if let first = given.first {
            throw ValidationError(
                "merge --recipe: \(first) is set by the recipe (\(path)), not on the command line: edit the recipe")
        }
        let r = try MergeRecipe.load(path: path)
        inputs.runtime.apply()
        let (ev, names, lineage) = try loadMerge(
            pretrained: r.base, finetuned: r.models.map(\.checkpoint), tasks: r.models.map(\.task),
            taskVectors: r.models.map { $0.vector ?? "" }, weights: r.models.map(\.weight), seed: r.seed,
            samples: r.samples, imageCache: r.imageCache, check: { try r.checkFilters(table: $0.table) })
        let out = output ?? r.output
        if r.method == .emr { return try runEMR(ev, names: names, lineage: lineage, output: out, recipe: r.text) }
        try report(try ev.merge(recipe: r), ev: ev, names: names, lineage: lineage, output: out, recipe: r.text)
    }

    func report(
        _ r: MergeSearchResult, ev: MergeEvaluator, names: [String], lineage: [String: String], output: String?,
        recipe: String?
    ) throws {
        let method = r.method
        if let output {
            let enc = ev.encoder([r.direction], [Float(r.lambda)])
            try save(
                output, stage: "merge \(method.rawValue) λ=\(r.lambda)", lineage: lineage, names: names,
                recipe: recipe
            ) {
                ev.model(encoder: enc, task: $0)
            }
        }
        if json {
            var object: [String: Any] = [
                "method": method.rawValue, "lambda": r.lambda, "val_normalized": r.validation,
                "test_normalized": r.test,
                "test_normalized_per_task": Dictionary(uniqueKeysWithValues: zip(names, r.testPerTask)),
                "test_absolute": Dictionary(uniqueKeysWithValues: zip(names, r.testAbsolute)),
                "curve": r.curve.map { [$0.0, $0.1] },
            ]
            if let h = r.hyperparameter { object["hyperparameter"] = h }
            if let a = ev.lastAdaMerging, method == .adaMerging || method == .adaMergingLayer {
                object["adamerging"] = [
                    "coefficients": a.coefficients, "groups": a.groups, "losses": a.losses,
                ]
            }
            printJSON(object)
            return
        }
        print(
            String(
                format: "%@ merge of %d tasks: λ = %.2f (chosen on validation: mean normalized %.4f)",
                method.rawValue, names.count, r.lambda, r.validation))
        if let h = r.hyperparameter, let key = method.recipeKey {
            print(String(format: "%@ %.2f", key.replacingOccurrences(of: "_", with: " "), h))
        }
        if let a = ev.lastAdaMerging, method == .adaMerging || method == .adaMergingLayer {
            print(
                String(
                    format: "AdaMerging: entropy %.4f → %.4f over %d steps", a.losses.first ?? 0, a.losses.last ?? 0,
                    a.losses.count))
            if method == .adaMerging {
                print(
                    "coefficients "
                        + zip(names, a.coefficients).map { "\($0) \(String(format: "%.3f", $1[0]))" }
                        .joined(separator: ", "))
            }
        }
        printTable(ev, names: names, absolute: r.testAbsolute, normalized: r.testPerTask)
        print(String(format: "mean normalized test accuracy %.4f", r.test))
        if let output { print("wrote merged checkpoints to \(output)/") }
    }

    /// EMR: one model per task (θ_pre + s_t·M_t ⊙ τ_uni); its masks and rescalers go to `emr.safetensors`.
    func runEMR(
        _ ev: MergeEvaluator, names: [String], lineage: [String: String], output: String?, recipe: String? = nil
    ) throws {
        let r = ev.emrMerge()
        if let output {
            try save(output, stage: "merge emr", lineage: lineage, names: names, recipe: recipe) {
                ev.model(encoder: ev.encoder([r.emr.direction(task: $0)], [1]), task: $0)
            }
            try r.emr.save(to: "\(output)/emr.safetensors", tasks: names, table: ev.pretrained.table)
        }
        if json {
            printJSON([
                "method": "emr", "test_normalized": r.test,
                "test_normalized_per_task": Dictionary(uniqueKeysWithValues: zip(names, r.testPerTask)),
                "test_absolute": Dictionary(uniqueKeysWithValues: zip(names, r.testAbsolute)),
                "scales": Dictionary(uniqueKeysWithValues: zip(names, r.emr.scales.map(Double.init))),
            ])
            return
        }
        print(
            "emr merge of \(names.count) tasks: one masked, rescaled model per task (the task is needed at inference)")
        printTable(ev, names: names, absolute: r.testAbsolute, normalized: r.testPerTask)
        print(String(format: "mean normalized test accuracy %.4f", r.test))
        if let output { print("wrote per-task checkpoints and emr.safetensors to \(output)/") }
    }

    func save(
        _ output: String, stage: String, lineage: [String: String], names: [String], recipe: String?,
        model: (Int) -> ViTParameters
    ) throws {
        try AtomicFile.createDirectory(output)
        var metadata = ["stage": stage, "command": CommandLine.arguments.joined(separator: " ")]
        if let recipe { metadata["recipe"] = recipe }
        for i in names.indices {
            try Checkpoint.save(
                model(i), to: "\(output)/\(names[i]).safetensors", metadata: metadata.merging(lineage) { a, _ in a })
        }
    }

    func printTable(_ ev: MergeEvaluator, names: [String], absolute: [Double], normalized: [Double]) {
        print("task".padding(toLength: 14, withPad: " ", startingAt: 0) + "  fine-tuned  merged  normalized")
        for i in names.indices {
            print(
                names[i].padding(toLength: 14, withPad: " ", startingAt: 0)
                    + String(format: "  %10.4f  %6.4f  %10.4f", ev.tasks[i].finetunedTest, absolute[i], normalized[i]))
        }
    }
}
