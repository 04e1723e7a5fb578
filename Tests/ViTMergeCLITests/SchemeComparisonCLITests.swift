import Foundation
import XCTest
import ViTMergeReport

/// `experiment --schemes`: every scheme pre-trained and put through the protocol in its own directory, then
/// one comparison whose paired differences agree with the schemes' own results; a second run reuses them.
final class SchemeComparisonCLITests: XCTestCase {
    /// The tiny experiment with two schemes pre-trained for 2 steps on a small cut of the glyphs.
    func arguments(_ tiny: TinyExperiment, out: String) throws -> [String] {
        let glyphs = tiny.path("glyphs.safetensors")
        if !FileManager.default.fileExists(atPath: glyphs) {
            try CLI.smallTask("data/pretrain/glyphs.safetensors", glyphs, train: 80, test: 16)
        }
        return [
            "experiment", "--out", out, "--schemes", "supervised,mae", "--pretrain-data", glyphs,
            "--pretrain-config", tiny.path("cfg.json"), "--pretrain-steps", "2", "--tasks", tiny.tasks[0],
            tiny.tasks[1], "--modes", "probe,aligned,full", "--probe-steps", "3", "--finetune-steps", "3",
            "--batch-size", "8", "--alpha-step", "3", "--disentangle-images", "6", "--threads", "1", "--seeds", "1",
        ]
    }

    func testSchemesWriteOneComparisonThatAgreesWithEachScheme() throws {
        let tiny = try TinyExperiment("vitmerge-schemes")
        defer { tiny.cleanUp() }
        let out = tiny.path("cmp")
        let args = try arguments(tiny, out: out)
        let first = try CLI.run(tiny.exe, args)
        XCTAssertEqual(first.status, 0, first.output)
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(out)/results.json"))
        let c = try JSONDecoder().decode(SchemeComparison.self, from: data)
        XCTAssertEqual(c.schemes.map(\.scheme), ["supervised", "mae"])
        XCTAssertEqual(c.pretrainSteps, 2)
        XCTAssertEqual(c.tasks, ["digits", "clothes"])
        for scheme in ["supervised", "mae"] {
            let own = try ExperimentResults.decode(
                Data(contentsOf: URL(fileURLWithPath: "\(out)/\(scheme)/results.json")))
            XCTAssertEqual(own.pretraining, scheme)
            let row = try XCTUnwrap(c.row(scheme))
            XCTAssertEqual(row.addition.aligned?.testNormalized.value, own.taskAddition.aligned?.testNormalized)
            XCTAssertEqual(row.addition.full?.lambda, own.taskAddition.full?.lambda)
            XCTAssertNotNil(row.pretrainSeconds, "the pre-trained checkpoint records its time")
            XCTAssertNotNil(row.meanXi.aligned)
        }
        // The paired difference's point value is the difference of the schemes' own values.
        let d = try XCTUnwrap(c.differences[SchemeComparison.additionKey(.aligned, "supervised", "mae")])
        let back = try XCTUnwrap(c.differences[SchemeComparison.additionKey(.aligned, "mae", "supervised")])
        let sup = try XCTUnwrap(c.row("supervised")?.addition.aligned?.testNormalized.value)
        let mae = try XCTUnwrap(c.row("mae")?.addition.aligned?.testNormalized.value)
        XCTAssertEqual(d.value, sup - mae, accuracy: 1e-12)
        XCTAssertEqual(back.value, -d.value, accuracy: 1e-12)
        XCTAssertLessThanOrEqual(d.low, d.value)
        XCTAssertGreaterThanOrEqual(d.high, d.value)
        XCTAssertNotNil(c.differences[SchemeComparison.alignedVsFullKey("mae")])
        let claims = c.findings.map(\.claim)
        XCTAssertTrue(claims.contains("Supervised pre-training adds better than MAE."), "\(claims)")
        XCTAssertFalse(claims.contains { $0.contains("CLIP") || $0.contains("DINO") }, "schemes not run: \(claims)")
        let report = try String(contentsOfFile: "\(out)/report.md", encoding: .utf8)
        XCTAssertTrue(report.contains("| supervised |") && report.contains("| mae |"), report)
        for svg in ["scheme_lambda_curves.svg", "scheme_task_count.svg"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(out)/\(svg)"), svg)
        }
        // Again: both schemes reused, the same comparison.
        let second = try CLI.run(tiny.exe, args)
        XCTAssertEqual(second.status, 0, second.output)
        XCTAssertTrue(second.output.contains("(supervised): reusing"), second.output)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: "\(out)/results.json")), data)
    }

    func testPlanFansOutEverySchemeThenTheComparison() throws {
        let tiny = try TinyExperiment("vitmerge-schemes-plan")
        defer { tiny.cleanUp() }
        let out = tiny.path("cmp")
        let plan = try CLI.run(tiny.exe, try arguments(tiny, out: out) + ["--plan"])
        XCTAssertEqual(plan.status, 0, plan.output)
        let commands = plan.output.split(separator: "\n").filter { !$0.hasPrefix("#") }.map(String.init)
        // Per scheme: pre-training, two task jobs, the scheme's merge stage; then the comparison.
        XCTAssertEqual(commands.count, 9, plan.output)
        for scheme in ["supervised", "mae"] {
            let own = commands.filter { $0.contains("--scheme \(scheme) --out \(out)/\(scheme)") }
            XCTAssertEqual(own.count, 4, plan.output)
            XCTAssertTrue(own.contains { $0.hasSuffix("--job pretrain") }, plan.output)
        }
        let last = try XCTUnwrap(commands.last)
        XCTAssertTrue(last.contains("--schemes supervised,mae") && !last.contains("--plan"), last)
    }

    func testBadSchemeListsAreRefused() throws {
        let tiny = try TinyExperiment("vitmerge-schemes-bad")
        defer { tiny.cleanUp() }
        let args = try arguments(tiny, out: tiny.path("cmp"))
        for (extra, message) in [
            (["--scheme", "mae"], "not both"), (["--job", "0"], "--plan"),
        ] {
            let r = try CLI.run(tiny.exe, args + extra)
            XCTAssertNotEqual(r.status, 0, r.output)
            XCTAssertTrue(r.output.contains(message), r.output)
        }
        var unknown = args
        unknown[unknown.firstIndex(of: "supervised,mae")!] = "supervised,byol"
        let r = try CLI.run(tiny.exe, unknown)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("unknown scheme 'byol'"), r.output)
    }
}
