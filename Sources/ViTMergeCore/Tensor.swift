/// A contiguous row-major float32 tensor that owns its memory, or a named view into an `Arena`.
///
/// Kernels never see this type: they take `pointer` and the dims. `Tensor` exists so owners of
/// memory (models, optimizers, datasets) can hand shapes and storage around together.
public final class Tensor: @unchecked Sendable {
    public let shape: Shape
    public let pointer: UnsafeMutablePointer<Float>
    /// The arena (or nil when this tensor owns `pointer`) kept alive while the view lives.
    private let owner: Arena?

    /// A zero-filled tensor that owns its storage.
    public init(zeros shape: Shape) {
        self.shape = shape
        self.pointer = Memory.allocateFloats(shape.count)
        self.owner = nil
    }

    /// A tensor with the given values (row-major).
    public convenience init(shape: Shape, values: [Float]) {
        precondition(values.count == shape.count, "Tensor: \(values.count) values for shape \(shape)")
        self.init(zeros: shape)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    /// A view of `shape.count` floats at `offset` inside `arena`.
    public init(view arena: Arena, offset: Int, shape: Shape) {
        precondition(
            offset >= 0 && offset + shape.count <= arena.count,
            "Tensor view [\(offset), +\(shape.count)) outside arena of \(arena.count)")
        self.shape = shape
        self.pointer = arena.base + offset
        self.owner = arena
    }

    deinit { if owner == nil { Memory.deallocate(pointer) } }

    public var count: Int { shape.count }
    public var buffer: UnsafeMutableBufferPointer<Float> { .init(start: pointer, count: count) }
    public var array: [Float] { Array(buffer) }

    public func fill(_ value: Float) { pointer.update(repeating: value, count: count) }
    public func copy(from other: Tensor) {
        precondition(other.count == count, "Tensor.copy: \(other.shape) into \(shape)")
        pointer.update(from: other.pointer, count: count)
    }
}
