import ViTMergeCore
import ViTMergeKernels

/// A timm-compatible Vision Transformer with explicit forward and backward passes (llm.c style):
/// parameters in one arena (`ViTParameters`), activations in another (`ViTActivations`, sized
/// once per batch size), gradients in a third arena with the parameters' layout.
///
/// Conventions: images are [B, C, H, W] float32 row-major; patch tokens are in row-major order of
/// the patch grid with the class token first; matrices multiply as PyTorch's `Linear`
/// (y = x·Wᵀ + b with W [out, in]). All work runs on `pool` and gives bit-identical results for
/// any thread count.
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

// MARK: Shared helpers

extension ViT {
    /// out[rows, outF] = inp[rows, inF] · w[outF, inF]ᵀ (+ bias[outF])
    @inline(__always)
    func linear(
        _ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
        _ bias: UnsafePointer<Float>?, rows: Int, inF: Int, outF: Int
    ) {
        sgemm(
            transA: false, transB: true, m: rows, n: outF, k: inF, a: inp, lda: inF, b: w, ldb: inF,
            beta: 0, c: out, ldc: outF, pool: pool)
        if let bias { Elementwise.biasAddForward(out: out, bias: bias, rows: rows, cols: outF, pool: pool) }
    }

    /// Backward of `linear`: dinp (overwritten, when given) = dout·w; dw += doutᵀ·inp; dbias += Σ_rows dout.
    @inline(__always)
    func linearBackward(
        dinp: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>?,
        dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, w: UnsafePointer<Float>,
        rows: Int, inF: Int, outF: Int
    ) {
        if let dinp {
            sgemm(
                transA: false, transB: false, m: rows, n: inF, k: outF, a: dout, lda: outF, b: w, ldb: inF,
                beta: 0, c: dinp, ldc: inF, pool: pool)
        }
        sgemm(
            transA: true, transB: false, m: outF, n: inF, k: rows, a: dout, lda: outF, b: inp, ldb: inF,
            beta: 1, c: dw, ldc: inF, pool: pool)
        if let dbias { Elementwise.biasAddBackward(dbias: dbias, dout: dout, rows: rows, cols: outF, pool: pool) }
    }

    /// out[rows, cols] = residual + (out + bias[cols]): the residual connection after a projection,
    /// rounded in PyTorch's order.
    func addResidualAndBias(
        _ out: UnsafeMutablePointer<Float>, _ residual: UnsafePointer<Float>,
        _ bias: UnsafePointer<Float>, rows: Int, cols: Int
    ) {
        pool.parallel(rows, cost: 3 * cols) { _, _, range in
            for r in range {
                let o = out + r &* cols, x = residual + r &* cols
                var i = 0
                while i &+ 16 <= cols {
                    let v =
                        UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
                        + (UnsafeRawPointer(o + i).loadUnaligned(as: SIMD16<Float>.self)
                            + UnsafeRawPointer(bias + i).loadUnaligned(as: SIMD16<Float>.self))
                    UnsafeMutableRawPointer(o + i).storeBytes(of: v, as: SIMD16<Float>.self)
                    i &+= 16
                }
                while i < cols { o[i] = x[i] + (o[i] + bias[i]); i &+= 1 }
            }
        }
    }
}
