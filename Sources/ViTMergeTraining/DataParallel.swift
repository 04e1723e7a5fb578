import Foundation
import ViTMergeCore

/// How a data-parallel trainer sums gradients across ranks.
public enum GradientSync: String, Sendable, CaseIterable {
    /// In buckets of about `GradientReducer.bucketBytes`, each started (non-blocking) as soon as
    /// the backward has finished its tensors, so communication overlaps the rest of the backward.
    case overlapped
    /// One blocking sum of all gradients after the backward.
    case afterBackward = "after-backward"
}

/// Sums a gradient arena's `span` across the ranks of `group`, in buckets started while the
/// backward runs (`hook` receives `ViT.backward`'s ready ranges, which arrive in descending
/// contiguous order) or all at once after it.
final class GradientReducer {
    /// Bucket size: large enough that per-message latency does not matter, small enough that
    /// the first bucket starts early in the backward.
    static let bucketBytes = 1 << 20
    let group: Collective
    let gradients: UnsafeMutablePointer<Float>
    let span: Range<Int>
    var sync = GradientSync.overlapped
    /// [ready, span.upperBound) is final; [started, span.upperBound) has been started.
    private var ready = 0, started = 0
    /// Wall time spent inside collective calls (starting, progressing, waiting): the
    /// communication the backward did not hide, plus waiting for slower ranks.
    private(set) var nanoseconds: UInt64 = 0
    /// Backward passes reduced so far.
    private(set) var passes = 0
    /// Stored once, so passing it to every backward allocates nothing.
    private(set) var hook: ((Range<Int>) -> Void)!

    init(group: Collective, gradients: UnsafeMutablePointer<Float>, span: Range<Int>) {
        self.group = group
        self.gradients = gradients
        self.span = span
        hook = { [unowned self] range in self.rangeReady(range) }
    }

    /// Before each backward.
    func begin() {
        ready = span.upperBound
        started = span.upperBound
    }

    func rangeReady(_ range: Range<Int>) {
        guard sync == .overlapped else { return }
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { nanoseconds += DispatchTime.now().uptimeNanoseconds - t0 }
        let lo = max(range.lowerBound, span.lowerBound)
        precondition(
            range.upperBound >= ready || lo >= ready, "gradient ranges must arrive in descending contiguous order")
        ready = min(ready, lo)
        if (started - ready) * MemoryLayout<Float>.size >= Self.bucketBytes {
            group.startAllreduceSum(gradients + ready, count: started - ready)
            started = ready
        }
        group.progress()
    }

    /// After the backward: sums whatever was not started (everything, for `.afterBackward`, or
    /// when the backward stopped early) and waits for all sums.
    func finish() {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { nanoseconds += DispatchTime.now().uptimeNanoseconds - t0 }
        passes += 1
        if started > span.lowerBound {
            let count = started - span.lowerBound
            if sync == .overlapped {
                group.startAllreduceSum(gradients + span.lowerBound, count: count)
            } else {
                group.allreduceSum(gradients + span.lowerBound, count: count)
            }
            started = span.lowerBound
        }
        group.finishStarted()
    }
}

extension Trainer {
    /// Mean seconds per step spent in gradient collectives in this process (0 for one process).
    public var communicationSecondsPerStep: Double {
        guard let reducer, reducer.passes > 0 else { return 0 }
        return Double(reducer.nanoseconds) / 1e9 / Double(reducer.passes)
    }

    /// Bytes of gradient each step sums across the ranks (the trainable span; 0 for one process).
    public var gradientBytesPerStep: Int { (reducer?.span.count ?? 0) * MemoryLayout<Float>.size }

    /// Gives every rank rank 0's parameters (θ0 and θ when linearized; the objective's auxiliary
    /// ones), AdamW moments and step.
    public func broadcastState() {
        var arenas = [model.parameters.arena, optimizer.m, optimizer.v]
        if let theta { arenas.append(theta.arena) }
        if let aux = objective.auxiliary { arenas += [aux.parameters, aux.optimizer.m, aux.optimizer.v] }
        for a in arenas {
            group.broadcast(UnsafeMutableRawPointer(a.base), bytes: a.count * MemoryLayout<Float>.size, root: 0)
        }
        var step = Int64(optimizer.step)
        withUnsafeMutableBytes(of: &step) { group.broadcast($0.baseAddress!, bytes: 8, root: 0) }
        optimizer.step = Int(step)
        objective.auxiliary?.optimizer.step = Int(step)
    }

    /// Checks that every rank holds the same trained parameters (a 64-bit hash of their bits
    /// against rank 0's). They should always agree; if a reduction ever gave ranks different
    /// bits, rank 0's state is broadcast and `resynchronizations` counts it.
    func ensureRanksAgree() {
        let p = trained.arena
        var hash = fnv1a(UnsafeRawBufferPointer(start: p.base, count: p.count * MemoryLayout<Float>.size))
        if let a = objective.auxiliary?.parameters {
            hash ^= fnv1a(UnsafeRawBufferPointer(start: a.base, count: a.count * MemoryLayout<Float>.size)) &* 31
        }
        let mine = hash
        withUnsafeMutableBytes(of: &hash) { group.broadcast($0.baseAddress!, bytes: 8, root: 0) }
        var disagreeing: Double = mine == hash ? 0 : 1
        group.allreduceSum(&disagreeing, count: 1)
        if disagreeing > 0 {
            broadcastState()
            resynchronizations += 1
        }
    }
}

/// FNV-1a over 8-byte words (then the tail bytes).
func fnv1a(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    let words = bytes.count / 8
    for i in 0..<words {
        h ^= bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
        h = h &* 0x100_0000_01B3
    }
    for i in (words * 8)..<bytes.count {
        h ^= UInt64(bytes[i])
        h = h &* 0x100_0000_01B3
    }
    return h
}
