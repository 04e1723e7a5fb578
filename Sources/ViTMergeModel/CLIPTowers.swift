import Foundation
import ViTMergeCore
import ViTMergeKernels

/// What CLIP (Radford et al. 2021) trains beside the image encoder: a small text transformer,
/// the two projections into the joint space and the logit scale, in one arena with open_clip-like
/// names (`layout`), so the encoder's checkpoint layout is unchanged.
///
/// Text: a caption's UTF-8 bytes are its tokens (ids 1...255; byte 0 never occurs in a caption),
/// followed by the end-of-text token (id 256) and padding (id 0) up to `contextLength` = caption
/// bytes + 1. `text.token_embedding.weight` [257, Dt] plus `text.positional_embedding` [T, Dt], then
/// `depth` pre-norm blocks (`text.blocks.{i}.`, timm's names, QuickGELU and LayerNorm eps 1e-5 as
/// CLIP's text tower), `text.ln_final` and `text_projection` [E, Dt] on the end-of-text token's
/// row (CLIP pools there too). Simplification: attention is bidirectional over all T tokens,
/// padding included (`BlockStack` has no mask; CLIP's text tower is causal, which also hides the
/// padding from the end-of-text token). Image: `visual.proj` [E, D], no bias, on the encoder's
/// pooled features. Both projections are stored as Linear weights [out, in] (open_clip stores the
/// transposes, [in, out]). `logit_scale` [] is the log of the logits' scale.
public struct CLIPTowers: Sendable {
    /// Token ids: padding, the end of text, and the vocabulary's size (bytes 0...255 + end of text).
    public static let padToken: Int32 = 0, endOfText: Int32 = 256, vocabulary = 257
    /// ln(1 / 0.07), CLIP's initial log scale, and ln 100, its upper bound.
    public static let initialLogScale = Float(log(1 / 0.07)), maxLogScale = Float(log(100.0))

    public let encoder: ViTConfig
    /// Caption bytes per sequence (longer captions are cut); tokens per sequence = bytes + 1.
    public let captionBytes, depth, dim, heads, embedDim: Int
    public let layout: Arena.Layout
    public let tokenEmbedding, positionalEmbedding, lnFinalW, lnFinalB, textProjection, visualProjection,
        logitScale: Int
    public let stack: BlockStack

    public var contextLength: Int { captionBytes + 1 }

    /// Towers for `encoder`'s pooled features: a text transformer of `depth` blocks of width `dim`
    /// with `heads` heads (dim divisible by heads, MLP 4·dim) over `captionBytes` + 1 tokens, and a
    /// joint space of `embedDim`.
    public init(encoder c: ViTConfig, captionBytes: Int, depth: Int, dim: Int, heads: Int, embedDim: Int) {
        precondition(
            captionBytes >= 1 && depth >= 0 && dim >= 1 && heads >= 1 && dim % heads == 0 && embedDim >= 1,
            "CLIPTowers: bad shape")
        encoder = c
        (self.captionBytes, self.depth, self.dim, self.heads, self.embedDim) = (
            captionBytes, depth, dim, heads, embedDim
        )
        let shape = BlockShape(
            tokens: captionBytes + 1, dim: dim, hidden: 4 * dim, heads: heads, qkvBias: true, activation: .quickGELU,
            eps: 1e-5)
        var l = Arena.Layout()
        tokenEmbedding = l.add("text.token_embedding.weight", [Self.vocabulary, dim])
        positionalEmbedding = l.add("text.positional_embedding", [captionBytes + 1, dim])
        var blocks: [BlockOffsets] = []
        for i in 0..<depth { blocks.append(BlockOffsets(adding: &l, prefix: "text.blocks.\(i).", shape: shape)) }
        stack = BlockStack(shape: shape, params: blocks)
        lnFinalW = l.add("text.ln_final.weight", [dim])
        lnFinalB = l.add("text.ln_final.bias", [dim])
        textProjection = l.add("text_projection", [embedDim, dim])
        visualProjection = l.add("visual.proj", [embedDim, c.embedDim])
        logitScale = l.add("logit_scale", [])
        layout = l
    }

    /// Initializes `params` (an arena with `layout`) from one seed, as open_clip: token embedding
    /// normal(0, 0.02), positional embedding normal(0, 0.01), block weights truncated-normal(0,
    /// 0.02) in [−2, 2] (as the encoder's), LayerNorms 1 and 0, biases 0, projections normal with
    /// std (input width)^−½, `logit_scale` ln(1/0.07).
    public func initialize(_ params: Arena, seed: UInt64) {
        precondition(params.count == layout.count, "CLIPTowers.initialize: the arena has another layout")
        params.zero()
        var rng = RNG(seed: seed, stream: 0x434C_4950)
        for r in layout.regions {
            let p = params.base + r.offset, n = r.shape.count
            switch r.name {
            case "text.token_embedding.weight": for i in 0..<n { p[i] = Float(0.02 * rng.normal()) }
            case "text.positional_embedding": for i in 0..<n { p[i] = Float(0.01 * rng.normal()) }
            case "text_projection", "visual.proj":
                let std = 1 / Double(r.shape[1]).squareRoot()
                for i in 0..<n { p[i] = Float(std * rng.normal()) }
            case "logit_scale": p[0] = Self.initialLogScale
            default:
                if r.name.hasSuffix("norm1.weight") || r.name.hasSuffix("norm2.weight")
                    || r.name == "text.ln_final.weight"
                {
                    p.update(repeating: 1, count: n)
                } else if r.name.hasSuffix(".weight") {
                    for i in 0..<n { p[i] = Float(rng.truncatedNormal(mean: 0, std: 0.02, lo: -2, hi: 2)) }
                }
            }
        }
    }

    /// ids[T] and the end-of-text position of one caption (`width` bytes, zero-padded): its bytes
    /// up to the first 0 (at most `captionBytes`), the end-of-text token, then padding.
    public func tokenize(_ caption: UnsafePointer<UInt8>, width: Int, into ids: UnsafeMutablePointer<Int32>) -> Int32 {
        let t = contextLength
        var n = 0
        while n < min(width, captionBytes) && caption[n] != 0 {
            ids[n] = Int32(caption[n])
            n += 1
        }
        ids[n] = Self.endOfText
        for j in (n + 1)..<max(n + 1, t) { ids[j] = Self.padToken }
        return Int32(n)
    }

    public func makeActivations(capacity: Int) -> CLIPTextActivations {
        CLIPTextActivations(towers: self, capacity: capacity)
    }

    /// out[batch, E] = text_projection(ln_final(the text blocks on ids[batch, T])[eot]), with
    /// `eot` [batch] each sequence's end-of-text position. Saves what `backwardText` needs in
    /// `acts`; returns `acts.outputPointer` (not normalized).
    @discardableResult
    public func forwardText(
        ids: UnsafePointer<Int32>, eot: UnsafePointer<Int32>, batch: Int, params p: UnsafePointer<Float>,
        acts: CLIPTextActivations, pool: ThreadPool = .shared
    ) -> UnsafeMutablePointer<Float> {
        precondition(batch >= 1 && batch <= acts.capacity, "CLIPTowers.forwardText: bad batch \(batch)")
        let (t, d, e) = (contextLength, dim, embedDim)
        let a = acts.arena.base
        // x[b, j] = token_embedding[ids[b, j]] + positional_embedding[j]
        for b in 0..<batch {
            TokenGather.forward(
                out: a + acts.x + b * t * d, inp: p + tokenEmbedding, index: ids + b * t, add: p + positionalEmbedding,
                batch: 1, inTokens: Self.vocabulary, outTokens: t, dim: d, pool: pool)
        }
        let x = stack.forward(x: a + acts.x, batch: batch, params: p, acts: acts.blocks, in: a, pool: pool)
        // pooled[B, Dt] = x[b, eot[b]]; ln_final per row (the same as on every token, then picking)
        TokenGather.forward(
            out: a + acts.pooled, inp: x, index: eot, batch: batch, inTokens: t, outTokens: 1, dim: d, pool: pool)
        LayerNorm.forward(
            out: a + acts.lnf, mean: a + acts.lnfMean, rstd: a + acts.lnfRstd, inp: a + acts.pooled,
            weight: p + lnFinalW, bias: p + lnFinalB, rows: batch, cols: d, eps: 1e-5, pool: pool)
        // out[B, E] = lnf · text_projectionᵀ
        Linear.forward(
            out: a + acts.out, inp: a + acts.lnf, weight: p + textProjection, bias: nil, rows: batch, inFeatures: d,
            outFeatures: e, pool: pool)
        return a + acts.out
    }

    /// Backward of the last `forwardText` from `dout` [batch, E]: parameter gradients accumulate
    /// (+=) into `g` (an arena with `layout`). Consumes the blocks' MLP activations as scratch.
    public func backwardText(
        dout: UnsafePointer<Float>, ids: UnsafePointer<Int32>, eot: UnsafePointer<Int32>, batch: Int,
        params p: UnsafePointer<Float>, grads g: UnsafeMutablePointer<Float>, acts: CLIPTextActivations,
        pool: ThreadPool = .shared
    ) {
        precondition(batch >= 1 && batch <= acts.capacity, "CLIPTowers.backwardText: bad batch \(batch)")
        let (t, d, e) = (contextLength, dim, embedDim)
        let a = acts.arena.base
        Linear.backward(
            dinp: a + acts.dlnf, dweight: g + textProjection, dbias: nil, dout: dout, inp: a + acts.lnf,
            weight: p + textProjection, rows: batch, inFeatures: d, outFeatures: e, pool: pool)
        let dpooled = a + acts.dpooled
        dpooled.update(repeating: 0, count: batch * d)
        LayerNorm.backward(
            dinp: dpooled, dweight: g + lnFinalW, dbias: g + lnFinalB, dout: a + acts.dlnf, inp: a + acts.pooled,
            weight: p + lnFinalW, mean: a + acts.lnfMean, rstd: a + acts.lnfRstd, rows: batch, cols: d, pool: pool)
        // dres[B, T, Dt]: the end-of-text rows get dpooled, the others 0
        let dres = a + acts.dres
        dres.update(repeating: 0, count: batch * t * d)
        TokenGather.backward(
            dinp: dres, dout: dpooled, index: eot, batch: batch, inTokens: t, outTokens: 1, dim: d, pool: pool)
        stack.backward(
            dx: dres, dln: a + acts.dln, x: a + acts.x, batch: batch, params: p, grads: g, acts: acts.blocks,
            scratch: acts.blockScratch, in: a, end: lnFinalW, pool: pool, gradientReady: nil)
        for b in 0..<batch {  // in sequence order, so the sums do not depend on the thread count
            TokenGather.backward(
                dinp: g + tokenEmbedding, dadd: g + positionalEmbedding, dout: dres + b * t * d, index: ids + b * t,
                batch: 1, inTokens: Self.vocabulary, outTokens: t, dim: d, pool: pool)
        }
    }

    /// out[rows, E] = features[rows, D] · visual.projᵀ (the encoder's pooled features).
    public func forwardImage(
        out: UnsafeMutablePointer<Float>, features: UnsafePointer<Float>, rows: Int, params p: UnsafePointer<Float>,
        pool: ThreadPool = .shared
    ) {
        Linear.forward(
            out: out, inp: features, weight: p + visualProjection, bias: nil, rows: rows, inFeatures: encoder.embedDim,
            outFeatures: embedDim, pool: pool)
    }

    /// dfeatures[rows, D] (overwritten) = dout · visual.proj; its gradient += doutᵀ · features.
    public func backwardImage(
        dfeatures: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, features: UnsafePointer<Float>, rows: Int,
        params p: UnsafePointer<Float>, grads g: UnsafeMutablePointer<Float>, pool: ThreadPool = .shared
    ) {
        Linear.backward(
            dinp: dfeatures, dweight: g + visualProjection, dbias: nil, dout: dout, inp: features,
            weight: p + visualProjection, rows: rows, inFeatures: encoder.embedDim, outFeatures: embedDim, pool: pool)
    }
}

/// The text tower's saved activations and backward scratch for up to `capacity` captions.
public final class CLIPTextActivations: @unchecked Sendable {
    public let capacity: Int
    let arena: Arena
    let x, pooled, lnf, lnfMean, lnfRstd, out, dlnf, dpooled, dres, dln: Int
    let blocks: [BlockActivations]
    let blockScratch: BlockScratch

    init(towers m: CLIPTowers, capacity b: Int) {
        precondition(b >= 1, "CLIPTextActivations: capacity must be ≥ 1")
        capacity = b
        let (t, d) = (m.contextLength, m.dim)
        var l = Arena.Layout()
        x = l.add("x", [b, t, d])
        var blocks: [BlockActivations] = []
        for i in 0..<m.depth {
            blocks.append(BlockActivations(adding: &l, prefix: "blocks.\(i).", shape: m.stack.shape, capacity: b))
        }
        self.blocks = blocks
        pooled = l.add("pooled", [b, d])
        lnf = l.add("lnf", [b, d])
        lnfMean = l.add("lnf.mean", [b])
        lnfRstd = l.add("lnf.rstd", [b])
        out = l.add("out", [b, m.embedDim])
        dlnf = l.add("d.lnf", [b, d])
        dpooled = l.add("d.pooled", [b, d])
        dres = l.add("d.res", [b, t, d])
        dln = l.add("d.ln", [b, t, d])
        blockScratch = BlockScratch(adding: &l, prefix: "", shape: m.stack.shape, capacity: b)
        arena = Arena(layout: l)
    }

    /// The last forward's text embeddings [B, E] (before normalization).
    public var outputPointer: UnsafeMutablePointer<Float> { arena.base + out }
}
