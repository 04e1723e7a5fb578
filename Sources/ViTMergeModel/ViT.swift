import ViTMergeCore
import ViTMergeKernels

/// A timm-compatible Vision Transformer with explicit forward and backward passes (llm.c style):
/// parameters in one arena (`ViTParameters`), activations in another (`ViTActivations`, sized
/// once per batch size), gradients in a third arena with the parameters' layout.
///
/// Conventions: images are [B, C, H, W] float32 row-major; patch tokens are in row-major order of
/// the patch grid after the prefix tokens (the class token, then the register tokens, as timm);
/// matrices multiply as PyTorch's `Linear` (y = x·Wᵀ + b with W [out, in]). All work runs on
/// `pool` and gives bit-identical results for any thread count.
public final class ViT: @unchecked Sendable {
    public let parameters: ViTParameters
    public let pool: ThreadPool
    public var config: ViTConfig { parameters.config }
    public var table: ParameterTable { parameters.table }

    public init(parameters: ViTParameters, pool: ThreadPool = .shared) {
        self.parameters = parameters
        self.pool = pool
    }

    /// A freshly initialized model (see `ViTParameters.initialize`).
    public convenience init(config: ViTConfig, seed: UInt64, pool: ThreadPool = .shared) {
        let p = ViTParameters(config: config)
        p.initialize(seed: seed)
        self.init(parameters: p, pool: pool)
    }

    /// Activation storage for batches of up to `capacity` images.
    public func makeActivations(capacity: Int) -> ViTActivations { ViTActivations(config: config, capacity: capacity) }

    /// A zero gradient arena with the parameters' layout.
    public func makeGradients() -> Arena { Arena(layout: table.layout) }

    // MARK: Loss

    /// Mean cross-entropy of the last forward's logits against `labels` [batch] (each in
    /// 0..<numClasses); writes dLoss/dLogits into `acts.outputGradient` for `backward`.
    /// `gradientScale` (default 1/batch) multiplies the gradient: 1/global batch when this batch is
    /// one rank's share of a data-parallel step.
    @discardableResult
    public func crossEntropy(
        labels: UnsafePointer<Int32>, batch: Int, acts: ViTActivations, gradientScale: Float? = nil
    ) -> Float {
        guard let logits = acts.logits, let probs = acts.probs, let losses = acts.losses else {
            preconditionFailure("crossEntropy needs a model with a head (num_classes > 0)")
        }
        let k = config.numClasses
        let loss = CrossEntropy.forward(
            probs: acts.ptr(probs), losses: acts.ptr(losses), logits: acts.ptr(logits),
            labels: labels, rows: batch, classes: k, pool: pool)
        acts.outputGradient.update(repeating: 0, count: batch * k)
        CrossEntropy.backward(
            dlogits: acts.outputGradient, probs: acts.ptr(probs), labels: labels,
            rows: batch, classes: k, scale: gradientScale ?? 1 / Float(batch), pool: pool)
        return loss
    }
}

// MARK: Kernel shapes

extension ViTConfig {
    /// The patch embedding's shape, for `PatchEmbed`.
    var patchGeometry: PatchGeometry {
        PatchGeometry(channels: inChannels, height: imageHeight, width: imageWidth, patch: patchSize)
    }
    /// The class and register tokens and the pos_embed layout, for `PatchEmbed`.
    var prefixTokens: PrefixTokens {
        PrefixTokens(classToken: classToken, registers: regTokens, posEmbedPrefix: !noEmbedClass)
    }
    /// The global pooling, for `TokenPool`.
    var tokenPoolMode: TokenPool.Mode { globalPool == .token ? .token : .avg }
}
