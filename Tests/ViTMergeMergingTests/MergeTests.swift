import Foundation
import XCTest
import ViTMergeCore
import ViTMergeModel
import ViTMergeIO
@testable import ViTMergeMerging

final class MergeTests: XCTestCase {
    func testLambdaSelectionPrefersHigherScoreThenSmallerLambda() {
        XCTAssertEqual(selectLambda([(0, 0.5), (0.05, 0.9), (0.1, 0.9), (0.15, 0.7)]).lambda, 0.05)
        XCTAssertEqual(selectLambda([(0.1, 0.8), (0.05, 0.8)]).lambda, 0.05)  // order of the grid does not matter
        XCTAssertEqual(selectLambda([(0, 0.2), (0.5, 0.3)]).lambda, 0.5)
        XCTAssertEqual(lambdaGrid.count, 21)
        XCTAssertEqual(lambdaGrid[1], 0.05, accuracy: 1e-12)
        XCTAssertEqual(lambdaGrid.last!, 1, accuracy: 1e-12)
    }

    func testTiesOnAHandComputedCase() {
        // keep the 2 largest |values| of 4 in each vector
        let t1: [Float] = [3, -1, -4, 0.5], t2: [Float] = [1, -5, 0.5, -2], t3: [Float] = [-2, 0.1, -3, 6]
        XCTAssertEqual(Merges.trim(t1, keep: 0.5), [3, 0, -4, 0])
        XCTAssertEqual(Merges.trim(t2, keep: 0.5), [0, -5, 0, -2])
        XCTAssertEqual(Merges.trim(t3, keep: 0.5), [0, 0, -3, 6])
        // sums: [3, -5, -7, 4] → signs + − − +; disjoint means: [3, -5, (-4-3)/2, 6]
        XCTAssertEqual(Merges.ties([t1, t2, t3], keep: 0.5), [3, -5, -3.5, 6])
    }

    func testDareDropsAndRescalesDeterministically() {
        let tau = [Float](repeating: 2, count: 10_000)
        let d = Merges.dare(tau, drop: 0.75, seed: 1)
        XCTAssertEqual(d, Merges.dare(tau, drop: 0.75, seed: 1))
        XCTAssertTrue(d.allSatisfy { $0 == 0 || $0 == 8 })
        let kept = Double(d.filter { $0 != 0 }.count) / 10_000
        XCTAssertEqual(kept, 0.25, accuracy: 0.02)
        XCTAssertEqual(Merges.dare(tau, drop: 0, seed: 1), tau)
        XCTAssertEqual(Merges.average([[1, 2], [3, 6]]), [2, 4])
    }
}

final class MergeEvaluatorTests: XCTestCase {
    let config = ViTConfig(
        imageSize: 8, patchSize: 4, inChannels: 1, numClasses: 3, embedDim: 16, depth: 1, numHeads: 2)

    func images(_ n: Int, seed: UInt64) -> LabeledImages {
        var rng = RNG(seed: seed)
        return LabeledImages(
            count: n, channels: 1, height: 8, width: 8, images: (0..<(n * 64)).map { _ in UInt8(rng.int(below: 256)) },
            labels: (0..<n).map { Int32($0 % 3) })
    }

    /// Two tasks: τ_a = a random perturbation of the encoder, τ_b = 0.
    func evaluator() throws -> MergeEvaluator {
        let pre = ViTParameters(config: config)
        pre.initialize(seed: 1)
        let ftA = pre.copy(), ftB = pre.copy()
        var rng = RNG(seed: 2)
        for i in 0..<pre.table.encoderEnd { ftA.base[i] += Float(rng.normal() * 0.3) }
        for i in pre.table.encoderEnd..<pre.arena.count {
            ftA.base[i] = Float(rng.normal()); ftB.base[i] = Float(rng.normal())
        }
        let a = try MergeTask(
            name: "a", validation: images(40, seed: 3), test: images(40, seed: 4), finetuned: ftA, pretrained: pre,
            finetunedValidation: 0.5, finetunedTest: 0.8)
        let b = try MergeTask(
            name: "b", validation: images(40, seed: 5), test: images(40, seed: 6), finetuned: ftB, pretrained: pre,
            finetunedValidation: 0.25, finetunedTest: 0.5)
        XCTAssertTrue(b.tau.allSatisfy { $0 == 0 })
        return MergeEvaluator(pretrained: pre, tasks: [a, b])
    }

    func testNormalizationDividesByTheFineTunedAccuracyOfTheSameSplit() throws {
        let e = try evaluator()
        let enc = e.encoder([e.tasks[0].tau], [0.3])
        let v = e.normalized(encoder: enc, tasks: [0, 1], split: .validation)
        let t = e.normalized(encoder: enc, tasks: [0, 1], split: .test)
        XCTAssertEqual(v.perTask[0], v.absolute[0] / 0.5, accuracy: 1e-12)
        XCTAssertEqual(v.perTask[1], v.absolute[1] / 0.25, accuracy: 1e-12)
        XCTAssertEqual(t.perTask[0], t.absolute[0] / 0.8, accuracy: 1e-12)
        XCTAssertEqual(t.mean, (t.perTask[0] + t.perTask[1]) / 2, accuracy: 1e-12)
        XCTAssertEqual(e.accuracy(encoder: enc, task: 0, split: .validation), v.absolute[0])
    }

    func testDisentanglementErrorOnAConstructedCase() throws {
        // With τ_b = 0: task a's merged prediction equals its single-task one (error 0 on a), and
        // task b compares θ0 + α1·τ_a with θ0, which does not depend on α2; at α1 = 0 everything agrees.
        let e = try evaluator()
        let alphas: [Double] = [-1, 0, 1, 2]
        let xi = e.disentanglement(0, 1, alphas: alphas, limit: 40)
        XCTAssertEqual(xi[1], [0, 0, 0, 0], "ξ(0, α2) must be 0")
        for row in xi { XCTAssertEqual(Set(row).count, 1, "ξ(α1, ·) must not depend on α2 when τ_b = 0: \(row)") }
        let pb0 = e.predictions(encoder: e.encoder([], []), task: 1, split: .validation)
        let pb2 = e.predictions(encoder: e.encoder([e.tasks[0].tau], [2]), task: 1, split: .validation)
        XCTAssertEqual(xi[3][0], Double(zip(pb0, pb2).filter { $0 != $1 }.count) / 40, accuracy: 1e-12)
    }

    func testTaskVectorRoundTripAndBaseBinding() throws {
        let e = try evaluator()
        let path = NSTemporaryDirectory() + "vitmerge-tv-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let tv = TaskVector(task: "a", base: parameterHash(e.pretrained), values: e.tasks[0].tau)
        try tv.save(to: path, table: e.pretrained.table)
        let back = try TaskVector.load(path: path, table: e.pretrained.table)
        XCTAssertEqual(back.values, tv.values)
        XCTAssertEqual(back.base, parameterHash(e.pretrained))
        let other = e.pretrained.copy()
        other.base[0] += 1
        XCTAssertNotEqual(parameterHash(other), back.base)
    }
}
