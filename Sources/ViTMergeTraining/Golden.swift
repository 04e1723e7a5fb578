import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel

/// One compared group of tensors in a golden check.
public struct GoldenRow: Sendable {
    public let group: String
    public let tensors: Int
    public let elements: Int
    public let maxAbs: Double
    public let maxRel: Double
    /// The element furthest outside (or closest to) its tolerance, as "name[index]: ours vs torch".
    public let worst: String
    public let atol: Double, rtol: Double
    public var passed: Bool
}

/// The outcome of checking one golden file (FORMATS.md "Golden files").
public struct GoldenReport: Sendable {
    public let path: String
    public let config: ViTConfig
    public var rows: [GoldenRow] = []
    public var passed: Bool { !rows.isEmpty && rows.allSatisfy(\.passed) }
    /// Every tensor this run computed, by golden name (for determinism checks).
    public var computed: [String: [Float]] = [:]
}

/// Runs a golden file (`GoldenFile`) through the Swift model: forward, loss, activations, JVP,
/// backward (with input gradient) and the recorded AdamW steps with the trainer's
/// `AdamWOptimizer`, comparing each with PyTorch's values, |ours − torch| ≤ atol + rtol·|torch|.
public enum Golden {
    /// Tolerances (FORMATS.md): logits, features, loss, activations and the JVP.
    public static let forwardTolerance = (atol: 1e-5, rtol: 1e-4)
    /// Every parameter gradient and the input gradient.
    public static let gradientTolerance = (atol: 1e-5, rtol: 1e-3)
    /// Parameters after the recorded AdamW steps (their losses use `forwardTolerance`).
    public static let adamwTolerance = (atol: 1e-4, rtol: 1e-3)

    public static func verify(path: String, pool: ThreadPool = .shared) throws -> GoldenReport {
        let golden = try GoldenFile(path: path)
        let config = golden.config, params = golden.parameters
        let model = ViT(parameters: params, pool: pool)
        var report = GoldenReport(path: path, config: config)
        let (batch, input, labels) = (golden.batch, golden.input, golden.labels)
        let d = config.embedDim, k = config.numClasses
        let acts = model.makeActivations(capacity: batch)
        let grads = model.makeGradients()

        // Loss of the current forward, with dLoss/dOutput left in acts.outputGradient.
        func loss() -> Float {
            if k > 0 {
                return labels.withUnsafeBufferPointer {
                    model.crossEntropy(labels: $0.baseAddress!, batch: batch, acts: acts)
                }
            }
            let w = golden.lossWeight!, out = acts.output
            var s = 0.0
            for i in 0..<batch * d {
                s += Double(out[i] * w[i])
                acts.outputGradient[i] = w[i] / Float(batch * d)
            }
            return Float(s / Double(batch * d))
        }

        // Forward, activations, loss.
        input.withUnsafeBufferPointer { model.forward(input: $0.baseAddress!, batch: batch, acts: acts) }
        let outName = golden.outputName
        let forwardTensors: [(String, [Float])] = [
            (outName, Array(UnsafeBufferPointer(start: acts.output, count: batch * (k > 0 ? k : d))))
        ]
        var activationTensors: [(String, [Float])] = []
        for name in golden.activationNames {
            guard let ptr = acts.activation(String(name.dropFirst(4))) else { continue }
            activationTensors.append((name, Array(UnsafeBufferPointer(start: ptr, count: golden.count(name)))))
        }
        let lossValue = loss()
        try report.rows.append(compare("forward", forwardTensors + [("loss", [lossValue])], golden, forwardTolerance))
        if !activationTensors.isEmpty {
            try report.rows.append(compare("activations", activationTensors, golden, forwardTolerance))
        }

        // Jacobian-vector product for the recorded tangent (before the backward reuses activations).
        if let tangent = golden.jvpTangent {
            let tangents = ViTTangents(config: config, capacity: batch)
            model.jvp(tangent: tangent.base, batch: batch, acts: acts, tangents: tangents)
            let jv = Array(UnsafeBufferPointer(start: tangents.output, count: batch * (k > 0 ? k : d)))
            try report.rows.append(compare("jvp", [(golden.jvpName, jv)], golden, forwardTolerance))
            report.computed[golden.jvpName] = jv
        }

        // Backward with the input gradient.
        var gradInput = [Float](repeating: 0, count: input.count)
        input.withUnsafeBufferPointer { inp in
            gradInput.withUnsafeMutableBufferPointer {
                model.backward(
                    input: inp.baseAddress!, batch: batch, acts: acts, grads: grads, gradInput: $0.baseAddress!)
            }
        }
        let gradTensors = params.table.names.map { ("grad." + $0, grads.tensor($0)!.array) }
        try report.rows.append(compare("gradients", gradTensors, golden, gradientTolerance))
        if golden.contains("grad.input") {
            try report.rows.append(compare("grad.input", [("grad.input", gradInput)], golden, gradientTolerance))
        }

        // AdamW steps on the same batch: every tensor trains, constant lr, no clipping.
        if let h = golden.adamw {
            let optimizer = AdamWOptimizer(table: params.table, weightDecay: h.weightDecay, decayAll: h.decay1D) {
                _ in true
            }
            (optimizer.beta1, optimizer.beta2, optimizer.eps) = (h.beta1, h.beta2, h.eps)
            var losses: [Float] = []
            for _ in 1...h.steps {
                input.withUnsafeBufferPointer { model.forward(input: $0.baseAddress!, batch: batch, acts: acts) }
                losses.append(loss())
                grads.zero()
                input.withUnsafeBufferPointer {
                    model.backward(input: $0.baseAddress!, batch: batch, acts: acts, grads: grads)
                }
                optimizer.update(parameters: params, grads: grads, lr: h.lr, maxNorm: 0, pool: pool)
            }
            try report.rows.append(compare("adamw.loss", [("adamw.loss", losses)], golden, forwardTolerance))
            let after = params.table.names.map { ("adamw.param." + $0, params[$0]!.array) }
            try report.rows.append(compare("adamw.param", after, golden, adamwTolerance))
            report.computed["adamw.loss"] = losses
            for (n, v) in after { report.computed[n] = v }
        }
        for (n, v) in forwardTensors + activationTensors + gradTensors { report.computed[n] = v }
        report.computed["loss"] = [lossValue]
        report.computed["grad.input"] = gradInput
        return report
    }

    /// Compares computed tensors with the file's, |ours − torch| ≤ atol + rtol·|torch|.
    static func compare(
        _ group: String, _ tensors: [(String, [Float])], _ golden: GoldenFile, _ tol: (atol: Double, rtol: Double)
    ) throws -> GoldenRow {
        var maxAbs = 0.0, maxRel = 0.0, worstExcess = -Double.infinity, worst = "-", elements = 0
        var passed = true
        for (name, ours) in tensors {
            let theirs = try golden.expected(name)
            guard theirs.count == ours.count else {
                throw IOError.shapeMismatch(
                    path: golden.path, tensor: name, expected: [ours.count], found: [theirs.count])
            }
            elements += ours.count
            for i in 0..<ours.count {
                let a = Double(ours[i]), b = Double(theirs[i])
                let diff = abs(a - b)
                let excess = diff - (tol.atol + tol.rtol * abs(b))
                if !(excess <= 0) { passed = false }
                maxAbs = max(maxAbs, diff.isNaN ? .infinity : diff)
                if b != 0 { maxRel = max(maxRel, diff / abs(b)) }
                if excess > worstExcess || excess.isNaN {
                    worstExcess = excess.isNaN ? .infinity : excess
                    worst = "\(name)[\(i)]: \(ours[i]) vs \(theirs[i])"
                }
            }
        }
        return GoldenRow(
            group: group, tensors: tensors.count, elements: elements, maxAbs: maxAbs, maxRel: maxRel,
            worst: worst, atol: tol.atol, rtol: tol.rtol, passed: passed)
    }
}
