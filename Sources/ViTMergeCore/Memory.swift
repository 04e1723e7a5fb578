/// Cache-line aligned float buffers. Every large buffer in ViTMerge comes from here, so SIMD loads
/// on its start are aligned and no two threads' outputs share a line at a buffer boundary.
public enum Memory {
    /// Alignment in bytes of every buffer (one cache line, one 512-bit vector).
    public static let alignment = 64

    /// `count` floats, zero-filled, aligned to `alignment`. Release with `deallocate(_:)`.
    public static func allocateFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
        precondition(count >= 0, "Memory.allocateFloats: negative count \(count)")
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) &* 4, alignment: alignment)
        raw.initializeMemory(as: Float.self, repeating: 0, count: max(count, 1))
        return raw.assumingMemoryBound(to: Float.self)
    }

    public static func deallocate(_ pointer: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(pointer).deallocate()
    }

    /// `count` rounded up to a whole number of cache lines of floats (16).
    @inlinable @inline(__always)
    public static func roundUpToLine(_ count: Int) -> Int { (count &+ 15) & ~15 }
}
