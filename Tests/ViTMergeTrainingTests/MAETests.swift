import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel
@testable import ViTMergeTraining

/// Masked autoencoding (`TrainMode.mae`): the encoder on the visible tokens only, the decoder's
/// and the encoder's gradients against finite differences, seeded masks, resuming bit for bit,
/// thread-count independence, and the checkpoint read back as a plain encoder.
final class MAETests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// A tiny encoder (16 patches of 7×7, width 18) with a 2-block decoder of width 10 and an odd
    /// MLP, no head, and 120 MNIST images.
    func setup(normPixLoss: Bool = false) throws -> (ViTConfig, LabeledImages, MAESettings) {
        let task = try TaskDataset.load(path: Self.repo.appendingPathComponent("data/tasks/mnist.safetensors").path)
        let config = ViTConfig(
            imageSize: 28, patchSize: 7, inChannels: 1, numClasses: 0, embedDim: 18, depth: 2, numHeads: 3,
            mlpRatio: 2)
        let mae = MAESettings(decoderDepth: 2, decoderDim: 10, decoderHeads: 2, normPixLoss: normPixLoss)
        return (config, task.train.take(Array(0..<120)), mae)
    }

    func settings(
        _ mae: MAESettings, steps: Int = 1, batch: Int = 6, seed: UInt64 = 7, every: Int = 0
    )
        -> TrainSettings
    {
        TrainSettings(
            steps: steps, batchSize: batch, lr: 3e-3, seed: seed, checkpointEvery: every, maskRatio: 0.75, mae: mae)
    }

    func maeObjective(_ t: Trainer) -> MAEObjective { t.objective as! MAEObjective }

    func testMasksKeepAQuarterVisibleAndDependOnlyOnSeedStepAndPosition() throws {
        let (config, data, mae) = try setup()
        XCTAssertEqual(MAEObjective.visibleCount(patches: 49, ratio: 0.75), 12, "⌊49 · 0.25⌋ as MAE's len_keep")
        XCTAssertEqual(MAEObjective.visibleCount(patches: 4, ratio: 0.99), 1)
        XCTAssertEqual(MAEObjective.visibleCount(patches: 4, ratio: 0.01), 3)
        let t = Trainer(model: ViT(config: config, seed: 1), train: data, mode: .mae, settings: settings(mae, batch: 8))
        let o = maeObjective(t)
        XCTAssertEqual(o.visible, 4)
        func masks(step: Int, share: Range<Int>) -> [[Bool]] {
            o.drawMasks(step: step, share: share)
            return (0..<share.count).map { i in (0..<o.patches).map { o.isMasked[i * o.patches + $0] } }
        }
        let all = masks(step: 3, share: 0..<8)
        for m in all { XCTAssertEqual(m.filter { !$0 }.count, 4, "4 of 16 patches visible") }
        XCTAssertEqual(Set(all.map { $0.map { $0 ? "1" : "0" }.joined() }).count, 8, "every image draws its own mask")
        // A rank holding positions 5..<8 draws the same masks for them.
        XCTAssertEqual(masks(step: 3, share: 5..<8), Array(all[5..<8]))
        XCTAssertNotEqual(masks(step: 4, share: 0..<8), all, "another step draws other masks")
        // keep lists the class token then the visible patches in grid order; index inverts it.
        o.drawMasks(step: 3, share: 0..<8)
        let k = o.prefix + o.visible, tokens = o.prefix + o.patches
        for i in 0..<8 {
            let kept = (0..<k).map { Int(o.keep[i * k + $0]) }
            XCTAssertEqual(kept, [0] + (0..<16).filter { !all[i][$0] }.map { $0 + 1 })
            for r in 0..<tokens {
                let src = Int(o.index[i * tokens + r])
                if r > 0 && all[i][r - 1] { XCTAssertEqual(src, -1) } else { XCTAssertEqual(kept[src], r) }
            }
        }
    }

    func testEncoderOnEveryTokenEqualsTheFullForwardAndIgnoresDroppedPatches() throws {
        let (config, data, _) = try setup()
        let model = ViT(config: config, seed: 3)
        let b = 3, t = config.tokens, d = config.embedDim
        let input = UnsafeMutablePointer<Float>.allocate(capacity: b * data.imageSize)
        defer { input.deallocate() }
        data.fill(0..<b, input: input, labels: nil)
        let full = model.makeActivations(capacity: b)
        model.forward(input: input, batch: b, acts: full, throughHead: false)
        let everything = (0..<b).flatMap { _ in (0..<t).map(Int32.init) }
        let all = VisibleActivations(config: config, capacity: b, visible: config.numPatches)
        model.forward(input: input, batch: b, keep: everything, acts: all)
        let want = UnsafeBufferPointer(start: full.tokensPointer, count: b * t * d)
        let got = UnsafeBufferPointer(start: all.tokensPointer, count: b * t * d)
        XCTAssertTrue(
            want.elementsEqual(got) { $0.bitPattern == $1.bitPattern }, "keeping every token must be the full forward")

        // Keep the class token and patches 0, 5, 6, 15: changing a dropped patch changes nothing.
        let keep: [Int32] = (0..<b).flatMap { _ in [0, 1, 6, 7, 16] }
        let some = VisibleActivations(config: config, capacity: b, visible: 4)
        model.forward(input: input, batch: b, keep: keep, acts: some)
        let before = Array(UnsafeBufferPointer(start: some.tokensPointer, count: b * 5 * d))
        input[3 * 7 * 28 + 3 * 7 + 2] += 0.5  // image 0, patch (3, 3) = 15: kept
        input[data.imageSize + 14 * 28 + 7 + 3] += 0.5  // image 1, patch (2, 1) = 9: dropped
        model.forward(input: input, batch: b, keep: keep, acts: some)
        let after = Array(UnsafeBufferPointer(start: some.tokensPointer, count: b * 5 * d))
        XCTAssertNotEqual(before[0..<(5 * d)], after[0..<(5 * d)], "a kept patch's pixels must matter")
        XCTAssertEqual(
            before[(5 * d)...].map(\.bitPattern), after[(5 * d)...].map(\.bitPattern),
            "a dropped patch's pixels must not")
    }

    /// Central differences of the objective's loss on a fixed batch (same masks) for the largest
    /// gradients of each tensor named, in the model's arena or the decoder's.
    func checkGradients(normPixLoss: Bool) throws {
        let (config, data, mae) = try setup(normPixLoss: normPixLoss)
        let model = ViT(config: config, seed: 4)
        let trainer = Trainer(model: model, train: data, mode: .mae, settings: settings(mae))
        let aux = maeObjective(trainer).decoderParameters
        _ = trainer.objectiveLoss(step: 3)
        let encoderGrads = UnsafeBufferPointer(start: trainer.grads.base, count: trainer.grads.count).map { $0 }
        let decoderGrads = UnsafeBufferPointer(start: aux.gradients.base, count: aux.gradients.count).map { $0 }
        var checked = 0
        let encoderNames = [
            "cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "blocks.0.attn.qkv.weight",
            "blocks.1.attn.proj.weight", "blocks.1.mlp.fc2.weight", "norm.weight", "norm.bias",
        ]
        let decoderNames = [
            "mask_token", "decoder_embed.weight", "decoder_embed.bias", "decoder_pos_embed",
            "decoder_blocks.0.attn.qkv.weight", "decoder_blocks.1.mlp.fc1.weight", "decoder_norm.weight",
            "decoder_pred.weight", "decoder_pred.bias",
        ]
        for (arena, grads, names) in [
            (model.parameters.arena, encoderGrads, encoderNames), (aux.parameters, decoderGrads, decoderNames),
        ] {
            for name in names {
                let region = arena.layout.regions.first { $0.name == name }!
                let range = region.offset..<(region.offset + region.shape.count)
                XCTAssertTrue(range.contains { grads[$0] != 0 }, "\(name): no gradient at all")
                for i in range.sorted(by: { abs(grads[$0]) > abs(grads[$1]) }).prefix(3) {
                    let orig = arena.base[i], h: Float = 1e-2
                    arena.base[i] = orig + h
                    let up = Double(trainer.objectiveLoss(step: 3))
                    arena.base[i] = orig - h
                    let down = Double(trainer.objectiveLoss(step: 3))
                    arena.base[i] = orig
                    let fd = (up - down) / (2 * Double(h))
                    XCTAssertEqual(
                        Double(grads[i]), fd, accuracy: 0.03 * abs(fd) + 2e-5, "\(name)[\(i - region.offset)]")
                    checked += 1
                }
            }
        }
        XCTAssertEqual(checked, 54)
    }

    func testGradientsOfEncoderAndDecoderMatchFiniteDifferences() throws {
        try checkGradients(normPixLoss: false)
    }

    func testGradientsWithNormalizedPixelTargetsMatchFiniteDifferences() throws {
        try checkGradients(normPixLoss: true)
    }

    func testNormalizedTargetsHaveZeroMeanAndUnitUnbiasedVariancePerPatch() throws {
        let (config, data, mae) = try setup(normPixLoss: true)
        let t = Trainer(model: ViT(config: config, seed: 1), train: data, mode: .mae, settings: settings(mae))
        _ = t.objectiveLoss(step: 0)
        let o = maeObjective(t), pd = config.patchDim
        var tested = 0
        for row in 0..<(6 * o.patches) {
            let x = (0..<pd).map { Double(o.encoderActs.patchesPointer[row * pd + $0]) }
            let mean = x.reduce(0, +) / Double(pd)
            let variance = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(pd - 1)
            let y = (0..<pd).map { Double(o.target[row * pd + $0]) }
            for q in 0..<pd {
                XCTAssertEqual(y[q], (x[q] - mean) / (variance + 1e-6).squareRoot(), accuracy: 1e-5 * max(1, abs(y[q])))
            }
            if variance > 1e-3 {  // a patch with ink: unbiased variance of the targets ≈ 1
                let ym = y.reduce(0, +) / Double(pd)
                XCTAssertEqual(ym, 0, accuracy: 1e-5)
                XCTAssertEqual(y.map { ($0 - ym) * ($0 - ym) }.reduce(0, +) / Double(pd - 1), 1, accuracy: 1e-3)
                tested += 1
            }
        }
        XCTAssertGreaterThan(tested, 5, "some patches must have ink")
    }

    func testPretrainingLearnsAndResumesBitExactlyWithTheDecoder() throws {
        let (config, data, mae) = try setup()
        let s = settings(mae, steps: 30, batch: 12, seed: 5, every: 15)
        let model = ViT(config: config, seed: 2)
        let trainer = Trainer(model: model, train: data, mode: .mae, settings: s)
        let decoder = maeObjective(trainer).decoderParameters
        let before = trainer.objectiveLoss(step: 0)
        let decoderBefore = Array(UnsafeBufferPointer(start: decoder.parameters.base, count: decoder.parameters.count))
        try trainer.run()
        let after = trainer.objectiveLoss(step: 0)
        XCTAssertNotEqual(
            decoderBefore, Array(UnsafeBufferPointer(start: decoder.parameters.base, count: decoder.parameters.count)),
            "the decoder must train")
        XCTAssertLessThan(after, before * 0.9, "MAE loss on a fixed batch should fall (\(before) → \(after))")

        let state = NSTemporaryDirectory() + "vitmerge-mae-resume-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: state) }
        struct Killed: Error {}
        XCTAssertThrowsError(
            try Trainer(model: ViT(config: config, seed: 2), train: data, mode: .mae, settings: s).run(save: { t in
                try t.saveState(to: state)
                throw Killed()
            }))
        let resumed = ViT(config: config, seed: 99)
        let t2 = Trainer(model: resumed, train: data, mode: .mae, settings: s)
        // A fresh decoder from another seed would differ: the state must supply it.
        maeObjective(t2).decoder.initialize(maeObjective(t2).decoderParameters.parameters, seed: 123)
        try t2.restoreState(from: state)
        XCTAssertEqual(t2.optimizer.step, 15)
        XCTAssertEqual(maeObjective(t2).decoderParameters.optimizer.step, 15)
        try t2.run()
        assertBitIdentical(
            model.parameters, resumed.parameters, "resumed MAE encoder differs from the uninterrupted run")
        let d2 = maeObjective(t2).decoderParameters.parameters
        XCTAssertTrue(
            UnsafeBufferPointer(start: decoder.parameters.base, count: decoder.parameters.count).elementsEqual(
                UnsafeBufferPointer(start: d2.base, count: d2.count)
            ) { $0.bitPattern == $1.bitPattern },
            "resumed MAE decoder differs from the uninterrupted run")

        // Another decoder shape is another run: its state is refused.
        var other = mae
        other.decoderDim = 12
        let t3 = Trainer(
            model: ViT(config: config, seed: 2), train: data, mode: .mae,
            settings: settings(other, steps: 30, batch: 12, seed: 5, every: 15))
        XCTAssertThrowsError(try t3.restoreState(from: state)) {
            XCTAssertTrue("\($0)".contains("same command line"), "\($0)")
        }
    }

    func testOneAndTwoThreadsTrainTheSameBits() throws {
        let (config, data, mae) = try setup(normPixLoss: true)
        var runs: [(ViTParameters, [Float])] = []
        for threads in [1, 2] {
            let pool = ThreadPool(threads: threads)
            XCTAssertEqual(pool.threads, threads)
            let model = ViT(config: config, seed: 6, pool: pool)
            let t = Trainer(model: model, train: data, mode: .mae, settings: settings(mae, steps: 4, batch: 12))
            try t.run()
            let d = maeObjective(t).decoderParameters.parameters
            runs.append((model.parameters, Array(UnsafeBufferPointer(start: d.base, count: d.count))))
        }
        assertBitIdentical(runs[0].0, runs[1].0, "1 and 2 threads trained different encoders")
        XCTAssertEqual(runs[0].1.map(\.bitPattern), runs[1].1.map(\.bitPattern), "1 and 2 threads: decoders differ")
    }

    func testCheckpointHoldsTheDecoderAndLoadsAsAPlainEncoder() throws {
        let (config, data, mae) = try setup()
        var config28 = config
        config28.numClasses = 10  // pretrain() drops the head for mae
        let pre = try pretrain(
            scheme: .mae, train: data, validation: data.take(Array(0..<10)), test: data.take(Array(0..<10)),
            classes: 10, config: config28, settings: settings(mae, steps: 3, batch: 8), state: nil, resume: false,
            log: { _ in })
        XCTAssertEqual(pre.parameters.config.numClasses, 0)
        let decoder = try XCTUnwrap(pre.auxiliary)
        let path = NSTemporaryDirectory() + "vitmerge-mae-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try pre.save(to: path, metadata: ["data": "test"])
        let file = try SafeTensorsFile.read(path: path)
        XCTAssertTrue(file.names.contains("decoder_pred.weight") && file.names.contains("mask_token"), "\(file.names)")
        XCTAssertEqual(try Checkpoint.auxiliaryTensors(file), decoder.layout.regions.map(\.name))
        XCTAssertEqual(
            try file.floats("decoder_blocks.1.mlp.fc2.weight"),
            decoder.tensor("decoder_blocks.1.mlp.fc2.weight")!.array)
        let (loaded, meta) = try Checkpoint.load(path: path)
        assertBitIdentical(loaded, pre.parameters, "the encoder read back differs")
        XCTAssertEqual(meta["scheme"], "mae")
        XCTAssertTrue(meta["settings"]?.contains("\"decoderDim\":10") ?? false, meta["settings"] ?? "")
    }
}
