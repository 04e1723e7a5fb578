import XCTest
import ViTMergeReport
import ViTMergeTraining
@testable import ViTMergeExperiment

final class ExperimentPlanCommandTests: XCTestCase {
    func settings(scheme: PretrainScheme? = nil) -> ExperimentSettings {
        ExperimentSettings(
            out: "out dir", tasks: ["a.safetensors", "b.safetensors"], modes: [.probe, .aligned], pretrained: "p",
            scheme: scheme, pretrainData: "d", pretrainSteps: 10, probeSteps: 1, finetuneSteps: 1, batchSize: 8,
            lr: 3e-4, probeLr: 3e-3, seed: 0, alphaStep: 1, disentangleImages: 4)
    }

    func testCommandDropsPlanAndJobAndQuotes() {
        let args = ["vitmerge", "experiment", "--out", "out dir", "--plan", "--job", "1", "--job=pretrain", "--x"]
        let plan = ExperimentPlan(settings: settings(), arguments: args)
        XCTAssertEqual(plan.command(job: nil), "vitmerge experiment --out 'out dir' --x")
        XCTAssertEqual(plan.command(job: .task(0)), "vitmerge experiment --out 'out dir' --x --job 0")
        XCTAssertEqual(plan.command(job: .pretrain), "vitmerge experiment --out 'out dir' --x --job pretrain")
        XCTAssertEqual(shellQuoted("it's"), "'it'\\''s'")
        XCTAssertEqual(shellQuoted(""), "''")
    }

    func testJobArgument() {
        XCTAssertEqual(ExperimentJob("pretrain"), .pretrain)
        XCTAssertEqual(ExperimentJob("3"), .task(3))
        XCTAssertNil(ExperimentJob("three"))
        XCTAssertEqual(ExperimentJob.task(2).argument, "2")
    }

    func testCombinationsAreLexicographicSubsets() {
        XCTAssertEqual(combinations([0, 1, 2, 3], 2), [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
        XCTAssertEqual(combinations([0, 1, 2], 3), [[0, 1, 2]])
        XCTAssertEqual(combinations([0, 1], 3), [])
    }

    func testSettingsDerivedValues() {
        XCTAssertEqual(settings().pretrainedPath, "p")
        XCTAssertEqual(settings(scheme: .mim).pretrainedPath, "out dir/pretrained_mim.safetensors")
        let t = settings().training(25, lr: 0.5, weightDecay: 0.1)
        XCTAssertEqual(t.warmupSteps, 2)
        XCTAssertEqual(t.batchSize, 8)
        XCTAssertEqual(settings().pretraining.warmupSteps, 1)
        XCTAssertEqual(formatSeconds(59.4), "59s")
        XCTAssertEqual(formatSeconds(187), "3m07s")
        XCTAssertEqual(formatSeconds(.infinity), "?")
    }

    func testTaskCountSampleIsSeededAndKeepsAllWhenFew() {
        let pipeline = ExperimentPipeline(settings: settings(), pretrainConfig: nil, arguments: []) { _ in }
        let subsets = combinations(Array(0..<8), 3)
        XCTAssertEqual(subsets.count, 56)
        let a = pipeline.sample(subsets, count: 10, stream: 3), b = pipeline.sample(subsets, count: 10, stream: 3)
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.count, 10)
        XCTAssertEqual(Set(a).count, 10, "drawn without replacement")
        XCTAssertNotEqual(a, pipeline.sample(subsets, count: 10, stream: 4))
        XCTAssertNotEqual(a, Array(subsets.prefix(10)), "a sample, not the first subsets")
        XCTAssertEqual(pipeline.sample(Array(subsets.prefix(6)), count: 10, stream: 3), Array(subsets.prefix(6)))
    }
}
