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
        let (t, d, f, np) = (c.tokens, c.embedDim, c.hiddenDim, c.numPatches)
        let prefix = c.classToken ? 1 : 0
        let n = batch * t

        // Patch embedding: a stride-p convolution is a linear map of each flattened (c, i, j) patch.
        im2col(acts.ptr(acts.patches), input, batch: batch)
        let x0 = acts.ptr(acts.x0)
        sgemmBatched(
            transA: false, transB: true, m: np, n: d, k: c.patchDim,
            a: acts.ptr(acts.patches), lda: c.patchDim, strideA: (np * c.patchDim, 0),
            b: p + tab.patchW, ldb: c.patchDim, strideB: (0, 0),
            beta: 0, c: x0 + prefix * d, ldc: d, strideC: (t * d, 0), batch: (batch, 1), pool: pool)
        let pos = p + tab.posEmbed
        let patchBias = tab.patchB.map { UnsafePointer(p + $0) }
        pool.parallel(batch, cost: 3 * t * d) { _, _, range in
            for b in range {
                let xb = x0 + b * t * d
                if let cls = tab.clsToken { for i in 0..<d { xb[i] = p[cls + i] + pos[i] } }
                for r in prefix..<t {
                    let row = xb + r * d, pr = pos + r * d
                    if let patchBias {
                        for i in 0..<d { row[i] = (row[i] + patchBias[i]) + pr[i] }
                    } else {
                        for i in 0..<d { row[i] += pr[i] }
                    }
                }
            }
        }
        var x = UnsafePointer(x0)
        if let pre = acts.preOut, let w = tab.normPreW, let bias = tab.normPreB {
            LayerNorm.forward(
                out: acts.ptr(pre), mean: acts.ptr(acts.preMean!), rstd: acts.ptr(acts.preRstd!),
                inp: x, weight: p + w, bias: p + bias, rows: n, cols: d, eps: c.normEps, pool: pool)
            x = UnsafePointer(acts.ptr(pre))
        }

        for (l, o) in tab.blocks.enumerated() {
            let a = acts.blocks[l]
            LayerNorm.forward(
                out: acts.ptr(a.ln1), mean: acts.ptr(a.ln1Mean), rstd: acts.ptr(a.ln1Rstd), inp: x,
                weight: p + o.norm1W, bias: p + o.norm1B, rows: n, cols: d, eps: c.normEps, pool: pool)
            linear(
                acts.ptr(a.qkv), acts.ptr(a.ln1), p + o.qkvW, o.qkvB.map { UnsafePointer(p + $0) }, rows: n, inF: d,
                outF: 3 * d)
            Attention.forward(
                out: acts.ptr(a.attnOut), att: acts.ptr(a.att), qkv: acts.ptr(a.qkv),
                batch: batch, tokens: t, dim: d, heads: c.numHeads, pool: pool)
            linear(acts.ptr(a.res1), acts.ptr(a.attnOut), p + o.projW, nil, rows: n, inF: d, outF: d)
            addResidualAndBias(acts.ptr(a.res1), x, p + o.projB, rows: n, cols: d)
            LayerNorm.forward(
                out: acts.ptr(a.ln2), mean: acts.ptr(a.ln2Mean), rstd: acts.ptr(a.ln2Rstd), inp: acts.ptr(a.res1),
                weight: p + o.norm2W, bias: p + o.norm2B, rows: n, cols: d, eps: c.normEps, pool: pool)
            linear(acts.ptr(a.fc1), acts.ptr(a.ln2), p + o.fc1W, p + o.fc1B, rows: n, inF: d, outF: f)
            switch c.activation {
            case .gelu: GELU.forward(out: acts.ptr(a.act), inp: acts.ptr(a.fc1), count: n * f, pool: pool)
            case .quickGELU: QuickGELU.forward(out: acts.ptr(a.act), inp: acts.ptr(a.fc1), count: n * f, pool: pool)
            }
            linear(acts.ptr(a.out), acts.ptr(a.act), p + o.fc2W, nil, rows: n, inF: f, outF: d)
            addResidualAndBias(acts.ptr(a.out), acts.ptr(a.res1), p + o.fc2B, rows: n, cols: d)
            x = UnsafePointer(acts.ptr(a.out))
        }

        if let norm = acts.norm, let w = tab.normW, let bias = tab.normB {
            LayerNorm.forward(
                out: acts.ptr(norm), mean: acts.ptr(acts.normMean!), rstd: acts.ptr(acts.normRstd!), inp: x,
                weight: p + w, bias: p + bias, rows: n, cols: d, eps: c.normEps, pool: pool)
            x = UnsafePointer(acts.ptr(norm))
        }
        globalPool(acts.ptr(acts.pooled), x, batch: batch)
        if let fc = acts.fcOut, let w = tab.fcNormW, let bias = tab.fcNormB {
            LayerNorm.forward(
                out: acts.ptr(fc), mean: acts.ptr(acts.fcMean!), rstd: acts.ptr(acts.fcRstd!),
                inp: acts.ptr(acts.pooled), weight: p + w, bias: p + bias, rows: batch, cols: d,
                eps: c.normEps, pool: pool)
        }
        if throughHead, let logits = acts.logits, let w = tab.headW, let bias = tab.headB {
            linear(acts.ptr(logits), acts.featuresPointer, p + w, p + bias, rows: batch, inF: d, outF: c.numClasses)
        }
    }

    /// patches[b, gy·gw + gx, ch·p² + i·p + j] = input[b, ch, gy·p + i, gx·p + j]
    func im2col(_ patches: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, batch: Int) {
        let c = config
        let (ps, gw, gh, h, w, pd) = (c.patchSize, c.gridWidth, c.gridHeight, c.imageHeight, c.imageWidth, c.patchDim)
        pool.parallel(batch, cost: 2 * c.inChannels * h * w) { _, _, range in
            for b in range {
                for gy in 0..<gh {
                    for gx in 0..<gw {
                        let dst = patches + ((b * gh + gy) * gw + gx) * pd
                        for ch in 0..<c.inChannels {
                            for i in 0..<ps {
                                let src = input + ((b * c.inChannels + ch) * h + gy * ps + i) * w + gx * ps
                                (dst + (ch * ps + i) * ps).update(from: src, count: ps)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Inverse scatter of `im2col` (patches do not overlap): input gradient from patch gradients.
    func col2im(_ input: UnsafeMutablePointer<Float>, _ patches: UnsafePointer<Float>, batch: Int) {
        let c = config
        let (ps, gw, gh, h, w, pd) = (c.patchSize, c.gridWidth, c.gridHeight, c.imageHeight, c.imageWidth, c.patchDim)
        input.update(repeating: 0, count: batch * c.inChannels * h * w)  // pixels outside the grid get 0
        for b in 0..<batch {
            for gy in 0..<gh {
                for gx in 0..<gw {
                    let src = patches + ((b * gh + gy) * gw + gx) * pd
                    for ch in 0..<c.inChannels {
                        for i in 0..<ps {
                            let dst = input + ((b * c.inChannels + ch) * h + gy * ps + i) * w + gx * ps
                            dst.update(from: src + (ch * ps + i) * ps, count: ps)
                        }
                    }
                }
            }
        }
    }

    /// pooled[b] = x[b, 0] ("token") or the mean of x[b, prefix..<T] ("avg").
    func globalPool(_ pooled: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, batch: Int) {
        let c = config
        let (t, d) = (c.tokens, c.embedDim)
        let prefix = c.classToken ? 1 : 0
        for b in 0..<batch {
            let out = pooled + b * d, xb = x + b * t * d
            switch c.globalPool {
            case .token:
                out.update(from: xb, count: d)
            case .avg:
                for i in 0..<d {
                    var s: Float = 0
                    for r in prefix..<t { s += xb[r * d + i] }
                    out[i] = s / Float(t - prefix)
                }
            }
        }
    }
}
