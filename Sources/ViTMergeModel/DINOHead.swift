import ViTMergeCore
import ViTMergeKernels

/// DINO's projection head (Caron et al. 2021, the reference `DINOHead` with nlayers 3,
/// use_bn False, norm_last_layer True): features [N, D] → `mlp` (Linear D→hidden, GELU,
/// Linear hidden→hidden, GELU, Linear hidden→bottleneck) → L2-normalized (eps 1e-12) →
/// `last_layer`, a weight-normalized Linear bottleneck→K without bias whose rows are
/// W_k = V_k / ‖V_k‖ (weight_g fixed at 1, so it is not stored: only `weight_v` is trained).
/// Its parameters live in their own arena (`layout`, the reference's names under `dino_head.`),
/// so the encoder's checkpoint layout is unchanged.
public struct DINOHead: Sendable {
    public let inFeatures, hidden, bottleneck, prototypes: Int
    public let layout: Arena.Layout
    public let w0, b0, w2, b2, w4, b4, lastV: Int

    public init(inFeatures d: Int, hidden h: Int, bottleneck bn: Int, prototypes k: Int) {
        precondition(d >= 1 && h >= 1 && bn >= 1 && k >= 1, "DINOHead: bad shape")
        (inFeatures, hidden, bottleneck, prototypes) = (d, h, bn, k)
        var l = Arena.Layout()
        w0 = l.add("dino_head.mlp.0.weight", [h, d])
        b0 = l.add("dino_head.mlp.0.bias", [h])
        w2 = l.add("dino_head.mlp.2.weight", [h, h])
        b2 = l.add("dino_head.mlp.2.bias", [h])
        w4 = l.add("dino_head.mlp.4.weight", [bn, h])
        b4 = l.add("dino_head.mlp.4.bias", [bn])
        lastV = l.add("dino_head.last_layer.weight_v", [k, bn])
        layout = l
    }

    /// Tensor names in arena order.
    public var names: [String] { layout.regions.map(\.name) }

    /// Initializes `params` (an arena with `layout`) from one seed, as the reference: the MLP's
    /// weights truncated-normal(0, 0.02) in [−2, 2], biases 0; weight_v as PyTorch's Linear
    /// default, uniform(±1/√bottleneck).
    public func initialize(_ params: Arena, seed: UInt64) {
        precondition(params.count == layout.count, "DINOHead.initialize: the arena has another layout")
        params.zero()
        var rng = RNG(seed: seed, stream: 0x4449_4E4F)
        for r in layout.regions {
            let p = params.base + r.offset, n = r.shape.count
            if r.name == "dino_head.last_layer.weight_v" {
                let bound = 1 / Float(bottleneck).squareRoot()
                for i in 0..<n { p[i] = bound * (2 * rng.uniformFloat() - 1) }
            } else if r.name.hasSuffix(".weight") {
                for i in 0..<n { p[i] = Float(rng.truncatedNormal(mean: 0, std: 0.02, lo: -2, hi: 2)) }
            }
        }
    }

    public func makeActivations(capacity: Int) -> DINOHeadActivations {
        DINOHeadActivations(head: self, capacity: capacity)
    }

    /// logits[rows, K] = the head on `features` [rows, D] with parameters `p` (an arena with
    /// `layout`); saves what `backward` needs in `acts` and returns `acts.logitsPointer`.
    @discardableResult
    public func forward(
        features x: UnsafePointer<Float>, rows n: Int, params p: UnsafePointer<Float>, acts a: DINOHeadActivations,
        pool: ThreadPool = .shared
    ) -> UnsafeMutablePointer<Float> {
        precondition(n >= 1 && n <= a.capacity, "DINOHead.forward: \(n) rows exceed the capacity \(a.capacity)")
        let (d, h, bn, k) = (inFeatures, hidden, bottleneck, prototypes)
        // h1 = x·W0ᵀ + b0, a1 = gelu(h1); h2 = a1·W2ᵀ + b2, a2 = gelu(h2); z = a2·W4ᵀ + b4
        Linear.forward(
            out: a.h1, inp: x, weight: p + w0, bias: p + b0, rows: n, inFeatures: d, outFeatures: h, pool: pool)
        GELU.forward(out: a.a1, inp: a.h1, count: n * h, pool: pool)
        Linear.forward(
            out: a.h2, inp: a.a1, weight: p + w2, bias: p + b2, rows: n, inFeatures: h, outFeatures: h, pool: pool)
        GELU.forward(out: a.a2, inp: a.h2, count: n * h, pool: pool)
        Linear.forward(
            out: a.z, inp: a.a2, weight: p + w4, bias: p + b4, rows: n, inFeatures: h, outFeatures: bn, pool: pool)
        // u = z / max(‖z‖, 1e-12); W = V / ‖V_k‖ per prototype; logits = u·Wᵀ
        L2Normalize.forward(out: a.u, norms: a.zNorm, inp: a.z, rows: n, cols: bn, pool: pool)
        L2Normalize.forward(out: a.w, norms: a.vNorm, inp: p + lastV, rows: k, cols: bn, pool: pool)
        Linear.forward(
            out: a.logits, inp: a.u, weight: a.w, bias: nil, rows: n, inFeatures: bn, outFeatures: k, pool: pool)
        return a.logits
    }

    /// Backward of the last `forward` from `dlogits` [rows, K]: parameter gradients accumulate (+=)
    /// into `g` (an arena with `layout`); dLoss/d`features` is written to `dfeatures` [rows, D]
    /// (overwritten).
    public func backward(
        dlogits: UnsafePointer<Float>, dfeatures: UnsafeMutablePointer<Float>, features x: UnsafePointer<Float>,
        rows n: Int, params p: UnsafePointer<Float>, grads g: UnsafeMutablePointer<Float>, acts a: DINOHeadActivations,
        pool: ThreadPool = .shared
    ) {
        precondition(n >= 1 && n <= a.capacity, "DINOHead.backward: \(n) rows exceed the capacity \(a.capacity)")
        let (d, h, bn, k) = (inFeatures, hidden, bottleneck, prototypes)
        // du = dlogits·W; dW = dlogitsᵀ·u (overwritten: W is not a parameter); dV += through the row norms.
        a.dw.update(repeating: 0, count: k * bn)
        Linear.backward(
            dinp: a.du, dweight: a.dw, dbias: nil, dout: dlogits, inp: a.u, weight: a.w, rows: n, inFeatures: bn,
            outFeatures: k, pool: pool)
        L2Normalize.backward(dinp: g + lastV, dout: a.dw, out: a.w, norms: a.vNorm, rows: k, cols: bn, pool: pool)
        a.dz.update(repeating: 0, count: n * bn)
        L2Normalize.backward(dinp: a.dz, dout: a.du, out: a.u, norms: a.zNorm, rows: n, cols: bn, pool: pool)
        // Through the MLP, last layer first; GELU backward accumulates into zeroed buffers.
        Linear.backward(
            dinp: a.da, dweight: g + w4, dbias: g + b4, dout: a.dz, inp: a.a2, weight: p + w4, rows: n, inFeatures: h,
            outFeatures: bn, pool: pool)
        a.dh.update(repeating: 0, count: n * h)
        GELU.backward(dinp: a.dh, inp: a.h2, dout: a.da, count: n * h, pool: pool)
        Linear.backward(
            dinp: a.da, dweight: g + w2, dbias: g + b2, dout: a.dh, inp: a.a1, weight: p + w2, rows: n, inFeatures: h,
            outFeatures: h, pool: pool)
        a.dh.update(repeating: 0, count: n * h)
        GELU.backward(dinp: a.dh, inp: a.h1, dout: a.da, count: n * h, pool: pool)
        Linear.backward(
            dinp: dfeatures, dweight: g + w0, dbias: g + b0, dout: a.dh, inp: x, weight: p + w0, rows: n,
            inFeatures: d, outFeatures: h, pool: pool)
    }
}

/// The head's saved activations and backward scratch for up to `capacity` rows (one arena).
public final class DINOHeadActivations: @unchecked Sendable {
    public let capacity: Int
    let arena: Arena
    let h1, a1, h2, a2, z, zNorm, u, w, vNorm, logits: UnsafeMutablePointer<Float>
    let du, dz, dw, da, dh: UnsafeMutablePointer<Float>

    init(head m: DINOHead, capacity b: Int) {
        precondition(b >= 1, "DINOHeadActivations: capacity must be ≥ 1")
        capacity = b
        let (h, bn, k) = (m.hidden, m.bottleneck, m.prototypes)
        var l = Arena.Layout()
        let offsets = [
            l.add("h1", [b, h]), l.add("a1", [b, h]), l.add("h2", [b, h]), l.add("a2", [b, h]), l.add("z", [b, bn]),
            l.add("z.norm", [b]), l.add("u", [b, bn]), l.add("w", [k, bn]), l.add("v.norm", [k]),
            l.add("logits", [b, k]), l.add("d.u", [b, bn]), l.add("d.z", [b, bn]), l.add("d.w", [k, bn]),
            l.add("d.a", [b, h]), l.add("d.h", [b, h]),
        ]
        let arena = Arena(layout: l)
        self.arena = arena
        let q = offsets.map { arena.base + $0 }
        (h1, a1, h2, a2, z, zNorm, u, w, vNorm, logits) = (q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], q[8], q[9])
        (du, dz, dw, da, dh) = (q[10], q[11], q[12], q[13], q[14])
    }

    /// The last forward's logits [rows, K].
    public var logitsPointer: UnsafeMutablePointer<Float> { logits }
}
