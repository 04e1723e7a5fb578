import ViTMergeCore
import ViTMergeKernels

/// Where every parameter of a `ViTConfig` lives in one flat arena, under timm's state-dict names
/// and in timm's order. The same table indexes the parameter, gradient and optimizer arenas.
public struct ParameterTable: Sendable {
    public let config: ViTConfig
    public let layout: Arena.Layout
    public let clsToken: Int?
    /// `reg_token` [1, R, D] (register tokens), when the config has any.
    public let regToken: Int?
    /// `pos_embed` [1, posEmbedTokens, D]: a row per token, or per patch with `no_embed_class`.
    public let posEmbed: Int
    public let patchW: Int
    public let patchB: Int?
    public let normPreW: Int?, normPreB: Int?
    /// The encoder's transformer blocks.
    public let stack: BlockStack
    public var blocks: [BlockOffsets] { stack.params }
    public let normW: Int?, normB: Int?
    public let fcNormW: Int?, fcNormB: Int?
    public let headW: Int?, headB: Int?

    public init(config c: ViTConfig) {
        var l = Arena.Layout()
        let d = c.embedDim
        clsToken = c.classToken ? l.add("cls_token", [1, 1, d]) : nil
        regToken = c.regTokens > 0 ? l.add("reg_token", [1, c.regTokens, d]) : nil
        posEmbed = l.add("pos_embed", [1, c.posEmbedTokens, d])
        patchW = l.add("patch_embed.proj.weight", [d, c.inChannels, c.patchSize, c.patchSize])
        patchB = c.preNorm ? nil : l.add("patch_embed.proj.bias", [d])
        normPreW = c.preNorm ? l.add("norm_pre.weight", [d]) : nil
        normPreB = c.preNorm ? l.add("norm_pre.bias", [d]) : nil
        let shape = c.blockShape
        var blocks: [BlockOffsets] = []
        for i in 0..<c.depth { blocks.append(BlockOffsets(adding: &l, prefix: "blocks.\(i).", shape: shape)) }
        stack = BlockStack(shape: shape, params: blocks)
        normW = c.fcNorm ? nil : l.add("norm.weight", [d])
        normB = c.fcNorm ? nil : l.add("norm.bias", [d])
        fcNormW = c.fcNorm ? l.add("fc_norm.weight", [d]) : nil
        fcNormB = c.fcNorm ? l.add("fc_norm.bias", [d]) : nil
        headW = c.numClasses > 0 ? l.add("head.weight", [c.numClasses, d]) : nil
        headB = c.numClasses > 0 ? l.add("head.bias", [c.numClasses]) : nil
        self.config = c
        self.layout = l
    }

    /// Parameter names in timm's state-dict order.
    public var names: [String] { layout.regions.map(\.name) }

    /// Number of trainable values (without the arena's alignment padding).
    public var parameterCount: Int { layout.regions.reduce(0) { $0 + $1.shape.count } }

    /// Whether a tensor belongs to the classification head (excluded from task vectors).
    public static func isHead(_ name: String) -> Bool { name.hasPrefix("head.") }

    /// Whether a tensor is a "1-D" parameter in the usual weight-decay sense (biases, norms,
    /// tokens, position embeddings; also an MAE decoder's `mask_token` and `decoder_pos_embed`),
    /// which fine-tuning recipes exclude from decay.
    public static func isNoDecay(_ name: String) -> Bool {
        name.hasSuffix(".bias") || name.contains("norm") || name == "cls_token" || name == "reg_token"
            || name == "pos_embed" || name == "mask_token" || name == "decoder_pos_embed"
            || name.hasSuffix(".gamma")
    }

    /// The arena offset just past the last block: the final norm, fc_norm and head follow it.
    public var blocksEnd: Int { normW ?? fcNormW ?? headW ?? layout.count }

    /// The arena range [lo, hi) covering the head tensors (empty when there is no head). The
    /// head is laid out last, so the encoder is the prefix [0, encoderEnd).
    public var encoderEnd: Int { headW ?? layout.count }
}

/// A ViT's parameters: one arena laid out by `ParameterTable`.
public final class ViTParameters: @unchecked Sendable {
    public let table: ParameterTable
    public let arena: Arena
    public var config: ViTConfig { table.config }
    public var base: UnsafeMutablePointer<Float> { arena.base }

    /// Zero-filled parameters for `config` (call `initialize` or load a checkpoint next).
    public convenience init(config: ViTConfig) { self.init(table: ParameterTable(config: config)) }

    /// Zero-filled parameters laid out by `table`.
    public init(table: ParameterTable) {
        self.table = table
        arena = Arena(layout: table.layout)
    }

    public subscript(name: String) -> Tensor? { arena.tensor(name) }

    /// A copy with the same config and values.
    /// out[0..<count] = self − base, elementwise over the arena (all of it by default; a prefix,
    /// e.g. `table.encoderEnd`, when the heads differ). One rounding per element, as `a - b`.
    public func difference(
        from base: ViTParameters, into out: UnsafeMutablePointer<Float>, count: Int? = nil,
        pool: ThreadPool = .shared
    ) {
        let n = count ?? arena.count
        precondition(n <= arena.count && n <= base.arena.count, "difference: \(n) values exceed an arena")
        Elementwise.linearCombination(
            out: out, base: self.base, xs: [UnsafePointer(base.base)], coefficients: [-1], count: n, pool: pool)
    }

    /// self − base as an array (see `difference(from:into:count:)`).
    public func difference(from base: ViTParameters, count: Int? = nil) -> [Float] {
        let n = count ?? arena.count
        return [Float](unsafeUninitializedCapacity: n) { buf, initialized in
            difference(from: base, into: buf.baseAddress!, count: n)
            initialized = n
        }
    }

    public func copy() -> ViTParameters {
        let p = ViTParameters(config: config)
        p.base.update(from: base, count: arena.count)
        return p
    }

    /// timm's default initialization (`init_weights` with mode ''), from one seed:
    /// Linear weights truncated-normal(0, 0.02) in [−2, 2], biases 0; LayerNorm 1 and 0;
    /// pos_embed truncated-normal(0, 0.02); cls_token and reg_token normal(0, 1e-6); the patch-embedding
    /// convolution keeps PyTorch's Conv2d default, uniform(±1/√fan_in) for weight and bias;
    /// LayerScale γ = init_values.
    /// The same seed gives the same parameters on every machine (not torch's numbers).
    public func initialize(seed: UInt64) {
        arena.zero()
        var rng = RNG(seed: seed, stream: 0x5EED)
        let c = config
        func fill(_ name: String, _ value: (inout RNG) -> Float) {
            let t = arena.tensor(name)!
            for i in 0..<t.count { t.pointer[i] = value(&rng) }
        }
        func trunc(_ name: String) { fill(name) { Float($0.truncatedNormal(mean: 0, std: 0.02, lo: -2, hi: 2)) } }
        for (name, _, _) in table.layout.regions {
            if name == "cls_token" || name == "reg_token" {
                fill(name) { Float($0.normal() * 1e-6) }
            } else if name == "pos_embed" {
                trunc(name)
            } else if name.hasPrefix("patch_embed.proj.") {
                let bound = 1 / Float(c.patchDim).squareRoot()
                fill(name) { bound * (2 * $0.uniformFloat() - 1) }
            } else if name.hasSuffix("norm1.weight") || name.hasSuffix("norm2.weight") || name.hasPrefix("norm")
                || name.hasPrefix("fc_norm")
            {
                fill(name) { _ in name.hasSuffix(".weight") ? 1 : 0 }
            } else if name.hasSuffix(".weight") {
                trunc(name)
            } else if name.hasSuffix(".gamma"), let g = c.initValues {
                fill(name) { _ in g }  // LayerScale: init_values · ones, as timm
            }
            // Remaining biases stay 0.
        }
    }
}
