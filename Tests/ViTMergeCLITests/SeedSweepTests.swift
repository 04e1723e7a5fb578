import Foundation
import XCTest
import ViTMergeReport

/// `experiment --seeds 2`: two fine-tuning runs, run 1 in <out>/seed-1, and results.json with each estimate's
/// spread over the runs and the pooled intervals the verdicts use.
final class SeedSweepTests: XCTestCase {
    func testTwoSeedsWriteBothRunsAndTheirSpread() throws {
        let tiny = try TinyExperiment("vitmerge-seeds")
        defer { tiny.cleanUp() }
        let exe = tiny.exe, out = tiny.path("out")
        let args = tiny.experiment(out: out) + ["--seed", "5"]
        let refused = try CLI.run(exe, args + ["--seeds", "2", "--plan"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.output.contains("--plan and --job fan out one run"), refused.output)

        let run = try CLI.run(exe, args + ["--seeds", "2"])
        XCTAssertEqual(run.status, 0, run.output)
        let r = try ExperimentResults.decode(Data(contentsOf: URL(fileURLWithPath: "\(out)/results.json")))
        let r1 = try ExperimentResults.decode(Data(contentsOf: URL(fileURLWithPath: "\(out)/seed-1/results.json")))
        let sweep = try XCTUnwrap(r.seeds)
        XCTAssertEqual(sweep.seeds, [5, 6])
        let key = "task_addition.aligned.test_normalized"
        let spread = try XCTUnwrap(sweep.spread[key])
        XCTAssertEqual(
            spread.values, [r.taskAddition.aligned!.testNormalized, r1.taskAddition.aligned!.testNormalized])
        XCTAssertEqual(spread.mean, (spread.values[0] + spread.values[1]) / 2, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(sweep.pooled.estimates[key]).value, spread.mean, accuracy: 1e-12)
        // Different seeds (head initialisation and batches, from the probe on) give different models.
        XCTAssertNotEqual(
            try Data(contentsOf: URL(fileURLWithPath: "\(out)/digits/aligned.safetensors")),
            try Data(contentsOf: URL(fileURLWithPath: "\(out)/seed-1/digits/aligned.safetensors")))
        let report = try String(contentsOfFile: "\(out)/report.md", encoding: .utf8)
        XCTAssertTrue(report.contains("## Across fine-tuning seeds\n\n2 runs with fine-tuning seeds 5, 6"), report)
    }
}
