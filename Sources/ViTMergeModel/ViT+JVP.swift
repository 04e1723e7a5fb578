import ViTMergeCore
import ViTMergeKernels

/// Tangent storage for `ViT.jvp` for batches of up to `capacity` images: one arena, sized once.
public final class ViTTangents: @unchecked Sendable {
    public let config: ViTConfig
    public let capacity: Int
    let arena: Arena
    let streamA, streamB, pooled, fc, out: Int
    let block: BlockTangents

    public init(config c: ViTConfig, capacity b: Int) {
        precondition(b >= 1, "ViTTangents: capacity must be ≥ 1")
        config = c
        capacity = b
        let (t, d) = (c.tokens, c.embedDim)
        var l = Arena.Layout()
        streamA = l.add("stream.a", [b, t, d])
        streamB = l.add("stream.b", [b, t, d])
        block = BlockTangents(adding: &l, prefix: "", shape: c.blockShape, capacity: b)
        pooled = l.add("pooled", [b, d])
        fc = l.add("fc", [b, d])
        out = l.add("out", [b, max(c.numClasses, d)])
        arena = Arena(layout: l)
    }

    @inline(__always) func ptr(_ offset: Int) -> UnsafeMutablePointer<Float> { arena.base + offset }

    /// J·v of the model output (logits [B, K], or features [B, D] without a head) from the last `jvp`.
    public var output: UnsafeMutablePointer<Float> { ptr(out) }
}

extension ViT {
    /// Forward-mode derivative (Jacobian-vector product) of the model output with respect to the
    /// parameters, for a parameter tangent `tangent` laid out like the parameter arena:
    /// `tangents.output` = J(θ)·v for the batch of the last `forward(input:batch:acts:)` (run it
    /// first: the primal activations in `acts` are read, not recomputed). The input is not
    /// perturbed. Costs about one forward pass more; deterministic for any thread count.
    public func jvp(tangent v: UnsafePointer<Float>, batch: Int, acts: ViTActivations, tangents tg: ViTTangents) {
        let c = config
        precondition(tg.config == c && acts.config == c, "jvp: activations or tangents were made for another config")
        precondition(batch >= 1 && batch <= min(acts.capacity, tg.capacity), "jvp: batch \(batch) exceeds a capacity")
        precondition(
            acts.forBackward, "jvp: the last forward ran with forBackward false and saved no attention probabilities")
        let p = UnsafePointer(parameters.base), tab = table
        let (t, d) = (c.tokens, c.embedDim)
        let prefix = c.numPrefixTokens
        let n = batch * t

        // t_x0[B,T,D] = [t_cls ; t_reg ;] patches · t_Wᵀ (+ t_b), + t_pos (as the forward's pos_embed layout)
        var cur = tg.ptr(tg.streamA), other = tg.ptr(tg.streamB)
        PatchEmbed.jvp(
            tx: cur, patches: acts.ptr(acts.patches), tweight: v + tab.patchW, tbias: tab.patchB.map { v + $0 },
            tcls: tab.clsToken.map { v + $0 }, treg: tab.regToken.map { v + $0 }, tpos: v + tab.posEmbed,
            prefix: c.prefixTokens, batch: batch, dim: d, geometry: c.patchGeometry, pool: pool)
        if acts.preOut != nil, let w = tab.normPreW, let bias = tab.normPreB {
            LayerNorm.jvp(
                tout: other, tinp: cur, inp: acts.ptr(acts.x0), mean: acts.ptr(acts.preMean!),
                rstd: acts.ptr(acts.preRstd!),
                weight: p + w, tweight: v + w, tbias: v + bias, rows: n, cols: d, pool: pool)
            swap(&cur, &other)
        }

        // t_x[B,T,D] through the blocks (the stream stays in `cur`)
        tab.stack.jvp(
            tx: cur, tscratch: other, x: acts.ptr(acts.blocksInput), batch: batch, params: p, tangent: v,
            acts: acts.blocks, in: acts.arena.base, tangents: tg.block, in: tg.arena.base, pool: pool)

        if acts.norm != nil, let w = tab.normW, let bias = tab.normB {
            let lastOut = UnsafePointer(acts.ptr(acts.blocksOutput))
            LayerNorm.jvp(
                tout: other, tinp: cur, inp: lastOut, mean: acts.ptr(acts.normMean!), rstd: acts.ptr(acts.normRstd!),
                weight: p + w, tweight: v + w, tbias: v + bias, rows: n, cols: d, pool: pool)
            swap(&cur, &other)
        }
        let tpooled = tg.ptr(tg.pooled)
        TokenPool.jvp(
            tpooled: tpooled, tx: cur, mode: c.tokenPoolMode, batch: batch, tokens: t, prefix: prefix, dim: d,
            pool: pool)
        var tfeat = tpooled
        if let w = tab.fcNormW, let bias = tab.fcNormB {
            LayerNorm.jvp(
                tout: tg.ptr(tg.fc), tinp: tpooled, inp: acts.ptr(acts.pooled), mean: acts.ptr(acts.fcMean!),
                rstd: acts.ptr(acts.fcRstd!), weight: p + w, tweight: v + w, tbias: v + bias, rows: batch, cols: d,
                pool: pool)
            tfeat = tg.ptr(tg.fc)
        }
        if let w = tab.headW, let bias = tab.headB {
            Linear.jvp(
                tout: tg.output, tinp: tfeat, inp: acts.featuresPointer, weight: p + w, tweight: v + w, tbias: v + bias,
                rows: batch, inFeatures: d, outFeatures: c.numClasses, pool: pool)
        } else {
            tg.output.update(from: tfeat, count: batch * d)
        }
    }

    /// Turns the last forward's output into the linearized model's, f(θ) + J(θ)·tangent: runs
    /// `jvp` and adds its result to `acts.output` (tangent-space training, evaluation, merges).
    public func addJVP(tangent v: UnsafePointer<Float>, batch: Int, acts: ViTActivations, tangents tg: ViTTangents) {
        jvp(tangent: v, batch: batch, acts: acts, tangents: tg)
        let width = config.numClasses > 0 ? config.numClasses : config.embedDim
        Elementwise.add(out: acts.output, a: acts.output, b: tg.output, count: batch * width, pool: pool)
    }
}
