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
    /// The key third of each qkv bias gets an exactly-zero gradient (see `BlockStack.backward`).
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
        let (t, d) = (c.tokens, c.embedDim)
        let prefix = c.numPrefixTokens
        let n = batch * t
        let needEncoder = options.encoder || gradInput != nil
        precondition(
            acts.forBackward || !needEncoder,
            "backward: the last forward ran with forBackward false and saved no attention probabilities")

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
        let lastOut = UnsafePointer(acts.ptr(acts.blocksOutput))
        if let w = tab.normW, let bias = tab.normB {
            dres.update(repeating: 0, count: n * d)
            LayerNorm.backward(
                dinp: dres, dweight: g + w, dbias: g + bias, dout: dln, inp: lastOut, weight: p + w,
                mean: acts.ptr(acts.normMean!), rstd: acts.ptr(acts.normRstd!), rows: n, cols: d, pool: pool)
        }
        let blocksEnd = tab.blocksEnd
        gradientReady?(blocksEnd..<tab.layout.count)

        // Blocks, last to first; dres holds dLoss/d(block output), then dLoss/d(block-0 input).
        tab.stack.backward(
            dx: dres, dln: dln, x: acts.ptr(acts.blocksInput), batch: batch, params: p, grads: g,
            acts: acts.blocks, scratch: acts.blockScratch, in: acts.arena.base, end: blocksEnd, pool: pool,
            gradientReady: gradientReady)

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
            // dW_patch, db_patch, dcls, dreg, dpos += the patch embedding's parameter gradients from dx[B,T,D]
            PatchEmbed.backward(
                dweight: g + tab.patchW, dbias: tab.patchB.map { g + $0 }, dcls: tab.clsToken.map { g + $0 },
                dreg: tab.regToken.map { g + $0 }, dpos: g + tab.posEmbed, dx: dx, patches: acts.ptr(acts.patches),
                prefix: c.prefixTokens, batch: batch, dim: d, geometry: c.patchGeometry, pool: pool)
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
