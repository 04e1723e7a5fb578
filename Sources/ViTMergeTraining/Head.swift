import ViTMergeCore
import ViTMergeModel

/// The RNG streams of the fresh heads, so every caller keeps its exact values: with the run's
/// seed, `RNG(seed: seed, stream: …)`.
public enum HeadStream {
    /// Linear probing (`linearProbe`).
    public static let probe: UInt64 = 0x4EAD
    /// Full fine-tuning (`reinitializeHead`).
    public static let fullFineTune: UInt64 = 0xF011
}

/// A fresh classification head, timm's init: head.weight [K, D] truncated normal (std 0.02,
/// within ±2) drawn in order from `RNG(seed: seed, stream: stream)`, head.bias [K] zero.
/// Does nothing for a model without a head.
public func initializeHead(_ p: ViTParameters, seed: UInt64, stream: UInt64) {
    guard let w = p["head.weight"], let b = p["head.bias"] else { return }
    var rng = RNG(seed: seed, stream: stream)
    for i in 0..<w.count { w.pointer[i] = Float(rng.truncatedNormal(mean: 0, std: 0.02, lo: -2, hi: 2)) }
    b.fill(0)
}

/// The fresh head of full fine-tuning (`initializeHead` on stream `HeadStream.fullFineTune`).
public func reinitializeHead(_ p: ViTParameters, seed: UInt64) {
    initializeHead(p, seed: seed, stream: HeadStream.fullFineTune)
}

/// The encoder of `base` with a head for `classes` classes (the head is copied when the class
/// count already matches, else zero until probed or trained; `classes` 0 drops it).
public func withHead(_ base: ViTParameters, classes: Int) -> ViTParameters {
    if base.config.numClasses == classes { return base.copy() }
    var c = base.config
    c.numClasses = classes
    let out = ViTParameters(config: c)
    for r in out.table.layout.regions where !ParameterTable.isHead(r.name) {
        out[r.name]!.copy(from: base[r.name]!)
    }
    return out
}
