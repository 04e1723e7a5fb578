import ViTMergeCore
import ViTMergeKernels

/// The light decoder of a masked autoencoder (He et al. 2022, the reference `models_mae.py`):
/// the encoder's kept tokens [B, K, D] are embedded to the decoder width (`decoder_embed`), put
/// back at their positions with a learned `mask_token` at every dropped patch (the unshuffle),
/// plus the decoder's own learned position embedding (`decoder_pos_embed`, one row per token:
/// prefix tokens then patches); `depth` pre-norm blocks of width `dim`, `decoder_norm`, and
/// `decoder_pred` to the p·p·C pixels of each patch (in im2col order: channel, row, column).
/// Its parameters live in their own arena (`layout`, the reference's tensor names), so the
/// encoder's checkpoint layout is unchanged.
public struct MAEDecoder: Sendable {
    public let encoder: ViTConfig
    public let depth, dim, heads: Int
    public let layout: Arena.Layout
    public let maskToken, embedW, embedB, posEmbed, normW, normB, predW, predB: Int
    public let stack: BlockStack

    /// Tokens the decoder sees per image: the encoder's prefix tokens, then every patch.
    public var tokens: Int { encoder.tokens }
    /// Pixels predicted per patch.
    public var patchDim: Int { encoder.patchDim }

    /// A decoder for `encoder`'s tokens: `depth` blocks of width `dim` with `heads` heads (dim
    /// divisible by heads) and an MLP of `mlpRatio`·dim.
    public init(encoder c: ViTConfig, depth: Int, dim: Int, heads: Int, mlpRatio: Double = 4) {
        precondition(depth >= 0 && dim >= 1 && heads >= 1 && dim % heads == 0, "MAEDecoder: bad shape")
        encoder = c
        (self.depth, self.dim, self.heads) = (depth, dim, heads)
        let shape = BlockShape(
            tokens: c.tokens, dim: dim, hidden: max(1, Int(Double(dim) * mlpRatio)), heads: heads, qkvBias: true,
            activation: .gelu, eps: 1e-6)
        var l = Arena.Layout()
        maskToken = l.add("mask_token", [1, 1, dim])
        embedW = l.add("decoder_embed.weight", [dim, c.embedDim])
        embedB = l.add("decoder_embed.bias", [dim])
        posEmbed = l.add("decoder_pos_embed", [1, c.tokens, dim])
        var blocks: [BlockOffsets] = []
        for i in 0..<depth { blocks.append(BlockOffsets(adding: &l, prefix: "decoder_blocks.\(i).", shape: shape)) }
        stack = BlockStack(shape: shape, params: blocks)
        normW = l.add("decoder_norm.weight", [dim])
        normB = l.add("decoder_norm.bias", [dim])
        predW = l.add("decoder_pred.weight", [c.patchDim, dim])
        predB = l.add("decoder_pred.bias", [c.patchDim])
        layout = l
    }

    /// Tensor names in arena order.
    public var names: [String] { layout.regions.map(\.name) }

    /// Initializes `params` (an arena with `layout`), from one seed: Linear weights, mask_token and
    /// decoder_pos_embed truncated-normal(0, 0.02) in [−2, 2] (as the encoder's), LayerNorms 1 and 0,
    /// biases 0.
    public func initialize(_ params: Arena, seed: UInt64) {
        precondition(params.count == layout.count, "MAEDecoder.initialize: the arena has another layout")
        params.zero()
        var rng = RNG(seed: seed, stream: 0x4D41_4544)
        for r in layout.regions {
            let p = params.base + r.offset, n = r.shape.count
            let isNorm =
                r.name.hasSuffix("norm1.weight") || r.name.hasSuffix("norm2.weight")
                || r.name == "decoder_norm.weight"
            if isNorm {
                p.update(repeating: 1, count: n)
            } else if r.name.hasSuffix(".weight") || r.name == "mask_token" || r.name == "decoder_pos_embed" {
                for i in 0..<n { p[i] = Float(rng.truncatedNormal(mean: 0, std: 0.02, lo: -2, hi: 2)) }
            }
        }
    }

    public func makeActivations(capacity: Int) -> MAEDecoderActivations {
        MAEDecoderActivations(decoder: self, capacity: capacity)
    }

    /// pred[B, T, p·p·C] = the decoder on `encoded` [batch, K, D] (the encoder's kept tokens), with
    /// `index` [batch, T] giving each decoder token's row of `encoded`, or −1 for a mask token.
    /// Saves what `backward` needs in `acts`; returns `acts.predPointer`.
    @discardableResult
    public func forward(
        encoded: UnsafePointer<Float>, kept k: Int, index: UnsafePointer<Int32>, batch: Int,
        params p: UnsafePointer<Float>, acts: MAEDecoderActivations, pool: ThreadPool = .shared
    ) -> UnsafeMutablePointer<Float> {
        precondition(batch >= 1 && batch <= acts.capacity && k <= tokens, "MAEDecoder.forward: bad batch or kept")
        let (t, d, dd, pd) = (tokens, encoder.embedDim, dim, patchDim)
        let a = acts.arena.base
        // emb[B·K, Dd] = encoded · W_embedᵀ + b
        Linear.forward(
            out: a + acts.emb, inp: encoded, weight: p + embedW, bias: p + embedB, rows: batch * k, inFeatures: d,
            outFeatures: dd, pool: pool)
        // x[B,T,Dd] = (emb[b, index] or mask_token) + decoder_pos_embed
        TokenGather.forward(
            out: a + acts.x, inp: a + acts.emb, index: index, fill: p + maskToken, add: p + posEmbed, batch: batch,
            inTokens: k, outTokens: t, dim: dd, pool: pool)
        let x = stack.forward(x: a + acts.x, batch: batch, params: p, acts: acts.blocks, in: a, pool: pool)
        LayerNorm.forward(
            out: a + acts.norm, mean: a + acts.normMean, rstd: a + acts.normRstd, inp: x, weight: p + normW,
            bias: p + normB, rows: batch * t, cols: dd, eps: 1e-6, pool: pool)
        // pred[B·T, PD] = norm · W_predᵀ + b
        Linear.forward(
            out: a + acts.pred, inp: a + acts.norm, weight: p + predW, bias: p + predB, rows: batch * t,
            inFeatures: dd, outFeatures: pd, pool: pool)
        return a + acts.pred
    }

    /// Backward of the last `forward` from `dpred` [batch, T, PD]: parameter gradients accumulate
    /// (+=) into `g` (an arena with `layout`); dLoss/d`encoded` is written to `dencoded` [batch, K, D]
    /// (overwritten). Consumes the blocks' MLP activations as scratch.
    public func backward(
        dpred: UnsafePointer<Float>, dencoded: UnsafeMutablePointer<Float>, encoded: UnsafePointer<Float>, kept k: Int,
        index: UnsafePointer<Int32>, batch: Int, params p: UnsafePointer<Float>, grads g: UnsafeMutablePointer<Float>,
        acts: MAEDecoderActivations, pool: ThreadPool = .shared
    ) {
        precondition(batch >= 1 && batch <= acts.capacity && k <= tokens, "MAEDecoder.backward: bad batch or kept")
        let (t, d, dd, pd) = (tokens, encoder.embedDim, dim, patchDim)
        let a = acts.arena.base
        let n = batch * t
        let dres = a + acts.dres, dln = a + acts.dln
        let blocksOut = depth == 0 ? a + acts.x : a + acts.blocks[depth - 1].out
        Linear.backward(
            dinp: dln, dweight: g + predW, dbias: g + predB, dout: dpred, inp: a + acts.norm, weight: p + predW,
            rows: n, inFeatures: dd, outFeatures: pd, pool: pool)
        dres.update(repeating: 0, count: n * dd)
        LayerNorm.backward(
            dinp: dres, dweight: g + normW, dbias: g + normB, dout: dln, inp: blocksOut, weight: p + normW,
            mean: a + acts.normMean, rstd: a + acts.normRstd, rows: n, cols: dd, pool: pool)
        stack.backward(
            dx: dres, dln: dln, x: a + acts.x, batch: batch, params: p, grads: g, acts: acts.blocks,
            scratch: acts.blockScratch, in: a, end: normW, pool: pool, gradientReady: nil)
        // demb[B,K,Dd] = the kept tokens' rows of dres; mask_token and decoder_pos_embed get theirs.
        let demb = a + acts.demb
        demb.update(repeating: 0, count: batch * k * dd)
        TokenGather.backward(
            dinp: demb, dfill: g + maskToken, dadd: g + posEmbed, dout: dres, index: index, batch: batch, inTokens: k,
            outTokens: t, dim: dd, pool: pool)
        Linear.backward(
            dinp: dencoded, dweight: g + embedW, dbias: g + embedB, dout: demb, inp: encoded, weight: p + embedW,
            rows: batch * k, inFeatures: d, outFeatures: dd, pool: pool)
    }
}

/// The decoder's saved activations and backward scratch for up to `capacity` images (one arena).
/// The kept-token regions are sized for every token, so any kept count fits.
public final class MAEDecoderActivations: @unchecked Sendable {
    public let capacity: Int
    let arena: Arena
    let emb, x, norm, normMean, normRstd, pred, dres, dln, demb: Int
    let blocks: [BlockActivations]
    let blockScratch: BlockScratch

    init(decoder m: MAEDecoder, capacity b: Int) {
        precondition(b >= 1, "MAEDecoderActivations: capacity must be ≥ 1")
        capacity = b
        let (t, dd) = (m.tokens, m.dim)
        var l = Arena.Layout()
        emb = l.add("emb", [b, t, dd])
        x = l.add("x", [b, t, dd])
        var blocks: [BlockActivations] = []
        for i in 0..<m.depth {
            blocks.append(BlockActivations(adding: &l, prefix: "blocks.\(i).", shape: m.stack.shape, capacity: b))
        }
        self.blocks = blocks
        norm = l.add("norm", [b, t, dd])
        normMean = l.add("norm.mean", [b, t])
        normRstd = l.add("norm.rstd", [b, t])
        pred = l.add("pred", [b, t, m.patchDim])
        dres = l.add("d.res", [b, t, dd])
        dln = l.add("d.ln", [b, t, dd])
        demb = l.add("d.emb", [b, t, dd])
        blockScratch = BlockScratch(adding: &l, prefix: "", shape: m.stack.shape, capacity: b)
        arena = Arena(layout: l)
    }

    /// The last forward's predictions [B, T, p·p·C] (the prefix tokens' rows are not used).
    public var predPointer: UnsafeMutablePointer<Float> { arena.base + pred }
}
