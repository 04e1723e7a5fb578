import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel

/// Training of a ViT: the loop, AdamW with warm-up + cosine and clipping, the NaN guard, the
/// gradient reduction across ranks and the resumable state; what a step minimises is the
/// `objective` (`TrainMode`: supervised full or aligned, linearized, masked image modeling).
/// Deterministic for a seed, and resumable to the same bits.
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
    /// This rank's images [share.count, C, H, W] and labels [share.count].
    let input: UnsafeMutablePointer<Float>
    let labels: UnsafeMutablePointer<Int32>
    /// What each step minimises (made from `mode`).
    public let objective: TrainingObjective
    /// Linearized mode: the trained parameters θ (the model keeps θ0).
    public var theta: ViTParameters? { objective.trainedParameters }
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
        acts = model.makeActivations(capacity: share.count)
        grads = model.makeGradients()
        let objective = mode.objective(model: model, settings: settings, capacity: share.count)
        self.objective = objective
        optimizer = AdamWOptimizer(table: model.table, weightDecay: settings.weightDecay) { name in
            objective.trainsHead || !ParameterTable.isHead(name)
        }
        // Summed across ranks: the trainable span (aligned and linearized runs leave the head out).
        reducer =
            group.size == 1
            ? nil
            : GradientReducer(
                group: group, gradients: grads.base,
                span: objective.trainsHead ? 0..<grads.count : 0..<model.table.encoderEnd)
        input = .allocate(capacity: share.count * train.imageSize)
        input.initialize(repeating: 0, count: share.count * train.imageSize)
        labels = .allocate(capacity: share.count)
        labels.initialize(repeating: 0, count: share.count)
        epochOrder = [Int](repeating: 0, count: train.count)
    }

    deinit {
        input.deallocate()
        labels.deallocate()
    }

    public var schedule: LRSchedule {
        LRSchedule(peak: settings.lr, warmupSteps: settings.warmupSteps, totalSteps: settings.steps)
    }

    /// One optimizer step on batch `optimizer.step` (0-based); returns the loss, lr and gradient norm.
    public func step() -> (loss: Float, lr: Float, gradNorm: Double) {
        let s = optimizer.step
        let loss = gradients(step: s)
        let lr = schedule.lr(step: s + 1)
        if let aux = objective.auxiliary {
            let norm = optimizer.update(
                parameters: trained.base, grads: grads.base, with: aux.optimizer, parameters: aux.parameters.base,
                grads: aux.gradients.base, lr: lr, maxNorm: settings.clipNorm, pool: model.pool)
            objective.didUpdate(step: optimizer.step, of: settings.steps)
            return (loss, lr, norm)
        }
        let norm = optimizer.update(
            parameters: trained, grads: grads, lr: lr, maxNorm: settings.clipNorm, pool: model.pool)
        objective.didUpdate(step: optimizer.step, of: settings.steps)
        return (loss, lr, norm)
    }

    /// The global batch `s`'s loss, with its gradient (summed across the ranks) in `grads`.
    func gradients(step s: Int) -> Float {
        var loss = objectiveLoss(step: s)
        if let reducer {
            reducer.finish()
            // The objective's own parameters' gradients, summed in one blocking call.
            if let aux = objective.auxiliary { group.allreduceSum(aux.gradients.base, count: aux.gradients.count) }
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
            sampler.order(epoch: epoch, into: &epochOrder)
            orderEpoch = epoch
        }
        let first = within * sampler.batchSize
        return epochOrder[(first + share.lowerBound)..<(first + share.upperBound)]
    }

    /// The objective's loss on this rank's share of global batch `s`, its gradient in `grads`.
    func objectiveLoss(step s: Int) -> Float {
        grads.zero()
        objective.auxiliary?.gradients.zero()
        return objective.loss(
            TrainingBatch(
                model: model, step: s, indices: batchIndices(step: s), data: train, share: share,
                globalBatch: sampler.batchSize, input: input, labels: labels, acts: acts, grads: grads,
                reducer: reducer, augmentation: settings.augmentation, seed: settings.seed, group: group))
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
                secondsLeft: elapsed / Double(done - first) * Double(settings.steps - done), metrics: objective.metrics)
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
        var arenas = [(trained.arena, "parameter"), (grads, "gradient")]
        if let aux = objective.auxiliary {
            arenas.insert((aux.parameters, "parameter"), at: 1)
            arenas.append((aux.gradients, "gradient"))
        }
        for (arena, kind) in arenas {
            for r in arena.layout.regions {
                let p = arena.base + r.offset
                if (0..<r.shape.count).contains(where: { !p[$0].isFinite }) { return "\(r.name) (\(kind))" }
            }
        }
        return "none (the loss itself)"
    }
}
