import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO

/// `experiment --plan` fan-out: the planned per-task jobs, run concurrently as separate
/// processes, then the merge command, must give exactly what one `experiment` run gives.
final class ExperimentPlanTests: XCTestCase {
    func testPlannedJobsThenMergeEqualOneRun() throws {
        let tiny = try TinyExperiment("vitmerge-plan")
        defer { tiny.cleanUp() }
        let exe = tiny.exe
        // One fine-tuning run (the default is 3 seeds; --plan fans out one run).
        func experiment(_ out: String) -> [String] { tiny.experiment(out: out) + ["--seeds", "1"] }
        let one = tiny.path("one"), fan = tiny.path("fan")
        let whole = try CLI.run(exe, experiment(one))
        XCTAssertEqual(whole.status, 0, whole.output)

        let plan = try CLI.run(exe, experiment(fan) + ["--plan"])
        XCTAssertEqual(plan.status, 0, plan.output)
        let commands = plan.output.split(separator: "\n").filter { !$0.hasPrefix("#") }.map(String.init)
        XCTAssertEqual(commands.count, 3, "two task jobs and the merge command:\n\(plan.output)")
        // The jobs at once, as a job array would run them.
        let jobs = commands.filter { $0.contains("--job") }.map { line -> Process in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", line + " > /dev/null"]
            p.currentDirectoryURL = CLI.repo
            return p
        }
        XCTAssertEqual(jobs.count, 2)
        for p in jobs { try p.run() }
        for p in jobs { p.waitUntilExit(); XCTAssertEqual(p.terminationStatus, 0) }
        for task in ["digits", "clothes"] {
            XCTAssertTrue(
                FileManager.default.fileExists(atPath: "\(fan)/\(task)/aligned.safetensors"),
                "job for \(task) wrote nothing")
            XCTAssertFalse(
                FileManager.default.fileExists(atPath: "\(fan)/results.json"), "a job must not run the merge stage")
        }
        let merge = try CLI.run(URL(fileURLWithPath: "/bin/sh"), ["-c", commands.last!])
        XCTAssertEqual(merge.status, 0, merge.output)
        XCTAssertTrue(merge.output.contains("reusing"), merge.output)

        for task in ["digits", "clothes"] {
            for stage in ["probe", "aligned"] {
                let x = try Checkpoint.load(path: "\(one)/\(task)/\(stage).safetensors").parameters
                let y = try Checkpoint.load(path: "\(fan)/\(task)/\(stage).safetensors").parameters
                assertBitIdentical(x, y, "\(task) \(stage): the job's checkpoint differs from the single run's")
            }
        }
        func results(_ d: String) throws -> NSDictionary {
            let o =
                try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(d)/results.json")))
                as! [String: Any]
            return o.filter { $0.key != "environment" } as NSDictionary
        }
        XCTAssertEqual(
            try results(one), try results(fan), "the fanned-out experiment's results differ from the single run's")
        // The bootstrap's point estimates come from per-image outcomes recorded apart from the accuracies the
        // evaluator reported: they must agree exactly, and every interval must contain its value.
        let r = try results(one)
        let stats = try XCTUnwrap((r["statistics"] as? [String: Any])?["estimates"] as? [String: [String: Double]])
        func value(_ key: String) -> Double? { stats[key]?["value"] }
        let acc = r["accuracy"] as! [String: [String: Double]]
        let add = (r["task_addition"] as! [String: [String: Any]])["aligned"]!
        let merges = r["merges"] as! [String: [String: Any]]
        for task in ["digits", "clothes"] {
            XCTAssertEqual(value("accuracy.aligned.\(task)"), acc["aligned"]![task])
            XCTAssertEqual(value("accuracy.pretrained_probe.\(task)"), acc["pretrained_probe"]![task])
        }
        XCTAssertEqual(value("task_addition.aligned.test_normalized"), add["test_normalized"] as? Double)
        for m in ["ties", "dare", "average", "task_arithmetic"] {
            XCTAssertEqual(value("merges.\(m).test_normalized"), merges[m]!["test_normalized"] as? Double, m)
        }
        let negation = (r["negation"] as! [String: [String: Any]])["aligned"]!
        XCTAssertEqual(value("negation.aligned.target"), negation["target_accuracy"] as? Double)
        XCTAssertNotNil(value("difference.ties_vs_task_arithmetic"))
        let count = (r["task_count"] as! [String: [[String: Any]]])["aligned"]!
        XCTAssertEqual(value("task_count.aligned.k2"), count[0]["test_normalized"] as? Double)
        XCTAssertEqual(count[0]["tasks"] as? [[String]], [["digits", "clothes"]])
        for (key, e) in stats {
            XCTAssertLessThanOrEqual(e["low"]!, e["value"]! + 1e-12, key)
            XCTAssertGreaterThanOrEqual(e["high"]!, e["value"]! - 1e-12, key)
        }
    }
}
