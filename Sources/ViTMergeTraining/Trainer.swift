import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel

/// How the encoder and head are trained.
public enum TrainMode: String, Codable, Sendable, CaseIterable {
    /// Encoder and a fresh head jointly (also supervised pre-training).
    case full
    /// Encoder only, with the (probed) head frozen bit-identically.
    case aligned
    /// Self-supervised masked image modeling (pre-training on unlabeled images, SimMIM-style):
    /// a random `maskRatio` of each image's patches is replaced by −1 (outside the [0, 1] pixel
    /// range, so the patch embedding of a masked patch acts as a learned mask token); a per-token
    /// linear decoder (stored as the head, num_classes = patch pixels) reconstructs the masked
    /// pixels; the loss is their mean squared error. Labels are not used.
    case masked = "mim"
    /// Linearized (tangent-space) fine-tuning, aligned: the model is replaced by its first-order
    /// Taylor expansion at the starting point θ0, f_lin(x; θ) = f(x; θ0) + J(θ0)·(θ − θ0); the
    /// encoder trains, the (probed) head stays frozen. Forward = primal at θ0 plus a JVP; the
    /// gradient is the ordinary backward at θ0 with f_lin's loss gradient.
    case linearized
}

/// Errors that stop training.
public enum TrainingError: Error, CustomStringConvertible {
    /// The loss or a gradient became NaN or ±∞ at `step` (1-based); `tensor` is the first
    /// parameter or gradient tensor, in checkpoint order, holding a non-finite value.
    case nonFinite(step: Int, loss: Float, tensor: String)
    /// Stopped by Ctrl-C (`Interrupt`) after `step` steps, once the state had been saved.
    case interrupted(step: Int)

    public var description: String {
        switch self {
        case .nonFinite(let step, let loss, let tensor):
            "training diverged at step \(step): loss \(loss), first non-finite tensor \(tensor); the update was not applied and no checkpoint was written for this step (the last one on disk is intact). Lower --lr, keep --clip on, or check the data"
        case .interrupted(let step):
            "stopped by Ctrl-C after step \(step); the training state was saved at that step (when a --state file was given): rerun the same command with --resume to continue"
        }
    }
}

/// Hyper-parameters of one training run (AdamW, warm-up + cosine, clipping).
public struct TrainSettings: Codable, Sendable, Equatable {
    public var steps: Int
    public var batchSize: Int
    public var lr: Float
    public var warmupSteps: Int
    public var weightDecay: Float
    public var clipNorm: Double
    public var seed: UInt64
    /// Validation every this many steps (0 = only at the end).
    public var evalEvery: Int
    /// Resumable state written every this many steps (0 = only at the end).
    public var checkpointEvery: Int
    /// Fraction of patches masked per image (masked image modeling only).
    public var maskRatio: Double

    public init(
        steps: Int, batchSize: Int = 32, lr: Float = 1e-3, warmupSteps: Int? = nil, weightDecay: Float = 0.05,
        clipNorm: Double = 1, seed: UInt64 = 0, evalEvery: Int = 0, checkpointEvery: Int = 0, maskRatio: Double = 0.6
    ) {
        self.steps = steps
        self.batchSize = batchSize
        self.lr = lr
        self.warmupSteps = warmupSteps ?? max(1, steps / 10)
        self.weightDecay = weightDecay
        self.clipNorm = clipNorm
        self.seed = seed
        self.evalEvery = evalEvery
        self.checkpointEvery = checkpointEvery
        self.maskRatio = maskRatio
    }

    public var json: String { String(decoding: try! JSONEncoder.sorted.encode(self), as: UTF8.self) }
}

extension JSONEncoder {
    static var sorted: JSONEncoder { let e = JSONEncoder(); e.outputFormatting = [.sortedKeys]; return e }
}

/// One line of training progress.
public struct StepLog: Sendable {
    public let step: Int, steps: Int
    public let loss: Float
    public let lr: Float
    public let gradNorm: Double
    public let imagesPerSecond: Double
    public let secondsLeft: Double
    public var validationAccuracy: Double?
}

/// Accuracy and mean cross-entropy of `model` on `data`.
/// `acts` may be passed in to reuse one activation arena across many evaluations (allocating
/// and first-touching it costs more than a forward pass of a small model).
/// With `tangent` (laid out like the parameters) the linearized model is evaluated:
/// f_lin = f(x; θ_model) + J(θ_model)·tangent (tangent-space models and their merges).
public func evaluate(
    _ model: ViT, on data: LabeledImages, batchSize: Int = 128, acts reused: ViTActivations? = nil,
    tangent: UnsafePointer<Float>? = nil, tangents reusedTangents: ViTTangents? = nil
)
    -> (accuracy: Double, loss: Double)
{
    let (correct, lossSum) = evaluateSums(
        model, on: data, range: 0..<data.count, batchSize: batchSize, acts: reused,
        tangent: tangent, tangents: reusedTangents)
    return (Double(correct) / Double(max(data.count, 1)), lossSum / Double(max(data.count, 1)))
}

/// Correct predictions and summed cross-entropy over examples `range` of `data` (see `evaluate`).
func evaluateSums(
    _ model: ViT, on data: LabeledImages, range: Range<Int>, batchSize: Int = 128, acts reused: ViTActivations? = nil,
    tangent: UnsafePointer<Float>? = nil, tangents reusedTangents: ViTTangents? = nil
) -> (correct: Int, lossSum: Double) {
    precondition(model.config.numClasses > 0, "evaluate needs a model with a head")
    let acts = reused ?? model.makeActivations(capacity: min(batchSize, max(range.count, 1)))
    let capacity = acts.capacity
    let tangents = tangent == nil ? nil : (reusedTangents ?? ViTTangents(config: model.config, capacity: capacity))
    let k = model.config.numClasses
    var input = [Float](repeating: 0, count: capacity * data.imageSize)
    var labels = [Int32](repeating: 0, count: capacity)
    var correct = 0, lossSum = 0.0
    var start = range.lowerBound
    while start < range.upperBound {
        let b = min(capacity, range.upperBound - start)
        input.withUnsafeMutableBufferPointer { inp in
            labels.withUnsafeMutableBufferPointer { lab in
                data.fill(start..<(start + b), input: inp.baseAddress!, labels: lab.baseAddress!)
                model.forward(input: inp.baseAddress!, batch: b, acts: acts)
                if let tangent, let tangents {
                    model.addJVP(tangent: tangent, batch: b, acts: acts, tangents: tangents)
                }
                lossSum += Double(model.crossEntropy(labels: lab.baseAddress!, batch: b, acts: acts)) * Double(b)
            }
        }
        let logits = acts.output
        for i in 0..<b {
            var best = 0
            for j in 1..<k where logits[i * k + j] > logits[i * k + best] { best = j }
            if best == Int(labels[i]) { correct += 1 }
        }
        start += b
    }
    return (correct, lossSum)
}

/// Supervised training of a ViT on labelled images: full fine-tuning / pre-training, or aligned
/// fine-tuning with the head frozen. Deterministic for a seed, and resumable to the same bits.
///
/// Data-parallel over a `Collective` of N ranks: every rank draws the same global batch, computes
/// the loss and gradients of its contiguous share (scaled by 1/global batch, so the sum over ranks
/// is the global batch's gradient), and the gradients are summed across ranks; every rank then
/// applies the same AdamW update, so the parameters stay identical (checked at every save).
public final class Trainer {
    public let model: ViT
    public let mode: TrainMode
    public let settings: TrainSettings
    public let optimizer: AdamWOptimizer
    public let group: Collective
    /// This rank's images within each global batch.
    public let share: Range<Int>
    /// How gradients are summed across ranks (when there are several).
    public var gradientSync = GradientSync.overlapped {
        didSet { reducer?.sync = gradientSync }
    }
    /// Times the ranks' parameters were found to differ at a save and were reset to rank 0's.
    public internal(set) var resynchronizations = 0
    let train: LabeledImages
    let sampler: BatchSampler
    let reducer: GradientReducer?
    /// Some rank was interrupted (Ctrl-C) before the last step's all-reduce.
    var peerInterrupted = false
    let acts: ViTActivations
    let grads: Arena
    var input: [Float]
    var labels: [Int32]
    /// Linearized mode: the trained parameters θ (the model keeps θ0), θ − θ0, and tangent storage.
    public let theta: ViTParameters?
    var delta: [Float] = []
    var tangents: ViTTangents?
    /// Masked image modeling buffers: target pixels, decoder output / its gradient, token gradient.
    var target: [Float] = [], decoded: [Float] = [], tokenGradient: [Float] = []
    var isMasked: [Bool] = []
    /// The current epoch's example order (drawn once per epoch, not per step).
    var epochOrder: [Int] = []
    var orderEpoch = -1

    /// For `.masked`, the model's head is the decoder: num_classes must equal the patch's pixel count.
    /// With a `group` of N ranks, the global batch (`settings.batchSize`, at most the training set)
    /// must hold at least N images.
    public init(
        model: ViT, train: LabeledImages, mode: TrainMode, settings: TrainSettings,
        group: Collective = SingleProcess.shared
    ) {
        precondition(
            mode != .masked || model.config.numClasses == model.config.patchDim,
            "masked image modeling needs num_classes = patch pixels (\(model.config.patchDim)): the head is the decoder"
        )
        self.model = model
        self.mode = mode
        self.settings = settings
        self.train = train
        self.group = group
        sampler = BatchSampler(count: train.count, batchSize: settings.batchSize, seed: settings.seed)
        precondition(
            sampler.batchSize >= group.size,
            "a global batch of \(sampler.batchSize) cannot be shared by \(group.size) ranks")
        share = group.share(of: sampler.batchSize)
        optimizer = AdamWOptimizer(table: model.table, weightDecay: settings.weightDecay) { name in
            mode == .full || mode == .masked || !ParameterTable.isHead(name)
        }
        theta = mode == .linearized ? model.parameters.copy() : nil
        if mode == .linearized {
            delta = [Float](repeating: 0, count: model.table.layout.count)
            tangents = ViTTangents(config: model.config, capacity: share.count)
        }
        acts = model.makeActivations(capacity: share.count)
        grads = model.makeGradients()
        // Summed across ranks: the trainable span (aligned and linearized runs leave the head out).
        reducer =
            group.size == 1
            ? nil
            : GradientReducer(
                group: group, gradients: grads.base,
                span: mode == .full || mode == .masked ? 0..<grads.count : 0..<model.table.encoderEnd)
        input = [Float](repeating: 0, count: share.count * train.imageSize)
        labels = [Int32](repeating: 0, count: share.count)
        if mode == .masked {
            let c = model.config, b = share.count
            target = [Float](repeating: 0, count: b * c.numPatches * c.patchDim)
            decoded = [Float](repeating: 0, count: b * c.tokens * c.patchDim)
            tokenGradient = [Float](repeating: 0, count: b * c.tokens * c.embedDim)
            isMasked = [Bool](repeating: false, count: b * c.numPatches)
        }
    }

    public var schedule: LRSchedule {
        LRSchedule(peak: settings.lr, warmupSteps: settings.warmupSteps, totalSteps: settings.steps)
    }

    /// One optimizer step on batch `optimizer.step` (0-based); returns the loss, lr and gradient norm.
    public func step() -> (loss: Float, lr: Float, gradNorm: Double) {
        let s = optimizer.step
        let loss = gradients(step: s)
        let lr = schedule.lr(step: s + 1)
        let norm = optimizer.update(
            parameters: trained, grads: grads, lr: lr, maxNorm: settings.clipNorm, pool: model.pool)
        return (loss, lr, norm)
    }

    /// The global batch `s`'s loss, with its gradient (summed across the ranks) in `grads`.
    func gradients(step s: Int) -> Float {
        var loss = mode == .masked ? maskedLoss(step: s) : supervisedLoss(step: s)
        if let reducer {
            reducer.finish()
            // The global loss (each rank's share is already weighted) and whether any rank got Ctrl-C.
            var scalars: (Double, Double) = (Double(loss), Interrupt.requested ? 1 : 0)
            withUnsafeMutableBytes(of: &scalars) {
                group.allreduceSum($0.baseAddress!.assumingMemoryBound(to: Double.self), count: 2)
            }
            loss = Float(scalars.0)
            peerInterrupted = scalars.1 > 0
        }
        return loss
    }

    /// Accuracy and loss of the model being trained (f_lin in linearized mode).
    /// With several ranks, each evaluates its share of `data` and the counts are summed (every
    /// rank must call this).
    public func evaluateTrained(on data: LabeledImages) -> (accuracy: Double, loss: Double) {
        let range = group.share(of: data.count)
        var sums: (Double, Double)
        if let theta {
            sums = theta.difference(from: model.parameters).withUnsafeBufferPointer {
                let r = evaluateSums(model, on: data, range: range, tangent: $0.baseAddress!)
                return (Double(r.correct), r.lossSum)
            }
        } else {
            let r = evaluateSums(model, on: data, range: range)
            sums = (Double(r.correct), r.lossSum)
        }
        withUnsafeMutableBytes(of: &sums) {
            group.allreduceSum($0.baseAddress!.assumingMemoryBound(to: Double.self), count: 2)
        }
        let n = Double(max(data.count, 1))
        return (sums.0 / n, sums.1 / n)
    }

    /// The parameters being trained: θ in linearized mode (the model holds θ0), else the model's.
    public var trained: ViTParameters { theta ?? model.parameters }

    /// This rank's share of `sampler.indices(step:)`, with the epoch's order cached.
    func batchIndices(step s: Int) -> ArraySlice<Int> {
        let epoch = s / sampler.stepsPerEpoch, within = s % sampler.stepsPerEpoch
        if epoch != orderEpoch {
            epochOrder = sampler.order(epoch: epoch)
            orderEpoch = epoch
        }
        let first = within * sampler.batchSize
        return epochOrder[(first + share.lowerBound)..<(first + share.upperBound)]
    }

    /// Cross-entropy on batch `s`; leaves its gradient in `grads`.
    func supervisedLoss(step s: Int) -> Float {
        let b = share.count
        return input.withUnsafeMutableBufferPointer { inp in
            labels.withUnsafeMutableBufferPointer { lab in
                train.fill(batchIndices(step: s), input: inp.baseAddress!, labels: lab.baseAddress!)
                model.forward(input: inp.baseAddress!, batch: b, acts: acts)
                if let theta, let tangents {
                    // f_lin = f(θ0) + J(θ0)·(θ − θ0), written over the primal logits for the loss.
                    delta.withUnsafeMutableBufferPointer { dv in
                        theta.difference(from: model.parameters, into: dv.baseAddress!, pool: model.pool)
                        model.addJVP(tangent: dv.baseAddress!, batch: b, acts: acts, tangents: tangents)
                    }
                }
                let global = sampler.batchSize
                let loss = model.crossEntropy(
                    labels: lab.baseAddress!, batch: b, acts: acts, gradientScale: 1 / Float(global))
                grads.zero()
                reducer?.begin()
                model.backward(
                    input: inp.baseAddress!, batch: b, acts: acts, grads: grads,
                    options: BackwardOptions(head: mode == .full, encoder: true), gradientReady: reducer?.hook)
                // This rank's share of the global batch's mean loss.
                return b == global ? loss : Float(Double(loss) * Double(b) / Double(global))
            }
        }
    }

    /// Masked-patch reconstruction loss on batch `s` (see `TrainMode.masked`); leaves its gradient
    /// in `grads`. The masks come from RNG(seed, stream: step), so a resumed run masks the same
    /// patches, and every rank draws the whole global batch's masks (keeping its share's).
    func maskedLoss(step s: Int) -> Float {
        let c = model.config, b = share.count, pool = model.pool
        let (np, pd, t, d, ps, gw) = (c.numPatches, c.patchDim, c.tokens, c.embedDim, c.patchSize, c.gridWidth)
        let prefix = c.classToken ? 1 : 0
        let maskedCount = min(np, max(1, Int((Double(np) * settings.maskRatio).rounded())))
        var rng = RNG(seed: settings.seed, stream: 0x4D49_4D00 &+ UInt64(s))
        let p = model.parameters.base, tab = model.table, g = grads.base
        let (decW, decB) = (tab.headW!, tab.headB!)
        return input.withUnsafeMutableBufferPointer { inp in
            target.withUnsafeMutableBufferPointer { tgt in
                decoded.withUnsafeMutableBufferPointer { dec in
                    tokenGradient.withUnsafeMutableBufferPointer { dtok in
                        let x = inp.baseAddress!, target = tgt.baseAddress!, pred = dec.baseAddress!
                        train.fill(batchIndices(step: s), input: x, labels: nil)
                        // Per image: choose the masked patches, keep their pixels as targets, fill them with −1.
                        var order = Array(0..<np)
                        for image in 0..<share.upperBound {
                            rng.shuffle(&order)
                            guard image >= share.lowerBound else { continue }
                            let i = image - share.lowerBound
                            for j in 0..<np { isMasked[i * np + j] = false }
                            for j in order.prefix(maskedCount) { isMasked[i * np + j] = true }
                            for patch in 0..<np where isMasked[i * np + patch] {
                                let (gy, gx) = (patch / gw, patch % gw)
                                for ch in 0..<c.inChannels {
                                    for r in 0..<ps {
                                        let src =
                                            x + ((i * c.inChannels + ch) * c.imageHeight + gy * ps + r) * c.imageWidth
                                            + gx * ps
                                        let dst = target + (i * np + patch) * pd + (ch * ps + r) * ps
                                        for q in 0..<ps { dst[q] = src[q]; src[q] = -1 }
                                    }
                                }
                            }
                        }
                        model.forward(input: x, batch: b, acts: acts, throughHead: false)
                        // Decoder: pred[b·T, pd] = tokens · Wᵀ + bias.
                        let tokens = UnsafePointer(acts.tokensPointer)
                        sgemm(
                            transA: false, transB: true, m: b * t, n: pd, k: d, a: tokens, lda: d, b: p + decW, ldb: d,
                            beta: 0, c: pred, ldc: pd, pool: pool)
                        Elementwise.biasAddForward(out: pred, bias: p + decB, rows: b * t, cols: pd, pool: pool)
                        // Mean squared error over the masked pixels; the decoder output becomes its gradient.
                        let scale = 1 / Float(sampler.batchSize * maskedCount * pd)
                        var sum = 0.0
                        for i in 0..<b {
                            for r in 0..<t {
                                let row = pred + (i * t + r) * pd, patch = r - prefix
                                if patch >= 0 && isMasked[i * np + patch] {
                                    let tg = target + (i * np + patch) * pd
                                    for q in 0..<pd {
                                        let e = row[q] - tg[q]
                                        sum += Double(e * e)
                                        row[q] = 2 * e * scale
                                    }
                                } else {
                                    row.update(repeating: 0, count: pd)
                                }
                            }
                        }
                        // Decoder backward (dW += dpredᵀ·tokens, db += Σ dpred, dtokens = dpred·W), then the encoder.
                        grads.zero()
                        sgemm(
                            transA: true, transB: false, m: pd, n: d, k: b * t, a: pred, lda: pd, b: tokens, ldb: d,
                            beta: 1, c: g + decW, ldc: d, pool: pool)
                        Elementwise.biasAddBackward(dbias: g + decB, dout: pred, rows: b * t, cols: pd, pool: pool)
                        sgemm(
                            transA: false, transB: false, m: b * t, n: d, k: pd, a: pred, lda: pd, b: p + decW, ldb: d,
                            beta: 0, c: dtok.baseAddress!, ldc: d, pool: pool)
                        reducer?.begin()
                        model.backward(
                            input: x, batch: b, acts: acts, grads: grads, tokenGradient: dtok.baseAddress!,
                            gradientReady: reducer?.hook)
                        return Float(sum * Double(scale))
                    }
                }
            }
        }
    }

    /// Trains until `settings.steps`, calling `log` after every step and `save` every
    /// `checkpointEvery` steps and at the end.
    public func run(
        validation: LabeledImages? = nil, log: (StepLog) -> Void = { _ in },
        save: (Trainer) throws -> Void = { _ in }
    ) throws {
        let start = DispatchTime.now().uptimeNanoseconds
        if group.size > 1 { broadcastState() }
        let first = optimizer.step
        while optimizer.step < settings.steps {
            let before = optimizer.step
            let (loss, lr, norm) = step()
            if !loss.isFinite || !norm.isFinite || optimizer.step == before {
                throw TrainingError.nonFinite(step: before + 1, loss: loss, tensor: firstNonFiniteTensor())
            }
            let done = optimizer.step
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let rate = Double((done - first) * sampler.batchSize) / max(elapsed, 1e-9)
            var entry = StepLog(
                step: done, steps: settings.steps, loss: loss, lr: lr, gradNorm: norm, imagesPerSecond: rate,
                secondsLeft: elapsed / Double(done - first) * Double(settings.steps - done))
            if let validation, (settings.evalEvery > 0 && done % settings.evalEvery == 0) || done == settings.steps {
                entry.validationAccuracy = evaluateTrained(on: validation).accuracy
            }
            log(entry)
            let scheduled =
                (settings.checkpointEvery > 0 && done % settings.checkpointEvery == 0) || done == settings.steps
            // Several ranks act on the flag they agreed on in the step's all-reduce (a signal that
            // arrives after it is seen at the next step), so they all stop at the same step.
            let interrupted = (group.size > 1 ? peerInterrupted : Interrupt.requested) && done < settings.steps
            if group.size > 1 && (scheduled || interrupted) { ensureRanksAgree() }
            if scheduled { try save(self) }
            if interrupted {
                if !scheduled { try save(self) }
                Interrupt.clear()
                throw TrainingError.interrupted(step: done)
            }
        }
    }

    /// The first parameter, else gradient, tensor (checkpoint order) with a NaN or ±∞.
    func firstNonFiniteTensor() -> String {
        for (arena, kind) in [(trained.arena, "parameter"), (grads, "gradient")] {
            for r in model.table.layout.regions {
                let p = arena.base + r.offset
                if (0..<r.shape.count).contains(where: { !p[$0].isFinite }) { return "\(r.name) (\(kind))" }
            }
        }
        return "none (the loss itself)"
    }

    // MARK: Resumable state

    /// Writes parameters, AdamW moments, step and settings to `path` atomically.
    public func saveState(to path: String, metadata: [String: String] = [:]) throws {
        var meta = metadata
        meta["format"] = "vitmerge-train-state"
        meta["config"] = model.config.json
        meta["step"] = "\(optimizer.step)"
        meta["mode"] = mode.rawValue
        meta["settings"] = settings.json
        var w = SafeTensorsWriter(metadata: meta)
        let p = trained
        for r in p.table.layout.regions {
            try w.add(
                r.name, floats: UnsafeBufferPointer(start: p.base + r.offset, count: r.shape.count), shape: r.shape.dims
            )
        }
        try w.add(
            "optimizer.m", floats: UnsafeBufferPointer(start: optimizer.m.base, count: optimizer.m.count),
            shape: [optimizer.m.count])
        try w.add(
            "optimizer.v", floats: UnsafeBufferPointer(start: optimizer.v.base, count: optimizer.v.count),
            shape: [optimizer.v.count])
        try w.write(to: path)
    }

    /// Restores a state written by `saveState` for the same config, mode and settings.
    public func restoreState(from path: String) throws {
        let file = try SafeTensorsFile.read(path: path)
        guard file.metadata["format"] == "vitmerge-train-state", let stepText = file.metadata["step"],
            let step = Int(stepText)
        else {
            throw IOError.invalidFile(
                path: path, reason: "not a training state (format vitmerge-train-state)",
                hint: "resume from the file the same command wrote with --state")
        }
        if file.metadata["config"] != model.config.json || file.metadata["mode"] != mode.rawValue
            || file.metadata["settings"] != settings.json
        {
            throw IOError.invalidFile(
                path: path, reason: "it was written by a run with another config, mode or settings",
                hint: "resume with exactly the same command line, or delete the state file to start over")
        }
        let p = trained
        for r in p.table.layout.regions { try file.copyFloats(r.name, into: p.base + r.offset, shape: r.shape.dims) }
        let m = try file.floats("optimizer.m", shape: [optimizer.m.count]),
            v = try file.floats("optimizer.v", shape: [optimizer.v.count])
        m.withUnsafeBufferPointer { mp in
            v.withUnsafeBufferPointer { vp in optimizer.restore(step: step, m: mp.baseAddress!, v: vp.baseAddress!) }
        }
    }
}
