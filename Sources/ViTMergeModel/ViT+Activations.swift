import ViTMergeCore

/// Everything the forward pass saves for the backward pass, plus the backward's scratch, for up
/// to `capacity` images; one arena allocated once (llm.c's ActivationTensors). Each region is
/// batch-major, so a smaller batch uses the prefix of every region.
public final class ViTActivations: @unchecked Sendable {
    public let config: ViTConfig
    public let capacity: Int
    let arena: Arena
    // forward
    let patches, x0: Int
    let preOut: Int?, preMean: Int?, preRstd: Int?
    let blocks: [BlockActivations]
    let norm: Int?, normMean: Int?, normRstd: Int?
    let pooled: Int
    let fcOut: Int?, fcMean: Int?, fcRstd: Int?
    let logits: Int?, probs: Int?, losses: Int?
    /// Whether the last `forward` saved everything `backward` and `jvp` read (false after an
    /// inference forward, which skips the attention probabilities).
    public internal(set) var forBackward = true
    // backward scratch
    let dres, dln, dpatches, dpooled, dfc, doutput: Int
    let blockScratch: BlockScratch

    public init(config c: ViTConfig, capacity b: Int) {
        precondition(b >= 1, "ViTActivations: capacity must be ≥ 1")
        config = c
        capacity = b
        let (t, d) = (c.tokens, c.embedDim)
        var l = Arena.Layout()
        patches = l.add("patches", [b, c.numPatches, c.patchDim])
        x0 = l.add("x0", [b, t, d])
        preOut = c.preNorm ? l.add("pre", [b, t, d]) : nil
        preMean = c.preNorm ? l.add("pre.mean", [b, t]) : nil
        preRstd = c.preNorm ? l.add("pre.rstd", [b, t]) : nil
        let shape = c.blockShape
        var blocks: [BlockActivations] = []
        for i in 0..<c.depth {
            blocks.append(BlockActivations(adding: &l, prefix: "blocks.\(i).", shape: shape, capacity: b))
        }
        self.blocks = blocks
        norm = c.fcNorm ? nil : l.add("norm", [b, t, d])
        normMean = c.fcNorm ? nil : l.add("norm.mean", [b, t])
        normRstd = c.fcNorm ? nil : l.add("norm.rstd", [b, t])
        pooled = l.add("pooled", [b, d])
        fcOut = c.fcNorm ? l.add("fc_norm", [b, d]) : nil
        fcMean = c.fcNorm ? l.add("fc_norm.mean", [b]) : nil
        fcRstd = c.fcNorm ? l.add("fc_norm.rstd", [b]) : nil
        let k = c.numClasses
        logits = k > 0 ? l.add("logits", [b, k]) : nil
        probs = k > 0 ? l.add("probs", [b, k]) : nil
        losses = k > 0 ? l.add("losses", [b]) : nil
        dres = l.add("d.res", [b, t, d])
        dln = l.add("d.ln", [b, t, d])
        blockScratch = BlockScratch(adding: &l, prefix: "", shape: shape, capacity: b)
        dpatches = l.add("d.patches", [b, c.numPatches, c.patchDim])
        dpooled = l.add("d.pooled", [b, d])
        dfc = l.add("d.fc", [b, d])
        doutput = l.add("d.output", [b, max(k, d)])
        arena = Arena(layout: l)
    }

    @inline(__always) func ptr(_ offset: Int) -> UnsafeMutablePointer<Float> { arena.base + offset }

    /// The encoder blocks' input [B, T, D] (after norm_pre when present) and output.
    var blocksInput: Int { preOut ?? x0 }
    // (not `blocks.last`: it allocates in unoptimized builds)
    var blocksOutput: Int { blocks.isEmpty ? blocksInput : blocks[blocks.count - 1].out }

    /// Bytes held by this activation arena.
    public var byteCount: Int { arena.count * 4 }

    /// The model output of the last forward: logits [B, K], or pooled features [B, D] when the
    /// model has no head. Valid for the batch size of that forward.
    public var output: UnsafeMutablePointer<Float> { ptr(logits ?? features) }
    /// The head's input [B, D] (pooled, after fc_norm when present).
    public var features: Int { fcOut ?? pooled }
    public var featuresPointer: UnsafeMutablePointer<Float> { ptr(features) }
    /// The final token representations [B, T, D] of the last forward (after `norm` when present).
    public var tokensPointer: UnsafeMutablePointer<Float> { ptr(norm ?? blocksOutput) }
    /// Gradient of the loss w.r.t. `output`; set by `ViT.crossEntropy` or by the caller before `backward`.
    public var outputGradient: UnsafeMutablePointer<Float> { ptr(doutput) }
    /// Softmax of the logits from the last `crossEntropy` call.
    public var probabilities: UnsafeMutablePointer<Float>? { probs.map(ptr) }

    /// The inputs of every Linear layer of the last forward, for merges that need them (RegMean's Gram
    /// matrices): the patch embedding's im2col patches [B, numPatches, C·p·p], then per block the inputs
    /// [B, T, in] of qkv (ln1 output), proj (attention output), fc1 (ln2 output) and fc2 (activation).
    /// Valid until the next backward (which reuses the MLP activations as scratch).
    public var patchesPointer: UnsafeMutablePointer<Float> { ptr(patches) }

    /// Block `i`'s Linear inputs (see `patchesPointer`).
    public func linearInputs(
        block i: Int
    ) -> (
        qkv: UnsafeMutablePointer<Float>, proj: UnsafeMutablePointer<Float>,
        fc1: UnsafeMutablePointer<Float>, fc2: UnsafeMutablePointer<Float>
    ) {
        let b = blocks[i]
        return (ptr(b.ln1), ptr(b.attnOut), ptr(b.ln2), ptr(b.act))
    }

    /// Named views for tests and golden comparisons: "patch_embed" [B,T,D], "blocks.i", "norm", "pooled".
    public func activation(_ name: String) -> UnsafeMutablePointer<Float>? {
        switch name {
        case "patch_embed": return ptr(x0)
        case "norm": return ptr(norm ?? blocksOutput)
        case "pooled": return ptr(features)
        default:
            if name.hasPrefix("blocks."), let i = Int(name.dropFirst(7)), blocks.indices.contains(i) {
                return ptr(blocks[i].out)
            }
            return nil
        }
    }
}
