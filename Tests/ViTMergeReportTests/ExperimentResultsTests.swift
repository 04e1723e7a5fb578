import Foundation
import XCTest
@testable import ViTMergeReport

final class ExperimentResultsTests: XCTestCase {
    /// Two tasks, aligned and full run, with made-up numbers.
    static func sample() -> ExperimentResults {
        var r = ExperimentResults(
            pretraining: "supervised", tasks: ["mnist", "fashion"], seed: 7,
            environment: Environment(cpu: "cpu", threads: 2, isa: "avx2", seconds: 3))
        r.accuracy.pretrainedProbe = ["mnist": 0.5, "fashion": 0.25]
        r.accuracy.modes.probe = ["mnist": 0.5, "fashion": 0.25]
        r.accuracy.modes.aligned = ["mnist": 0.75, "fashion": 0.5]
        r.taskAddition.aligned = TaskAddition(
            lambda: 0.1, valNormalized: 0.9, testNormalized: 0.875, testAbsolute: ["mnist": 0.75, "fashion": 0.5],
            testNormalizedPerTask: ["mnist": 1, "fashion": 0.75], curve: [CurvePoint(0, 0.5), CurvePoint(0.05, 0.7)])
        r.taskCount.aligned = [TaskCount(k: 2, testNormalized: 0.875, subsets: 1)]
        r.negation.aligned = Negation(
            target: "mnist", control: "fashion", lambda: 1, targetAccuracy: 0.25, controlAccuracy: 0.4,
            targetPretrainedAccuracy: 0.5, controlPretrainedAccuracy: 0.5)
        r.disentanglement.aligned = Disentanglement(
            tasks: ["mnist", "fashion"], alphas: [-3, 0, 3], error: [[1, 2, 3], [4, 0, 6], [7, 8, 9]])
        r.merges.average = AverageMerge(testNormalized: 0.5, testAbsolute: ["mnist": 0.5, "fashion": 0.25])
        r.merges.taskArithmetic = TaskArithmeticMerge(lambda: 0.1, testNormalized: 0.875)
        r.merges.ties = TunedMerge(
            hyperparameter: 0.2, keep: 0.2, lambda: 0.3, valNormalized: 0.8, testNormalized: 0.9,
            testAbsolute: ["mnist": 0.8, "fashion": 0.4])
        return r
    }

    /// The environment records the matrix products' precision; files from before it read as fp32.
    func testEnvironmentPrecisionRoundTripsAndDefaultsToFP32() throws {
        let old = Data(#"{"cpu": "c", "threads": 2, "isa": "AVX-512", "seconds": 5}"#.utf8)
        XCTAssertEqual(try JSONDecoder().decode(Environment.self, from: old).precision, "fp32")
        let bf16 = Environment(cpu: "c", threads: 2, isa: "AVX-512", seconds: 5, precision: "bf16")
        let back = try JSONDecoder().decode(Environment.self, from: JSONEncoder().encode(bf16))
        XCTAssertEqual(back.precision, "bf16")
        var r = Self.sample()
        r.environment = bf16
        let settings = ReportSettings(
            pretrained: "data/p.safetensors", seed: 7, probeSteps: 30, finetuneSteps: 12, batchSize: 64, lr: 3e-4)
        XCTAssertTrue(ReportWriter(results: r, settings: settings).markdown().contains("bf16 matrix products"))
        XCTAssertFalse(ReportWriter(results: Self.sample(), settings: settings).markdown().contains("matrix products"))
    }

    func testJSONKeysFollowFormatsAndOmitModesNotRun() throws {
        let data = try Self.sample().json()
        let o = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        XCTAssertEqual(
            Set(o.keys),
            [
                "pretraining", "tasks", "seed", "accuracy", "task_addition", "task_count", "negation",
                "disentanglement", "merges", "environment",
            ])
        let acc = o["accuracy"] as! [String: Any]
        XCTAssertEqual(Set(acc.keys), ["pretrained_probe", "probe", "aligned"], "modes not run must be absent")
        let add = (o["task_addition"] as! [String: Any])["aligned"] as! [String: Any]
        XCTAssertEqual(
            Set(add.keys),
            ["lambda", "val_normalized", "test_normalized", "test_absolute", "test_normalized_per_task", "curve"])
        XCTAssertEqual(add["curve"] as! [[Double]], [[0, 0.5], [0.05, 0.7]])
        XCTAssertEqual(Set((o["task_addition"] as! [String: Any]).keys), ["aligned"])
        let ties = (o["merges"] as! [String: Any])["ties"] as! [String: Any]
        XCTAssertEqual(ties["keep"] as? Double, 0.2)
        XCTAssertNil(ties["drop"], "TIES has no drop")
        XCTAssertNil((o["merges"] as! [String: Any])["dare"])
        let text = String(decoding: data, as: UTF8.self)
        XCTAssertFalse(text.contains("null"), text)
        XCTAssertLessThan(text.range(of: "\"accuracy\"")!.lowerBound, text.range(of: "\"disentanglement\"")!.lowerBound)
    }

    func testRoundTrip() throws {
        let r = Self.sample()
        let back = try ExperimentResults.decode(try r.json())
        XCTAssertEqual(try back.json(), try r.json())
        XCTAssertEqual(back.accuracy.modes.aligned, ["mnist": 0.75, "fashion": 0.5])
        XCTAssertNil(back.accuracy.modes.full)
        XCTAssertEqual(back.taskAddition.aligned?.curve, [CurvePoint(0, 0.5), CurvePoint(0.05, 0.7)])
    }

    func testPerModeSortedByName() {
        var p = PerMode<Int>()
        p[.probe] = 1
        p[.linearized] = 2
        p[.aligned] = 3
        XCTAssertEqual(p.sorted.map(\.mode), [.aligned, .linearized, .probe])
        XCTAssertEqual(p.sorted.map(\.value), [3, 2, 1])
    }

    func testMeanDisentanglementErrorOverTheInnerGrid() {
        let d = Self.sample().disentanglement.aligned!
        XCTAssertEqual(d.meanError(radius: 1), 0)
        XCTAssertEqual(d.meanError(radius: 3), 40.0 / 9)
        XCTAssertEqual(meanDisentanglementError([], [], radius: 1), 0)
    }

    func testReportTablesAndFindings() {
        let settings = ReportSettings(
            pretrained: "data/p.safetensors", seed: 7, probeSteps: 30, finetuneSteps: 12, batchSize: 64, lr: 3e-4)
        let md = ReportWriter(results: Self.sample(), settings: settings).markdown()
        XCTAssertTrue(md.hasPrefix("# ViTMerge experiment report\n\nPre-training: supervised (`data/p.safetensors`)"))
        XCTAssertTrue(md.contains("seed 7; probe 30 steps, fine-tuning 12 steps × batch 64, lr 0.0003.\n"), md)
        XCTAssertTrue(md.contains("Machine: cpu, 2 threads.\n"))
        XCTAssertTrue(md.contains("| pretrained_probe | 0.500 | 0.250 | 0.375 |\n"), md)
        XCTAssertTrue(md.contains("| aligned | 0.750 | 0.500 | 0.625 |\n"), md)
        XCTAssertFalse(md.contains("| full |"), "a mode not run has no row")
        XCTAssertTrue(md.contains("| aligned | 0.100 | 0.900 | 0.875 | 0.625 |\n"), md)
        XCTAssertTrue(md.contains("| mode | k = 2 |\n|---|---|\n| aligned | 0.875 |\n"), md)
        XCTAssertTrue(md.contains("| aligned | mnist | fashion | 1.000 | 0.500 → 0.250 | 0.500 → 0.400 |\n"), md)
        XCTAssertTrue(md.contains("- aligned: mean ξ over |α| ≤ 1: 0.000, over the whole grid: 4.444"), md)
        XCTAssertTrue(md.contains("| task_arithmetic | – | 0.100 | 0.875 |\n| average | – | – | 0.500 |\n"), md)
        XCTAssertTrue(md.contains("| ties | keep 0.200 | 0.300 | 0.900 |\n"), md)
        XCTAssertFalse(md.contains("| dare |"))
        XCTAssertTrue(
            md.contains(
                "- **holds** — Fine-tuning (aligned) beats the linear probe on the pre-trained encoder on every task."
                    + " (mean 0.625 vs 0.375)\n"), md)
        XCTAssertTrue(md.contains("- **holds** — The optimal λ is small (0.05–0.15). (aligned λ = 0.100)\n"), md)
        XCTAssertTrue(md.contains("- **does not hold** — Negation (aligned) lowers"), md)
        XCTAssertTrue(md.contains("- **holds** — TIES-merging beats plain task arithmetic"), md)
    }

    /// With statistics, verdicts follow the intervals: TIES's +2.5 points with an interval reaching below +1
    /// is inconclusive, and the tables show the intervals.
    func testVerdictsUseIntervals() {
        var r = Self.sample()
        var st = Statistics(replicates: 1000, level: 0.95, seed: 7)
        st[.difference("ties_vs_task_arithmetic")] = Estimate(0.025, low: 0.004, high: 0.046)
        st[.difference("finetune_vs_probe.aligned.mnist")] = Estimate(0.25, low: 0.2, high: 0.3)
        st[.difference("finetune_vs_probe.aligned.fashion")] = Estimate(0.25, low: -0.01, high: 0.5)
        st[.meanAccuracy("aligned")] = Estimate(0.625, low: 0.6, high: 0.65)
        r.statistics = st
        let settings = ReportSettings(
            pretrained: "p", seed: 7, probeSteps: 1, finetuneSteps: 1, batchSize: 8, lr: 3e-4)
        let md = ReportWriter(results: r, settings: settings).markdown()
        XCTAssertTrue(md.contains("- **inconclusive** — TIES-merging beats plain task arithmetic"), md)
        XCTAssertTrue(md.contains("difference +2.5 [+0.4, +4.6] points)"), md)
        XCTAssertTrue(md.contains("- **inconclusive** — Fine-tuning (aligned) beats"), md)
        XCTAssertTrue(md.contains("per task: fashion inconclusive"), md)
        XCTAssertTrue(md.contains("| aligned | 0.750 | 0.500 | 0.625 [0.600, 0.650] |\n"), md)
        XCTAssertTrue(md.contains("| ties_vs_task_arithmetic | 0.025 | [0.004, 0.046] |\n"), md)
        st[.difference("ties_vs_task_arithmetic")] = Estimate(0.025, low: 0.011, high: 0.046)
        r.statistics = st
        let md2 = ReportWriter(results: r, settings: settings).markdown()
        XCTAssertTrue(md2.contains("- **holds** — TIES-merging beats plain task arithmetic"), md2)
        let back = try? ExperimentResults.decode(r.json())
        XCTAssertEqual(back?.statistics?[.difference("ties_vs_task_arithmetic")]?.low, 0.011)
    }
}
