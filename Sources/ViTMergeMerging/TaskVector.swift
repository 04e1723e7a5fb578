import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel

/// Errors of merging: each says what does not fit and what to do.
public enum MergeError: Error, CustomStringConvertible {
    case incompatible(String)
    case wrongBase(task: String, expected: String, found: String)

    public var description: String {
        switch self {
        case .incompatible(let why): "cannot merge: \(why)"
        case .wrongBase(let task, let expected, let found):
            "task vector '\(task)' was made from base \(found.prefix(12))…, not this base \(expected.prefix(12))…; "
                + "recompute it against this base"
        }
    }
}

/// τ = θ_ft − θ_pre over the encoder (every tensor but `head.*`), in an `EncoderVector`: the
/// parameter arena's layout with the head (laid out last) cut off, so the encoder is the prefix
/// [0, table.encoderEnd) of the arena and merges are single streaming loops.
public struct TaskVector: Sendable {
    public let task: String
    /// sha256 of the base parameters' data (FORMATS.md "Task vectors").
    public let base: String
    public var values: EncoderVector

    public init(task: String, base: String, values: EncoderVector) {
        self.task = task
        self.base = base
        self.values = values
    }

    /// A task vector holding a copy of `values` (`table.encoderEnd` floats) in an arena.
    public init(task: String, base: String, values: [Float], table: ParameterTable) {
        self.init(task: task, base: base, values: EncoderVector(values, table: table))
    }

    /// θ_ft − θ_pre on the encoder; both must share the encoder config (the head may differ).
    public init(task: String, finetuned: ViTParameters, pretrained: ViTParameters) throws {
        guard sameEncoder(finetuned.config, pretrained.config) else {
            throw MergeError.incompatible(
                "'\(task)' has encoder config \(finetuned.config.json), the base \(pretrained.config.json)")
        }
        let v = EncoderVector(table: pretrained.table)
        finetuned.difference(from: pretrained, into: v.base, count: v.count)
        self.init(task: task, base: parameterHash(pretrained), values: v)
    }

    /// Writes encoder tensors with timm names and metadata kind/base/task, atomically.
    public func save(to path: String, table: ParameterTable) throws {
        precondition(
            values.count == table.encoderEnd, "TaskVector.save: \(values.count) values for \(table.config.json)")
        var w = SafeTensorsWriter(metadata: [
            "kind": "task-vector", "base": base, "task": task, "config": table.config.json,
        ])
        for r in table.layout.regions where !ParameterTable.isHead(r.name) {
            try w.add(
                r.name, floats: UnsafeBufferPointer(start: values.base + r.offset, count: r.shape.count),
                shape: r.shape.dims)
        }
        try w.write(to: path)
    }

    public static func load(path: String, table: ParameterTable) throws -> TaskVector {
        let f = try SafeTensorsFile.read(path: path)
        guard f.metadata["kind"] == "task-vector", let base = f.metadata["base"], let task = f.metadata["task"] else {
            throw IOError.invalidFile(
                path: path, reason: "not a task vector (metadata kind/base/task)",
                hint: "make one with `vitmerge task-vector`")
        }
        let v = EncoderVector(table: table)
        for r in table.layout.regions where !ParameterTable.isHead(r.name) {
            try f.copyFloats(r.name, into: v.base + r.offset, shape: r.shape.dims)
        }
        for name in f.names
        where table.layout.regions.first(where: { $0.name == name }) == nil || ParameterTable.isHead(name) {
            throw IOError.unknownTensor(
                path: path, tensor: name, hint: "task vectors hold encoder tensors of the base's config only")
        }
        return TaskVector(task: task, base: base, values: v)
    }
}

/// Whether two configs have the same encoder (everything but the class count).
public func sameEncoder(_ a: ViTConfig, _ b: ViTConfig) -> Bool {
    var a = a, b = b
    a.numClasses = 0; b.numClasses = 0
    return a == b
}

/// sha256 (hex) of the encoder parameters' bytes: identifies the base a task vector belongs to.
public func parameterHash(_ p: ViTParameters) -> String {
    ContentHash.sha256Hex(UnsafeRawBufferPointer(start: p.base, count: p.table.encoderEnd * 4))
}

/// out = base + Σ coefficients[i]·vectors[i] in one streaming pass (each element read once from
/// every input, written once), rounded as sequential FMAs in vector order — bit-identical to
/// `base` followed by one `axpy` per vector. Vectors with coefficient 0 are skipped (so
/// `out = base` exactly when every coefficient is 0). Bandwidth-bound: see the benchmark's merge suite.
// out[n] = base[n] + Σ_j c[j]·vectors[j][n]
public func combine(
    base: UnsafePointer<Float>, vectors: [EncoderVector], coefficients: [Float], into out: UnsafeMutablePointer<Float>,
    count n: Int, pool: ThreadPool = .shared
) {
    precondition(
        vectors.count == coefficients.count && vectors.allSatisfy { $0.count == n }, "combine: vector sizes differ")
    var xs: [UnsafePointer<Float>] = [], cs: [Float] = []
    for (v, c) in zip(vectors, coefficients) where c != 0 {
        xs.append(UnsafePointer(v.base))
        cs.append(c)
    }
    withExtendedLifetime(vectors) {
        Elementwise.linearCombination(out: out, base: base, xs: xs, coefficients: cs, count: n, pool: pool)
    }
}

/// `combine` over arrays (each `n` floats); see the `EncoderVector` form.
@_disfavoredOverload
public func combine(
    base: UnsafePointer<Float>, vectors: [[Float]], coefficients: [Float], into out: UnsafeMutablePointer<Float>,
    count n: Int, pool: ThreadPool = .shared
) {
    precondition(
        vectors.count == coefficients.count && vectors.allSatisfy { $0.count == n }, "combine: vector sizes differ")
    let active = zip(vectors, coefficients).filter { $0.1 != 0 }
    withPointers(active.map(\.0)) { xs in
        Elementwise.linearCombination(out: out, base: base, xs: xs, coefficients: active.map(\.1), count: n, pool: pool)
    }
}

/// Calls `body` with the base addresses of all `arrays` (valid only inside `body`).
func withPointers<R>(
    _ arrays: [[Float]], _ acc: [UnsafePointer<Float>] = [], _ body: ([UnsafePointer<Float>]) -> R
) -> R {
    guard let first = arrays.first else { return body(acc) }
    return first.withUnsafeBufferPointer { withPointers(Array(arrays.dropFirst()), acc + [$0.baseAddress!], body) }
}
