import Foundation
import ViTMergeCore

/// CLIP's symmetric contrastive loss (InfoNCE, Radford et al. 2021) over N image–text pairs:
/// logits = scale · image · textᵀ [N, N], loss = (CE over each row with target i + CE over each
/// column with target j) / 2, each a mean over N. Plain loops in one fixed order, accumulated in
/// Double: the same bits on every rank that holds the same embeddings, for any thread count.
public enum ContrastiveLoss {
    // logits[N,N] = scale·image[N,E]·text[N,E]ᵀ; rowProbs = softmax over each row, colProbs[i,j] =
    // softmax over column j at row i. Returns the loss and the rows whose argmax is their own pair
    // (image→text top-1; the first maximum wins ties).
    public static func forward(
        logits: UnsafeMutablePointer<Float>, rowProbs: UnsafeMutablePointer<Float>,
        colProbs: UnsafeMutablePointer<Float>, image: UnsafePointer<Float>, text: UnsafePointer<Float>, count n: Int,
        dim e: Int, scale: Float
    ) -> (loss: Double, correct: Int) {
        precondition(n >= 1 && e >= 1, "ContrastiveLoss: bad shape N \(n), E \(e)")
        for i in 0..<n {
            for j in 0..<n {
                var s = 0.0
                for k in 0..<e { s += Double(image[i &* e &+ k]) * Double(text[j &* e &+ k]) }
                logits[i &* n &+ j] = Float(Double(scale) * s)
            }
        }
        var total = 0.0, correct = 0
        for i in 0..<n {  // rows: image i against every text
            var m = -Double.infinity, arg = 0
            for j in 0..<n where Double(logits[i &* n &+ j]) > m {
                m = Double(logits[i &* n &+ j])
                arg = j
            }
            if arg == i { correct += 1 }
            var z = 0.0
            for j in 0..<n { z += exp(Double(logits[i &* n &+ j]) - m) }
            for j in 0..<n { rowProbs[i &* n &+ j] = Float(exp(Double(logits[i &* n &+ j]) - m) / z) }
            total += log(z) + m - Double(logits[i &* n &+ i])
        }
        for j in 0..<n {  // columns: text j against every image
            var m = -Double.infinity
            for i in 0..<n { m = max(m, Double(logits[i &* n &+ j])) }
            var z = 0.0
            for i in 0..<n { z += exp(Double(logits[i &* n &+ j]) - m) }
            for i in 0..<n { colProbs[i &* n &+ j] = Float(exp(Double(logits[i &* n &+ j]) - m) / z) }
            total += log(z) + m - Double(logits[j &* n &+ j])
        }
        return (total / Double(2 * n), correct)
    }

    // dimage[N,E], dtext[N,E] (overwritten) = dLoss/d(image, text) of the last `forward`, with
    // dlogits = (rowProbs − I + colProbs − I) / 2N; returns dLoss/d(log scale) = Σ dlogits ⊙ logits.
    public static func backward(
        dimage: UnsafeMutablePointer<Float>, dtext: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
        rowProbs: UnsafePointer<Float>, colProbs: UnsafePointer<Float>, image: UnsafePointer<Float>,
        text: UnsafePointer<Float>, count n: Int, dim e: Int, scale: Float
    ) -> Double {
        precondition(n >= 1 && e >= 1, "ContrastiveLoss: bad shape N \(n), E \(e)")
        @inline(__always) func dlogit(_ i: Int, _ j: Int) -> Double {
            let p = Double(rowProbs[i &* n &+ j]) + Double(colProbs[i &* n &+ j]) - (i == j ? 2 : 0)
            return p / Double(2 * n)
        }
        var dlogScale = 0.0
        for i in 0..<n {
            for j in 0..<n { dlogScale += dlogit(i, j) * Double(logits[i &* n &+ j]) }
        }
        let s = Double(scale)
        for i in 0..<n {  // dimage[i] = scale · Σ_j dlogits[i, j] · text[j]
            for k in 0..<e {
                var acc = 0.0
                for j in 0..<n { acc += dlogit(i, j) * Double(text[j &* e &+ k]) }
                dimage[i &* e &+ k] = Float(s * acc)
            }
        }
        for j in 0..<n {  // dtext[j] = scale · Σ_i dlogits[i, j] · image[i]
            for k in 0..<e {
                var acc = 0.0
                for i in 0..<n { acc += dlogit(i, j) * Double(image[i &* e &+ k]) }
                dtext[j &* e &+ k] = Float(s * acc)
            }
        }
        return dlogScale
    }
}
