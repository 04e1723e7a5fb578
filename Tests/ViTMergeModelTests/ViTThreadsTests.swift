import Foundation
import XCTest
import ViTMergeCore
import ViTMergeKernels
@testable import ViTMergeModel

/// The model's forward and backward give the same bits with 1 and 2 threads (explicit pools, so
/// the comparison holds on a one-core machine too).
final class ViTThreadsTests: XCTestCase {
    func testForwardIsBitIdenticalForOneAndTwoThreadsOnAViTTinySizedBatch() {
        let c = ViTConfig(
            imageSize: 32, patchSize: 4, inChannels: 3, numClasses: 10, embedDim: 96, depth: 2, numHeads: 3)
        let count = 8 * 3 * 32 * 32
        let input: [Float] = (0..<count).map { (i: Int) -> Float in Float((i * 7919) % 255) / 255 }
        func run(_ threads: Int) -> [UInt32] {
            let pool = ThreadPool(threads: threads)
            let model = ViT(config: c, seed: 3, pool: pool)
            let acts = model.makeActivations(capacity: 8)
            input.withUnsafeBufferPointer { model.forward(input: $0.baseAddress!, batch: 8, acts: acts) }
            let labels = [Int32](repeating: 1, count: 8)
            labels.withUnsafeBufferPointer { _ = model.crossEntropy(labels: $0.baseAddress!, batch: 8, acts: acts) }
            let grads = model.makeGradients()
            input.withUnsafeBufferPointer { model.backward(input: $0.baseAddress!, batch: 8, acts: acts, grads: grads) }
            return Array(UnsafeBufferPointer(start: acts.output, count: 80)).map(\.bitPattern)
                + grads.buffer.map(\.bitPattern)
        }
        XCTAssertEqual(run(1), run(2))
    }
}

final class GradientReadyTests: XCTestCase {
    /// `backward`'s ready ranges arrive in descending contiguous order, cover the whole arena,
    /// and are final when reported (nothing later writes into them).
    func testReadyRangesCoverTheArenaInOrderAndAreFinal() {
        let configs = [
            ViTConfig(imageSize: 8, patchSize: 4, inChannels: 1, numClasses: 3, embedDim: 8, depth: 3, numHeads: 2),
            ViTConfig(
                imageSize: 8, patchSize: 4, inChannels: 2, numClasses: 3, embedDim: 8, depth: 2, numHeads: 2,
                qkvBias: false, classToken: false, globalPool: .avg, fcNorm: true, preNorm: true),
            ViTConfig(
                imageSize: 8, patchSize: 4, inChannels: 1, numClasses: 3, embedDim: 8, depth: 2, numHeads: 2,
                regTokens: 2, noEmbedClass: true),
        ]
        for config in configs {
            let model = ViT(config: config, seed: 5)
            let batch = 3
            var rng = RNG(seed: 2)
            let input = (0..<(batch * config.inChannels * 64)).map { _ in rng.uniformFloat() }
            let labels: [Int32] = [0, 2, 1]
            let acts = model.makeActivations(capacity: batch)
            let grads = model.makeGradients()
            model.forward(input: input, batch: batch, acts: acts)
            model.crossEntropy(labels: labels, batch: batch, acts: acts)
            var reported: [(Range<Int>, [Float])] = []
            input.withUnsafeBufferPointer { x in
                model.backward(input: x.baseAddress!, batch: batch, acts: acts, grads: grads) { range in
                    reported.append(
                        (range, Array(UnsafeBufferPointer(start: grads.base + range.lowerBound, count: range.count))))
                }
            }
            var next = grads.count
            for (range, snapshot) in reported {
                XCTAssertEqual(range.upperBound, next, "ranges must be contiguous and descending")
                next = range.lowerBound
                let now = Array(UnsafeBufferPointer(start: grads.base + range.lowerBound, count: range.count))
                XCTAssertEqual(
                    now.map(\.bitPattern), snapshot.map(\.bitPattern),
                    "range \(range) changed after it was reported ready")
            }
            XCTAssertEqual(next, 0, "the ranges must cover the whole arena")
            XCTAssertEqual(reported.count, config.depth + 2)
        }
    }
}

final class InferenceForwardTests: XCTestCase {
    /// A forward with `forBackward` false gives the training forward's outputs bit for bit, fused
    /// and unfused, at 1 and 2 threads, and the fused path leaves the probabilities unwritten.
    func testInferenceForwardMatchesTheTrainingForwardAndWritesNoProbabilities() {
        let c = ViTConfig(
            imageSize: 32, patchSize: 4, inChannels: 3, numClasses: 10, embedDim: 48, depth: 2, numHeads: 3)
        let batch = 5, count = batch * 3 * 32 * 32
        let input: [Float] = (0..<count).map { (i: Int) -> Float in Float((i * 7919) % 255) / 255 }
        defer { Attention.fused = true }
        for fused in [true, false] {
            Attention.fused = fused
            for threads in [1, 2] {
                let model = ViT(config: c, seed: 3, pool: ThreadPool(threads: threads))
                let acts = model.makeActivations(capacity: batch)
                model.forward(input: input, batch: batch, acts: acts)
                let trained = Array(UnsafeBufferPointer(start: acts.output, count: batch * 10)).map(\.bitPattern)
                XCTAssertTrue(acts.forBackward)
                let t = c.tokens, probs = acts.ptr(acts.blocks[1].att)
                let marker = Float.nan.bitPattern | 0x5A5A
                for i in 0..<(batch * c.numHeads * t * t) { probs[i] = Float(bitPattern: marker) }
                acts.output.update(repeating: 0, count: batch * 10)
                model.forward(input: input, batch: batch, acts: acts, forBackward: false)
                XCTAssertFalse(acts.forBackward)
                let inferred = Array(UnsafeBufferPointer(start: acts.output, count: batch * 10)).map(\.bitPattern)
                XCTAssertEqual(inferred, trained, "fused \(fused), \(threads) threads")
                let untouched = (0..<(batch * c.numHeads * t * t)).allSatisfy { probs[$0].bitPattern == marker }
                XCTAssertEqual(untouched, fused, "the fused inference forward writes no probabilities")
            }
        }
    }
}
