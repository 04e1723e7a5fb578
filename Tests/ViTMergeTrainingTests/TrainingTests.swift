import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel
@testable import ViTMergeTraining

final class TrainingTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// A tiny model and a 200-image slice of the embedded MNIST task, so the tests stay fast in debug.
    func tinySetup() throws -> (ViTConfig, LabeledImages) {
        let task = try TaskDataset.load(path: Self.repo.appendingPathComponent("data/tasks/mnist.safetensors").path)
        let config = ViTConfig(
            imageSize: 28, patchSize: 7, inChannels: 1, numClasses: 10, embedDim: 16, depth: 1, numHeads: 2, mlpRatio: 2
        )
        return (config, task.train.take(Array(0..<200)))
    }

    func testScheduleWarmsUpThenDecaysToMinimum() {
        let s = LRSchedule(peak: 1, warmupSteps: 10, totalSteps: 110)
        XCTAssertEqual(s.lr(step: 5), 0.5, accuracy: 1e-6)
        XCTAssertEqual(s.lr(step: 10), 1, accuracy: 1e-6)
        XCTAssertEqual(s.lr(step: 60), 0.5, accuracy: 1e-6)
        XCTAssertEqual(s.lr(step: 110), 0, accuracy: 1e-6)
    }

    func testSamplerIsAPermutationPerEpochAndDeterministic() {
        let s = BatchSampler(count: 10, batchSize: 3, seed: 4)
        XCTAssertEqual(s.stepsPerEpoch, 3)
        let epoch = (0..<3).flatMap { s.indices(step: $0) }
        XCTAssertEqual(Set(epoch).count, 9)
        XCTAssertEqual(
            Array(s.indices(step: 4)), Array(BatchSampler(count: 10, batchSize: 3, seed: 4).indices(step: 4)))
        XCTAssertNotEqual(Array(s.indices(step: 0)), Array(s.indices(step: 3)))
    }

    func testTrainingReducesLossAndAlignedKeepsHeadBitIdentical() throws {
        let (config, data) = try tinySetup()
        let model = ViT(config: config, seed: 1)
        let before = evaluate(model, on: data).loss
        let settings = TrainSettings(steps: 80, batchSize: 20, lr: 5e-3, seed: 2)
        try Trainer(model: model, train: data, mode: .full, settings: settings).run()
        let after = evaluate(model, on: data).loss
        XCTAssertLessThan(after, before * 0.9, "full training should reduce the training loss (\(before) → \(after))")

        let head = model.parameters["head.weight"]!.array + model.parameters["head.bias"]!.array
        let encoderBefore = model.parameters["blocks.0.mlp.fc1.weight"]!.array
        try Trainer(
            model: model, train: data, mode: .aligned, settings: TrainSettings(steps: 5, batchSize: 20, seed: 3)
        ).run()
        let headAfter = model.parameters["head.weight"]!.array + model.parameters["head.bias"]!.array
        XCTAssertEqual(head.map(\.bitPattern), headAfter.map(\.bitPattern), "aligned fine-tuning changed the head")
        XCTAssertNotEqual(
            encoderBefore, model.parameters["blocks.0.mlp.fc1.weight"]!.array,
            "aligned fine-tuning must train the encoder")
    }

    func testKilledAndResumedRunEndsWithTheSameWeights() throws {
        let (config, data) = try tinySetup()
        let settings = TrainSettings(steps: 12, batchSize: 16, lr: 2e-3, seed: 5, checkpointEvery: 5)
        let state = NSTemporaryDirectory() + "vitmerge-resume-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: state) }

        let straight = ViT(config: config, seed: 9)
        try Trainer(model: straight, train: data, mode: .full, settings: settings).run()

        // "Kill" after the state at step 10 was written: a trainer that stops there.
        struct Killed: Error {}
        let first = ViT(config: config, seed: 9)
        XCTAssertThrowsError(
            try Trainer(model: first, train: data, mode: .full, settings: settings).run(save: { t in
                try t.saveState(to: state)
                if t.optimizer.step == 10 { throw Killed() }
            }))
        // A new process: fresh model object, resumed from the state file.
        let resumed = ViT(config: config, seed: 123)
        let trainer = Trainer(model: resumed, train: data, mode: .full, settings: settings)
        try trainer.restoreState(from: state)
        XCTAssertEqual(trainer.optimizer.step, 10)
        try trainer.run()
        assertBitIdentical(straight.parameters, resumed.parameters, "resumed weights differ from the uninterrupted run")
    }

    func testResumeRejectsAStateFromOtherSettings() throws {
        let (config, data) = try tinySetup()
        let state = NSTemporaryDirectory() + "vitmerge-resume2-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: state) }
        let t1 = Trainer(
            model: ViT(config: config, seed: 1), train: data, mode: .full,
            settings: TrainSettings(steps: 2, batchSize: 8))
        try t1.saveState(to: state)
        let t2 = Trainer(
            model: ViT(config: config, seed: 1), train: data, mode: .full,
            settings: TrainSettings(steps: 3, batchSize: 8))
        XCTAssertThrowsError(try t2.restoreState(from: state)) {
            XCTAssertTrue("\($0)".contains("same command line"), "\($0)")
        }
    }

    func testNonFiniteLossStopsTrainingNamingStepAndTensorAndKeepsTheLastCheckpoint() throws {
        let (config, data) = try tinySetup()
        let settings = TrainSettings(steps: 6, batchSize: 16, lr: 1e-3, seed: 1, checkpointEvery: 2)
        let state = NSTemporaryDirectory() + "vitmerge-nan-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: state) }
        let model = ViT(config: config, seed: 3)
        let trainer = Trainer(model: model, train: data, mode: .full, settings: settings)
        var saved: [Int] = []
        XCTAssertThrowsError(
            try trainer.run(save: { t in
                try t.saveState(to: state)
                saved.append(t.optimizer.step)
                // Poison a weight right after the second save.
                if t.optimizer.step == 2 { model.parameters["blocks.0.mlp.fc1.weight"]!.pointer[5] = .nan }
            })
        ) { error in
            guard case TrainingError.nonFinite(let step, _, let tensor) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(step, 3)
            XCTAssertEqual(tensor, "blocks.0.mlp.fc1.weight (parameter)")
            XCTAssertTrue("\(error)".contains("Lower --lr"), "\(error)")
        }
        XCTAssertEqual(saved, [2], "nothing may be saved after the divergence")
        XCTAssertEqual(trainer.optimizer.step, 2, "the diverged update must not be applied")
        let resumed = Trainer(model: ViT(config: config, seed: 3), train: data, mode: .full, settings: settings)
        try resumed.restoreState(from: state)
        XCTAssertEqual(resumed.optimizer.step, 2)
        XCTAssertTrue(
            resumed.model.parameters["blocks.0.mlp.fc1.weight"]!.array.allSatisfy(\.isFinite),
            "the checkpoint on disk is the last good one")
    }

    func testCtrlCSavesTheStateAndStopsAndResumeFinishesIdentically() throws {
        let (config, data) = try tinySetup()
        let settings = TrainSettings(steps: 8, batchSize: 16, lr: 2e-3, seed: 4, checkpointEvery: 100)
        let state = NSTemporaryDirectory() + "vitmerge-int-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: state) }
        let straight = ViT(config: config, seed: 6)
        try Trainer(model: straight, train: data, mode: .full, settings: settings).run()

        let first = Trainer(model: ViT(config: config, seed: 6), train: data, mode: .full, settings: settings)
        XCTAssertThrowsError(
            try first.run(log: { if $0.step == 3 { Interrupt.request() } }, save: { try $0.saveState(to: state) })
        ) { error in
            guard case TrainingError.interrupted(let step) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(step, 3)
            XCTAssertTrue("\(error)".contains("--resume"))
        }
        XCTAssertFalse(Interrupt.requested, "a handled stop request is cleared")
        let resumed = Trainer(model: ViT(config: config, seed: 77), train: data, mode: .full, settings: settings)
        try resumed.restoreState(from: state)
        XCTAssertEqual(resumed.optimizer.step, 3)
        try resumed.run()
        assertBitIdentical(
            straight.parameters, resumed.model.parameters, "resumed weights differ from the uninterrupted run")
    }

    // MARK: Linearized fine-tuning

    func testLinearizedGradientMatchesFiniteDifferencesOfTheLinearizedLoss() throws {
        let (config, data) = try tinySetup()
        let model = ViT(config: config, seed: 5)
        let trainer = Trainer(
            model: model, train: data, mode: .linearized,
            settings: TrainSettings(steps: 3, batchSize: 8, lr: 2e-2, seed: 1))
        try trainer.run()  // move θ away from θ0 so f_lin differs from f
        let theta = trainer.trained
        _ = trainer.objectiveLoss(step: 7)
        let grads = UnsafeBufferPointer(start: trainer.grads.base, count: trainer.grads.count).map { $0 }
        var checked = 0
        for name in [
            "blocks.0.mlp.fc1.weight", "blocks.0.attn.qkv.weight", "pos_embed", "norm.bias", "patch_embed.proj.weight",
        ] {
            let region = theta.table.layout.regions.first { $0.name == name }!
            for i in (region.offset..<(region.offset + region.shape.count)).sorted(by: {
                abs(grads[$0]) > abs(grads[$1])
            }).prefix(3) {
                let orig = theta.base[i], h: Float = 1e-2
                theta.base[i] = orig + h; let up = Double(trainer.objectiveLoss(step: 7))
                theta.base[i] = orig - h; let down = Double(trainer.objectiveLoss(step: 7))
                theta.base[i] = orig
                let fd = (up - down) / (2 * Double(h))
                XCTAssertEqual(Double(grads[i]), fd, accuracy: 0.03 * abs(fd) + 2e-5, "\(name)[\(i - region.offset)]")
                checked += 1
            }
        }
        XCTAssertEqual(checked, 15)
        // θ0 (the model) is untouched; the head of θ is the frozen head.
        XCTAssertEqual(
            theta["head.weight"]!.array.map(\.bitPattern), model.parameters["head.weight"]!.array.map(\.bitPattern))
        XCTAssertEqual(
            model.parameters["blocks.0.mlp.fc1.weight"]!.array,
            ViT(config: config, seed: 5).parameters["blocks.0.mlp.fc1.weight"]!.array)
    }

    func testLinearizedTrainingLearnsAndResumesBitExactly() throws {
        let (config, data) = try tinySetup()
        let pre = ViT(config: config, seed: 8)
        try Trainer(
            model: pre, train: data, mode: .full, settings: TrainSettings(steps: 30, batchSize: 20, lr: 5e-3, seed: 1)
        ).run()
        let settings = TrainSettings(steps: 30, batchSize: 20, lr: 5e-3, seed: 2, checkpointEvery: 15)
        let trainer = Trainer(
            model: ViT(parameters: pre.parameters.copy()), train: data, mode: .linearized, settings: settings)
        let before = trainer.evaluateTrained(on: data).loss
        try trainer.run()
        let after = trainer.evaluateTrained(on: data).loss
        XCTAssertLessThan(
            after, before * 0.95, "linearized fine-tuning should reduce the training loss (\(before) → \(after))")

        let state = NSTemporaryDirectory() + "vitmerge-lin-resume-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: state) }
        struct Killed: Error {}
        XCTAssertThrowsError(
            try Trainer(
                model: ViT(parameters: pre.parameters.copy()), train: data, mode: .linearized, settings: settings
            )
            .run(save: { t in
                try t.saveState(to: state); throw Killed()
            }))
        let resumed = Trainer(
            model: ViT(parameters: pre.parameters.copy()), train: data, mode: .linearized, settings: settings)
        try resumed.restoreState(from: state)
        try resumed.run()
        assertBitIdentical(
            trainer.trained, resumed.trained, "resumed linearized run differs from the uninterrupted one")
    }

    // MARK: Masked image modeling

    func mimSetup() throws -> (ViTConfig, LabeledImages) {
        var (config, data) = try tinySetup()
        config.numClasses = config.patchDim  // the head is the per-token decoder
        return (config, data)
    }

    func testMaskedModelingGradientMatchesFiniteDifferences() throws {
        let (config, data) = try mimSetup()
        let model = ViT(config: config, seed: 4)
        let trainer = Trainer(
            model: model, train: data, mode: .masked,
            settings: TrainSettings(steps: 1, batchSize: 6, seed: 7, maskRatio: 0.5))
        _ = trainer.objectiveLoss(step: 3)
        let grads = UnsafeBufferPointer(start: trainer.grads.base, count: trainer.grads.count).map { $0 }
        let p = model.parameters
        var checked = 0
        for name in [
            "head.weight", "head.bias", "blocks.0.mlp.fc2.weight", "blocks.0.attn.qkv.weight",
            "patch_embed.proj.weight",
            "pos_embed", "cls_token", "norm.weight",
        ] {
            let region = p.table.layout.regions.first { $0.name == name }!
            // The three largest gradients of the tensor.
            let idx = (region.offset..<(region.offset + region.shape.count)).sorted { abs(grads[$0]) > abs(grads[$1]) }
                .prefix(3)
            for i in idx {
                let orig = p.base[i], h: Float = 1e-2
                p.base[i] = orig + h; let up = Double(trainer.objectiveLoss(step: 3))
                p.base[i] = orig - h; let down = Double(trainer.objectiveLoss(step: 3))
                p.base[i] = orig
                let fd = (up - down) / (2 * Double(h))
                XCTAssertEqual(Double(grads[i]), fd, accuracy: 0.03 * abs(fd) + 2e-5, "\(name)[\(i - region.offset)]")
                checked += 1
            }
        }
        XCTAssertEqual(checked, 24)
    }

    func testMaskedPretrainingLearnsAndResumesBitExactly() throws {
        let (config, data) = try mimSetup()
        let settings = TrainSettings(steps: 40, batchSize: 16, lr: 3e-3, seed: 5, checkpointEvery: 20)
        let model = ViT(config: config, seed: 2)
        let trainer = Trainer(model: model, train: data, mode: .masked, settings: settings)
        let before = trainer.objectiveLoss(step: 0)
        let decoderBefore = model.parameters["head.weight"]!.array
        try trainer.run()
        let after = trainer.objectiveLoss(step: 0)
        XCTAssertNotEqual(decoderBefore, model.parameters["head.weight"]!.array, "the decoder (head) must train")
        XCTAssertLessThan(
            after, before * 0.95, "masked reconstruction loss on a fixed batch should fall (\(before) → \(after))")

        let state = NSTemporaryDirectory() + "vitmerge-mim-resume-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: state) }
        struct Killed: Error {}
        XCTAssertThrowsError(
            try Trainer(model: ViT(config: config, seed: 2), train: data, mode: .masked, settings: settings).run(save: {
                t in
                try t.saveState(to: state)
                throw Killed()
            }))
        let resumed = ViT(config: config, seed: 99)
        let t2 = Trainer(model: resumed, train: data, mode: .masked, settings: settings)
        try t2.restoreState(from: state)
        XCTAssertEqual(t2.optimizer.step, 20)
        try t2.run()
        assertBitIdentical(
            model.parameters, resumed.parameters, "resumed masked pre-training differs from the uninterrupted run")
    }
}

/// Asserts two parameter sets are equal bit for bit (every value of the arena, padding included).
func assertBitIdentical(
    _ a: ViTParameters, _ b: ViTParameters, _ message: String, file: StaticString = #filePath, line: UInt = #line
) {
    let pa = UnsafeBufferPointer(start: a.base, count: a.arena.count),
        pb = UnsafeBufferPointer(start: b.base, count: b.arena.count)
    XCTAssertTrue(pa.elementsEqual(pb) { $0.bitPattern == $1.bitPattern }, message, file: file, line: line)
}
