/// One aligned float buffer holding many tensors back to back (parameters, gradients, optimizer
/// moments, activations). Layout is planned first with `Arena.Layout`, then allocated once, so
/// arena-wide operations (zeroing, AdamW, task vectors, merges) are single flat loops.
public final class Arena: @unchecked Sendable {
    /// A plan of named regions; each region starts on a cache line.
    public struct Layout: Sendable {
        public private(set) var regions: [(name: String, offset: Int, shape: Shape)] = []
        public private(set) var count = 0
        public init() {}

        /// Appends a region and returns its offset.
        @discardableResult
        public mutating func add(_ name: String, _ shape: Shape) -> Int {
            let offset = count
            regions.append((name, offset, shape))
            count = Memory.roundUpToLine(offset + shape.count)
            return offset
        }
    }

    public let base: UnsafeMutablePointer<Float>
    public let count: Int
    public let layout: Layout
    private let index: [String: Int]

    /// Allocates a zero-filled arena for `layout`.
    public init(layout: Layout) {
        self.layout = layout
        self.count = layout.count
        self.base = Memory.allocateFloats(layout.count)
        var index: [String: Int] = [:]
        for (i, r) in layout.regions.enumerated() {
            precondition(index[r.name] == nil, "Arena: duplicate region name \(r.name)")
            index[r.name] = i
        }
        self.index = index
    }

    /// A zero-filled arena of `count` floats with no named regions.
    public convenience init(count: Int) {
        var layout = Layout()
        layout.add("", Shape([count]))
        self.init(layout: layout)
    }

    deinit { Memory.deallocate(base) }

    public var buffer: UnsafeMutableBufferPointer<Float> { .init(start: base, count: count) }
    public var names: [String] { layout.regions.map(\.name) }

    /// The named region as a tensor view, or nil when absent.
    public func tensor(_ name: String) -> Tensor? {
        guard let i = index[name] else { return nil }
        let r = layout.regions[i]
        return Tensor(view: self, offset: r.offset, shape: r.shape)
    }

    /// Pointer to the named region; the name must exist.
    public func pointer(_ name: String) -> UnsafeMutablePointer<Float> {
        guard let i = index[name] else { preconditionFailure("Arena: no region named \(name)") }
        return base + layout.regions[i].offset
    }

    public func zero() { base.update(repeating: 0, count: count) }
}
