/// Mean squared error of per-token reconstructions over masked patches only (SimMIM, MAE):
/// token `prefix + p` of image i reconstructs patch p, and counts when `mask[i, p]` is set.
/// `tokens` = prefix + patches (prefix 1 with a class token, whose row never counts).
/// The caller chooses `scale`, e.g. 1 / (images · masked patches per image · dim) for the mean.
public enum MaskedMSE {
    // loss = scale · Σ_{i, p: mask[i,p]} Σ_q (pred[i, prefix+p, q] − target[i, p, q])²
    // pred[images, tokens, dim], target[images, patches, dim], mask[images, patches]
    /// The squares are rounded to Float and summed in Double in (image, token, pixel) order;
    /// returns Float(sum · scale).
    public static func forward(
        pred: UnsafePointer<Float>, target: UnsafePointer<Float>, mask: UnsafePointer<Bool>, images: Int,
        tokens: Int, patches: Int, dim: Int, scale: Float
    ) -> Float {
        precondition(images >= 0 && patches >= 0 && tokens >= patches && dim >= 0, "MaskedMSE: bad shape")
        let prefix = tokens &- patches
        var sum = 0.0
        for i in 0..<images {
            for p in 0..<patches where mask[i &* patches &+ p] {
                let row = pred + (i &* tokens &+ prefix &+ p) &* dim, tg = target + (i &* patches &+ p) &* dim
                for q in 0..<dim {
                    let e = row[q] - tg[q]
                    sum += Double(e * e)
                }
            }
        }
        return Float(sum * Double(scale))
    }

    // dpred[i, prefix+p, q] += 2 · (pred − target) · scale where mask[i,p]; other rows untouched
    // dpred, pred[images, tokens, dim], target[images, patches, dim], mask[images, patches]
    /// Accumulates (+=) the gradient of `forward`'s loss; `dpred` may not alias `pred`.
    public static func backward(
        dpred: UnsafeMutablePointer<Float>, pred: UnsafePointer<Float>, target: UnsafePointer<Float>,
        mask: UnsafePointer<Bool>, images: Int, tokens: Int, patches: Int, dim: Int, scale: Float
    ) {
        precondition(images >= 0 && patches >= 0 && tokens >= patches && dim >= 0, "MaskedMSE: bad shape")
        let prefix = tokens &- patches
        for i in 0..<images {
            for p in 0..<patches where mask[i &* patches &+ p] {
                let offset = (i &* tokens &+ prefix &+ p) &* dim
                let row = pred + offset, drow = dpred + offset, tg = target + (i &* patches &+ p) &* dim
                for q in 0..<dim {
                    let e = row[q] - tg[q]
                    drow[q] += 2 * e * scale
                }
            }
        }
    }

    /// `forward` in plain Double arithmetic (for tests).
    public static func forwardReference(
        pred: UnsafePointer<Float>, target: UnsafePointer<Float>, mask: UnsafePointer<Bool>, images: Int,
        tokens: Int, patches: Int, dim: Int, scale: Double
    ) -> Double {
        let prefix = tokens - patches
        var sum = 0.0
        for i in 0..<images {
            for p in 0..<patches where mask[i * patches + p] {
                for q in 0..<dim {
                    let e =
                        Double(pred[(i * tokens + prefix + p) * dim + q]) - Double(target[(i * patches + p) * dim + q])
                    sum += e * e
                }
            }
        }
        return sum * scale
    }

    /// `backward` in plain Double arithmetic (for tests).
    public static func backwardReference(
        dpred: UnsafeMutablePointer<Float>, pred: UnsafePointer<Float>, target: UnsafePointer<Float>,
        mask: UnsafePointer<Bool>, images: Int, tokens: Int, patches: Int, dim: Int, scale: Double
    ) {
        let prefix = tokens - patches
        for i in 0..<images {
            for p in 0..<patches where mask[i * patches + p] {
                for q in 0..<dim {
                    let j = (i * tokens + prefix + p) * dim + q
                    let e = Double(pred[j]) - Double(target[(i * patches + p) * dim + q])
                    dpred[j] = Float(Double(dpred[j]) + 2 * e * scale)
                }
            }
        }
    }
}
