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
        let (t, d, f, np) = (c.tokens, c.embedDim, c.hiddenDim, c.numPatches)
        let prefix = c.classToken ? 1 : 0
        let n = batch * t

        // Patch embedding: t_x0 = patches·t_Wᵀ (+ t_b) + t_pos; class row: t_cls + t_pos[0].
        var cur = tg.ptr(tg.streamA), other = tg.ptr(tg.streamB)
        sgemmBatched(
            transA: false, transB: true, m: np, n: d, k: c.patchDim,
            a: acts.ptr(acts.patches), lda: c.patchDim, strideA: (np * c.patchDim, 0),
            b: v + tab.patchW, ldb: c.patchDim, strideB: (0, 0),
            beta: 0, c: cur + prefix * d, ldc: d, strideC: (t * d, 0), batch: (batch, 1), pool: pool)
        for b in 0..<batch {
            let xb = cur + b * t * d
            if let cls = tab.clsToken { for i in 0..<d { xb[i] = v[cls + i] + v[tab.posEmbed + i] } }
            for r in prefix..<t {
                let row = xb + r * d, tp = v + tab.posEmbed + r * d
                if let pb = tab.patchB {
                    for i in 0..<d { row[i] = (row[i] + v[pb + i]) + tp[i] }
                } else {
                    for i in 0..<d { row[i] += tp[i] }
                }
            }
        }
        if acts.preOut != nil, let w = tab.normPreW, let bias = tab.normPreB {
            LayerNorm.jvp(
                tout: other, tinp: cur, inp: acts.ptr(acts.x0), mean: acts.ptr(acts.preMean!),
                rstd: acts.ptr(acts.preRstd!),
                weight: p + w, tweight: v + w, tbias: v + bias, rows: n, cols: d, pool: pool)
            swap(&cur, &other)
        }

        for (l, o) in tab.blocks.enumerated() {
            let a = acts.blocks[l]
            let blockIn: UnsafePointer<Float> =
                l > 0
                ? UnsafePointer(acts.ptr(acts.blocks[l - 1].out)) : UnsafePointer(acts.ptr(acts.preOut ?? acts.x0))
            let tln = tg.ptr(tg.ln), tqkv = tg.ptr(tg.qkv), tattn = tg.ptr(tg.attnOut), tproj = tg.ptr(tg.proj)
            LayerNorm.jvp(
                tout: tln, tinp: cur, inp: blockIn, mean: acts.ptr(a.ln1Mean), rstd: acts.ptr(a.ln1Rstd),
                weight: p + o.norm1W, tweight: v + o.norm1W, tbias: v + o.norm1B, rows: n, cols: d, pool: pool)
            linearJVP(
                tqkv, tln, acts.ptr(a.ln1), p + o.qkvW, v + o.qkvW, o.qkvB.map { v + $0 }, rows: n, inF: d, outF: 3 * d)
            Attention.jvp(
                tout: tattn, tatt: tg.ptr(tg.att), tqkv: tqkv, qkv: acts.ptr(a.qkv), att: acts.ptr(a.att),
                batch: batch, tokens: t, dim: d, heads: c.numHeads, pool: pool)
            linearJVP(
                tproj, tattn, acts.ptr(a.attnOut), p + o.projW, v + o.projW, v + o.projB, rows: n, inF: d, outF: d)
            Elementwise.add(out: other, a: cur, b: tproj, count: n * d, pool: pool)  // t_res1
            LayerNorm.jvp(
                tout: tln, tinp: other, inp: acts.ptr(a.res1), mean: acts.ptr(a.ln2Mean), rstd: acts.ptr(a.ln2Rstd),
                weight: p + o.norm2W, tweight: v + o.norm2W, tbias: v + o.norm2B, rows: n, cols: d, pool: pool)
            let thidden = tg.ptr(tg.hidden), tact = tg.ptr(tg.act)
            linearJVP(thidden, tln, acts.ptr(a.ln2), p + o.fc1W, v + o.fc1W, v + o.fc1B, rows: n, inF: d, outF: f)
            tact.update(repeating: 0, count: n * f)
            switch c.activation {  // t_act = act'(fc1) ⊙ t_fc1: the backward kernel with dout = t_fc1
            case .gelu: GELU.backward(dinp: tact, inp: acts.ptr(a.fc1), dout: thidden, count: n * f, pool: pool)
            case .quickGELU:
                QuickGELU.backward(dinp: tact, inp: acts.ptr(a.fc1), dout: thidden, count: n * f, pool: pool)
            }
            linearJVP(tproj, tact, acts.ptr(a.act), p + o.fc2W, v + o.fc2W, v + o.fc2B, rows: n, inF: f, outF: d)
            Elementwise.add(out: cur, a: other, b: tproj, count: n * d, pool: pool)  // t_out = t_res1 + t_mlp
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
        globalPool(tpooled, cur, batch: batch)
        var tfeat = tpooled
        if let w = tab.fcNormW, let bias = tab.fcNormB {
            LayerNorm.jvp(
                tout: tg.ptr(tg.fc), tinp: tpooled, inp: acts.ptr(acts.pooled), mean: acts.ptr(acts.fcMean!),
                rstd: acts.ptr(acts.fcRstd!), weight: p + w, tweight: v + w, tbias: v + bias, rows: batch, cols: d,
                pool: pool)
            tfeat = tg.ptr(tg.fc)
        }
        if let w = tab.headW, let bias = tab.headB {
            linearJVP(
                tg.output, tfeat, acts.featuresPointer, p + w, v + w, v + bias, rows: batch, inF: d, outF: c.numClasses)
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

    /// Tangent of `linear`: tout = tinp·wᵀ + inp·t_wᵀ (+ t_bias).
    func linearJVP(
        _ tout: UnsafeMutablePointer<Float>, _ tinp: UnsafePointer<Float>, _ inp: UnsafePointer<Float>,
        _ w: UnsafePointer<Float>, _ tw: UnsafePointer<Float>, _ tbias: UnsafePointer<Float>?, rows: Int, inF: Int,
        outF: Int
    ) {
        sgemm(
            transA: false, transB: true, m: rows, n: outF, k: inF, a: tinp, lda: inF, b: w, ldb: inF, beta: 0, c: tout,
            ldc: outF, pool: pool)
        sgemm(
            transA: false, transB: true, m: rows, n: outF, k: inF, a: inp, lda: inF, b: tw, ldb: inF, beta: 1, c: tout,
            ldc: outF, pool: pool)
        if let tbias { Elementwise.biasAddForward(out: tout, bias: tbias, rows: rows, cols: outF, pool: pool) }
    }
}
