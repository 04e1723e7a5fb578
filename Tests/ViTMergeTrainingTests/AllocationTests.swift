import CMallocCounter
import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel
@testable import ViTMergeTraining

/// After warm-up a training step allocates nothing (STYLE.md), in every mode, at 1 and 2 threads
/// (explicit pools, never the shared one, which is clamped to the core count), in the build the
/// tests run (debug); the release benchmark (`vitmerge-bench --suite allocations`) counts the
/// same in an optimized build. With VITMERGE_TRACE_ALLOCS set, a failing case prints each
/// allocation's call stack.
final class AllocationTests: XCTestCase {
    func testTrainingStepsAllocateNothingAfterWarmUp() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let task = try TaskDataset.load(path: repo.appendingPathComponent("data/tasks/mnist.safetensors").path)
        // 24 images in batches of 8: three steps per epoch, so the measured steps cross an epoch.
        var data = task.train.take(Array(0..<24))
        data.captions = Captions((0..<24).map { "digit \(data.labels[$0]) number \($0)" }, width: 20)  // for clip
        try XCTSkipIf(vm_malloc_counting() == 0, "allocations are not counted under a sanitizer or without glibc")
        let traceOnFailure = ProcessInfo.processInfo.environment["VITMERGE_TRACE_ALLOCS"] != nil
        var failures: [String] = []
        for threads in [1, 2] {
            let pool = ThreadPool(threads: threads)
            for mode in TrainMode.allCases {
                var config = ViTConfig(
                    imageSize: 28, patchSize: 7, inChannels: 1, numClasses: 10, embedDim: 16, depth: 2, numHeads: 2,
                    mlpRatio: 2)
                if mode == .masked { config.numClasses = config.patchDim }
                if mode == .mae || mode == .dino || mode == .clip { config.numClasses = 0 }
                let model = ViT(config: config, seed: 3, pool: pool)
                let trainer = Trainer(
                    model: model, train: data, mode: mode,
                    settings: TrainSettings(
                        steps: 100, batchSize: 8, lr: 1e-3, seed: 1, maskRatio: 0.5,
                        clip: CLIPSettings(textDepth: 2, textDim: 8, textHeads: 2, embedDim: 6, captionBytes: 20)))
                for _ in 0..<2 { _ = trainer.step() }  // warm-up
                let steps = 4
                let before = vm_malloc_count()
                for _ in 0..<steps { _ = trainer.step() }
                let perStep = Double(vm_malloc_count() - before) / Double(steps)
                print("allocations per training step, \(mode.rawValue), \(threads) thread(s): \(perStep)")
                if perStep != 0 {
                    if traceOnFailure {
                        vm_malloc_trace(1)
                        _ = trainer.step()
                        vm_malloc_trace(0)
                    }
                    failures.append("\(mode.rawValue) at \(threads) thread(s): \(perStep) per step")
                }
            }
        }
        XCTAssertTrue(failures.isEmpty, "heap allocations after warm-up: " + failures.joined(separator: "; "))
    }

    /// The fused attention kernels allocate nothing per call once their workspace has grown
    /// (forward with and without saved probabilities, backward, JVP; 1 and 2 threads).
    func testFusedAttentionAllocatesNothing() throws {
        try XCTSkipIf(vm_malloc_counting() == 0, "allocations are not counted under a sanitizer or without glibc")
        let (batch, t, dim, heads) = (2, 197, 24, 3)
        var rng = RNG(seed: 4)
        let qkv = (0..<(batch * t * 3 * dim)).map { _ in rng.uniformFloat() - 0.5 }
        let dout = (0..<(batch * t * dim)).map { _ in rng.uniformFloat() - 0.5 }
        var out = [Float](repeating: 0, count: batch * t * dim), tout = out
        var att = [Float](repeating: 0, count: batch * heads * t * t), dqkv = qkv
        for threads in [1, 2] {
            let pool = ThreadPool(threads: threads)
            var before = 0 as UInt
            for pass in 0..<2 {  // the first pass grows the workspace
                if pass == 1 { before = vm_malloc_count() }
                out.withUnsafeMutableBufferPointer { o in
                    att.withUnsafeMutableBufferPointer { a in
                        dqkv.withUnsafeMutableBufferPointer { d in
                            tout.withUnsafeMutableBufferPointer { to in
                                let (o, a, d, to) = (o.baseAddress!, a.baseAddress!, d.baseAddress!, to.baseAddress!)
                                Attention.forwardFused(
                                    out: o, att: a, qkv: qkv, batch: batch, tokens: t, dim: dim, heads: heads,
                                    pool: pool)
                                Attention.forwardFused(
                                    out: o, att: nil, qkv: qkv, batch: batch, tokens: t, dim: dim, heads: heads,
                                    pool: pool)
                                Attention.backwardFused(
                                    dqkv: d, dout: dout, qkv: qkv, att: a, batch: batch, tokens: t, dim: dim,
                                    heads: heads, pool: pool)
                                Attention.jvpFused(
                                    tout: to, tqkv: qkv, qkv: qkv, att: a, batch: batch, tokens: t, dim: dim,
                                    heads: heads, pool: pool)
                            }
                        }
                    }
                }
            }
            XCTAssertEqual(vm_malloc_count() - before, 0, "fused attention allocations at \(threads) thread(s)")
        }
    }
}
