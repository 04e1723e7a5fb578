import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

final class AdamWTests: XCTestCase {
    func testMatchesReferenceOverSteps() {
        for n in [1, 17, 193, 70_001] {
            var p = randomArray(n, seed: 1), m = [Float](repeating: 0, count: n), v = m
            var pr = p, mr = m, vr = v
            for step in 1...5 {
                let g = randomArray(n, seed: UInt64(step + 10))
                AdamW.update(
                    params: &p, grads: g, m: &m, v: &v, count: n, step: step, lr: 1e-2, beta1: 0.9, beta2: 0.999,
                    eps: 1e-8, weightDecay: 0.1)
                AdamW.updateReference(
                    params: &pr, grads: g, m: &mr, v: &vr, count: n, step: step, lr: 1e-2, beta1: 0.9, beta2: 0.999,
                    eps: 1e-8, weightDecay: 0.1)
            }
            assertClose(p, pr, atol: 1e-6, rtol: 1e-5, "AdamW params n=\(n)")
            assertClose(v, vr, atol: 1e-9, rtol: 1e-5, "AdamW v n=\(n)")
        }
    }

    func testGradientNormAndClip() {
        for n in [0, 1, 17, 16_385, 300_001] {
            var x = randomArray(n, seed: UInt64(n))
            let expected = x.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            XCTAssertEqual(GradientNorm.l2(x, count: n), expected, accuracy: 1e-5 * max(1, expected))
            let before = GradientNorm.clip(&x, count: n, maxNorm: 1)
            XCTAssertEqual(before, expected, accuracy: 1e-5 * max(1, expected))
            if expected > 1 { XCTAssertEqual(GradientNorm.l2(x, count: n), 1, accuracy: 1e-4) }
        }
    }

    func testOneAndTwoThreadsAreBitIdentical() {
        let x = randomArray(1 << 20, seed: 8, lo: -6, hi: 6), g = randomArray(1 << 20, seed: 9)
        func run(_ pool: ThreadPool) -> [Float] {
            var p = x, m = g, v = g.map { $0 * $0 }
            AdamW.update(
                params: &p, grads: g, m: &m, v: &v, count: x.count, step: 3, lr: 1e-3, beta1: 0.9, beta2: 0.999,
                eps: 1e-8, weightDecay: 0.05, pool: pool)
            let norm = GradientNorm.l2(x, count: x.count, pool: pool)
            return p + m + v + [Float(norm), Float(norm - Double(Float(norm)))]
        }
        let one = withThreads(1, run), two = withThreads(2, run)
        XCTAssertEqual(one.map(\.bitPattern), two.map(\.bitPattern))
    }
}
