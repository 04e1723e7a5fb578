import Foundation

/// What a kernel call is counted as in `Profiler`.
public enum ProfileCategory: Int, CaseIterable, Sendable {
    case gemm, attention, layerNorm, activation, elementwise, loss, optimizer

    public var name: String {
        switch self {
        case .gemm: "GEMM (linear layers, patch embedding)"
        case .attention: "attention (products + softmax)"
        case .layerNorm: "LayerNorm"
        case .activation: "GELU / QuickGELU"
        case .elementwise: "bias, axpy, scale"
        case .loss: "cross-entropy"
        case .optimizer: "AdamW + gradient norm"
        }
    }
}

/// Wall time per kernel category, for the benchmark's profile mode. Off by default: then every
/// kernel entry pays one load and one branch. Only the outermost kernel call is timed (a kernel
/// calling another is counted once, under its own category). Kernels must be entered from one
/// thread at a time while it is enabled (as the model does: kernels parallelize internally).
public enum Profiler {
    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) static var depth = 0
    nonisolated(unsafe) public private(set) static var seconds = [Double](
        repeating: 0, count: ProfileCategory.allCases.count)
    nonisolated(unsafe) public private(set) static var calls = [Int](
        repeating: 0, count: ProfileCategory.allCases.count)

    public static func reset() {
        seconds = [Double](repeating: 0, count: ProfileCategory.allCases.count)
        calls = [Int](repeating: 0, count: ProfileCategory.allCases.count)
        depth = 0
    }

    /// Start of a kernel call: a timestamp when this call is timed, else 0.
    @inline(__always) public static func begin() -> UInt64 {
        guard enabled else { return 0 }
        depth += 1
        return depth == 1 ? DispatchTime.now().uptimeNanoseconds : 0
    }

    @inline(__always) public static func end(_ category: ProfileCategory, _ start: UInt64) {
        guard enabled, depth > 0 else { return }
        depth -= 1
        if start != 0 {
            seconds[category.rawValue] += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            calls[category.rawValue] += 1
        }
    }
}
