import Foundation
import ViTMergeIO
import ViTMergeModel
import ViTMergeReport

/// `experiment --seeds N`: the experiment N times with fine-tuning seeds seed, seed + 1, …, seed + N − 1 (data
/// order, head initialisation, DARE's drops; the validation split, the pre-trained model and the test images
/// stay the same). Run 0 writes into the output directory as a single run would, run r into `<out>/seed-<r>`.
/// The output's results.json is run 0's, plus `seeds`: every estimate's value per run with its mean and standard
/// deviation, and bootstrap intervals of the mean over the runs, which the report's verdicts then use.
public final class SeedSweep {
    public let settings: ExperimentSettings
    let pretrainConfig: ViTConfig?
    let arguments: [String]
    let log: (String) -> Void

    public init(
        settings: ExperimentSettings, pretrainConfig: ViTConfig?, arguments: [String],
        log: @escaping (String) -> Void
    ) {
        self.settings = settings
        self.pretrainConfig = pretrainConfig
        self.arguments = arguments
        self.log = log
    }

    @discardableResult
    public func run() throws -> ExperimentResults {
        let n = settings.seedCount
        var runs: [ExperimentResults] = [], pooled = Outcomes(), first: ExperimentPipeline?
        for r in 0..<n {
            let s = settings.replicate(r)
            log("seed run \(r + 1)/\(n): fine-tuning seed \(s.fineTuneSeed), output \(s.out)")
            let pipeline = ExperimentPipeline(
                settings: s, pretrainConfig: pretrainConfig, arguments: arguments, log: log)
            guard let results = try pipeline.run() else { preconditionFailure("a whole run returns its results") }
            runs.append(results)
            pooled.add(pipeline.outcomes, prefix: "run\(r)/")
            if r == 0 { first = pipeline }
        }
        guard let first, var results = runs.first else { preconditionFailure("--seeds must be ≥ 1") }
        if n > 1 {
            let prefixes = (0..<n).map { "run\($0)/" }
            var spread: [String: SeedSpread] = [:]
            for key in runs[0].statistics?.estimates.keys.sorted() ?? [] {
                let values = runs.compactMap { $0.statistics?.estimates[key]?.value }
                if values.count == n { spread[key] = SeedSpread(values) }
            }
            results.seeds = SeedSummary(
                seeds: (0..<n).map { settings.replicate($0).fineTuneSeed }, spread: spread,
                pooled: first.statistics(pooled, results: results, testSizes: first.testSizes, runs: prefixes))
            // Run 0 wrote its single-run results.json and report.md here already (they stay if a later run fails);
            // they are replaced by the same results plus the sweep's `seeds`.
            try AtomicFile.write(results.json(), to: "\(settings.out)/results.json")
            try AtomicFile.write(
                ReportWriter(results: results, settings: settings.report).markdown(), to: "\(settings.out)/report.md")
            log("wrote \(settings.out)/results.json and report.md over \(n) fine-tuning seeds")
        }
        return results
    }
}
