import Foundation
import XCTest

@testable import ViTMergeMerging

/// Merge recipes: the YAML reader's checks, and merges by recipe against the same merges by hand.
final class MergeRecipeTests: XCTestCase {
    func parse(_ text: String) throws -> MergeRecipe { try MergeRecipe.parse(Data(text.utf8), file: "r.yaml") }

    /// The error's line and a phrase of its message.
    func assertRefused(
        _ text: String, line: Int?, _ phrase: String, file: StaticString = #filePath, at: UInt = #line
    ) {
        XCTAssertThrowsError(try parse(text), file: file, line: at) { e in
            guard let e = e as? RecipeError else { return XCTFail("not a RecipeError: \(e)", file: file, line: at) }
            XCTAssertEqual(e.line, line, "\(e)", file: file, line: at)
            XCTAssertTrue(e.description.contains(phrase), "\(e) should say '\(phrase)'", file: file, line: at)
            XCTAssertTrue(e.description.hasPrefix("r.yaml"), "\(e)", file: file, line: at)
        }
    }

    static let header = """
        merge_method: ties
        base_model: runs/pre.safetensors
        models:
          - model: runs/a.safetensors
            task: data/a
            parameters: {weight: 0.5}
          - {model: runs/b.safetensors, task: data/b, vector: runs/b.tv.safetensors}

        """

    func testReadsEveryField() throws {
        let r = try parse(
            Self.header + """
                parameters:
                  keep: [0.1, 0.3]
                  lambda:
                    - {filter: attn, value: 0.4}
                    - value: 0.25   # the default
                seed: 3
                samples: 64
                output: runs/merged
                image_cache: runs/cache
                """)
        XCTAssertEqual(r.method, .ties)
        XCTAssertEqual(r.base, "runs/pre.safetensors")
        XCTAssertEqual(
            r.models,
            [
                .init(checkpoint: "runs/a.safetensors", task: "data/a", vector: nil, weight: 0.5),
                .init(checkpoint: "runs/b.safetensors", task: "data/b", vector: "runs/b.tv.safetensors", weight: 1),
            ])
        XCTAssertEqual(r.parameters["keep"], .search([0.1, 0.3]))
        XCTAssertEqual(r.parameters["lambda"], .filtered([.init(filter: "attn", value: 0.4), .init(value: 0.25)]))
        XCTAssertEqual(r.seed, 3)
        XCTAssertEqual(r.samples, 64)
        XCTAssertEqual(r.output, "runs/merged")
        XCTAssertEqual(r.imageCache, "runs/cache")
        // mergekit's spelling and ours.
        let short = try parse("method: sum\nbase: p\nmodels: [{model: m, task: t}]\nparameters: {lambda: 0.3}\n")
        XCTAssertEqual(short.method, .sum)
        XCTAssertEqual(short.parameters["lambda"], .fixed(0.3))
        XCTAssertEqual(short.seed, 0)
        XCTAssertEqual(short.samples, 256)
    }

    func testRefusesWhatItCannotUseWithTheLine() {
        assertRefused(Self.header + "parameters:\n  density: 0.3\n", line: 9, "unknown key 'density'")
        assertRefused(Self.header + "parameters:\n  keep: 1.5\n", line: 9, "keep must be in (0, 1]")
        assertRefused(Self.header + "parameters:\n  keep: [0.1, x]\n", line: 9, "keep[1] must be a number")
        assertRefused(Self.header + "parameters:\n  keep: .nan\n", line: 9, "must be a number")
        assertRefused(
            Self.header + "parameters:\n  lambda:\n    - {filter: attn, value: 0.3}\n", line: 10,
            "add an entry without filter")
        assertRefused(
            Self.header + "parameters:\n  lambda: [{value: 0.3}, {value: 0.2}]\n", line: 9, "given twice")
        assertRefused(Self.header + "dtype: float16\n", line: 8, "unknown key 'dtype'")
        assertRefused(Self.header.replacingOccurrences(of: "ties", with: "slerp"), line: 1, "unknown merge_method")
        assertRefused("base_model: p\nmodels: [{model: m, task: t}]\n", line: nil, "no merge_method")
        assertRefused("merge_method: sum\nbase_model: p\nmodels: []\n", line: 3, "models must be a list")
        assertRefused("merge_method: sum\nbase_model: p\nmodels: [{model: m}]\n", line: 3, "no task")
        assertRefused("- a\n- b\n", line: 1, "must be a mapping")
        assertRefused("merge_method: sum\nmerge_method: ties\n", line: nil, "not valid YAML")
        assertRefused("merge_method: [sum\n", line: nil, "not valid YAML")
        assertRefused(
            "merge_method: emr\nbase_model: p\nmodels: [{model: m, task: t}]\nparameters: {lambda: 1}\n",
            line: 4, "parameters of emr: unknown key 'lambda' (takes no parameters)")
        assertRefused(
            "merge_method: breadcrumbs\nbase_model: p\nmodels: [{model: m, task: t}]\nparameters: {outliers: [0.1]}\n",
            line: 4, "takes one number")
    }

    func testRefusesAnchorsAliasesAndDeepNesting() throws {
        assertRefused("merge_method: &m sum\nbase_model: *m\n", line: 1, "anchors and aliases")
        assertRefused("merge_method: sum\nmodels:\n  - *a\n", line: 3, "anchors and aliases")
        assertRefused("a: " + String(repeating: "[", count: 17), line: 1, "nested over 16 levels")
        // Not anchors: inside a word, a quoted string, a comment.
        let r = try parse(
            "merge_method: sum # &not *an alias\nbase_model: \"&pre.safetensors\"\n"
                + "models: [{model: a&b*c.safetensors, task: '*t'}]\n")
        XCTAssertEqual(r.base, "&pre.safetensors")
        XCTAssertEqual(r.models[0].checkpoint, "a&b*c.safetensors")
        XCTAssertEqual(r.models[0].task, "*t")
        XCTAssertThrowsError(try MergeRecipe.parse(Data(count: MergeRecipe.maxBytes + 1), file: "big.yaml"))
        XCTAssertThrowsError(try MergeRecipe.parse(Data([0xff, 0xfe]), file: "bin.yaml"))
    }

    /// The fuzz target's seeds and regression inputs (fuzz/corpus/recipe, fuzz/regressions/recipe): each parses
    /// or throws a RecipeError; the committed seeds r0–r3 parse.
    func testFuzzInputsEndInARecipeOrARecipeError() throws {
        let fuzz = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fuzz")
        var parsed: [String] = []
        for sub in ["corpus", "regressions"] {
            let dir = fuzz.appendingPathComponent("\(sub)/recipe")
            for name in ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted() {
                let data = try Data(contentsOf: dir.appendingPathComponent(name))
                do {
                    _ = try MergeRecipe.parse(data, file: name)
                    parsed.append(name)
                } catch is RecipeError {} catch {
                    XCTFail("\(sub)/recipe/\(name): untyped \(type(of: error)): \(error)")
                }
            }
        }
        XCTAssertTrue(Set(["r0.yaml", "r1.yaml", "r2.yaml", "r3.yaml"]).isSubset(of: parsed), "\(parsed)")
    }

    func recipe(_ method: String, _ parameters: String) throws -> MergeRecipe {
        try parse("merge_method: \(method)\nbase_model: p\nmodels: [{model: a, task: a}]\nparameters:\n\(parameters)")
    }

    func bits(_ v: EncoderVector) -> [UInt32] { v.map(\.bitPattern) }

    func testFixedAndSearchedValuesMergeAsTheOptions() throws {
        let ev = try MergeFixture.evaluator(scaleB: 0.05)
        let fixed = try ev.merge(recipe: recipe("ties", "  keep: 0.3\n  lambda: 0.45\n"))
        let byHand = try ev.merge(.ties, candidates: [0.3], grid: [0.45])
        XCTAssertEqual(bits(fixed.direction), bits(byHand.direction))
        XCTAssertEqual(fixed.lambda, 0.45)
        XCTAssertEqual(fixed.test, byHand.test)
        let searched = try ev.merge(recipe: recipe("ties", "  keep: [0.1, 0.5, 0.9]\n  lambda: [0.2, 0.6]\n"))
        let searchedByHand = try ev.merge(.ties, candidates: [0.1, 0.5, 0.9], grid: [0.2, 0.6])
        XCTAssertEqual(searched.hyperparameter, searchedByHand.hyperparameter)
        XCTAssertEqual(searched.lambda, searchedByHand.lambda)
        XCTAssertEqual(searched.curve.map(\.1), searchedByHand.curve.map(\.1))
        // Unset: the method's own search.
        let unset = try ev.merge(recipe: recipe("consensus", "  lambda: 0.5\n"))
        let unsetByHand = try ev.merge(.consensus, candidates: MergeMethod.consensusMaskScales, grid: [0.5])
        XCTAssertEqual(unset.hyperparameter, unsetByHand.hyperparameter)
        XCTAssertEqual(bits(unset.direction), bits(unsetByHand.direction))
    }

    func testPerFilterLambdaScalesEachTensor() throws {
        let ev = try MergeFixture.evaluator(scaleB: 0.05)
        let r = try ev.merge(recipe: recipe("sum", "  lambda:\n    - {filter: attn, value: 0.4}\n    - {value: 0.1}\n"))
        XCTAssertEqual(r.lambda, 1)
        let sum = Merges.sum(ev.tasks.map(\.tau))
        var expected = [Float](repeating: 0, count: sum.count)
        var attn = 0
        for region in sum.arena.layout.regions {
            let l: Float = region.name.contains("attn") ? 0.4 : 0.1
            if l == 0.4 { attn += 1 }
            for i in region.offset..<(region.offset + region.shape.count) { expected[i] = sum.base[i] * l }
        }
        XCTAssertEqual(attn, 4, "attn.qkv and attn.proj, weight and bias")
        XCTAssertEqual(bits(r.direction), expected.map(\.bitPattern))
    }

    func testPerFilterHyperparameterTakesEachTensorFromItsMerge() throws {
        let ev = try MergeFixture.evaluator(scaleB: 0.05)
        let r = try ev.merge(
            recipe: recipe("ties", "  keep:\n    - {filter: mlp, value: 0.5}\n    - {value: 0.1}\n  lambda: 0.3\n"))
        XCTAssertNil(r.hyperparameter)
        XCTAssertEqual(r.lambda, 0.3)
        let taus = ev.tasks.map(\.tau)
        let half = Merges.ties(taus, keep: 0.5), tenth = Merges.ties(taus, keep: 0.1)
        var mlp = 0
        for region in half.arena.layout.regions {
            let from = region.name.contains("mlp") ? half : tenth
            if region.name.contains("mlp") { mlp += 1 }
            let range = region.offset..<(region.offset + region.shape.count)
            XCTAssertEqual(
                range.map { r.direction.base[$0].bitPattern }, range.map { from.base[$0].bitPattern },
                region.name)
        }
        XCTAssertEqual(mlp, 4)
    }

    func testAFilterThatMatchesNothingIsRefused() throws {
        let ev = try MergeFixture.evaluator(scaleB: 0.05)
        let r = try recipe("sum", "  lambda:\n    - {filter: atn, value: 0.4}\n    - {value: 0.1}\n")
        XCTAssertThrowsError(try r.checkFilters(table: ev.pretrained.table)) { e in
            XCTAssertTrue("\(e)".contains("filter 'atn' matches no encoder tensor"), "\(e)")
        }
        XCTAssertThrowsError(try ev.merge(recipe: r))
        XCTAssertThrowsError(try ev.merge(recipe: try recipe("emr", "  {}\n")))
    }
}
