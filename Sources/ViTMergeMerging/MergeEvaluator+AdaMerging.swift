import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel
import ViTMergeTraining

/// AdaMerging (Yang et al. 2024): the merged encoder θ_pre + Σ_t Σ_g c[t][g]·τ_t[g] with coefficients
/// learned by minimizing the entropy of the merged model's predictions on unlabeled test images of
/// every task (each through its own head). Task-wise: one coefficient per task (g is the whole
/// encoder); layer-wise: one per task and tensor (region), as FusionBench's layer-wise wrapper.
/// The gradient ∂L/∂c[t][g] = ⟨∂L/∂θ over g, τ_t over g⟩ comes from one backward per task and step.
public struct AdaMergingOptions: Sendable {
    public var layerWise = false
    public var steps = 100
    /// Adam's step size on the coefficients (β 0.9, 0.999, ε 1e-8).
    public var learningRate = 1e-2
    /// Unlabeled test images per task and step, drawn with replacement (seeded).
    public var batch = 16
    /// The coefficients' start (FusionBench: 0.3); they are clamped to [0, 1] after each step.
    public var initial = 0.3
    public var seed: UInt64 = 0

    public init() {}
}

public struct AdaMergingResult {
    /// coefficients[t][g]: task t's coefficient on group g (one group task-wise; one per tensor layer-wise).
    public let coefficients: [[Double]]
    /// The group names: "encoder" task-wise, the tensor names layer-wise.
    public let groups: [String]
    /// The entropy loss (summed over tasks, mean over each task's batch) before each step.
    public let losses: [Double]
    /// Σ_t Σ_g c[t][g]·τ_t[g]: the model is θ_pre + direction.
    public let direction: EncoderVector
}

extension MergeEvaluator {
    /// The regions of each coefficient group: one group of every region (task-wise) or one per region.
    func adaMergingGroups(layerWise: Bool) -> (names: [String], regions: [[(name: String, offset: Int, shape: Shape)]])
    {
        let regions = tasks[0].tau.arena.layout.regions
        return layerWise ? (regions.map(\.name), regions.map { [$0] }) : (["encoder"], [regions])
    }

    /// Σ_t Σ_g c[t][g]·τ_t over group g's regions (0 + c·τ_0 + c·τ_1 + …, one FMA per vector).
    public func adaMergingDirection(_ c: [[Double]], layerWise: Bool) -> EncoderVector {
        let groups = adaMergingGroups(layerWise: layerWise).regions
        precondition(c.count == tasks.count && c.allSatisfy { $0.count == groups.count }, "AdaMerging: coefficients")
        let out = EncoderVector(table: pretrained.table)
        withExtendedLifetime(tasks) {
            for (g, regions) in groups.enumerated() {
                for r in regions {
                    Elementwise.linearCombination(
                        out: out.base + r.offset, base: out.base + r.offset,
                        xs: tasks.map { UnsafePointer($0.tau.base + r.offset) }, coefficients: c.map { Float($0[g]) },
                        count: r.shape.count, pool: pool)
                }
            }
        }
        return out
    }

    /// The entropy objective L(c) = Σ_t mean over `batches[t]` (test image indices) of H(softmax(logits)),
    /// and with `gradient` its gradient ∂L/∂c[t][g].
    public func adaMergingObjective(
        _ c: [[Double]], layerWise: Bool, batches: [[Int]], gradient: Bool = true
    ) -> (loss: Double, gradient: [[Double]]) {
        let groups = adaMergingGroups(layerWise: layerWise).regions
        let enc = encoder([adaMergingDirection(c, layerWise: layerWise)], [1])
        let total = EncoderVector(table: pretrained.table)
        var loss = 0.0
        for t in tasks.indices {
            let l = load(encoder: enc, task: t)
            let ev = l.evaluator, acts = ev.acts, k = tasks[t].classes
            let idx = batches[t]
            precondition(idx.count <= ev.capacity, "AdaMerging: batch \(idx.count) over capacity \(ev.capacity)")
            guard !idx.isEmpty else { continue }
            tasks[t].test.fill(idx, input: ev.input, labels: nil)
            let tangent = l.tangent.map { UnsafePointer($0.base) }
            l.model.forward(input: ev.input, batch: idx.count, acts: acts, tangent: tangent, tangents: ev.tangents)
            loss += entropy(logits: acts.output, rows: idx.count, classes: k, gradient: acts.outputGradient)
            if gradient {
                let g = gradients(task: t)
                g.zero()
                l.model.backward(
                    input: ev.input, batch: idx.count, acts: acts, grads: g,
                    options: BackwardOptions(head: false, encoder: true))
                Elementwise.add(out: total.base, a: total.base, b: g.base, count: total.count, pool: pool)
            }
        }
        guard gradient else { return (loss, []) }
        let grad = tasks.map { task in
            groups.map { regions in
                var s = 0.0
                for r in regions {
                    let a = total.base + r.offset, b = task.tau.base + r.offset
                    for i in 0..<r.shape.count { s += Double(a[i]) * Double(b[i]) }
                }
                return s
            }
        }
        return (loss, grad)
    }

    /// Learns AdaMerging's coefficients with Adam on the entropy of test predictions (labels unused).
    public func adaMerging(_ o: AdaMergingOptions) -> AdaMergingResult {
        let (names, _) = adaMergingGroups(layerWise: o.layerWise)
        var c = [[Double]](repeating: [Double](repeating: o.initial, count: names.count), count: tasks.count)
        var m = c.map { $0.map { _ in 0.0 } }, v = m
        var rng = RNG(seed: o.seed, stream: 0xADA)
        var losses: [Double] = []
        let (b1, b2, eps) = (0.9, 0.999, 1e-8)
        for step in 1...max(o.steps, 1) where o.steps > 0 {
            let batches = tasks.map { t in (0..<min(o.batch, t.test.count)).map { _ in rng.int(below: t.test.count) } }
            let (loss, g) = adaMergingObjective(c, layerWise: o.layerWise, batches: batches)
            losses.append(loss)
            let bc1 = 1 - Foundation.pow(b1, Double(step)), bc2 = 1 - Foundation.pow(b2, Double(step))
            for t in c.indices {
                for j in c[t].indices {
                    m[t][j] = b1 * m[t][j] + (1 - b1) * g[t][j]
                    v[t][j] = b2 * v[t][j] + (1 - b2) * g[t][j] * g[t][j]
                    let update = o.learningRate * (m[t][j] / bc1) / ((v[t][j] / bc2).squareRoot() + eps)
                    c[t][j] = min(1, max(0, c[t][j] - update))
                }
            }
        }
        return AdaMergingResult(
            coefficients: c, groups: names, losses: losses, direction: adaMergingDirection(c, layerWise: o.layerWise))
    }
}

/// Σ over `rows` of the entropy H = −Σ_j p_j log p_j of softmax(logits[r]), and into `gradient` [rows, classes]
/// ∂(mean H)/∂z_j = −p_j (log p_j + H) / rows. In Double; log p = z − max − log Σ e^(z − max).
func entropy(
    logits: UnsafePointer<Float>, rows: Int, classes k: Int, gradient: UnsafeMutablePointer<Float>
) -> Double {
    var sum = 0.0
    var logp = [Double](repeating: 0, count: k)
    for r in 0..<rows {
        let z = logits + r * k
        var mx = -Double.infinity
        for j in 0..<k { mx = max(mx, Double(z[j])) }
        var s = 0.0
        for j in 0..<k { s += Foundation.exp(Double(z[j]) - mx) }
        let lse = mx + Foundation.log(s)
        var h = 0.0
        for j in 0..<k {
            logp[j] = Double(z[j]) - lse
            h -= Foundation.exp(logp[j]) * logp[j]
        }
        sum += h
        for j in 0..<k { gradient[r * k + j] = Float(-Foundation.exp(logp[j]) * (logp[j] + h) / Double(rows)) }
    }
    return sum / Double(rows)
}
