import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel
@testable import ViTMergeTraining

/// Data-parallel training with ranks as threads (`ThreadGroup`, sums in rank order): N ranks
/// must compute the single process's gradient and loss curve up to float summation order, and
/// keep identical parameters. The same Trainer code runs over MPI (scripts/mpi_check.sh in CI).
final class DataParallelTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func setup(mode: TrainMode) throws -> (ViTConfig, LabeledImages, ViTParameters) {
        let task = try TaskDataset.load(path: Self.repo.appendingPathComponent("data/tasks/mnist.safetensors").path)
        var config = ViTConfig(
            imageSize: 28, patchSize: 7, inChannels: 1, numClasses: 10, embedDim: 16, depth: 2, numHeads: 2, mlpRatio: 2
        )
        if mode == .masked { config.numClasses = config.patchDim }
        let start = ViTParameters(config: config)
        start.initialize(seed: 11)
        return (config, task.train.take(Array(0..<120)), start)
    }

    /// Runs `body(rank, group member)` on `size` threads and returns the results in rank order.
    func onRanks<T>(_ size: Int, _ body: @escaping @Sendable (Int, Collective) throws -> T) throws -> [T] {
        let group = ThreadGroup(size: size)
        nonisolated(unsafe) var results = [Result<T, Error>?](repeating: nil, count: size)
        let done = DispatchGroup()
        let lock = NSLock()
        for r in 0..<size {
            done.enter()
            let t = Thread {
                let out = Result { try body(r, group.member(r)) }
                lock.lock(); results[r] = out; lock.unlock()
                done.leave()
            }
            t.stackSize = 8 << 20
            t.start()
        }
        done.wait()
        return try results.map { try $0!.get() }
    }

    func testShardedGradientEqualsTheGlobalBatchGradient() throws {
        for mode in [TrainMode.full, .aligned, .linearized, .masked] {
            let (_, data, start) = try setup(mode: mode)
            let settings = TrainSettings(steps: 1, batchSize: 16, seed: 3, maskRatio: 0.5)
            let single = Trainer(model: ViT(parameters: start.copy()), train: data, mode: mode, settings: settings)
            let loss = single.gradients(step: 0)
            let want = UnsafeBufferPointer(start: single.grads.base, count: single.grads.count).map { $0 }
            let scale = want.map(abs).max()!
            for size in [2, 3] {  // 3 ranks share 16 images as 5, 5, 6
                let got = try onRanks(size) { _, group in
                    let t = Trainer(
                        model: ViT(parameters: start.copy()), train: data, mode: mode, settings: settings, group: group)
                    let l = t.gradients(step: 0)
                    return (l, UnsafeBufferPointer(start: t.grads.base, count: t.grads.count).map { $0 })
                }
                for (rank, (l, g)) in got.enumerated() {
                    XCTAssertEqual(l, loss, accuracy: 1e-5 * abs(loss), "\(mode) \(size) ranks, rank \(rank): loss")
                    XCTAssertEqual(
                        g.map(\.bitPattern), got[0].1.map(\.bitPattern),
                        "\(mode): ranks must hold the same summed gradient")
                    let trainable = mode == .full || mode == .masked ? g.count : start.table.encoderEnd
                    let err = zip(g.prefix(trainable), want.prefix(trainable)).map { abs($0 - $1) }.max()!
                    XCTAssertLessThanOrEqual(
                        err, 1e-5 * scale, "\(mode) \(size) ranks: gradient differs from the global batch's by \(err)")
                }
            }
        }
    }

    func testMAEShardsEncoderAndDecoderGradientsAndRanksStayIdentical() throws {
        let (full, data, _) = try setup(mode: .full)
        var config = full
        config.numClasses = 0
        let start = ViTParameters(config: config)
        start.initialize(seed: 11)
        let mae = MAESettings(decoderDepth: 1, decoderDim: 8, decoderHeads: 2, normPixLoss: true)
        let settings = TrainSettings(steps: 4, batchSize: 16, lr: 3e-3, seed: 3, maskRatio: 0.75, mae: mae)
        @Sendable func decoderGradients(_ t: Trainer) -> [Float] {
            let g = t.objective.auxiliary!.gradients
            return Array(UnsafeBufferPointer(start: g.base, count: g.count))
        }
        let single = Trainer(model: ViT(parameters: start.copy()), train: data, mode: .mae, settings: settings)
        let loss = single.gradients(step: 0)
        let want = UnsafeBufferPointer(start: single.grads.base, count: single.grads.count).map { $0 }
        let wantDecoder = decoderGradients(single)
        for size in [2, 3] {  // 3 ranks share 16 images as 5, 5, 6
            let got = try onRanks(size) { _, group in
                let t = Trainer(
                    model: ViT(parameters: start.copy()), train: data, mode: .mae, settings: settings, group: group)
                let l = t.gradients(step: 0)
                let g = UnsafeBufferPointer(start: t.grads.base, count: t.grads.count).map { $0 }
                return (l, g, decoderGradients(t))
            }
            for (rank, (l, g, dg)) in got.enumerated() {
                XCTAssertEqual(l, loss, accuracy: 1e-5 * abs(loss), "mae \(size) ranks, rank \(rank): loss")
                XCTAssertEqual(g.map(\.bitPattern), got[0].1.map(\.bitPattern), "ranks must hold the same gradient")
                XCTAssertEqual(dg.map(\.bitPattern), got[0].2.map(\.bitPattern), "ranks: the same decoder gradient")
                for (name, a, b) in [("encoder", g, want), ("decoder", dg, wantDecoder)] {
                    let scale = b.map(abs).max()!
                    let err = zip(a, b).map { abs($0 - $1) }.max()!
                    XCTAssertGreaterThan(scale, 0)
                    XCTAssertLessThanOrEqual(err, 1e-5 * scale, "mae \(size) ranks: \(name) gradient off by \(err)")
                }
            }
        }
        // Two ranks train to the same bits, encoder and decoder alike.
        let runs = try onRanks(2) { _, group in
            let t = Trainer(
                model: ViT(parameters: start.copy()), train: data, mode: .mae, settings: settings, group: group)
            try t.run()
            let d = t.objective.auxiliary!.parameters
            return (t.model.parameters, Array(UnsafeBufferPointer(start: d.base, count: d.count)))
        }
        assertBitIdentical(runs[0].0, runs[1].0, "the ranks' encoders diverged")
        XCTAssertEqual(runs[0].1.map(\.bitPattern), runs[1].1.map(\.bitPattern), "the ranks' decoders diverged")
    }

    func testTwoRanksFollowTheSingleProcessLossCurveAndStayIdentical() throws {
        let (_, data, start) = try setup(mode: .full)
        let settings = TrainSettings(steps: 30, batchSize: 16, lr: 3e-3, seed: 4, checkpointEvery: 10)
        var singleLosses: [Float] = []
        let single = Trainer(model: ViT(parameters: start.copy()), train: data, mode: .full, settings: settings)
        try single.run(log: { singleLosses.append($0.loss) })
        let runs = try onRanks(2) { _, group in
            let t = Trainer(
                model: ViT(parameters: start.copy()), train: data, mode: .full, settings: settings, group: group)
            var losses: [Float] = []
            try t.run(log: { losses.append($0.loss) })
            return (losses, t.model.parameters, t.resynchronizations, t.evaluateTrained(on: data).accuracy)
        }
        assertBitIdentical(runs[0].1, runs[1].1, "the ranks' parameters diverged")
        XCTAssertEqual(runs[0].2, 0, "no resynchronization should have been needed")
        XCTAssertEqual(
            runs[0].3, evaluate(runs[0].1.model, on: data).accuracy,
            "sharded evaluation must equal the whole-set evaluation")
        for (s, (a, b)) in zip(singleLosses, runs[0].0).enumerated() {
            XCTAssertEqual(a, b, accuracy: 1e-4 * abs(a), "step \(s + 1): 2-rank loss \(b) vs single-process \(a)")
        }
        let p = single.model.parameters, q = runs[0].1
        let maxDiff = (0..<p.arena.count).map { abs(p.base[$0] - q.base[$0]) }.max()!
        XCTAssertLessThan(maxDiff, 1e-3, "after 30 AdamW steps the weights should agree to float summation noise")
    }

    func testRunGivesEveryRankRankZerosStateFirst() throws {
        let (config, data, start) = try setup(mode: .full)
        let settings = TrainSettings(steps: 2, batchSize: 8, seed: 1)
        let runs = try onRanks(2) { rank, group in
            // Rank 1 starts from other weights (as if it had not read the resumed state).
            let p = rank == 0 ? start.copy() : ViTParameters(config: config)
            if rank == 1 { p.initialize(seed: 99) }
            let t = Trainer(model: ViT(parameters: p), train: data, mode: .full, settings: settings, group: group)
            try t.run()
            return t.model.parameters
        }
        assertBitIdentical(runs[0], runs[1], "rank 1 must start from rank 0's state")
    }
}

extension ViTParameters {
    fileprivate var model: ViT { ViT(parameters: self) }
}
