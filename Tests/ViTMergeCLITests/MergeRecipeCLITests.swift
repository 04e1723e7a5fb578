import Foundation
import ViTMergeIO
import ViTMergeModel
import XCTest

/// `vitmerge merge --recipe`: the same merge as the options, the recipe kept in the checkpoints, model weights,
/// and refusals with a non-zero exit.
final class MergeRecipeCLITests: XCTestCase {
    struct Fixture {
        let dir, pre: String
        let tasks, finetuned: [String]
    }
    nonisolated(unsafe) static var fixture: Fixture?

    override class func tearDown() {
        if let f = fixture { try? FileManager.default.removeItem(atPath: f.dir) }
        fixture = nil
    }

    func run(_ args: [String]) throws -> (status: Int32, output: String) {
        let r = try CLI.run(try CLI.binary(), args)
        return (r.status, r.output)
    }

    func succeed(_ args: [String]) throws -> String {
        let r = try run(args)
        XCTAssertEqual(r.status, 0, "\(args): \(r.output)")
        return r.output
    }

    func setUpFixture() throws -> Fixture {
        if let f = Self.fixture { return f }
        let dir = try CLI.temporaryDirectory("vitmerge-recipe").path
        let config = try CLI.writeTinyConfig(in: dir), pre = dir + "/pre.safetensors"
        _ = try succeed(["init", "--config", config, "--seed", "1", "--output", pre])
        var tasks: [String] = [], finetuned: [String] = []
        for (source, name) in [("mnist", "digits"), ("fashion", "clothes")] {
            let task = "\(dir)/\(name).safetensors", ft = "\(dir)/\(name)-ft.safetensors"
            try CLI.smallTask("data/tasks/\(source).safetensors", task, train: 40, test: 20)
            _ = try succeed([
                "finetune", "--mode", "full", "--checkpoint", pre, "--task", task, "--output", ft, "--steps", "3",
                "--batch-size", "8", "--quiet", "--threads", "1",
            ])
            tasks.append(task)
            finetuned.append(ft)
        }
        let f = Fixture(dir: dir, pre: pre, tasks: tasks, finetuned: finetuned)
        Self.fixture = f
        return f
    }

    /// A recipe over the fixture's two tasks with `weights` and a `parameters` block (indented by two).
    func writeRecipe(
        _ f: Fixture, _ name: String, method: String, weights: [Double] = [1, 1], _ parameters: String
    )
        throws -> String
    {
        var text = "merge_method: \(method)\nbase_model: \(f.pre)\nmodels:\n"
        for i in f.tasks.indices {
            text += "  - model: \(f.finetuned[i])\n    task: \(f.tasks[i])\n    parameters: {weight: \(weights[i])}\n"
        }
        text += "parameters:\n\(parameters)"
        let path = "\(f.dir)/\(name).yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func load(_ path: String) throws -> (ViTParameters, [String: String]) { try Checkpoint.load(path: path) }

    func testARecipeMergesAsTheOptionsAndIsKeptInTheCheckpoints() throws {
        let f = try setUpFixture()
        let recipe = try writeRecipe(f, "ties", method: "ties", "  keep: 0.3\n  lambda: 0.5\n")
        let byRecipe = "\(f.dir)/by-recipe", byOptions = "\(f.dir)/by-options"
        _ = try succeed(["merge", "--recipe", recipe, "--threads", "1", "--output", byRecipe])
        _ = try succeed(
            ["merge", "--pretrained", f.pre, "--finetuned"] + f.finetuned + ["--tasks"] + f.tasks
                + ["--method", "ties", "--keep", "0.3", "--lambda", "0.5", "--threads", "1", "--output", byOptions])
        let text = try String(contentsOfFile: recipe, encoding: .utf8)
        for name in ["digits", "clothes"] {
            let (a, meta) = try load("\(byRecipe)/\(name).safetensors")
            let (b, optionsMeta) = try load("\(byOptions)/\(name).safetensors")
            assertBitIdentical(a, b, "\(name): recipe and options merge differently")
            XCTAssertEqual(meta["recipe"], text)
            XCTAssertNil(optionsMeta["recipe"])
        }
    }

    /// τ scaled by weight 2 at λ 0.25 is τ at λ 0.5 exactly (powers of two); a searched keep and a per-filter
    /// λ run and report.
    func testWeightsSearchesAndFilters() throws {
        let f = try setUpFixture()
        let doubled = try writeRecipe(f, "doubled", method: "sum", weights: [2, 2], "  lambda: 0.25\n")
        let plain = try writeRecipe(f, "plain", method: "sum", "  lambda: 0.5\n")
        _ = try succeed(["merge", "--recipe", doubled, "--threads", "1", "--output", "\(f.dir)/doubled"])
        _ = try succeed(["merge", "--recipe", plain, "--threads", "1", "--output", "\(f.dir)/plain"])
        let (a, _) = try load("\(f.dir)/doubled/digits.safetensors")
        let (b, _) = try load("\(f.dir)/plain/digits.safetensors")
        assertBitIdentical(a, b, "weight 2 at λ 0.25 should equal weight 1 at λ 0.5")
        let searched = try writeRecipe(
            f, "searched", method: "ties",
            "  keep: [0.1, 0.4]\n  lambda:\n    - {filter: mlp, value: 0.3}\n    - {value: 0.6}\n")
        let out = try succeed(["merge", "--recipe", searched, "--threads", "1", "--json"])
        let json = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], "not JSON: \(out)")
        XCTAssertEqual(json["method"] as? String, "ties")
        XCTAssertEqual(json["lambda"] as? Double, 1)
        XCTAssertTrue([0.1, 0.4].contains(json["hyperparameter"] as? Double ?? -1), "\(json)")
    }

    func testRefusals() throws {
        let f = try setUpFixture()
        let recipe = try writeRecipe(f, "r", method: "sum", "  lambda: 0.5\n")
        let both = try run(["merge", "--recipe", recipe, "--method", "ties"])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.output.contains("--method is set by the recipe"), both.output)
        let typo = try writeRecipe(
            f, "typo", method: "sum", "  lambda:\n    - {filter: atn, value: 1}\n    - {value: 0}\n")
        let bad = try run(["merge", "--recipe", typo, "--output", "\(f.dir)/typo-out"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.output.contains("filter 'atn' matches no encoder tensor"), bad.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(f.dir)/typo-out"))
        let unknown = try writeRecipe(f, "unknown", method: "sum", "  density: 0.5\n")
        let u = try run(["merge", "--recipe", unknown])
        XCTAssertNotEqual(u.status, 0)
        XCTAssertTrue(u.output.contains("unknown.yaml:11: parameters of sum: unknown key 'density'"), u.output)
        let missing = try run(["merge", "--recipe", "\(f.dir)/none.yaml"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.output.contains("none.yaml: cannot read the recipe"), missing.output)
        let nothing = try run(["merge"])
        XCTAssertNotEqual(nothing.status, 0)
        XCTAssertTrue(nothing.output.contains("give --pretrained and --finetuned"), nothing.output)
    }
}
