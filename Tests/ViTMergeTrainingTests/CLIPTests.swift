import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel
@testable import ViTMergeTraining

/// Image–text contrastive pre-training (`TrainMode.clip`): tokens, the gradients of the encoder,
/// text tower, projections and logit scale against finite differences, resuming bit for bit,
/// thread-count independence, data-parallel ranks against one process, captions that follow the
/// validation split, and the checkpoint read back as a plain encoder and as a zero-shot model.
final class CLIPTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Per label, a caption in a few wordings, so that captions vary within a class.
    static func caption(label: Int, classes: [String], variant: Int) -> String {
        ["digit \(classes[label])", "the digit \(classes[label]) by hand", "\(classes[label]) handwritten"][variant % 3]
    }

    /// A tiny encoder (16 patches of 7×7, width 18, no head) with a 2-block text tower of width 8
    /// (2 heads) and a joint space of 6; 120 MNIST images with captions of up to 24 bytes.
    func setup() throws -> (ViTConfig, LabeledImages, CLIPSettings, [String]) {
        let task = try TaskDataset.load(path: Self.repo.appendingPathComponent("data/tasks/mnist.safetensors").path)
        let config = ViTConfig(
            imageSize: 28, patchSize: 7, inChannels: 1, numClasses: 0, embedDim: 18, depth: 2, numHeads: 3,
            mlpRatio: 2)
        var data = task.train.take(Array(0..<120))
        data.captions = Captions(
            (0..<120).map { Self.caption(label: Int(data.labels[$0]), classes: task.classes, variant: $0) }, width: 24)
        let clip = CLIPSettings(textDepth: 2, textDim: 8, textHeads: 2, embedDim: 6, captionBytes: 24)
        return (config, data, clip, task.classes)
    }

    func settings(
        _ clip: CLIPSettings, steps: Int = 1, batch: Int = 6, seed: UInt64 = 7, every: Int = 0
    )
        -> TrainSettings
    {
        TrainSettings(steps: steps, batchSize: batch, lr: 3e-3, seed: seed, checkpointEvery: every, clip: clip)
    }

    func clipObjective(_ t: Trainer) -> CLIPObjective { t.objective as! CLIPObjective }

    func array(_ a: Arena) -> [Float] { Array(UnsafeBufferPointer(start: a.base, count: a.count)) }

    func testTokensAreTheBytesThenEndOfTextThenPadding() {
        let c = ViTConfig(imageSize: 28, patchSize: 7, inChannels: 1, numClasses: 0, embedDim: 8, depth: 1, numHeads: 2)
        let towers = CLIPTowers(encoder: c, captionBytes: 4, depth: 1, dim: 4, heads: 1, embedDim: 3)
        var ids = [Int32](repeating: 7, count: 5)
        let short: [UInt8] = [65, 98, 0, 0, 0, 0]
        XCTAssertEqual(towers.tokenize(short, width: 6, into: &ids), 2)
        XCTAssertEqual(ids, [65, 98, 256, 0, 0])
        let long: [UInt8] = Array("héllo".utf8)  // 6 bytes, cut to 4
        XCTAssertEqual(towers.tokenize(long, width: long.count, into: &ids), 4)
        XCTAssertEqual(ids, [104, 0xC3, 0xA9, 108, 256])
        XCTAssertEqual(towers.layout.regions.first { $0.name == "logit_scale" }?.shape.dims, [])
    }

    func testPromptsForTheGlyphNames() {
        XCTAssertEqual(
            ZeroShotPrompts.prompts(
                classes: ["latin_k", "greek_gamma", "cyrillic_be", "hiragana_a", "A"], template: nil),
            ["capital letter K", "Greek capital letter gamma", "Cyrillic capital letter be", "hiragana a", "A"])
        XCTAssertEqual(
            ZeroShotPrompts.prompts(classes: ["A", "B"], template: "capital letter {}"),
            ["capital letter A", "capital letter B"])
    }

    /// The symmetric InfoNCE and its gradients (embeddings and log scale) against Double differences.
    func testContrastiveLossMatchesFiniteDifferences() {
        let n = 5, e = 3
        var rng = RNG(seed: 3, stream: 1)
        var x = (0..<(2 * n * e)).map { _ in Float(rng.normal()) }
        var logScale: Float = 1.3
        func loss(_ x: [Float], _ t: Float) -> Double {
            var logits = [Float](repeating: 0, count: n * n), p = logits, q = logits
            return x.withUnsafeBufferPointer {
                ContrastiveLoss.forward(
                    logits: &logits, rowProbs: &p, colProbs: &q, image: $0.baseAddress!, text: $0.baseAddress! + n * e,
                    count: n, dim: e, scale: exp(t)
                ).loss
            }
        }
        var logits = [Float](repeating: 0, count: n * n), p = logits, q = logits
        var dx = [Float](repeating: 0, count: 2 * n * e)
        let dt = x.withUnsafeBufferPointer { xs in
            _ = ContrastiveLoss.forward(
                logits: &logits, rowProbs: &p, colProbs: &q, image: xs.baseAddress!, text: xs.baseAddress! + n * e,
                count: n, dim: e, scale: exp(logScale))
            return dx.withUnsafeMutableBufferPointer { d in
                ContrastiveLoss.backward(
                    dimage: d.baseAddress!, dtext: d.baseAddress! + n * e, logits: logits, rowProbs: p, colProbs: q,
                    image: xs.baseAddress!, text: xs.baseAddress! + n * e, count: n, dim: e, scale: exp(logScale))
            }
        }
        let h: Float = 1e-3
        for i in 0..<(2 * n * e) {
            let o = x[i]
            x[i] = o + h
            let up = loss(x, logScale)
            x[i] = o - h
            let down = loss(x, logScale)
            x[i] = o
            let fd = (up - down) / Double(2 * h)
            XCTAssertEqual(Double(dx[i]), fd, accuracy: 2e-3 * abs(fd) + 1e-4, "embedding \(i)")
        }
        let o = logScale
        logScale = o + h
        let up = loss(x, logScale)
        logScale = o - h
        let down = loss(x, logScale)
        XCTAssertEqual(dt, (up - down) / Double(2 * h), accuracy: 2e-3 * abs(dt) + 1e-4, "log scale")

        // L2 normalization: d/dx of Σ w ⊙ x/‖x‖.
        let w: [Float] = [0.3, -1.2, 0.7]
        var v: [Float] = [0.5, -2, 1.5]
        func f(_ v: [Float]) -> Double {
            var y = [Float](repeating: 0, count: 3), nrm: Float = 0
            L2Normalize.forward(out: &y, norms: &nrm, inp: v, rows: 1, cols: 3)
            return zip(y, w).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        var y = [Float](repeating: 0, count: 3), nrm: Float = 0, dv = y
        L2Normalize.forward(out: &y, norms: &nrm, inp: v, rows: 1, cols: 3)
        L2Normalize.backward(dinp: &dv, dout: w, out: y, norms: &nrm, rows: 1, cols: 3)
        for i in 0..<3 {
            let o = v[i]
            v[i] = o + h
            let up = f(v)
            v[i] = o - h
            let down = f(v)
            v[i] = o
            XCTAssertEqual(Double(dv[i]), (up - down) / Double(2 * h), accuracy: 1e-3, "L2 normalize \(i)")
        }
    }

    /// Central differences of the objective's loss on a fixed batch for the largest gradients of
    /// each tensor named, in the model's arena or the towers'.
    func testGradientsOfEncoderTextTowerProjectionsAndScaleMatchFiniteDifferences() throws {
        let (config, data, clip, _) = try setup()
        let model = ViT(config: config, seed: 4)
        let trainer = Trainer(model: model, train: data, mode: .clip, settings: settings(clip))
        let aux = clipObjective(trainer).towerParameters
        _ = trainer.objectiveLoss(step: 3)
        let encoderGrads = array(trainer.grads), towerGrads = array(aux.gradients)
        let encoderNames = [
            "cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.weight",
            "norm.weight", "norm.bias",
        ]
        let towerNames = [
            "text.token_embedding.weight", "text.positional_embedding", "text.blocks.0.attn.qkv.weight",
            "text.blocks.1.mlp.fc1.weight", "text.blocks.1.norm2.bias", "text.ln_final.weight", "text.ln_final.bias",
            "text_projection", "visual.proj", "logit_scale",
        ]
        var checked = 0
        for (arena, grads, names) in [
            (model.parameters.arena, encoderGrads, encoderNames), (aux.parameters, towerGrads, towerNames),
        ] {
            for name in names {
                let region = arena.layout.regions.first { $0.name == name }!
                let range = region.offset..<(region.offset + region.shape.count)
                XCTAssertTrue(range.contains { grads[$0] != 0 }, "\(name): no gradient at all")
                for i in range.sorted(by: { abs(grads[$0]) > abs(grads[$1]) }).prefix(3) {
                    // The text embeddings are ~0.02 and feed a LayerNorm: a smaller step stays linear.
                    let orig = arena.base[i],
                        h: Float = name.hasPrefix("text.") && name.contains("embedding") ? 1e-3 : 1e-2
                    arena.base[i] = orig + h
                    let up = Double(trainer.objectiveLoss(step: 3))
                    arena.base[i] = orig - h
                    let down = Double(trainer.objectiveLoss(step: 3))
                    arena.base[i] = orig
                    let fd = (up - down) / (2 * Double(h))
                    XCTAssertEqual(
                        Double(grads[i]), fd, accuracy: 0.03 * abs(fd) + 5e-5, "\(name)[\(i - region.offset)]")
                    checked += 1
                }
            }
        }
        XCTAssertEqual(checked, 3 * 16 + 1, "every tensor's top three (logit_scale has one value)")
    }

    func testPretrainingLearnsResumesBitExactlyAndClampsTheScale() throws {
        let (config, data, clip) = try {
            let s = try setup(); return (s.0, s.1, s.2)
        }()
        // Eight pairs seen again and again: the loss must fall well below ln 8 (all pairs alike)
        // and the matching pairs must be found.
        let few = data.take(Array(0..<8))
        let learner = Trainer(
            model: ViT(config: config, seed: 2), train: few, mode: .clip, settings: settings(clip, steps: 40, batch: 8))
        let first = learner.objectiveLoss(step: 0)
        var logged: [StepLog] = []
        try learner.run(log: { logged.append($0) })
        let last = learner.objectiveLoss(step: 0)
        XCTAssertLessThan(
            last, min(first, Float(log(8.0))) * 0.7, "contrastive loss should fall (\(first) → \(last))")
        XCTAssertEqual(logged.last!.metrics.map(\.name), ["logit_scale", "acc_i2t"])
        XCTAssertGreaterThan(logged.last!.metrics[1].value, 0.25, "image→text accuracy on its pairs (chance 1/8)")

        let s = settings(clip, steps: 30, batch: 12, seed: 5, every: 15)
        let model = ViT(config: config, seed: 2)
        let trainer = Trainer(model: model, train: data, mode: .clip, settings: s)
        let towers = clipObjective(trainer).towerParameters
        let towersBefore = array(towers.parameters)
        try trainer.run()
        XCTAssertNotEqual(towersBefore, array(towers.parameters), "the towers must train")

        let state = NSTemporaryDirectory() + "vitmerge-clip-resume-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: state) }
        struct Killed: Error {}
        XCTAssertThrowsError(
            try Trainer(model: ViT(config: config, seed: 2), train: data, mode: .clip, settings: s).run(save: { t in
                try t.saveState(to: state)
                throw Killed()
            }))
        let resumed = ViT(config: config, seed: 99)
        let t2 = Trainer(model: resumed, train: data, mode: .clip, settings: s)
        let o2 = clipObjective(t2)
        o2.towers.initialize(o2.towerParameters.parameters, seed: 123)  // the state must supply the towers
        try t2.restoreState(from: state)
        XCTAssertEqual(t2.optimizer.step, 15)
        try t2.run()
        assertBitIdentical(
            model.parameters, resumed.parameters, "resumed CLIP encoder differs from the uninterrupted run")
        XCTAssertEqual(
            array(towers.parameters).map(\.bitPattern), array(o2.towerParameters.parameters).map(\.bitPattern),
            "resumed CLIP towers differ from the uninterrupted run")

        // The scale is clamped to [0, ln 100] after an update, as open_clip's.
        let t = o2.towerParameters.parameters.base + o2.towers.logitScale
        t[0] = 7
        o2.didUpdate(step: 1, of: 1)
        XCTAssertEqual(t[0], Float(log(100.0)))
        t[0] = -1
        o2.didUpdate(step: 1, of: 1)
        XCTAssertEqual(t[0], 0)
    }

    func testOneAndTwoThreadsTrainTheSameBits() throws {
        let (config, data, clip, _) = try setup()
        var runs: [(ViTParameters, [Float])] = []
        for threads in [1, 2] {
            let pool = ThreadPool(threads: threads)
            XCTAssertEqual(pool.threads, threads)
            let model = ViT(config: config, seed: 6, pool: pool)
            let t = Trainer(model: model, train: data, mode: .clip, settings: settings(clip, steps: 4, batch: 12))
            try t.run()
            runs.append((model.parameters, array(clipObjective(t).towerParameters.parameters)))
        }
        assertBitIdentical(runs[0].0, runs[1].0, "1 and 2 threads trained different encoders")
        XCTAssertEqual(runs[0].1.map(\.bitPattern), runs[1].1.map(\.bitPattern), "1 and 2 threads: towers differ")
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

    /// The loss couples the whole global batch: 2 and 3 ranks gather every rank's embeddings and
    /// must compute the single process's loss and gradients (up to float summation order), the
    /// same bits on every rank, and train to identical parameters.
    func testRanksGatherTheGlobalBatchAndMatchOneProcess() throws {
        let (config, data, clip, _) = try setup()
        let start = ViTParameters(config: config)
        start.initialize(seed: 11)
        let s = settings(clip, steps: 4, batch: 16, seed: 3)
        @Sendable func towerGradients(_ t: Trainer) -> [Float] {
            let g = t.objective.auxiliary!.gradients
            return Array(UnsafeBufferPointer(start: g.base, count: g.count))
        }
        let single = Trainer(model: ViT(parameters: start.copy()), train: data, mode: .clip, settings: s)
        let loss = single.gradients(step: 0)
        let want = array(single.grads), wantTowers = towerGradients(single)
        for size in [2, 3] {  // 3 ranks share 16 images as 5, 5, 6
            let got = try onRanks(size) { _, group in
                let t = Trainer(
                    model: ViT(parameters: start.copy()), train: data, mode: .clip, settings: s, group: group)
                let l = t.gradients(step: 0)
                return (l, Array(UnsafeBufferPointer(start: t.grads.base, count: t.grads.count)), towerGradients(t))
            }
            for (rank, (l, g, tg)) in got.enumerated() {
                XCTAssertEqual(l, loss, accuracy: 1e-5 * abs(loss), "clip \(size) ranks, rank \(rank): loss")
                XCTAssertEqual(g.map(\.bitPattern), got[0].1.map(\.bitPattern), "ranks must hold the same gradient")
                XCTAssertEqual(tg.map(\.bitPattern), got[0].2.map(\.bitPattern), "ranks: the same tower gradient")
                for (name, a, b) in [("encoder", g, want), ("towers", tg, wantTowers)] {
                    let scale = b.map(abs).max()!
                    let err = zip(a, b).map { abs($0 - $1) }.max()!
                    XCTAssertGreaterThan(scale, 0)
                    XCTAssertLessThanOrEqual(err, 1e-5 * scale, "clip \(size) ranks: \(name) gradient off by \(err)")
                }
            }
        }
        let runs = try onRanks(2) { _, group in
            let t = Trainer(model: ViT(parameters: start.copy()), train: data, mode: .clip, settings: s, group: group)
            try t.run()
            let d = t.objective.auxiliary!.parameters
            return (t.model.parameters, Array(UnsafeBufferPointer(start: d.base, count: d.count)))
        }
        assertBitIdentical(runs[0].0, runs[1].0, "the ranks' encoders diverged")
        XCTAssertEqual(runs[0].1.map(\.bitPattern), runs[1].1.map(\.bitPattern), "the ranks' towers diverged")
    }

    func testCaptionsFollowTheValidationSplit() throws {
        let (_, data, _, classes) = try setup()
        let task = TaskDataset(
            name: "t", classes: classes, source: "", license: "", train: data, test: data.take([0, 1]),
            validation: nil)
        let (train, validation) = task.splitValidation(fraction: 0.2, seed: 4)
        XCTAssertEqual(train.count + validation.count, data.count)
        XCTAssertGreaterThan(validation.count, 0)
        let texts = (0..<data.count).map { data.captions!.text($0) }
        let (ti, vi) = task.splitIndices(fraction: 0.2, seed: 4)
        for (split, rows) in [(train, ti), (validation, vi)] {
            let c = try XCTUnwrap(split.captions)
            XCTAssertEqual(c.count, split.count)
            for j in 0..<split.count {
                XCTAssertEqual(c.text(j), texts[rows[j]])
                XCTAssertTrue(c.text(j).contains(classes[Int(split.labels[j])]), "caption \(j) names its label")
            }
        }
    }

    func testCheckpointHoldsTheTowersLoadsAsAnEncoderAndClassifiesZeroShot() throws {
        let (config, data, clip, classes) = try setup()
        var withHead = config
        withHead.numClasses = 10  // pretrain() drops the head for clip
        var uncaptioned = data
        uncaptioned.captions = nil
        XCTAssertThrowsError(
            try pretrain(
                scheme: .clip, train: uncaptioned, validation: data, test: data, classes: 10, config: withHead,
                settings: settings(clip), state: nil, resume: false, log: { _ in })
        ) { XCTAssertTrue("\($0)".contains("--captions"), "\($0)") }
        let pre = try pretrain(
            scheme: .clip, train: data, validation: data.take(Array(0..<10)), test: data.take(Array(0..<10)),
            classes: 10, config: withHead, settings: settings(clip, steps: 3, batch: 8), state: nil, resume: false,
            log: { _ in })
        XCTAssertEqual(pre.parameters.config.numClasses, 0)
        let towers = try XCTUnwrap(pre.auxiliary)
        let path = NSTemporaryDirectory() + "vitmerge-clip-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try pre.save(to: path)
        let file = try SafeTensorsFile.read(path: path)
        for name in ["text.token_embedding.weight", "text.positional_embedding", "text_projection", "visual.proj"] {
            XCTAssertTrue(file.names.contains(name), name)
        }
        XCTAssertEqual(file.info("logit_scale")?.shape, [])
        XCTAssertEqual(try Checkpoint.auxiliaryTensors(file), towers.layout.regions.map(\.name))
        let (loaded, meta) = try Checkpoint.load(path: path)
        assertBitIdentical(loaded, pre.parameters, "the encoder read back differs")
        XCTAssertEqual(meta["scheme"], "clip")
        let model = try CLIPModel.load(path: path)
        XCTAssertEqual(model.settings, clip)
        XCTAssertEqual(array(model.parameters).map(\.bitPattern), array(towers).map(\.bitPattern))
        let result = model.zeroShot(
            prompts: ZeroShotPrompts.prompts(classes: classes, template: "digit {}"), data: data.take(Array(0..<40)))
        XCTAssertEqual(result.count, 40)
        XCTAssertTrue(result.accuracy >= 0 && result.accuracy <= 1)

        // An encoder without towers is refused, naming the file.
        let plain = NSTemporaryDirectory() + "vitmerge-clip-plain-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: plain) }
        try Checkpoint.save(pre.parameters, to: plain, metadata: ["scheme": "mae"])
        XCTAssertThrowsError(try CLIPModel.load(path: plain)) {
            guard case TrainingError.noTextTower(let p, _) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(p, plain)
        }
    }
}
