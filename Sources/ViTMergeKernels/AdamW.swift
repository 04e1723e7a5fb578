import Foundation
import ViTMergeCore

/// AdamW with decoupled weight decay and bias correction, elementwise in PyTorch's order
/// (`torch.optim.AdamW`, single-tensor, no amsgrad), so 10 steps match torch to ~1e-6.
public enum AdamW {
    // params[n], m[n], v[n] updated in place from grads[n]; step is 1-based
    public static func update(
        params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
        v: UnsafeMutablePointer<Float>, count: Int, step: Int, lr: Float, beta1: Float, beta2: Float,
        eps: Float, weightDecay: Float, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.optimizer, profileStart) }
        precondition(step >= 1, "AdamW: step is 1-based, got \(step)")
        let bc1 = 1 - Foundation.pow(Double(beta1), Double(step)), bc2 = 1 - Foundation.pow(Double(beta2), Double(step))
        let decay = 1 - lr * weightDecay
        let stepSize = Float(Double(lr) / bc1), bc2Sqrt = Float(bc2.squareRoot())
        let vdecay = V16(repeating: decay), vb1 = V16(repeating: 1 - beta1), vb2 = V16(repeating: beta2),
            vb2c = V16(repeating: 1 - beta2)
        let vstep = V16(repeating: stepSize), vbc2 = V16(repeating: bc2Sqrt), veps = V16(repeating: eps)
        pool.parallel(count, cost: 7, align: 16) { _, _, r in
            var i = r.lowerBound
            while i &+ 16 <= r.upperBound {
                let g = vload(grads + i)
                let p = vload(params + i) * vdecay
                let mi = vload(m + i).addingProduct(vb1, g - vload(m + i))
                let vi = (vload(v + i) * vb2).addingProduct(vb2c * g, g)
                let denom = vi.squareRoot() / vbc2 + veps
                vstore(mi, m + i); vstore(vi, v + i)
                vstore(p - vstep * (mi / denom), params + i)
                i &+= 16
            }
            while i < r.upperBound {
                let g = grads[i]
                let p = params[i] * decay
                let mi = m[i].addingProduct(1 - beta1, g - m[i])
                let vi = (v[i] * beta2).addingProduct((1 - beta2) * g, g)
                m[i] = mi; v[i] = vi
                params[i] = p - stepSize * (mi / (vi.squareRoot() / bc2Sqrt + eps))
                i &+= 1
            }
        }
    }

    public static func updateReference(
        params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
        v: UnsafeMutablePointer<Float>, count: Int, step: Int, lr: Float, beta1: Float, beta2: Float,
        eps: Float, weightDecay: Float
    ) {
        let bc1 = 1 - pow(Double(beta1), Double(step)), bc2 = 1 - pow(Double(beta2), Double(step))
        for i in 0..<count {
            let g = Double(grads[i])
            var p = Double(params[i]) * (1 - Double(lr) * Double(weightDecay))
            let mi = Double(beta1) * Double(m[i]) + (1 - Double(beta1)) * g
            let vi = Double(beta2) * Double(v[i]) + (1 - Double(beta2)) * g * g
            p -= Double(lr) / bc1 * mi / (vi.squareRoot() / bc2.squareRoot() + Double(eps))
            params[i] = Float(p); m[i] = Float(mi); v[i] = Float(vi)
        }
    }
}

/// Global gradient norms, deterministic for any thread count.
public enum GradientNorm {
    /// Elements per partial sum: partials depend only on the data, never on the thread count.
    static let chunk = 1 << 14

    // ‖x[count]‖₂ — Float SIMD sums per fixed chunk, chunks combined in order in Double
    public static func l2(_ x: UnsafePointer<Float>, count: Int, pool: ThreadPool = .shared) -> Double {
        let profileStart = Profiler.begin(); defer { Profiler.end(.optimizer, profileStart) }
        let chunks = (count + chunk - 1) / chunk
        guard chunks > 0 else { return 0 }
        return withUnsafeTemporaryAllocation(of: Double.self, capacity: chunks) { partial in
            let partial = partial.baseAddress!
            // Items are the fixed chunks: the split decides only which thread fills which partial.
            pool.parallel(chunks, cost: chunk) { _, _, cs in
                for c in cs {
                    let lo = c * chunk, hi = min(count, lo + chunk)
                    var a0 = V16(), a1 = V16()
                    var i = lo
                    while i &+ 32 <= hi {
                        let u = vload(x + i), w = vload(x + (i &+ 16)); a0.addProduct(u, u); a1.addProduct(w, w);
                        i &+= 32
                    }
                    var s = Double((a0 + a1).sum())
                    while i < hi { s += Double(x[i]) * Double(x[i]); i &+= 1 }
                    partial[c] = s
                }
            }
            var total = 0.0
            for c in 0..<chunks { total += partial[c] }
            return total.squareRoot()
        }
    }

    // torch.nn.utils.clip_grad_norm_: if the norm exceeds maxNorm, x *= maxNorm/(norm + 1e-6);
    // returns the norm before clipping
    @discardableResult
    public static func clip(
        _ x: UnsafeMutablePointer<Float>, count: Int, maxNorm: Double, pool: ThreadPool = .shared
    ) -> Double {
        let profileStart = Profiler.begin(); defer { Profiler.end(.optimizer, profileStart) }
        let norm = l2(x, count: count, pool: pool)
        if norm > maxNorm { Elementwise.scale(x, alpha: Float(maxNorm / (norm + 1e-6)), count: count, pool: pool) }
        return norm
    }
}
