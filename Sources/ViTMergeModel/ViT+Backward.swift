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
        let (t, d, f, h) = (c.tokens, c.embedDim, c.hiddenDim, c.numHeads)
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
                    Linear.backward(
                        dinp: needEncoder ? dfeat : nil, dweight: g + w, dbias: g + bias, dout: acts.outputGradient,
                        inp: acts.featuresPointer, weight: p + w, rows: batch, inFeatures: d, outFeatures: k, pool: pool
                    )
                } else if needEncoder {
                    Linear.backwardInput(
                        dinp: dfeat, dout: acts.outputGradient, weight: p + w, rows: batch, inFeatures: d,
                        outFeatures: k,
                        pool: pool)
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
            TokenPool.backward(
                dx: dtop, dpooled: dpooled, mode: c.tokenPoolMode, batch: batch, tokens: t, prefix: prefix, dim: d,
                pool: pool)
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
        for r in 0..<tab.blocks.count {  // blocks in reverse (an index loop: stride allocates in debug builds)
            let l = tab.blocks.count - 1 - r
            let o = tab.blocks[l], a = acts.blocks[l]
            let blockIn: UnsafePointer<Float> =
                l > 0
                ? UnsafePointer(acts.ptr(acts.blocks[l - 1].out)) : UnsafePointer(acts.ptr(acts.preOut ?? acts.x0))
            let dhidden = acts.ptr(acts.dhidden)
            // MLP: out = res1 + fc2(act(fc1(ln2))) + b
            // dhidden[B,T,F] = dres · W_fc2; dW_fc2 += dresᵀ · act; db_fc2 += Σ dres (the residual passes dres on)
            Linear.backward(
                dinp: dhidden, dweight: g + o.fc2W, dbias: nil, dout: dres, inp: acts.ptr(a.act), weight: p + o.fc2W,
                rows: n, inFeatures: f, outFeatures: d, pool: pool)
            Residual.backward(dbias: g + o.fc2B, dout: dres, rows: n, cols: d, pool: pool)
            let dfc1 = acts.ptr(a.act)  // the activation is no longer needed: reuse it for dfc1
            dfc1.update(repeating: 0, count: n * f)
            switch c.activation {
            case .gelu: GELU.backward(dinp: dfc1, inp: acts.ptr(a.fc1), dout: dhidden, count: n * f, pool: pool)
            case .quickGELU:
                QuickGELU.backward(dinp: dfc1, inp: acts.ptr(a.fc1), dout: dhidden, count: n * f, pool: pool)
            }
            Linear.backward(
                dinp: dln, dweight: g + o.fc1W, dbias: g + o.fc1B, dout: dfc1, inp: acts.ptr(a.ln2), weight: p + o.fc1W,
                rows: n, inFeatures: d, outFeatures: f, pool: pool)
            LayerNorm.backward(
                dinp: dres, dweight: g + o.norm2W, dbias: g + o.norm2B, dout: dln, inp: acts.ptr(a.res1),
                weight: p + o.norm2W, mean: acts.ptr(a.ln2Mean), rstd: acts.ptr(a.ln2Rstd), rows: n, cols: d, pool: pool
            )
            // Attention: res1 = x + proj(attn(qkv(ln1(x)))) + b
            let dattn = acts.ptr(acts.dattnOut), dqkv = acts.ptr(acts.dqkv)
            Linear.backward(
                dinp: dattn, dweight: g + o.projW, dbias: nil, dout: dres, inp: acts.ptr(a.attnOut),
                weight: p + o.projW,
                rows: n, inFeatures: d, outFeatures: d, pool: pool)
            Residual.backward(dbias: g + o.projB, dout: dres, rows: n, cols: d, pool: pool)
            dqkv.update(repeating: 0, count: n * 3 * d)
            Attention.backward(
                dqkv: dqkv, datt: acts.ptr(acts.datt), dout: dattn, qkv: acts.ptr(a.qkv), att: acts.ptr(a.att),
                batch: batch, tokens: t, dim: d, heads: h, pool: pool)
            Linear.backward(
                dinp: dln, dweight: g + o.qkvW, dbias: nil, dout: dqkv, inp: acts.ptr(a.ln1), weight: p + o.qkvW,
                rows: n, inFeatures: d, outFeatures: 3 * d, pool: pool)
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
            // dW_patch, db_patch, dcls, dpos += the patch embedding's parameter gradients from dx[B,T,D]
            PatchEmbed.backward(
                dweight: g + tab.patchW, dbias: tab.patchB.map { g + $0 }, dcls: tab.clsToken.map { g + $0 },
                dpos: g + tab.posEmbed, dx: dx, patches: acts.ptr(acts.patches), batch: batch, dim: d,
                geometry: c.patchGeometry, pool: pool)
            gradientReady?(0..<(tab.blocks.first?.norm1W ?? blocksEnd))
        }
        if let gradInput {
            // gradInput[B,C,H,W] = col2im(dx[:, prefix...] · W_patch)
            PatchEmbed.backwardInput(
                dinput: gradInput, dpatches: acts.ptr(acts.dpatches), dx: dx, weight: p + tab.patchW, prefix: prefix,
                batch: batch, dim: d, geometry: c.patchGeometry, pool: pool)
        }
    }
}
