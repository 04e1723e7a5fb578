import ViTMergeCore
import ViTMergeKernels
import ViTMergeModel

/// A vector over a ViT's encoder: a task vector τ = θ_ft − θ_pre, a merged direction, or a sum of
/// them. One arena laid out like the encoder prefix [0, table.encoderEnd) of the parameter arena
/// (the same region names, offsets and cache-line padding; the padding stays 0), so merges are
/// single streaming loops over `count` floats and a vector lines up with any parameter arena of
/// the same encoder config, whatever its head.
///
/// A reference type (it owns its memory): two variables may share one vector; `copy()` makes an
/// independent one. Elements read through the subscript and are written through `base`.
public final class EncoderVector: @unchecked Sendable, RandomAccessCollection {
    public let arena: Arena

    /// A zero vector with `layout` (regions of an encoder, see `encoderLayout(_:)`).
    public init(layout: Arena.Layout) { arena = Arena(layout: layout) }

    /// A zero vector over the encoder of `table`.
    public convenience init(table: ParameterTable) { self.init(layout: EncoderVector.encoderLayout(table)) }

    /// A vector over the encoder of `table` holding `values` (`table.encoderEnd` floats, padding included).
    public convenience init(_ values: [Float], table: ParameterTable) {
        self.init(table: table)
        precondition(values.count == count, "EncoderVector: \(values.count) values for an encoder of \(count)")
        values.withUnsafeBufferPointer { base.update(from: $0.baseAddress!, count: count) }
    }

    /// A zero vector with the layout of `other`.
    public convenience init(like other: EncoderVector) { self.init(layout: other.arena.layout) }

    /// The regions of `table` outside the head, at the same offsets: the head is laid out last,
    /// so this layout's count is `table.encoderEnd`.
    public static func encoderLayout(_ table: ParameterTable) -> Arena.Layout {
        var l = Arena.Layout()
        for r in table.layout.regions where !ParameterTable.isHead(r.name) {
            let offset = l.add(r.name, r.shape)
            precondition(offset == r.offset, "EncoderVector: the head of \(table.config.json) is not laid out last")
        }
        precondition(l.count == table.encoderEnd, "EncoderVector: encoder layout ends at \(l.count)")
        return l
    }

    public var base: UnsafeMutablePointer<Float> { arena.base }
    public var count: Int { arena.count }
    public var startIndex: Int { 0 }
    public var endIndex: Int { arena.count }

    /// Read-only: a vector is often shared (a task's τ, a merge's inputs), so writes go through
    /// `base` or the arena-wide operations, never through an `acc[j] += …` that could alias one.
    public subscript(i: Int) -> Float {
        precondition(i >= 0 && i < count, "EncoderVector: index \(i) out of 0..<\(count)")
        return base[i]
    }

    /// An independent vector with the same layout and values.
    public func copy() -> EncoderVector {
        let v = EncoderVector(like: self)
        v.base.update(from: base, count: count)
        return v
    }

    /// Whether `other` has the same regions at the same offsets.
    public func hasLayout(of other: EncoderVector) -> Bool {
        count == other.count
            && arena.layout.regions.elementsEqual(other.arena.layout.regions) {
                $0.name == $1.name && $0.offset == $1.offset && $0.shape == $1.shape
            }
    }

    /// self[i] = self[i] + other[i] (one rounding per element, as `a + b`).
    public func add(_ other: EncoderVector, pool: ThreadPool = .shared) {
        precondition(other.count == count, "EncoderVector.add: \(other.count) values, expected \(count)")
        Elementwise.add(out: base, a: base, b: other.base, count: count, pool: pool)
    }

    /// Sets every element (padding included) to 0.
    public func zero() { arena.zero() }
}
