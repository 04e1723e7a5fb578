import Foundation
import ViTMergeCore

/// Softmax cross-entropy with integer labels, mean over the batch (PyTorch's `F.cross_entropy`).
public enum CrossEntropy {
    // probs[N,K] = softmax(logits); losses[N] = −log probs[label];
    // returns the mean loss (summed in Double, row order)
    public static func forward(
        probs: UnsafeMutablePointer<Float>, losses: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
        labels: UnsafePointer<Int32>, rows: Int, classes: Int, pool: ThreadPool = .shared
    ) -> Float {
        let profileStart = Profiler.begin(); defer { Profiler.end(.loss, profileStart) }
        precondition(rows >= 0 && classes >= 1, "CrossEntropy: bad shape [\(rows), \(classes)]")
        pool.parallel(rows, cost: 4 * classes) { _, _, rr in
            for r in rr {
                let x = logits + r &* classes, p = probs + r &* classes
                let label = Int(labels[r])
                precondition(label >= 0 && label < classes, "CrossEntropy: label \(label) outside 0..<\(classes)")
                let (m, sum) = Softmax.rowScalar(p, x, classes)
                // −log softmax computed as log Σ exp(x − m) − (x_label − m): no log(0).
                losses[r] = Foundation.log(sum) - (x[label] - m)
            }
        }
        var total = 0.0
        for r in 0..<rows { total += Double(losses[r]) }
        return rows > 0 ? Float(total / Double(rows)) : 0
    }

    // dlogits[N,K] += scale · (probs − onehot(label))
    public static func backward(
        dlogits: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>, labels: UnsafePointer<Int32>,
        rows: Int, classes: Int, scale: Float, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.loss, profileStart) }
        pool.parallel(rows, cost: 3 * classes) { _, _, rr in
            for r in rr {
                let d = dlogits + r &* classes, p = probs + r &* classes
                for j in 0..<classes { d[j] += scale * p[j] }
                d[Int(labels[r])] -= scale
            }
        }
    }

    public static func forwardReference(
        probs: UnsafeMutablePointer<Float>, losses: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
        labels: UnsafePointer<Int32>, rows: Int, classes: Int
    ) -> Float {
        var total = 0.0
        for r in 0..<rows {
            let x = (0..<classes).map { Double(logits[r * classes + $0]) }
            let m = x.max()!
            let z = x.reduce(0) { $0 + exp($1 - m) }
            for j in 0..<classes { probs[r * classes + j] = Float(exp(x[j] - m) / z) }
            let l = log(z) + m - x[Int(labels[r])]
            losses[r] = Float(l)
            total += l
        }
        return Float(total / Double(max(rows, 1)))
    }
}
