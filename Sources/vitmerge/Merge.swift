import ArgumentParser
import Foundation
import ViTMergeIO
import ViTMergeMerging

/// `vitmerge merge`: task addition (or averaging, TIES, DARE, TSV-M, Iso-C, Iso-CTS, MagMax, consensus) with λ
/// chosen on validation.
struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge task vectors into the base: θ_pre + λ·Σ τ (or average / TIES / DARE / TSV-M / Iso-C / "
            + "Iso-CTS / MagMax / consensus), λ chosen on validation, reported on test.")
    @OptionGroup var inputs: MergeInputs
    @Option(
        help: ArgumentHelp(
            "sum (task arithmetic), average, ties, dare, tsv (task singular vectors, TSV-M), iso-c or iso-cts "
                + "(isotropic merging in the common / common and task-specific subspaces), magmax (largest-magnitude "
                + "entry) or consensus (Σ τ where ≥ 2 TALL masks agree)."))
    var method = MergeMethod.sum
    @Option(help: "TIES: fraction of each τ kept (top-k by magnitude).") var keep = 0.2
    @Option(help: "DARE: drop probability.") var drop = 0.9
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
            "Overall scale: use this λ instead of searching {0, 0.05, …, 1} (tsv, iso-c, iso-cts: "
                + "{0, 0.05, …, 2}) on validation."))
    var lambda: Double?
    @Option(help: "Directory for the merged model, one checkpoint per task head (<task>.safetensors).")
    var output: String?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if !(keep > 0 && keep <= 1) { throw ValidationError("--keep must be in (0, 1]") }
        if !(drop >= 0 && drop < 1) { throw ValidationError("--drop must be in [0, 1)") }
        if let f = commonFraction, !(f >= 0 && f <= 1) { throw ValidationError("--common-fraction must be in [0, 1]") }
        if let s = maskScale, !(s >= 0 && s <= 10) { throw ValidationError("--mask-scale must be in [0, 10]") }
        if let l = lambda, !(l.isFinite && l >= -10 && l <= 10) {
            throw ValidationError("--lambda must be a number in [−10, 10]")
        }
    }

    func run() throws {
        let (ev, names, lineage) = try inputs.load()
        let all = Array(names.indices)
        // Averaging is a fixed merge (λ = 1 on the mean) unless a λ is given.
        let candidates: [Double]
        switch method {
        case .ties: candidates = [keep]
        case .dare: candidates = [drop]
        case .isoCTS: candidates = commonFraction.map { [$0] } ?? MergeMethod.isoCTSCommonFractions
        case .consensus: candidates = maskScale.map { [$0] } ?? MergeMethod.consensusMaskScales
        case .sum, .average, .tsv, .isoC, .magMax: candidates = []
        }
        let r = ev.merge(method, candidates: candidates, seed: inputs.seed, grid: lambda.map { [$0] })
        if let output {
            try AtomicFile.createDirectory(output)
            let enc = ev.encoder([r.direction], [Float(r.lambda)])
            for i in all {
                let p = ev.model(encoder: enc, task: i)
                try Checkpoint.save(
                    p, to: "\(output)/\(names[i]).safetensors",
                    metadata: [
                        "stage": "merge \(method.rawValue) λ=\(r.lambda)",
                        "command": CommandLine.arguments.joined(separator: " "),
                    ].merging(lineage) { a, _ in a })
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
            printJSON(object)
            return
        }
        print(
            String(
                format: "%@ merge of %d tasks: λ = %.2f (chosen on validation: mean normalized %.4f)",
                method.rawValue, names.count, r.lambda, r.validation))
        if method == .isoCTS, let h = r.hyperparameter { print(String(format: "common fraction %.2f", h)) }
        if method == .consensus, let h = r.hyperparameter { print(String(format: "mask scale %.2f", h)) }
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
