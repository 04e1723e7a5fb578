import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

final class TokenPoolTests: XCTestCase {
    func testForwardMatchesReferenceAndBackwardIsItsTranspose() {
        for mode in [TokenPool.Mode.token, .avg] {
            for d in oddSizes {
                for (t, prefix) in [(1, 0), (3, 1), (17, 1), (65, 0)] {
                    let batch = 3
                    let x = randomArray(batch * t * d, seed: UInt64(d * t)), g = randomArray(batch * d, seed: 2)
                    var p = [Float](repeating: .nan, count: batch * d), pr = p
                    TokenPool.forward(pooled: &p, x: x, mode: mode, batch: batch, tokens: t, prefix: prefix, dim: d)
                    TokenPool.forwardReference(
                        pooled: &pr, x: x, mode: mode, batch: batch, tokens: t, prefix: prefix, dim: d)
                    assertClose(p, pr, atol: 1e-6, rtol: 1e-5, "\(mode) pool t \(t) d \(d)")
                    // The pooling is linear: ⟨pool(x), g⟩ = ⟨x, poolᵀ(g)⟩, and the JVP is the forward.
                    var dx = [Float](repeating: .nan, count: x.count)
                    TokenPool.backward(dx: &dx, dpooled: g, mode: mode, batch: batch, tokens: t, prefix: prefix, dim: d)
                    let lhs = zip(p, g).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                    let rhs = zip(x, dx).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                    XCTAssertEqual(lhs, rhs, accuracy: 1e-4 * max(1, abs(lhs)), "\(mode) backward t \(t) d \(d)")
                    var tp = [Float](repeating: .nan, count: p.count)
                    TokenPool.jvp(tpooled: &tp, tx: x, mode: mode, batch: batch, tokens: t, prefix: prefix, dim: d)
                    XCTAssertEqual(tp, p)
                }
            }
        }
    }

    func testOneAndTwoThreadsAreBitIdentical() {
        let (batch, t, d) = (64, 197, 193)
        let x = randomArray(batch * t * d, seed: 1)
        func run(_ pool: ThreadPool) -> [Float] {
            var p = [Float](repeating: 0, count: batch * d)
            TokenPool.forward(pooled: &p, x: x, mode: .avg, batch: batch, tokens: t, prefix: 1, dim: d, pool: pool)
            return p
        }
        let one = withThreads(1, run), two = withThreads(2, run)
        XCTAssertEqual(one.map(\.bitPattern), two.map(\.bitPattern))
    }
}
