import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel
import ViTMergeTraining
import XCTest

@testable import ViTMergeMerging

final class MergeEvaluatorTests: XCTestCase {
    typealias F = MergeFixture

    func testNormalizationDividesByTheFineTunedAccuracyOfTheSameSplit() throws {
        let e = try F.evaluator()
        XCTAssertTrue(e.tasks[1].tau.allSatisfy { $0 == 0 })
        let enc = e.encoder([e.tasks[0].tau], [0.3])
        let v = e.normalized(encoder: enc, tasks: [0, 1], split: .validation)
        let t = e.normalized(encoder: enc, tasks: [0, 1], split: .test)
        XCTAssertEqual(v.perTask[0], v.absolute[0] / 0.5, accuracy: 1e-12)
        XCTAssertEqual(v.perTask[1], v.absolute[1] / 0.25, accuracy: 1e-12)
        XCTAssertEqual(t.perTask[0], t.absolute[0] / 0.8, accuracy: 1e-12)
        XCTAssertEqual(t.mean, (t.perTask[0] + t.perTask[1]) / 2, accuracy: 1e-12)
        XCTAssertEqual(e.accuracy(encoder: enc, task: 0, split: .validation), v.absolute[0])
    }

    /// The merge written into the evaluation model equals θ_pre + Σ c_i τ_i computed by a scalar
    /// loop, bit for bit, for every coefficient set in turn (each overwrites the previous one).
    func testInPlaceMergeIsBitIdenticalToTheScalarReference() throws {
        let e = try F.evaluator(scaleB: 0.02)
        let pre = e.pretrained, n = pre.table.encoderEnd
        let (ta, tb) = (e.tasks[0].tau, e.tasks[1].tau)
        let cases: [([EncoderVector], [Float])] = [
            ([ta], [0.3]), ([ta, tb], [0.3, -1.7]), ([ta, tb], [0, 2.5]), ([], []), ([tb, ta], [1, 1]),
            ([ta, tb, ta], [0.05, 0.65, -0.35]),
        ]
        for (vs, cs) in cases {
            let ref = F.referenceMerge(pre.base, vs, cs, count: n)
            for task in [0, 1] {
                let p = e.load(encoder: e.encoder(vs, cs), task: task).model.parameters
                XCTAssertEqual(
                    F.bits(UnsafeBufferPointer(start: p.base, count: n)), F.bits(ref), "encoder for \(cs), task \(task)"
                )
                let head =
                    Array(UnsafeBufferPointer(start: p.base + p.table.headW!, count: 3 * 16))
                    + Array(UnsafeBufferPointer(start: p.base + p.table.headB!, count: 3))
                XCTAssertEqual(F.bits(head), F.bits(e.tasks[task].head), "head of task \(task)")
            }
            let out = UnsafeMutablePointer<Float>.allocate(capacity: n)
            defer { out.deallocate() }
            e.write(e.encoder(vs, cs), into: out)
            XCTAssertEqual(F.bits(UnsafeBufferPointer(start: out, count: n)), F.bits(ref), "write for \(cs)")
        }
        // The array spelling copies the vectors into arenas and merges the same way.
        let legacy = e.encoder([Array(ta), Array(tb)], [0.3, -1.7])
        let p = e.load(encoder: legacy, task: 0).model.parameters
        XCTAssertEqual(
            F.bits(UnsafeBufferPointer(start: p.base, count: n)),
            F.bits(F.referenceMerge(pre.base, [ta, tb], [0.3, -1.7], count: n)))
    }

    /// Linearized: the model keeps θ_pre and the tangent is fl(θ_pre + Σ c τ) − θ_pre (0 on the head).
    func testLinearizedTangentIsTheMergedEncoderMinusThePretrained() throws {
        let e = try F.evaluator(scaleB: 0.02, linearized: true)
        let pre = e.pretrained, n = pre.table.encoderEnd
        for cs: [Float] in [[0.4, 0.9], [-2, 0], [1, 1]] {
            let ref = F.referenceMerge(pre.base, [e.tasks[0].tau, e.tasks[1].tau], cs, count: n)
            let l = e.load(encoder: e.encoder([e.tasks[0].tau, e.tasks[1].tau], cs), task: 1)
            let tangent = l.tangent!
            XCTAssertEqual(
                F.bits(UnsafeBufferPointer(start: tangent.base, count: n)),
                F.bits((0..<n).map { ref[$0] - pre.base[$0] }))
            XCTAssertTrue(UnsafeBufferPointer(start: tangent.base + n, count: tangent.count - n).allSatisfy { $0 == 0 })
            let p = l.model.parameters
            XCTAssertEqual(
                F.bits(UnsafeBufferPointer(start: p.base, count: n)),
                F.bits(UnsafeBufferPointer(start: pre.base, count: n)))
        }
    }

    /// One model per class count: tasks with 3 and 5 classes get their own arenas, and switching
    /// between them leaves each holding the last merge written to it.
    func testOneScratchModelPerClassCount() throws {
        let pre = F.pretrained()
        let tasks = try [
            F.task("a", classes: 3, seed: 11, pretrained: pre), F.task("b", classes: 5, seed: 12, pretrained: pre),
            F.task("c", classes: 3, seed: 13, pretrained: pre),
        ]
        let e = MergeEvaluator(pretrained: pre, tasks: tasks)
        let n = pre.table.encoderEnd
        let enc = e.encoder(tasks.map(\.tau), [0.5, 0.25, 0.125])
        let ref = F.referenceMerge(pre.base, tasks.map(\.tau), [0.5, 0.25, 0.125], count: n)
        let ma = e.load(encoder: enc, task: 0).model, mb = e.load(encoder: enc, task: 1).model
        XCTAssertFalse(ma === mb)
        XCTAssertTrue(e.load(encoder: enc, task: 2).model === ma, "tasks with the same class count share a model")
        XCTAssertEqual(mb.config.numClasses, 5)
        for m in [ma, mb] {
            XCTAssertEqual(F.bits(UnsafeBufferPointer(start: m.parameters.base, count: n)), F.bits(ref))
        }
        for i in tasks.indices {
            let fresh = F.parameters(encoder: ref, task: tasks[i])
            XCTAssertEqual(
                e.accuracy(encoder: enc, task: i, split: .test),
                evaluate(ViT(parameters: fresh), on: tasks[i].test).accuracy)
        }
    }

    /// Accuracy and predictions through the in-place path equal those of a fresh model built from
    /// the reference merge (the pre-change evaluator copied a fresh encoder into its model).
    func testAccuracyEqualsAFreshModelsAccuracy() throws {
        for linearized in [false, true] {
            let e = try F.evaluator(scaleB: 0.03, linearized: linearized)
            let pre = e.pretrained, n = pre.table.encoderEnd
            var distinct = Set<Double>()
            for cs: [Float] in [[0, 0], [0.5, 0.5], [1.5, -0.5], [3, 3]] {
                let vs = [e.tasks[0].tau, e.tasks[1].tau]
                let ref = F.referenceMerge(pre.base, vs, cs, count: n)
                for i in [0, 1] {
                    let t = e.tasks[i]
                    let fresh: ViTParameters, tangent: [Float]?
                    if linearized {
                        fresh = F.parameters(encoder: Array(UnsafeBufferPointer(start: pre.base, count: n)), task: t)
                        tangent = (0..<fresh.arena.count).map { $0 < n ? ref[$0] - pre.base[$0] : 0 }
                    } else {
                        fresh = F.parameters(encoder: ref, task: t)
                        tangent = nil
                    }
                    for split in [Split.validation, .test] {
                        let data = split == .validation ? t.validation : t.test
                        let expected =
                            tangent.map { v in
                                v.withUnsafeBufferPointer {
                                    evaluate(ViT(parameters: fresh), on: data, tangent: $0.baseAddress!)
                                }
                            } ?? evaluate(ViT(parameters: fresh), on: data)
                        let got = e.accuracy(encoder: e.encoder(vs, cs), task: i, split: split)
                        XCTAssertEqual(got, expected.accuracy, "linearized \(linearized), \(cs), task \(i), \(split)")
                        distinct.insert(got)
                    }
                    XCTAssertEqual(
                        e.predictions(encoder: e.encoder(vs, cs), task: i, split: .validation),
                        F.predictions(fresh, t.validation, tangent: tangent))
                }
            }
            XCTAssertGreaterThan(distinct.count, 1, "the merges must not all score the same")
        }
    }

    /// The default direction of task addition is 0 + τ_a + τ_b, as the explicit sum given as an array.
    func testAdditionDefaultDirectionIsTheSequentialSum() throws {
        let e = try F.evaluator(scaleB: 0.03)
        let sum = (0..<e.pretrained.table.encoderEnd).map { Float(0) + e.tasks[0].tau[$0] + e.tasks[1].tau[$0] }
        XCTAssertEqual(F.bits(e.taskSum([0, 1])), F.bits(sum))
        let grid = [0, 0.25, 0.5, 1]
        let byDefault = e.addition(tasks: [0, 1], grid: grid),
            explicit = e.addition(tasks: [0, 1], direction: sum, grid: grid)
        XCTAssertEqual(byDefault.lambda, explicit.lambda)
        XCTAssertEqual(byDefault.curve.map(\.1), explicit.curve.map(\.1))
        XCTAssertEqual(byDefault.testAbsolute, explicit.testAbsolute)
        XCTAssertEqual(byDefault.curve.map(\.0), grid)
    }
}
