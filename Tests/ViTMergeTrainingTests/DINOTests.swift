import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel
@testable import ViTMergeTraining

/// Self-distillation (`TrainMode.dino`): the loss and the centre against a reference computation,
/// the head's and the encoder's gradients against finite differences, seeded views, the teacher's
/// EMA, resuming bit for bit (teacher and centre included), thread-count independence, two ranks
/// against one process, and the checkpoint read back as a plain encoder.
final class DINOTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// A tiny encoder (16 patches of 7×7, width 16, no head), a head 16→12→12→6→10 with 2 local
    /// crops, and 120 MNIST images.
    func setup() throws -> (ViTConfig, LabeledImages, DINOSettings) {
        let task = try TaskDataset.load(path: Self.repo.appendingPathComponent("data/tasks/mnist.safetensors").path)
        let config = ViTConfig(
            imageSize: 28, patchSize: 7, inChannels: 1, numClasses: 0, embedDim: 16, depth: 2, numHeads: 2,
            mlpRatio: 2)
        let dino = DINOSettings(localCrops: 2, hidden: 12, bottleneck: 6, prototypes: 10, teacherMomentum: 0.9)
        return (config, task.train.take(Array(0..<120)), dino)
    }

    func settings(
        _ dino: DINOSettings, steps: Int = 1, batch: Int = 6, seed: UInt64 = 7, every: Int = 0
    )
        -> TrainSettings
    {
        TrainSettings(steps: steps, batchSize: batch, lr: 3e-3, seed: seed, checkpointEvery: every, dino: dino)
    }

    func dino(_ t: Trainer) -> DINOObjective { t.objective as! DINOObjective }

    func array(_ p: UnsafePointer<Float>, _ n: Int) -> [Float] { Array(UnsafeBufferPointer(start: p, count: n)) }
    func array(_ a: Arena) -> [Float] { array(a.base, a.count) }

    func testLossAndCentreMatchTheDefinition() throws {
        let (config, data, d) = try setup()
        let trainer = Trainer(
            model: ViT(config: config, seed: 1), train: data, mode: .dino, settings: settings(d, steps: 5))
        for _ in 0..<2 { _ = trainer.step() }  // a centre and a teacher of their own
        let o = dino(trainer)
        let center = array(o.center, d.prototypes).map(Double.init)
        XCTAssertTrue(center.contains { $0 != 0 }, "the centre must have moved")
        let loss = Double(trainer.objectiveLoss(step: 2))
        let (b, v, k) = (6, d.views, d.prototypes)
        let t = array(o.teacherHeadActs.logitsPointer, 2 * b * k).map(Double.init)
        let s = array(o.studentHeadActs.logitsPointer, v * b * k).map(Double.init)
        func softmax(_ x: [Double]) -> [Double] {
            let m = x.max()!
            let e = x.map { Foundation.exp($0 - m) }
            let z = e.reduce(0, +)
            return e.map { $0 / z }
        }
        func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).map { $0 * $1 }.reduce(0, +) }
        var want = 0.0, entropy = 0.0
        for i in 0..<b {
            var p: [[Double]] = []
            for iq in 0..<2 {
                let row = (0..<k).map { j -> Double in (t[(iq * b + i) * k + j] - center[j]) / 0.04 }
                p.append(softmax(row))
                entropy -= dot(p[iq], p[iq].map { $0 > 0 ? Foundation.log($0) : 0 }) / 2
            }
            for view in 0..<v {
                let row = (0..<k).map { j -> Double in s[(view * b + i) * k + j] / 0.1 }
                let logq = softmax(row).map { Foundation.log($0) }
                for iq in 0..<2 where iq != view { want -= dot(p[iq], logq) / Double(2 * (v - 1)) }
            }
        }
        XCTAssertEqual(loss, want / Double(b), accuracy: 1e-5 * abs(want / Double(b)))
        XCTAssertEqual(o.metrics[0].name, "entropy")
        XCTAssertEqual(o.metrics[0].value, entropy / Double(b), accuracy: 1e-5)
        XCTAssertEqual(o.metrics[1].value, want / Double(b) - entropy / Double(b), accuracy: 1e-5)
        XCTAssertGreaterThanOrEqual(o.metrics[1].value, -1e-6, "KL is never negative")
        // The next centre: 0.9·c + 0.1·mean of the teacher's logits over the 2·6 global views.
        for j in 0..<k {
            let column: [Double] = (0..<(2 * b)).map { r in t[r * k + j] }
            let mean = column.reduce(0, +) / Double(2 * b)
            XCTAssertEqual(Double(o.nextCenter[j]), 0.9 * center[j] + 0.1 * mean, accuracy: 1e-6)
        }
        XCTAssertEqual(array(o.center, k).map(Double.init), center, "the loss alone must not move the centre")
    }

    func testGradientsOfHeadAndEncoderMatchFiniteDifferences() throws {
        let (config, data, d) = try setup()
        let model = ViT(config: config, seed: 4)
        let trainer = Trainer(model: model, train: data, mode: .dino, settings: settings(d, steps: 5, batch: 2))
        for _ in 0..<2 { _ = trainer.step() }
        let aux = dino(trainer).headParameters
        _ = trainer.objectiveLoss(step: 3)
        let encoderGrads = array(trainer.grads), headGrads = array(aux.gradients)
        let encoderNames = [
            "cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.weight",
            "norm.weight",
        ]
        var checked = 0
        // The head's bottleneck z is small (weights of std 0.02), so its steps are smaller.
        for (arena, grads, names, h) in [
            (model.parameters.arena, encoderGrads, encoderNames, Float(1e-2)),
            (aux.parameters, headGrads, dino(trainer).head.names, Float(1e-4)),
        ] {
            for name in names {
                let region = arena.layout.regions.first { $0.name == name }!
                let range = region.offset..<(region.offset + region.shape.count)
                XCTAssertTrue(range.contains { grads[$0] != 0 }, "\(name): no gradient at all")
                for i in range.sorted(by: { abs(grads[$0]) > abs(grads[$1]) }).prefix(2) {
                    let orig = arena.base[i]
                    arena.base[i] = orig + h
                    let up = Double(trainer.objectiveLoss(step: 3))
                    arena.base[i] = orig - h
                    let down = Double(trainer.objectiveLoss(step: 3))
                    arena.base[i] = orig
                    let fd = (up - down) / (2 * Double(h))
                    XCTAssertEqual(
                        Double(grads[i]), fd, accuracy: 0.03 * abs(fd) + 3e-7 / Double(h),
                        "\(name)[\(i - region.offset)]")
                    checked += 1
                }
            }
        }
        XCTAssertEqual(checked, 2 * (encoderNames.count + 7))
    }

    func testL2NormalizeMatchesItsReferenceAndItsFiniteDifferences() {
        let (rows, cols) = (5, 17)
        var rng = RNG(seed: 3)
        var x = (0..<(rows * cols)).map { _ in Float(rng.normal()) }
        for q in 0..<cols { x[2 * cols + q] = 0 }  // a zero row: divided by eps, not by 0
        var y = [Float](repeating: 0, count: rows * cols), want = y, norms = [Float](repeating: 0, count: rows)
        L2Normalize.forward(out: &y, norms: &norms, inp: x, rows: rows, cols: cols, pool: ThreadPool(threads: 2))
        L2Normalize.forwardReference(out: &want, inp: x, rows: rows, cols: cols)
        for i in 0..<(rows * cols) { XCTAssertEqual(y[i], want[i], accuracy: 1e-6, "out[\(i)]") }
        let w = (0..<(rows * cols)).map { _ in Float(rng.normal()) }  // loss = ⟨w, y⟩
        var dx = [Float](repeating: 0, count: rows * cols)
        L2Normalize.backward(dinp: &dx, dout: w, out: y, norms: norms, rows: rows, cols: cols)
        for i in [0, 5, 16, 20, 60, 84] {
            var xp = x.map(Double.init), xm = xp
            xp[i] += 1e-4
            xm[i] -= 1e-4
            func loss(_ z: [Double]) -> Double {
                let r = i / cols, row = z[(r * cols)..<((r + 1) * cols)]
                let n = row.map { $0 * $0 }.reduce(0, +).squareRoot()
                return zip(row, w[(r * cols)..<((r + 1) * cols)]).map { $0 / n * Double($1) }.reduce(0, +)
            }
            XCTAssertEqual(Double(dx[i]), (loss(xp) - loss(xm)) / 2e-4, accuracy: 1e-3, "dx[\(i)]")
        }
    }

    func testViewsDependOnlyOnSeedStepPositionAndView() throws {
        let (_, data, d) = try setup()
        let crops = MultiCrop(settings: d)
        let size = data.imageSize, v = d.views
        func views(step: Int, positions: Range<Int>, threads: Int) -> [Float] {
            var out = [Float](repeating: 0, count: v * positions.count * size)
            out.withUnsafeMutableBufferPointer {
                crops.fill(
                    Array(positions)[...], data: data, seed: 5, step: step, firstPosition: positions.lowerBound,
                    into: $0.baseAddress!, pool: ThreadPool(threads: threads))
            }
            return out
        }
        let all = views(step: 2, positions: 0..<8, threads: 1)
        XCTAssertEqual(views(step: 2, positions: 0..<8, threads: 2), all, "threads must not change the views")
        let tail = views(step: 2, positions: 5..<8, threads: 1)
        for view in 0..<v {
            XCTAssertEqual(
                Array(tail[(view * 3 * size)..<((view + 1) * 3 * size)]),
                Array(all[((view * 8 + 5) * size)..<((view * 8 + 8) * size)]), "a rank at positions 5..<8, view \(view)"
            )
        }
        XCTAssertNotEqual(views(step: 3, positions: 0..<8, threads: 1), all, "another step, other views")
        // Global crops cover at least 0.4 of the image, local ones at most 0.4; no flips.
        for position in 0..<50 {
            for view in 0..<v {
                let (c, _, _) = crops.draw(seed: 5, step: 1, position: position, view: view, height: 28, width: 28)
                let area = Double(c.height * c.width) / 784
                XCTAssertFalse(c.flip)
                if view < 2 { XCTAssertGreaterThanOrEqual(area, 0.38) } else { XCTAssertLessThanOrEqual(area, 0.42) }
            }
        }
        for x in all { XCTAssertTrue((0...1).contains(x)) }
    }

    func testTeacherFollowsTheStudentByEMAOnTheCosineSchedule() throws {
        let (config, data, d) = try setup()
        XCTAssertEqual(d.teacherMomentum(step: 1, of: 10), 0.9, accuracy: 1e-12)
        XCTAssertEqual(DINOSettings().teacherMomentum(step: 101, of: 100), 1, accuracy: 1e-12)
        let model = ViT(config: config, seed: 2)
        let t = Trainer(model: model, train: data, mode: .dino, settings: settings(d, steps: 4))
        let o = dino(t)
        let n = model.table.layout.count
        XCTAssertEqual(
            array(o.teacherState.base, n), array(model.parameters.arena), "the teacher starts as the student")
        let teacherBefore = array(o.teacherState.base, n)
        _ = t.step()
        let m = Float(d.teacherMomentum(step: 1, of: 4))
        let student = array(model.parameters.arena), teacher = array(o.teacherState.base, n)
        XCTAssertNotEqual(student, teacherBefore, "the student must train")
        for i in stride(from: 0, to: n, by: 7) {
            XCTAssertEqual(teacher[i], m * teacherBefore[i] + (1 - m) * student[i], accuracy: 1e-6)
        }
    }

    func testPretrainingResumesBitExactlyWithTeacherAndCentre() throws {
        let (config, data, d) = try setup()
        let s = settings(d, steps: 6, batch: 6, seed: 5, every: 3)
        let model = ViT(config: config, seed: 2)
        let trainer = Trainer(model: model, train: data, mode: .dino, settings: s)
        try trainer.run()
        let state = NSTemporaryDirectory() + "vitmerge-dino-resume-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: state) }
        struct Killed: Error {}
        XCTAssertThrowsError(
            try Trainer(model: ViT(config: config, seed: 2), train: data, mode: .dino, settings: s).run(save: { t in
                try t.saveState(to: state)
                throw Killed()
            }))
        let resumed = ViT(config: config, seed: 99)
        let t2 = Trainer(model: resumed, train: data, mode: .dino, settings: s)
        try t2.restoreState(from: state)
        XCTAssertEqual(t2.optimizer.step, 3)
        XCTAssertTrue(array(dino(t2).center, d.prototypes).contains { $0 != 0 }, "the state must hold the centre")
        try t2.run()
        assertBitIdentical(model.parameters, resumed.parameters, "resumed DINO student differs")
        XCTAssertEqual(
            array(dino(trainer).headParameters.parameters).map(\.bitPattern),
            array(dino(t2).headParameters.parameters).map(\.bitPattern), "resumed student head differs")
        XCTAssertEqual(
            array(dino(trainer).teacherState).map(\.bitPattern), array(dino(t2).teacherState).map(\.bitPattern),
            "resumed teacher or centre differs")
    }

    func testOneAndTwoThreadsTrainTheSameBits() throws {
        let (config, data, d) = try setup()
        var runs: [[Float]] = []
        for threads in [1, 2] {
            let pool = ThreadPool(threads: threads)
            XCTAssertEqual(pool.threads, threads)
            let model = ViT(config: config, seed: 6, pool: pool)
            let t = Trainer(model: model, train: data, mode: .dino, settings: settings(d, steps: 3, batch: 10))
            try t.run()
            runs.append(
                array(model.parameters.arena) + array(dino(t).headParameters.parameters) + array(dino(t).teacherState))
        }
        XCTAssertEqual(runs[0].map(\.bitPattern), runs[1].map(\.bitPattern), "1 and 2 threads trained different bits")
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

    func testTwoRanksShareTheGradientAndTheCentreOfOneProcess() throws {
        let (config, data, d) = try setup()
        let start = ViTParameters(config: config)
        start.initialize(seed: 11)
        let s = settings(d, steps: 2, batch: 8, seed: 3)
        let single = Trainer(model: ViT(parameters: start.copy()), train: data, mode: .dino, settings: s)
        let loss = single.gradients(step: 0)
        let want = array(single.grads), wantHead = array(dino(single).headParameters.gradients)
        let wantCenter = array(dino(single).nextCenter, d.prototypes), wantMetrics = dino(single).metrics.map(\.value)
        try single.run()
        let wantTeacher = array(dino(single).teacherState)
        let got = try onRanks(2) { _, group in
            let t = Trainer(model: ViT(parameters: start.copy()), train: data, mode: .dino, settings: s, group: group)
            let o = t.objective as! DINOObjective
            let l = t.gradients(step: 0)
            let g = Array(UnsafeBufferPointer(start: t.grads.base, count: t.grads.count))
            let hg = Array(
                UnsafeBufferPointer(start: o.headParameters.gradients.base, count: o.headParameters.gradients.count))
            let c = Array(UnsafeBufferPointer(start: o.nextCenter, count: o.settings.prototypes))
            let m = o.metrics.map(\.value)
            try t.run()
            let teacher = Array(UnsafeBufferPointer(start: o.teacherState.base, count: o.teacherState.count))
            return (l, g, hg, c, m, teacher)
        }
        for (rank, (l, g, hg, c, m, teacher)) in got.enumerated() {
            XCTAssertEqual(l, loss, accuracy: 1e-5 * abs(loss), "rank \(rank): loss")
            XCTAssertEqual(g.map(\.bitPattern), got[0].1.map(\.bitPattern), "ranks must hold the same gradient")
            XCTAssertEqual(hg.map(\.bitPattern), got[0].2.map(\.bitPattern), "ranks: the same head gradient")
            XCTAssertEqual(c.map(\.bitPattern), wantCenter.map(\.bitPattern), "rank \(rank): the centre of one process")
            for (a, b) in zip(m, wantMetrics) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b))) }
            XCTAssertEqual(teacher.map(\.bitPattern), got[0].5.map(\.bitPattern), "the ranks' teachers diverged")
            for (name, a, b) in [("encoder", g, want), ("head", hg, wantHead), ("teacher", teacher, wantTeacher)] {
                let scale = b.map(abs).max()!
                let err = zip(a, b).map { abs($0 - $1) }.max()!
                XCTAssertGreaterThan(scale, 0)
                XCTAssertLessThanOrEqual(err, 1e-4 * scale, "2 ranks: \(name) off by \(err) (scale \(scale))")
            }
        }
    }

    func testCheckpointHoldsTheTeacherAndItsHeadAndLoadsAsAPlainEncoder() throws {
        let (config, data, d) = try setup()
        var config10 = config
        config10.numClasses = 10  // pretrain() drops the head for dino
        let pre = try pretrain(
            scheme: .dino, train: data, validation: data.take(Array(0..<10)), test: data.take(Array(0..<10)),
            classes: 10, config: config10, settings: settings(d, steps: 3, batch: 8), state: nil, resume: false,
            log: { _ in })
        XCTAssertEqual(pre.parameters.config.numClasses, 0)
        let head = try XCTUnwrap(pre.auxiliary)
        let path = NSTemporaryDirectory() + "vitmerge-dino-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try pre.save(to: path, metadata: ["data": "test"])
        let file = try SafeTensorsFile.read(path: path)
        XCTAssertEqual(try Checkpoint.auxiliaryTensors(file), head.layout.regions.map(\.name))
        XCTAssertTrue(file.names.contains("dino_head.last_layer.weight_v"), "\(file.names)")
        XCTAssertFalse(file.names.contains { $0.hasPrefix("teacher.") || $0 == "dino.center" }, "\(file.names)")
        let (loaded, meta) = try Checkpoint.load(path: path)
        assertBitIdentical(loaded, pre.parameters, "the encoder read back differs")
        XCTAssertEqual(meta["scheme"], "dino")
        XCTAssertTrue(meta["settings"]?.contains("\"prototypes\":10") ?? false, meta["settings"] ?? "")
    }
}
