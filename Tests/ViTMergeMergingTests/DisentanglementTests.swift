import Foundation
import ViTMergeCore
import ViTMergeModel
import XCTest

@testable import ViTMergeMerging

final class DisentanglementTests: XCTestCase {
    typealias F = MergeFixture

    /// Fraction of positions where `a` and `b` differ.
    func disagreement(_ a: [Int], _ b: [Int]) -> Double {
        Double(zip(a, b).filter { $0 != $1 }.count) / Double(a.count)
    }

    func testDisentanglementErrorOnAConstructedCase() throws {
        // With τ_b = 0: task a's merged prediction equals its single-task one (error 0 on a), and
        // task b compares θ0 + α1·τ_a with θ0, which does not depend on α2; at α1 = 0 everything agrees.
        let e = try F.evaluator()
        XCTAssertTrue(e.tasks[1].tau.allSatisfy { $0 == 0 })
        let alphas: [Double] = [-1, 0, 1, 2]
        let xi = e.disentanglement(0, 1, alphas: alphas, limit: 40)
        let pb0 = e.predictions(encoder: e.encoder([], []), task: 1, split: .validation)
        let pb2 = e.predictions(encoder: e.encoder([e.tasks[0].tau], [2]), task: 1, split: .validation)
        // Non-degenerate: θ0 with head b predicts several classes and α1 = 2 changes task b's
        // predictions, so a ξ that ignored the merge (or a model predicting one class) could not pass.
        XCTAssertGreaterThan(Set(pb0).count, 1, "θ0 with head b predicts one class: the test would be vacuous")
        XCTAssertGreaterThan(disagreement(pb0, pb2), 0, "τ_a must move task b's predictions")
        XCTAssertEqual(xi[1], [0, 0, 0, 0], "ξ(0, α2) must be 0")
        for row in xi { XCTAssertEqual(Set(row).count, 1, "ξ(α1, ·) must not depend on α2 when τ_b = 0: \(row)") }
        XCTAssertEqual(xi[3][0], disagreement(pb0, pb2), accuracy: 1e-12)
        XCTAssertGreaterThan(xi[3][0], 0)
    }

    /// Every cell against ξ computed from scratch: fresh models built from scalar-reference merges,
    /// their own forward and argmax, on two random task vectors.
    func testDisentanglementMatchesAReferenceOnRandomTaskVectors() throws {
        let e = try F.evaluator(scaleB: 0.04)
        let pre = e.pretrained, n = pre.table.encoderEnd
        let (ta, tb) = (e.tasks[0].tau, e.tasks[1].tau)
        let alphas: [Double] = [-1.5, 0, 1, 2.5]
        let xi = e.disentanglement(0, 1, alphas: alphas, limit: 40)
        func predict(_ cs: [Float], task i: Int) -> [Int] {
            let p = F.parameters(encoder: F.referenceMerge(pre.base, [ta, tb], cs, count: n), task: e.tasks[i])
            return F.predictions(p, e.tasks[i].validation)
        }
        var partA = 0.0, partB = 0.0
        var classes = Set<Int>()
        for (r, x1) in alphas.enumerated() {
            for (c, x2) in alphas.enumerated() {
                let (f1, f2) = (Float(x1), Float(x2))
                let pa = predict([f1, f2], task: 0), pb = predict([f1, f2], task: 1)
                let da = disagreement(pa, predict([f1, 0], task: 0)), db = disagreement(pb, predict([0, f2], task: 1))
                XCTAssertEqual(xi[r][c], da + db, accuracy: 1e-12, "ξ(\(x1), \(x2))")
                partA += da; partB += db
                classes.formUnion(pa)
            }
        }
        XCTAssertGreaterThan(classes.count, 1, "the merged models predict one class: the test would be vacuous")
        XCTAssertGreaterThan(partA, 0, "task a's error is 0 everywhere: the test cannot tell a broken ξ")
        XCTAssertGreaterThan(partB, 0, "task b's error is 0 everywhere: the test cannot tell a broken ξ")
        XCTAssertEqual(xi[1][1], 0, "ξ(0, 0) = 0")
        // Only the first 10 images: each error is a multiple of 1/10.
        let few = e.disentanglement(0, 1, alphas: [2.5], limit: 10)
        XCTAssertEqual((few[0][0] * 10).rounded(), few[0][0] * 10, accuracy: 1e-9)
    }
}
