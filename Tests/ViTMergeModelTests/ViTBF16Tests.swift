import Foundation
import XCTest
import ViTMergeCore
import ViTMergeKernels
@testable import ViTMergeModel

/// The model under `GEMM.precision = .bf16`: near the FP32 model, and the same bits for 1 and 2 threads.
final class ViTBF16Tests: XCTestCase {
    func testBF16ForwardAndGradientsAreNearFP32AndBitIdenticalAcrossThreads() throws {
        try XCTSkipUnless(GEMM.bf16Supported, "this CPU or build has no AVX512_BF16")
        let c = ViTConfig(
            imageSize: 16, patchSize: 4, inChannels: 3, numClasses: 10, embedDim: 48, depth: 2, numHeads: 3)
        let batch = 8
        var rng = RNG(seed: 9)
        let input = (0..<(batch * 3 * 16 * 16)).map { _ in rng.uniformFloat() }
        let labels = (0..<batch).map { Int32($0 % 10) }
        func run(_ precision: GEMM.Precision, threads: Int) -> (logits: [Float], grads: [Float]) {
            GEMM.precision = precision
            defer { GEMM.precision = .fp32 }
            let pool = ThreadPool(threads: threads)
            let model = ViT(config: c, seed: 3, pool: pool)
            let acts = model.makeActivations(capacity: batch)
            let grads = model.makeGradients()
            model.forward(input: input, batch: batch, acts: acts)
            model.crossEntropy(labels: labels, batch: batch, acts: acts)
            input.withUnsafeBufferPointer {
                model.backward(input: $0.baseAddress!, batch: batch, acts: acts, grads: grads)
            }
            return (Array(UnsafeBufferPointer(start: acts.output, count: batch * 10)), Array(grads.buffer))
        }
        let fp32 = run(.fp32, threads: 1), bf16 = run(.bf16, threads: 1), bf16Two = run(.bf16, threads: 2)
        XCTAssertEqual(bf16.logits.map(\.bitPattern), bf16Two.logits.map(\.bitPattern), "bf16 logits, 1 vs 2 threads")
        XCTAssertEqual(bf16.grads.map(\.bitPattern), bf16Two.grads.map(\.bitPattern), "bf16 gradients, 1 vs 2 threads")
        XCTAssertNotEqual(bf16.logits, fp32.logits, "bf16 must really round (else this test checks nothing)")
        let scale = fp32.logits.map(abs).max()!
        let worst = zip(bf16.logits, fp32.logits).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(worst / scale, 0.03, "bf16 logits within 3% of the largest FP32 logit")
        // The gradient's direction, which is what the optimizer follows.
        var dot = 0.0, n16 = 0.0, n32 = 0.0
        for (x, y) in zip(bf16.grads, fp32.grads) {
            dot += Double(x) * Double(y); n16 += Double(x * x); n32 += Double(y * y)
        }
        XCTAssertGreaterThan(dot / (n16 * n32).squareRoot(), 0.995, "bf16 gradient cosine against FP32")
    }
}
