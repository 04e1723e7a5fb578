import ViTMergeCore
import ViTMergeKernels

extension ViT {
    /// Runs the model on `input` [batch, C, H, W] and saves every activation the backward pass
    /// needs in `acts`; the output (logits, or features without a head) is `acts.output`.
    /// With `throughHead` false the pass stops at the features (`acts.featuresPointer`), for
    /// linear probing on a frozen encoder. With `forBackward` false (inference) the [B,H,T,T]
    /// attention probabilities, which only `backward` and `jvp` read, are not written; the outputs
    /// are the same bits. `jvp`, and a `backward` that reaches the encoder, then refuse to run.
    public func forward(
        input: UnsafePointer<Float>, batch: Int, acts: ViTActivations, throughHead: Bool = true,
        forBackward: Bool = true
    ) {
        let c = config
        precondition(acts.config == c, "forward: activations were made for another config")
        precondition(
            batch >= 1 && batch <= acts.capacity, "forward: batch \(batch) exceeds activation capacity \(acts.capacity)"
        )
        acts.forBackward = forBackward
        let p = parameters.base, tab = table
        let (t, d) = (c.tokens, c.embedDim)
        let prefix = c.numPrefixTokens
        let n = batch * t

        // x0[B,T,D] = [cls ; reg[R] ;] patches[B,NP,PD]·Wᵀ + b, + pos (every token, or only the patches
        // with no_embed_class); patches = im2col(input) saved
        let x0 = acts.ptr(acts.x0)
        PatchEmbed.forward(
            x: x0, patches: acts.ptr(acts.patches), input: input, weight: p + tab.patchW,
            bias: tab.patchB.map { UnsafePointer(p + $0) }, cls: tab.clsToken.map { UnsafePointer(p + $0) },
            reg: tab.regToken.map { UnsafePointer(p + $0) }, pos: p + tab.posEmbed, prefix: c.prefixTokens,
            batch: batch, dim: d, geometry: c.patchGeometry, pool: pool)
        var x = UnsafePointer(x0)
        if let pre = acts.preOut, let w = tab.normPreW, let bias = tab.normPreB {
            LayerNorm.forward(
                out: acts.ptr(pre), mean: acts.ptr(acts.preMean!), rstd: acts.ptr(acts.preRstd!),
                inp: x, weight: p + w, bias: p + bias, rows: n, cols: d, eps: c.normEps, pool: pool)
            x = UnsafePointer(acts.ptr(pre))
        }

        // x[B,T,D] = blocks(x): x += attn(ln1(x)); x += mlp(ln2(x)), per block
        x = tab.stack.forward(
            x: x, batch: batch, params: p, acts: acts.blocks, in: acts.arena.base, saveProbabilities: forBackward,
            pool: pool)

        if let norm = acts.norm, let w = tab.normW, let bias = tab.normB {
            LayerNorm.forward(
                out: acts.ptr(norm), mean: acts.ptr(acts.normMean!), rstd: acts.ptr(acts.normRstd!), inp: x,
                weight: p + w, bias: p + bias, rows: n, cols: d, eps: c.normEps, pool: pool)
            x = UnsafePointer(acts.ptr(norm))
        }
        // pooled[B,D] = x[:,0] (token) or mean of x[:,prefix...] (avg; class and register tokens excluded)
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
