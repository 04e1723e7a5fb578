import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel
@testable import ViTMergeTraining

/// Training with `TrainSettings.augmentation`: off, the batches are the stored (eval-transform)
/// images; on, each image's crop depends on (seed, step, position) only, so thread counts, rank
/// shares and a resumed run all see the same crops.
final class AugmentedTrainingTests: XCTestCase {
    let config = ViTConfig(
        imageSize: 16, patchSize: 4, inChannels: 3, numClasses: 4, embedDim: 16, depth: 1, numHeads: 2, mlpRatio: 2)

    /// 64 RGB 16×16 images whose class is the brightest quadrant, normalized with ImageNet's mean/std.
    func data() -> LabeledImages {
        var rng = RNG(seed: 21)
        let n = 64, plane = 16 * 16
        var images = [UInt8](repeating: 0, count: n * 3 * plane), labels = [Int32](repeating: 0, count: n)
        for i in 0..<n {
            let label = i % 4
            labels[i] = Int32(label)
            for c in 0..<3 {
                for y in 0..<16 {
                    for x in 0..<16 {
                        let bright = (y / 8) * 2 + x / 8 == label
                        images[(i * 3 + c) * plane + y * 16 + x] = UInt8(rng.int(below: 96) + (bright ? 128 : 0))
                    }
                }
            }
        }
        return LabeledImages(
            count: n, channels: 3, height: 16, width: 16, images: images, labels: labels,
            normalization: Normalization(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]))
    }

    /// The input the trainer fills for global batch 0 (one rank).
    func firstBatch(_ augmentation: Augmentation?) -> (input: [Float], expected: [Float]) {
        let train = data()
        let t = Trainer(
            model: ViT(config: config, seed: 1), train: train, mode: .full,
            settings: TrainSettings(steps: 1, batchSize: 8, seed: 4, augmentation: augmentation))
        _ = t.gradients(step: 0)
        let size = train.imageSize
        var expected = [Float](repeating: 0, count: 8 * size)
        train.fill(t.batchIndices(step: 0), input: &expected, labels: nil)
        return (Array(UnsafeBufferPointer(start: t.input, count: 8 * size)), expected)
    }

    func testWithoutAugmentationTheBatchIsTheEvalTransform() {
        let off = firstBatch(nil)
        XCTAssertEqual(off.input.map(\.bitPattern), off.expected.map(\.bitPattern))
        // Scale and ratio fixed at 1, no flip: the augmentation path reproduces the stored images exactly.
        let identity = firstBatch(Augmentation(scale: [1, 1], ratio: [1, 1], flipProbability: 0))
        XCTAssertEqual(identity.input.map(\.bitPattern), identity.expected.map(\.bitPattern))
        let on = firstBatch(Augmentation())
        XCTAssertNotEqual(on.input, on.expected, "the default augmentation should change the batch")
    }

    func testAugmentedBatchesDoNotDependOnThreadsOrRankShares() {
        let train = data(), aug = Augmentation(interpolation: .bilinear), size = train.imageSize
        let indices = ArraySlice([5, 9, 2, 40, 33, 17, 8, 60, 1])
        func fill(_ idx: ArraySlice<Int>, first: Int, pool: ThreadPool) -> [Float] {
            var out = [Float](repeating: 0, count: idx.count * size)
            var labels = [Int32](repeating: -1, count: idx.count)
            train.fill(
                idx, augmentation: aug, seed: 3, step: 11, firstPosition: first, input: &out, labels: &labels,
                pool: pool)
            XCTAssertEqual(labels, idx.map { train.labels[$0] })
            return out
        }
        let one = ThreadPool(threads: 1), two = ThreadPool(threads: 2)
        XCTAssertEqual(two.threads, 2)
        let whole = fill(indices, first: 0, pool: one)
        XCTAssertEqual(whole.map(\.bitPattern), fill(indices, first: 0, pool: two).map(\.bitPattern))
        // A rank holding positions 4..<9 of the global batch fills what the single process has there.
        let share = fill(indices[(indices.startIndex + 4)...], first: 4, pool: two)
        XCTAssertEqual(share.map(\.bitPattern), whole[(4 * size)...].map(\.bitPattern))
        XCTAssertNotEqual(fill(indices, first: 0, pool: one), fill(indices, first: 1, pool: one))
    }

    func testAugmentedRunResumesToTheSameWeightsAndRefusesOtherStates() throws {
        let train = data()
        let settings = TrainSettings(
            steps: 10, batchSize: 16, lr: 3e-3, seed: 5, checkpointEvery: 4, augmentation: Augmentation())
        let state = NSTemporaryDirectory() + "vitmerge-augment-resume-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: state) }

        let straight = ViT(config: config, seed: 9)
        try Trainer(model: straight, train: train, mode: .full, settings: settings).run()

        struct Killed: Error {}
        XCTAssertThrowsError(
            try Trainer(model: ViT(config: config, seed: 9), train: train, mode: .full, settings: settings).run(
                save: { t in
                    try t.saveState(to: state)
                    if t.optimizer.step == 8 { throw Killed() }
                }))
        let resumed = ViT(config: config, seed: 77)
        let trainer = Trainer(model: resumed, train: train, mode: .full, settings: settings)
        try trainer.restoreState(from: state)
        XCTAssertEqual(trainer.optimizer.step, 8)
        try trainer.run()
        assertBitIdentical(straight.parameters, resumed.parameters, "resumed augmented run differs")

        var plain = settings
        plain.augmentation = nil
        let unaugmented = ViT(config: config, seed: 9)
        try Trainer(model: unaugmented, train: train, mode: .full, settings: plain).run()
        XCTAssertNotEqual(
            unaugmented.parameters["head.weight"]!.array, straight.parameters["head.weight"]!.array,
            "augmentation should change what is learned")
        // A state written without augmentation is not resumed with it (nor the other way round).
        let other = Trainer(model: ViT(config: config, seed: 9), train: train, mode: .full, settings: plain)
        XCTAssertThrowsError(try other.restoreState(from: state)) {
            XCTAssertTrue("\($0)".contains("same command line"), "\($0)")
        }
    }
}
