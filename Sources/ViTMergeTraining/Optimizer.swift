import Foundation
import ViTMergeCore
import ViTMergeKernels
import ViTMergeModel

/// Warm-up then cosine decay: lr rises linearly from 0 over `warmupSteps`, then follows half a
/// cosine from `peak` down to `peak · minRatio` at `totalSteps`.
public struct LRSchedule: Sendable, Equatable {
    public var peak: Float
    public var warmupSteps: Int
    public var totalSteps: Int
    public var minRatio: Float

    public init(peak: Float, warmupSteps: Int, totalSteps: Int, minRatio: Float = 0) {
        self.peak = peak
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.minRatio = minRatio
    }

    /// Learning rate for 1-based `step`.
    public func lr(step: Int) -> Float {
        if step <= warmupSteps { return peak * Float(step) / Float(max(warmupSteps, 1)) }
        let progress = Double(step - warmupSteps) / Double(max(totalSteps - warmupSteps, 1))
        let cosine = 0.5 * (1 + cos(Double.pi * min(progress, 1)))
        return peak * (minRatio + (1 - minRatio) * Float(cosine))
    }
}

/// AdamW over a parameter arena, tensor by tensor: each trainable tensor has its own weight
/// decay (0 for biases, norms, tokens and position embeddings by default); frozen tensors are
/// not touched at all (their values stay bit-identical).
public final class AdamWOptimizer {
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    public let weightDecay: Float
    /// Completed updates; the next update uses step + 1 for bias correction.
    public internal(set) var step = 0
    public let m: Arena
    public let v: Arena
    let groups: [(offset: Int, count: Int, decay: Float)]

    /// `trainable` selects tensors by timm name; `decayAll` applies weight decay to 1-D tensors too.
    public convenience init(
        table: ParameterTable, weightDecay: Float, decayAll: Bool = false, trainable: (String) -> Bool
    ) {
        self.init(layout: table.layout, weightDecay: weightDecay, decayAll: decayAll, trainable: trainable)
    }

    /// Over any arena layout with timm names (e.g. just a head's, for linear probing).
    public init(layout: Arena.Layout, weightDecay: Float, decayAll: Bool = false, trainable: (String) -> Bool) {
        self.weightDecay = weightDecay
        m = Arena(layout: layout)
        v = Arena(layout: layout)
        groups = layout.regions.filter { trainable($0.name) }.map {
            ($0.offset, $0.shape.count, decayAll || !ParameterTable.isNoDecay($0.name) ? weightDecay : 0)
        }
    }

    /// Number of values this optimizer updates.
    public var trainableCount: Int { groups.reduce(0) { $0 + $1.count } }

    /// L2 norm of the trainable part of `grads` (summed in a fixed order).
    public func gradientNorm(_ grads: Arena, pool: ThreadPool = .shared) -> Double {
        gradientNorm(grads.base, pool: pool)
    }

    /// L2 norm of the trainable part of `grads` [m.count], laid out like the moments.
    public func gradientNorm(_ grads: UnsafePointer<Float>, pool: ThreadPool = .shared) -> Double {
        squaredNorm(grads, pool: pool).squareRoot()
    }

    /// The squared L2 norm of the trainable part of `grads` (tensor by tensor, in a fixed order).
    func squaredNorm(_ grads: UnsafePointer<Float>, pool: ThreadPool) -> Double {
        var s = 0.0
        for i in 0..<groups.count {  // index loops: a for-in over the tuples allocates in debug builds
            let g = groups[i]
            let n = GradientNorm.l2(grads + g.offset, count: g.count, pool: pool)
            s += n * n
        }
        return s
    }

    /// Clips the trainable gradients to `maxNorm` (if > 0) and applies one AdamW update with `lr`.
    /// Returns the gradient norm before clipping. A non-finite norm leaves parameters, moments
    /// and step untouched (the caller reports it; see `Trainer.run`).
    @discardableResult
    public func update(
        parameters: ViTParameters, grads: Arena, lr: Float, maxNorm: Double, pool: ThreadPool = .shared
    ) -> Double {
        update(parameters: parameters.base, grads: grads.base, lr: lr, maxNorm: maxNorm, pool: pool)
    }

    /// `update` on raw storage: `parameters` and `grads` [m.count] laid out like the moments.
    @discardableResult
    public func update(
        parameters: UnsafeMutablePointer<Float>, grads: UnsafeMutablePointer<Float>, lr: Float, maxNorm: Double,
        pool: ThreadPool = .shared
    ) -> Double {
        let norm = gradientNorm(grads, pool: pool)
        guard norm.isFinite else { return norm }
        apply(parameters: parameters, grads: grads, lr: lr, norm: norm, maxNorm: maxNorm, pool: pool)
        return norm
    }

    /// `update` of this optimizer's parameters and of `other`'s (e.g. an objective's own decoder,
    /// in another arena) as one model: the gradient norm over both is clipped to `maxNorm`, then
    /// each applies its AdamW update. Returns that norm; a non-finite one touches nothing.
    @discardableResult
    public func update(
        parameters: UnsafeMutablePointer<Float>, grads: UnsafeMutablePointer<Float>, with other: AdamWOptimizer,
        parameters otherParameters: UnsafeMutablePointer<Float>, grads otherGrads: UnsafeMutablePointer<Float>,
        lr: Float, maxNorm: Double, pool: ThreadPool = .shared
    ) -> Double {
        let norm = (squaredNorm(grads, pool: pool) + other.squaredNorm(otherGrads, pool: pool)).squareRoot()
        guard norm.isFinite else { return norm }
        apply(parameters: parameters, grads: grads, lr: lr, norm: norm, maxNorm: maxNorm, pool: pool)
        other.apply(parameters: otherParameters, grads: otherGrads, lr: lr, norm: norm, maxNorm: maxNorm, pool: pool)
        return norm
    }

    /// Clips by `maxNorm / norm` (when `maxNorm` > 0 and the norm exceeds it), then one AdamW step.
    func apply(
        parameters: UnsafeMutablePointer<Float>, grads: UnsafeMutablePointer<Float>, lr: Float, norm: Double,
        maxNorm: Double, pool: ThreadPool
    ) {
        if maxNorm > 0 && norm > maxNorm {
            let s = Float(maxNorm / (norm + 1e-6))
            for i in 0..<groups.count {
                let g = groups[i]
                Elementwise.scale(grads + g.offset, alpha: s, count: g.count, pool: pool)
            }
        }
        step += 1
        for i in 0..<groups.count {
            let g = groups[i]
            AdamW.update(
                params: parameters + g.offset, grads: grads + g.offset, m: m.base + g.offset,
                v: v.base + g.offset,
                count: g.count, step: step, lr: lr, beta1: beta1, beta2: beta2, eps: eps, weightDecay: g.decay,
                pool: pool)
        }
    }

    /// Restores the moments and step count (for resuming).
    public func restore(step: Int, m: UnsafePointer<Float>, v: UnsafePointer<Float>) {
        self.step = step
        self.m.base.update(from: m, count: self.m.count)
        self.v.base.update(from: v, count: self.v.count)
    }
}
