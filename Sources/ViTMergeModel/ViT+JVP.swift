import ViTMergeCore
import ViTMergeKernels

/// Tangent storage for `ViT.jvp` for batches of up to `capacity` images: one arena, sized once.
public final class ViTTangents: @unchecked Sendable {
    public let config: ViTConfig
    public let capacity: Int
    let arena: Arena
    let streamA, streamB, ln, qkv, att, attnOut, proj, hidden, act, pooled, fc, out: Int

    public init(config c: ViTConfig, capacity b: Int) {
        precondition(b >= 1, "ViTTangents: capacity must be ≥ 1")
        config = c
        capacity = b
        let (t, d, f, h) = (c.tokens, c.embedDim, c.hiddenDim, c.numHeads)
        var l = Arena.Layout()
        streamA = l.add("stream.a", [b, t, d])
        streamB = l.add("stream.b", [b, t, d])
        ln = l.add("ln", [b, t, d])
        qkv = l.add("qkv", [b, t, 3 * d])
        att = l.add("att", [b, h, t, t])
        attnOut = l.add("attnOut", [b, t, d])
        proj = l.add("proj", [b, t, d])
        hidden = l.add("hidden", [b, t, f])
        act = l.add("act", [b, t, f])
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
        let p = UnsafePointer(parameters.base), tab = table
        let (t, d, f) = (c.tokens, c.embedDim, c.hiddenDim)
        let prefix = c.classToken ? 1 : 0
        let n = batch * t

        // t_x0[B,T,D] = [t_cls + t_pos[0] ;] patches · t_Wᵀ (+ t_b) + t_pos
        var cur = tg.ptr(tg.streamA), other = tg.ptr(tg.streamB)
        PatchEmbed.jvp(
            tx: cur, patches: acts.ptr(acts.patches), tweight: v + tab.patchW, tbias: tab.patchB.map { v + $0 },
            tcls: tab.clsToken.map { v + $0 }, tpos: v + tab.posEmbed, batch: batch, dim: d, geometry: c.patchGeometry,
            pool: pool)
        if acts.preOut != nil, let w = tab.normPreW, let bias = tab.normPreB {
            LayerNorm.jvp(
                tout: other, tinp: cur, inp: acts.ptr(acts.x0), mean: acts.ptr(acts.preMean!),
                rstd: acts.ptr(acts.preRstd!),
                weight: p + w, tweight: v + w, tbias: v + bias, rows: n, cols: d, pool: pool)
            swap(&cur, &other)
        }

        for l in 0..<tab.blocks.count {
            let o = tab.blocks[l]  // (an index loop: enumerated() allocates in debug builds)
            let a = acts.blocks[l]
            let blockIn: UnsafePointer<Float> =
                l > 0
                ? UnsafePointer(acts.ptr(acts.blocks[l - 1].out)) : UnsafePointer(acts.ptr(acts.preOut ?? acts.x0))
            let tln = tg.ptr(tg.ln), tqkv = tg.ptr(tg.qkv), tattn = tg.ptr(tg.attnOut), tproj = tg.ptr(tg.proj)
            LayerNorm.jvp(
                tout: tln, tinp: cur, inp: blockIn, mean: acts.ptr(a.ln1Mean), rstd: acts.ptr(a.ln1Rstd),
                weight: p + o.norm1W, tweight: v + o.norm1W, tbias: v + o.norm1B, rows: n, cols: d, pool: pool)
            Linear.jvp(
                tout: tqkv, tinp: tln, inp: acts.ptr(a.ln1), weight: p + o.qkvW, tweight: v + o.qkvW,
                tbias: o.qkvB.map { UnsafePointer(v + $0) }, rows: n, inFeatures: d, outFeatures: 3 * d, pool: pool)
            Attention.jvp(
                tout: tattn, tatt: tg.ptr(tg.att), tqkv: tqkv, qkv: acts.ptr(a.qkv), att: acts.ptr(a.att),
                batch: batch, tokens: t, dim: d, heads: c.numHeads, pool: pool)
            // t_res1 = t_x + (t_attn · W_projᵀ + attn · t_W_projᵀ + t_b_proj)
            Linear.jvp(
                tout: tproj, tinp: tattn, inp: acts.ptr(a.attnOut), weight: p + o.projW, tweight: v + o.projW,
                tbias: nil, rows: n, inFeatures: d, outFeatures: d, pool: pool)
            Residual.jvp(tout: other, tresidual: cur, tinp: tproj, tbias: v + o.projB, rows: n, cols: d, pool: pool)
            LayerNorm.jvp(
                tout: tln, tinp: other, inp: acts.ptr(a.res1), mean: acts.ptr(a.ln2Mean), rstd: acts.ptr(a.ln2Rstd),
                weight: p + o.norm2W, tweight: v + o.norm2W, tbias: v + o.norm2B, rows: n, cols: d, pool: pool)
            let thidden = tg.ptr(tg.hidden), tact = tg.ptr(tg.act)
            Linear.jvp(
                tout: thidden, tinp: tln, inp: acts.ptr(a.ln2), weight: p + o.fc1W, tweight: v + o.fc1W,
                tbias: v + o.fc1B, rows: n, inFeatures: d, outFeatures: f, pool: pool)
            tact.update(repeating: 0, count: n * f)
            switch c.activation {  // t_act = act'(fc1) ⊙ t_fc1: the backward kernel with dout = t_fc1
            case .gelu: GELU.backward(dinp: tact, inp: acts.ptr(a.fc1), dout: thidden, count: n * f, pool: pool)
            case .quickGELU:
                QuickGELU.backward(dinp: tact, inp: acts.ptr(a.fc1), dout: thidden, count: n * f, pool: pool)
            }
            // t_out = t_res1 + (t_act · W_fc2ᵀ + act · t_W_fc2ᵀ + t_b_fc2)
            Linear.jvp(
                tout: tproj, tinp: tact, inp: acts.ptr(a.act), weight: p + o.fc2W, tweight: v + o.fc2W, tbias: nil,
                rows: n, inFeatures: f, outFeatures: d, pool: pool)
            Residual.jvp(tout: cur, tresidual: other, tinp: tproj, tbias: v + o.fc2B, rows: n, cols: d, pool: pool)
        }

        if acts.norm != nil, let w = tab.normW, let bias = tab.normB {
            let lastOut: UnsafePointer<Float> =
                tab.blocks.isEmpty
                ? UnsafePointer(acts.ptr(acts.preOut ?? acts.x0)) : UnsafePointer(acts.ptr(acts.blocks.last!.out))
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
