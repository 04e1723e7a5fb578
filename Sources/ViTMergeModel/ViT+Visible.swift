import ViTMergeCore
import ViTMergeKernels

/// What the encoder saves when it runs on a subset of each image's patch tokens (MAE's encoder on
/// the visible patches), for up to `capacity` images of `visible` kept patches each: the full
/// patch embedding x0 [B, T, D] (position embeddings added), the kept tokens [B, K, D] with
/// K = prefix tokens + visible, and the blocks, norms and backward scratch at K tokens.
public final class VisibleActivations: @unchecked Sendable {
    public let config: ViTConfig
    public let capacity: Int
    /// Patch tokens kept per image.
    public let visible: Int
    /// Tokens the blocks see per image: the prefix tokens (class, registers), then the kept patches.
    public var tokens: Int { config.numPrefixTokens + visible }
    let arena: Arena
    let patches, x0, dx0, kept: Int
    let preOut: Int?, preMean: Int?, preRstd: Int?
    let blocks: [BlockActivations]
    let norm: Int?, normMean: Int?, normRstd: Int?
    let dres, dln: Int
    let blockScratch: BlockScratch
    let stack: BlockStack

    public init(config c: ViTConfig, capacity b: Int, visible: Int) {
        precondition(b >= 1 && visible >= 1 && visible <= c.numPatches, "VisibleActivations: bad capacity or count")
        config = c
        capacity = b
        self.visible = visible
        let (t, d, k) = (c.tokens, c.embedDim, c.numPrefixTokens + visible)
        var shape = c.blockShape
        shape.tokens = k
        stack = BlockStack(shape: shape, params: ParameterTable(config: c).blocks)
        var l = Arena.Layout()
        patches = l.add("patches", [b, c.numPatches, c.patchDim])
        x0 = l.add("x0", [b, t, d])
        dx0 = l.add("d.x0", [b, t, d])
        kept = l.add("kept", [b, k, d])
        preOut = c.preNorm ? l.add("pre", [b, k, d]) : nil
        preMean = c.preNorm ? l.add("pre.mean", [b, k]) : nil
        preRstd = c.preNorm ? l.add("pre.rstd", [b, k]) : nil
        var blocks: [BlockActivations] = []
        for i in 0..<c.depth {
            blocks.append(BlockActivations(adding: &l, prefix: "blocks.\(i).", shape: shape, capacity: b))
        }
        self.blocks = blocks
        norm = c.fcNorm ? nil : l.add("norm", [b, k, d])
        normMean = c.fcNorm ? nil : l.add("norm.mean", [b, k])
        normRstd = c.fcNorm ? nil : l.add("norm.rstd", [b, k])
        dres = l.add("d.res", [b, k, d])
        dln = l.add("d.ln", [b, k, d])
        blockScratch = BlockScratch(adding: &l, prefix: "", shape: shape, capacity: b)
        arena = Arena(layout: l)
    }

    @inline(__always) func ptr(_ offset: Int) -> UnsafeMutablePointer<Float> { arena.base + offset }

    var blocksInput: Int { preOut ?? kept }
    var blocksOutput: Int { blocks.isEmpty ? blocksInput : blocks[blocks.count - 1].out }

    /// The final representations [B, K, D] of the kept tokens (after `norm` when present).
    public var tokensPointer: UnsafeMutablePointer<Float> { ptr(norm ?? blocksOutput) }
    /// The image patches [B, NP, C·p·p] of the last forward (im2col, in (channel, row, column) order).
    public var patchesPointer: UnsafeMutablePointer<Float> { ptr(patches) }
}

extension ViT {
    /// The encoder on some tokens of each image only (MAE, He et al. 2022): the patch embedding
    /// with position embeddings of every patch, x0 [B, T, D]; then the rows `keep` [batch, K]
    /// (indices into x0's T tokens: the prefix tokens and the visible patches) are gathered,
    /// and norm_pre, the blocks and norm run on [B, K, D] (`acts.tokensPointer`). Pooling and head
    /// are not run.
    public func forward(
        input: UnsafePointer<Float>, batch: Int, keep: UnsafePointer<Int32>, acts: VisibleActivations
    ) {
        let c = config
        precondition(acts.config == c, "forward: activations were made for another config")
        precondition(batch >= 1 && batch <= acts.capacity, "forward: batch \(batch) exceeds \(acts.capacity)")
        let p = parameters.base, tab = table
        let (t, d, k) = (c.tokens, c.embedDim, acts.tokens)
        let n = batch * k
        // x0[B,T,D] = [cls ; reg ;] patches · Wᵀ + b, + pos (as the full forward)
        PatchEmbed.forward(
            x: acts.ptr(acts.x0), patches: acts.ptr(acts.patches), input: input, weight: p + tab.patchW,
            bias: tab.patchB.map { UnsafePointer(p + $0) }, cls: tab.clsToken.map { UnsafePointer(p + $0) },
            reg: tab.regToken.map { UnsafePointer(p + $0) }, pos: p + tab.posEmbed, prefix: c.prefixTokens,
            batch: batch, dim: d, geometry: c.patchGeometry, pool: pool)
        // kept[B,K,D] = x0[b, keep[b, r]]
        TokenGather.forward(
            out: acts.ptr(acts.kept), inp: acts.ptr(acts.x0), index: keep, batch: batch, inTokens: t, outTokens: k,
            dim: d, pool: pool)
        var x = UnsafePointer(acts.ptr(acts.kept))
        if let pre = acts.preOut, let w = tab.normPreW, let bias = tab.normPreB {
            LayerNorm.forward(
                out: acts.ptr(pre), mean: acts.ptr(acts.preMean!), rstd: acts.ptr(acts.preRstd!), inp: x,
                weight: p + w, bias: p + bias, rows: n, cols: d, eps: c.normEps, pool: pool)
            x = UnsafePointer(acts.ptr(pre))
        }
        x = acts.stack.forward(x: x, batch: batch, params: p, acts: acts.blocks, in: acts.arena.base, pool: pool)
        if let norm = acts.norm, let w = tab.normW, let bias = tab.normB {
            LayerNorm.forward(
                out: acts.ptr(norm), mean: acts.ptr(acts.normMean!), rstd: acts.ptr(acts.normRstd!), inp: x,
                weight: p + w, bias: p + bias, rows: n, cols: d, eps: c.normEps, pool: pool)
        }
    }

    /// Backward of `forward(input:batch:keep:acts:)` from `tokenGradient` [batch, K, D] (dLoss/d
    /// `acts.tokensPointer`), accumulating (+=) into `grads` (parameters' layout): the dropped
    /// tokens get no gradient, so their position embeddings' rows get none from this batch.
    /// `gradientReady` is told the arena ranges as `backward` tells them (descending, contiguous).
    public func backward(
        batch: Int, keep: UnsafePointer<Int32>, acts: VisibleActivations, grads: Arena,
        tokenGradient: UnsafePointer<Float>, gradientReady: ((Range<Int>) -> Void)? = nil
    ) {
        let c = config
        precondition(grads.count == table.layout.count, "backward: gradient arena has the wrong layout")
        precondition(batch >= 1 && batch <= acts.capacity, "backward: batch \(batch) exceeds \(acts.capacity)")
        let p = UnsafePointer(parameters.base), g = grads.base, tab = table
        let (t, d, k) = (c.tokens, c.embedDim, acts.tokens)
        let n = batch * k
        let dres = acts.ptr(acts.dres), dln = acts.ptr(acts.dln)
        if let w = tab.normW, let bias = tab.normB {
            dres.update(repeating: 0, count: n * d)
            LayerNorm.backward(
                dinp: dres, dweight: g + w, dbias: g + bias, dout: tokenGradient,
                inp: acts.ptr(acts.blocksOutput), weight: p + w, mean: acts.ptr(acts.normMean!),
                rstd: acts.ptr(acts.normRstd!), rows: n, cols: d, pool: pool)
        } else {
            dres.update(from: tokenGradient, count: n * d)
        }
        let blocksEnd = tab.blocksEnd
        gradientReady?(blocksEnd..<tab.layout.count)
        acts.stack.backward(
            dx: dres, dln: dln, x: acts.ptr(acts.blocksInput), batch: batch, params: p, grads: g, acts: acts.blocks,
            scratch: acts.blockScratch, in: acts.arena.base, end: blocksEnd, pool: pool, gradientReady: gradientReady)
        var dx = UnsafePointer(dres)
        if let w = tab.normPreW, let bias = tab.normPreB {
            dln.update(repeating: 0, count: n * d)
            LayerNorm.backward(
                dinp: dln, dweight: g + w, dbias: g + bias, dout: dres, inp: acts.ptr(acts.kept), weight: p + w,
                mean: acts.ptr(acts.preMean!), rstd: acts.ptr(acts.preRstd!), rows: n, cols: d, pool: pool)
            dx = UnsafePointer(dln)
        }
        // dx0[B,T,D]: the kept rows' gradients scattered back, 0 for the dropped tokens.
        let dx0 = acts.ptr(acts.dx0)
        dx0.update(repeating: 0, count: batch * t * d)
        TokenGather.backward(
            dinp: dx0, dout: dx, index: keep, batch: batch, inTokens: t, outTokens: k, dim: d, pool: pool)
        PatchEmbed.backward(
            dweight: g + tab.patchW, dbias: tab.patchB.map { g + $0 }, dcls: tab.clsToken.map { g + $0 },
            dreg: tab.regToken.map { g + $0 }, dpos: g + tab.posEmbed, dx: dx0, patches: acts.ptr(acts.patches),
            prefix: c.prefixTokens, batch: batch, dim: d, geometry: c.patchGeometry, pool: pool)
        gradientReady?(0..<(tab.blocks.first?.norm1W ?? blocksEnd))
    }
}
