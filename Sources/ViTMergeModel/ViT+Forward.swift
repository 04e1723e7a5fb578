import ViTMergeCore
import ViTMergeKernels

extension ViT {
    /// Runs the model on `input` [batch, C, H, W] and saves every activation the backward pass
    /// needs in `acts`; the output (logits, or features without a head) is `acts.output`.
    /// With `throughHead` false the pass stops at the features (`acts.featuresPointer`), for
    /// linear probing on a frozen encoder.
    public func forward(input: UnsafePointer<Float>, batch: Int, acts: ViTActivations, throughHead: Bool = true) {
        let c = config
        precondition(acts.config == c, "forward: activations were made for another config")
        precondition(
            batch >= 1 && batch <= acts.capacity, "forward: batch \(batch) exceeds activation capacity \(acts.capacity)"
        )
        let p = parameters.base, tab = table
        let (t, d, f) = (c.tokens, c.embedDim, c.hiddenDim)
        let prefix = c.classToken ? 1 : 0
        let n = batch * t

        // x0[B,T,D] = [cls ;] patches[B,NP,PD]·Wᵀ + b, + pos[T,D]; patches = im2col(input) saved
        let x0 = acts.ptr(acts.x0)
        PatchEmbed.forward(
            x: x0, patches: acts.ptr(acts.patches), input: input, weight: p + tab.patchW,
            bias: tab.patchB.map { UnsafePointer(p + $0) }, cls: tab.clsToken.map { UnsafePointer(p + $0) },
            pos: p + tab.posEmbed, batch: batch, dim: d, geometry: c.patchGeometry, pool: pool)
        var x = UnsafePointer(x0)
        if let pre = acts.preOut, let w = tab.normPreW, let bias = tab.normPreB {
            LayerNorm.forward(
                out: acts.ptr(pre), mean: acts.ptr(acts.preMean!), rstd: acts.ptr(acts.preRstd!),
                inp: x, weight: p + w, bias: p + bias, rows: n, cols: d, eps: c.normEps, pool: pool)
            x = UnsafePointer(acts.ptr(pre))
        }

        for l in 0..<tab.blocks.count {
            let o = tab.blocks[l]  // (an index loop: enumerated() allocates in debug builds)
            let a = acts.blocks[l]
            LayerNorm.forward(
                out: acts.ptr(a.ln1), mean: acts.ptr(a.ln1Mean), rstd: acts.ptr(a.ln1Rstd), inp: x,
                weight: p + o.norm1W, bias: p + o.norm1B, rows: n, cols: d, eps: c.normEps, pool: pool)
            // qkv[B,T,3D] = ln1 · W_qkvᵀ (+ b)
            Linear.forward(
                out: acts.ptr(a.qkv), inp: acts.ptr(a.ln1), weight: p + o.qkvW,
                bias: o.qkvB.map { UnsafePointer(p + $0) },
                rows: n, inFeatures: d, outFeatures: 3 * d, pool: pool)
            Attention.forward(
                out: acts.ptr(a.attnOut), att: acts.ptr(a.att), qkv: acts.ptr(a.qkv),
                batch: batch, tokens: t, dim: d, heads: c.numHeads, pool: pool)
            // res1[B,T,D] = x + (attnOut · W_projᵀ + b_proj)
            Linear.forward(
                out: acts.ptr(a.res1), inp: acts.ptr(a.attnOut), weight: p + o.projW, bias: nil, rows: n, inFeatures: d,
                outFeatures: d, pool: pool)
            Residual.forward(
                out: acts.ptr(a.res1), residual: x, inp: acts.ptr(a.res1), bias: p + o.projB, rows: n, cols: d,
                pool: pool)
            LayerNorm.forward(
                out: acts.ptr(a.ln2), mean: acts.ptr(a.ln2Mean), rstd: acts.ptr(a.ln2Rstd), inp: acts.ptr(a.res1),
                weight: p + o.norm2W, bias: p + o.norm2B, rows: n, cols: d, eps: c.normEps, pool: pool)
            // fc1[B,T,F] = ln2 · W_fc1ᵀ + b; act = gelu(fc1)
            Linear.forward(
                out: acts.ptr(a.fc1), inp: acts.ptr(a.ln2), weight: p + o.fc1W, bias: p + o.fc1B, rows: n,
                inFeatures: d,
                outFeatures: f, pool: pool)
            switch c.activation {
            case .gelu: GELU.forward(out: acts.ptr(a.act), inp: acts.ptr(a.fc1), count: n * f, pool: pool)
            case .quickGELU: QuickGELU.forward(out: acts.ptr(a.act), inp: acts.ptr(a.fc1), count: n * f, pool: pool)
            }
            // out[B,T,D] = res1 + (act · W_fc2ᵀ + b_fc2)
            Linear.forward(
                out: acts.ptr(a.out), inp: acts.ptr(a.act), weight: p + o.fc2W, bias: nil, rows: n, inFeatures: f,
                outFeatures: d, pool: pool)
            Residual.forward(
                out: acts.ptr(a.out), residual: acts.ptr(a.res1), inp: acts.ptr(a.out), bias: p + o.fc2B, rows: n,
                cols: d, pool: pool)
            x = UnsafePointer(acts.ptr(a.out))
        }

        if let norm = acts.norm, let w = tab.normW, let bias = tab.normB {
            LayerNorm.forward(
                out: acts.ptr(norm), mean: acts.ptr(acts.normMean!), rstd: acts.ptr(acts.normRstd!), inp: x,
                weight: p + w, bias: p + bias, rows: n, cols: d, eps: c.normEps, pool: pool)
            x = UnsafePointer(acts.ptr(norm))
        }
        // pooled[B,D] = x[:,0] (token) or mean of x[:,prefix...] (avg)
        TokenPool.forward(
            pooled: acts.ptr(acts.pooled), x: x, mode: c.tokenPoolMode, batch: batch, tokens: t, prefix: prefix, dim: d,
            pool: pool)
        if let fc = acts.fcOut, let w = tab.fcNormW, let bias = tab.fcNormB {
            LayerNorm.forward(
                out: acts.ptr(fc), mean: acts.ptr(acts.fcMean!), rstd: acts.ptr(acts.fcRstd!),
                inp: acts.ptr(acts.pooled), weight: p + w, bias: p + bias, rows: batch, cols: d,
                eps: c.normEps, pool: pool)
        }
        if throughHead, let logits = acts.logits, let w = tab.headW, let bias = tab.headB {
            // logits[B,K] = features · W_headᵀ + b
            Linear.forward(
                out: acts.ptr(logits), inp: acts.featuresPointer, weight: p + w, bias: p + bias, rows: batch,
                inFeatures: d, outFeatures: c.numClasses, pool: pool)
        }
    }
}
