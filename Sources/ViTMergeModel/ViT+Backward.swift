import ViTMergeCore
import ViTMergeKernels

/// Which parameters `ViT.backward` computes gradients for.
public struct BackwardOptions: Sendable {
    /// Compute head gradients (false when the head is frozen, as in aligned fine-tuning).
    public var head = true
    /// Propagate into the encoder (false when only the head trains, as in linear probing).
    public var encoder = true
    public init(head: Bool = true, encoder: Bool = true) {
        self.head = head
        self.encoder = encoder
    }
}

extension ViT {
    /// Backward pass for the batch of the last `forward(input:batch:acts:)`, starting from
    /// `acts.outputGradient` (dLoss/dOutput, e.g. set by `crossEntropy`). Accumulates (+=) into
    /// `grads` (an arena with the parameters' layout; the caller zeroes it). When `gradInput` is
    /// given, dLoss/dInput [batch, C, H, W] is written there (overwritten).
    ///
    /// The backward consumes some saved activations as scratch (the MLP activations); run
    /// `forward` again before another backward.
    ///
    /// The key third of each qkv bias gets an exactly-zero gradient: softmax is invariant to
    /// the q·b_k shift it causes, so its true gradient is 0 (float rounding would give ~1e-8
    /// noise that Adam amplifies; torch's golden runs zero it the same way).
    ///
    /// With `tokenGradient` [batch, T, D] the pass starts from a gradient on the final tokens
    /// (`acts.tokensPointer`, e.g. from a per-token decoder) instead: head, fc_norm and pooling
    /// are skipped.
    ///
    /// `gradientReady`, if given, is told each arena range as soon as its gradients are final, in
    /// descending contiguous order: [end of the blocks, end), each block last to first, then the
    /// embeddings [0, first block) — so data-parallel training can start reducing them while the
    /// backward goes on. A range is not reported when the pass stops before reaching it.
    public func backward(
        input: UnsafePointer<Float>, batch: Int, acts: ViTActivations, grads: Arena,
        gradInput: UnsafeMutablePointer<Float>? = nil, options: BackwardOptions = BackwardOptions(),
        tokenGradient: UnsafePointer<Float>? = nil, gradientReady: ((Range<Int>) -> Void)? = nil
    ) {
        let c = config
        precondition(grads.count == table.layout.count, "backward: gradient arena has the wrong layout")
        precondition(
            batch >= 1 && batch <= acts.capacity,
            "backward: batch \(batch) exceeds activation capacity \(acts.capacity)")
        let p = UnsafePointer(parameters.base), g = grads.base, tab = table
        let (t, d, f, np, h) = (c.tokens, c.embedDim, c.hiddenDim, c.numPatches, c.numHeads)
        let prefix = c.classToken ? 1 : 0
        let n = batch * t
        let needEncoder = options.encoder || gradInput != nil

        let dres = acts.ptr(acts.dres), dln = acts.ptr(acts.dln)
        let dtop = acts.norm == nil ? dres : dln
        if let tokenGradient {
            guard needEncoder else { return }
            dtop.update(from: tokenGradient, count: n * d)
        } else {
            // Head: dfeatures = dlogits · W; dW += dlogitsᵀ · features; db += Σ dlogits.
            let dfeat = acts.ptr(c.fcNorm ? acts.dfc : acts.dpooled)
            if let w = tab.headW, let bias = tab.headB {
                let k = c.numClasses
                if options.head {
                    linearBackward(
                        dinp: needEncoder ? dfeat : nil, dw: g + w, dbias: g + bias, dout: acts.outputGradient,
                        inp: acts.featuresPointer, w: p + w, rows: batch, inF: d, outF: k)
                } else if needEncoder {
                    sgemm(
                        transA: false, transB: false, m: batch, n: d, k: k, a: acts.outputGradient, lda: k, b: p + w,
                        ldb: d,
                        beta: 0, c: dfeat, ldc: d, pool: pool)
                }
            } else {
                dfeat.update(from: acts.outputGradient, count: batch * d)
            }
            guard needEncoder else { return }

            if let w = tab.fcNormW, let bias = tab.fcNormB {
                acts.ptr(acts.dpooled).update(repeating: 0, count: batch * d)
                LayerNorm.backward(
                    dinp: acts.ptr(acts.dpooled), dweight: g + w, dbias: g + bias, dout: dfeat,
                    inp: acts.ptr(acts.pooled), weight: p + w, mean: acts.ptr(acts.fcMean!),
                    rstd: acts.ptr(acts.fcRstd!),
                    rows: batch, cols: d, pool: pool)
            }
            // Pooling backward into the residual-stream gradient (through `norm` when present).
            let dpooled = UnsafePointer(acts.ptr(acts.dpooled))
            dtop.update(repeating: 0, count: n * d)
            for b in 0..<batch {
                let db = dtop + b * t * d, dp = dpooled + b * d
                switch c.globalPool {
                case .token: db.update(from: dp, count: d)
                case .avg:
                    let s = 1 / Float(t - prefix)
                    for r in prefix..<t { for i in 0..<d { db[r * d + i] = dp[i] * s } }
                }
            }
        }
        let lastOut: UnsafePointer<Float> =
            tab.blocks.isEmpty
            ? UnsafePointer(acts.ptr(acts.preOut ?? acts.x0)) : UnsafePointer(acts.ptr(acts.blocks.last!.out))
        if let w = tab.normW, let bias = tab.normB {
            dres.update(repeating: 0, count: n * d)
            LayerNorm.backward(
                dinp: dres, dweight: g + w, dbias: g + bias, dout: dln, inp: lastOut, weight: p + w,
                mean: acts.ptr(acts.normMean!), rstd: acts.ptr(acts.normRstd!), rows: n, cols: d, pool: pool)
        }
        let blocksEnd = tab.blocksEnd
        gradientReady?(blocksEnd..<tab.layout.count)

        // Blocks, last to first; dres holds dLoss/d(block output).
        for l in stride(from: tab.blocks.count - 1, through: 0, by: -1) {
            let o = tab.blocks[l], a = acts.blocks[l]
            let blockIn: UnsafePointer<Float> =
                l > 0
                ? UnsafePointer(acts.ptr(acts.blocks[l - 1].out)) : UnsafePointer(acts.ptr(acts.preOut ?? acts.x0))
            let dhidden = acts.ptr(acts.dhidden)
            // MLP: out = res1 + fc2(act(fc1(ln2))) + b
            linearBackward(
                dinp: dhidden, dw: g + o.fc2W, dbias: g + o.fc2B, dout: dres, inp: acts.ptr(a.act), w: p + o.fc2W,
                rows: n, inF: f, outF: d)
            let dfc1 = acts.ptr(a.act)  // the activation is no longer needed: reuse it for dfc1
            dfc1.update(repeating: 0, count: n * f)
            switch c.activation {
            case .gelu: GELU.backward(dinp: dfc1, inp: acts.ptr(a.fc1), dout: dhidden, count: n * f, pool: pool)
            case .quickGELU:
                QuickGELU.backward(dinp: dfc1, inp: acts.ptr(a.fc1), dout: dhidden, count: n * f, pool: pool)
            }
            linearBackward(
                dinp: dln, dw: g + o.fc1W, dbias: g + o.fc1B, dout: dfc1, inp: acts.ptr(a.ln2), w: p + o.fc1W,
                rows: n, inF: d, outF: f)
            LayerNorm.backward(
                dinp: dres, dweight: g + o.norm2W, dbias: g + o.norm2B, dout: dln, inp: acts.ptr(a.res1),
                weight: p + o.norm2W, mean: acts.ptr(a.ln2Mean), rstd: acts.ptr(a.ln2Rstd), rows: n, cols: d, pool: pool
            )
            // Attention: res1 = x + proj(attn(qkv(ln1(x)))) + b
            let dattn = acts.ptr(acts.dattnOut), dqkv = acts.ptr(acts.dqkv)
            linearBackward(
                dinp: dattn, dw: g + o.projW, dbias: g + o.projB, dout: dres, inp: acts.ptr(a.attnOut), w: p + o.projW,
                rows: n, inF: d, outF: d)
            dqkv.update(repeating: 0, count: n * 3 * d)
            Attention.backward(
                dqkv: dqkv, datt: acts.ptr(acts.datt), dout: dattn, qkv: acts.ptr(a.qkv), att: acts.ptr(a.att),
                batch: batch, tokens: t, dim: d, heads: h, pool: pool)
            linearBackward(
                dinp: dln, dw: g + o.qkvW, dbias: nil, dout: dqkv, inp: acts.ptr(a.ln1), w: p + o.qkvW,
                rows: n, inF: d, outF: 3 * d)
            if let qb = o.qkvB {
                // q and v thirds; the key third's true gradient is exactly 0 (see above).
                Elementwise.biasAddBackward(dbias: g + qb, dout: dqkv, rows: n, cols: d, ld: 3 * d, pool: pool)
                Elementwise.biasAddBackward(
                    dbias: g + qb + 2 * d, dout: dqkv + 2 * d, rows: n, cols: d, ld: 3 * d, pool: pool)
            }
            LayerNorm.backward(
                dinp: dres, dweight: g + o.norm1W, dbias: g + o.norm1B, dout: dln, inp: blockIn,
                weight: p + o.norm1W, mean: acts.ptr(a.ln1Mean), rstd: acts.ptr(a.ln1Rstd), rows: n, cols: d, pool: pool
            )
            gradientReady?(o.norm1W..<(l + 1 < tab.blocks.count ? tab.blocks[l + 1].norm1W : blocksEnd))
        }

        // dres now holds dLoss/d(block-0 input); through norm_pre to the embeddings.
        var dx = UnsafePointer(dres)
        if let w = tab.normPreW, let bias = tab.normPreB {
            dln.update(repeating: 0, count: n * d)
            LayerNorm.backward(
                dinp: dln, dweight: g + w, dbias: g + bias, dout: dres, inp: acts.ptr(acts.x0), weight: p + w,
                mean: acts.ptr(acts.preMean!), rstd: acts.ptr(acts.preRstd!), rows: n, cols: d, pool: pool)
            dx = UnsafePointer(dln)
        }
        if options.encoder {
            for b in 0..<batch {
                Elementwise.axpy(y: g + tab.posEmbed, x: dx + b * t * d, alpha: 1, count: t * d, pool: pool)
            }
            if let cls = tab.clsToken { for b in 0..<batch { for i in 0..<d { g[cls + i] += dx[b * t * d + i] } } }
            for b in 0..<batch {
                let rows = dx + (b * t + prefix) * d
                sgemm(
                    transA: true, transB: false, m: d, n: c.patchDim, k: np, a: rows, lda: d,
                    b: acts.ptr(acts.patches) + b * np * c.patchDim, ldb: c.patchDim, beta: 1, c: g + tab.patchW,
                    ldc: c.patchDim, pool: pool)
                if let pb = tab.patchB {
                    Elementwise.biasAddBackward(dbias: g + pb, dout: rows, rows: np, cols: d, pool: pool)
                }
            }
            gradientReady?(0..<(tab.blocks.first?.norm1W ?? blocksEnd))
        }
        if let gradInput {
            let dpatches = acts.ptr(acts.dpatches)
            sgemmBatched(
                transA: false, transB: false, m: np, n: c.patchDim, k: d,
                a: dx + prefix * d, lda: d, strideA: (t * d, 0), b: p + tab.patchW, ldb: c.patchDim, strideB: (0, 0),
                beta: 0, c: dpatches, ldc: c.patchDim, strideC: (np * c.patchDim, 0), batch: (batch, 1), pool: pool)
            col2im(gradInput, dpatches, batch: batch)
        }
    }
}
