import Foundation
import ViTMergeCore
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

/// Runs a golden file through the Swift model: forward, loss, backward (with input gradient)
/// and the recorded AdamW steps, comparing each with PyTorch's values.
public enum Golden {
    public static let forwardTolerance = (atol: 1e-5, rtol: 1e-4)
    public static let gradientTolerance = (atol: 1e-5, rtol: 1e-3)
    public static let adamwTolerance = (atol: 1e-4, rtol: 1e-3)

    public static func verify(path: String, pool: ThreadPool = .shared) throws -> GoldenReport {
        let file = try SafeTensorsFile.read(path: path)
        guard file.metadata["format"] == "vitmerge-golden" else {
            throw IOError.invalidFile(
                path: path,
                reason:
                    "metadata format is \(file.metadata["format"].map { "'\($0)'" } ?? "missing"), expected 'vitmerge-golden'",
                hint: "produce golden files with scripts/make_golden.py")
        }
        guard let configJSON = file.metadata["config"] else {
            throw IOError.invalidFile(
                path: path, reason: "metadata has no 'config'", hint: "produce golden files with scripts/make_golden.py"
            )
        }
        let config = try ViTConfig.parse(json: Data(configJSON.utf8))
        let params = ViTParameters(config: config)
        try loadParameters(params, from: file, prefix: "param.")
        let model = ViT(parameters: params, pool: pool)
        var report = GoldenReport(path: path, config: config)

        let inputInfo = try require(file, "input")
        guard inputInfo.shape.count == 4, inputInfo.shape[1] == config.inChannels,
            inputInfo.shape[2] == config.imageHeight,
            inputInfo.shape[3] == config.imageWidth
        else {
            throw IOError.shapeMismatch(
                path: path, tensor: "input",
                expected: [-1, config.inChannels, config.imageHeight, config.imageWidth], found: inputInfo.shape)
        }
        let batch = inputInfo.shape[0]
        let input = try file.floats("input")
        let labels = try file.int64s("labels", shape: [batch]).map { Int32(truncatingIfNeeded: $0) }
        let d = config.embedDim, k = config.numClasses
        if k > 0, let bad = labels.first(where: { $0 < 0 || Int($0) >= k }) {
            throw IOError.invalidFile(
                path: path, reason: "label \(bad) outside 0..<\(k)", hint: "regenerate the golden file")
        }
        let lossWeight: [Float]? = k == 0 ? try file.floats("loss_weight", shape: [batch, d]) : nil
        let acts = model.makeActivations(capacity: batch)
        let grads = model.makeGradients()

        // Loss of the current forward, with dLoss/dOutput left in acts.outputGradient.
        func loss() -> Float {
            if k > 0 {
                return labels.withUnsafeBufferPointer {
                    model.crossEntropy(labels: $0.baseAddress!, batch: batch, acts: acts)
                }
            }
            let w = lossWeight!, out = acts.output
            var s = 0.0
            for i in 0..<batch * d {
                s += Double(out[i] * w[i])
                acts.outputGradient[i] = w[i] / Float(batch * d)
            }
            return Float(s / Double(batch * d))
        }

        // Forward, activations, loss.
        input.withUnsafeBufferPointer { model.forward(input: $0.baseAddress!, batch: batch, acts: acts) }
        let outName = k > 0 ? "logits" : "features"
        let forwardTensors: [(String, [Float])] = [
            (outName, Array(UnsafeBufferPointer(start: acts.output, count: batch * (k > 0 ? k : d))))
        ]
        var activationTensors: [(String, [Float])] = []
        for name in file.names where name.hasPrefix("act.") {
            guard let ptr = acts.activation(String(name.dropFirst(4))) else { continue }
            activationTensors.append((name, Array(UnsafeBufferPointer(start: ptr, count: file.info(name)!.count))))
        }
        let lossValue = loss()
        try report.rows.append(compare("forward", forwardTensors + [("loss", [lossValue])], file, forwardTolerance))
        if !activationTensors.isEmpty {
            try report.rows.append(compare("activations", activationTensors, file, forwardTolerance))
        }

        // Jacobian-vector product for the recorded tangent (before the backward reuses activations).
        let jvpName = "jvp." + outName
        if file.contains(jvpName) {
            let tangent = ViTParameters(config: config)
            try loadParameters(tangent, from: file, prefix: "jvp.tangent.")
            let tangents = ViTTangents(config: config, capacity: batch)
            model.jvp(tangent: tangent.base, batch: batch, acts: acts, tangents: tangents)
            let jv = Array(UnsafeBufferPointer(start: tangents.output, count: batch * (k > 0 ? k : d)))
            try report.rows.append(compare("jvp", [(jvpName, jv)], file, forwardTolerance))
            report.computed[jvpName] = jv
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
        try report.rows.append(compare("gradients", gradTensors, file, gradientTolerance))
        if file.contains("grad.input") {
            try report.rows.append(compare("grad.input", [("grad.input", gradInput)], file, gradientTolerance))
        }

        // AdamW steps on the same batch.
        if let adamwJSON = file.metadata["adamw"], file.contains("adamw.loss") {
            let h = try AdamWSettings.parse(adamwJSON, path: path)
            let m = model.makeGradients(), v = model.makeGradients()
            var losses: [Float] = []
            let decay = params.table.layout.regions.map { r in
                (r.offset, r.shape.count, h.decay1D || !ParameterTable.isNoDecay(r.name) ? h.weightDecay : Float(0))
            }
            for step in 1...h.steps {
                input.withUnsafeBufferPointer { model.forward(input: $0.baseAddress!, batch: batch, acts: acts) }
                losses.append(loss())
                grads.zero()
                input.withUnsafeBufferPointer {
                    model.backward(input: $0.baseAddress!, batch: batch, acts: acts, grads: grads)
                }
                for (offset, count, wd) in decay {
                    AdamW.update(
                        params: params.base + offset, grads: grads.base + offset, m: m.base + offset,
                        v: v.base + offset,
                        count: count, step: step, lr: h.lr, beta1: h.beta1, beta2: h.beta2, eps: h.eps,
                        weightDecay: wd, pool: pool)
                }
            }
            try report.rows.append(compare("adamw.loss", [("adamw.loss", losses)], file, forwardTolerance))
            let after = params.table.names.map { ("adamw.param." + $0, params[$0]!.array) }
            try report.rows.append(compare("adamw.param", after, file, adamwTolerance))
            report.computed["adamw.loss"] = losses
            for (n, v) in after { report.computed[n] = v }
        }
        for (n, v) in forwardTensors + activationTensors + gradTensors { report.computed[n] = v }
        report.computed["loss"] = [lossValue]
        report.computed["grad.input"] = gradInput
        return report
    }

    /// Copies `prefix + name` for every parameter of `params` from `file`, checking shapes, and
    /// rejects parameter tensors the config does not have.
    static func loadParameters(_ params: ViTParameters, from file: SafeTensorsFile, prefix: String) throws {
        let expected = Set(params.table.names)
        for name in file.names where name.hasPrefix(prefix) && !expected.contains(String(name.dropFirst(prefix.count)))
        {
            throw IOError.unknownTensor(
                path: file.path, tensor: name,
                hint: "the config (\(params.config.json)) has no such parameter; check the config matches the weights")
        }
        for r in params.table.layout.regions {
            try file.copyFloats(prefix + r.name, into: params.base + r.offset, shape: r.shape.dims)
        }
    }

    static func require(_ file: SafeTensorsFile, _ name: String) throws -> TensorInfo {
        guard let info = file.info(name) else {
            throw IOError.missingTensor(path: file.path, tensor: name, available: Array(file.names.prefix(8)))
        }
        return info
    }

    /// Compares computed tensors with the file's, |ours − torch| ≤ atol + rtol·|torch|.
    static func compare(
        _ group: String, _ tensors: [(String, [Float])], _ file: SafeTensorsFile,
        _ tol: (atol: Double, rtol: Double)
    ) throws -> GoldenRow {
        var maxAbs = 0.0, maxRel = 0.0, worstExcess = -Double.infinity, worst = "-", elements = 0
        var passed = true
        for (name, ours) in tensors {
            let theirs: [Float]
            if name == "loss" { theirs = [try file.scalar("loss")] } else { theirs = try file.floats(name) }
            guard theirs.count == ours.count else {
                throw IOError.shapeMismatch(
                    path: file.path, tensor: name, expected: [ours.count], found: [theirs.count])
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

/// The AdamW hyper-parameters recorded in a golden file's metadata.
struct AdamWSettings {
    var lr: Float, beta1: Float, beta2: Float, eps: Float, weightDecay: Float, steps: Int, decay1D: Bool

    static func parse(_ json: String, path: String) throws -> AdamWSettings {
        guard let o = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
            let lr = o["lr"] as? Double, let b1 = o["beta1"] as? Double, let b2 = o["beta2"] as? Double,
            let eps = o["eps"] as? Double, let wd = o["weight_decay"] as? Double, let steps = o["steps"] as? Int,
            steps >= 1
        else {
            throw IOError.invalidFile(
                path: path, reason: "metadata 'adamw' is not a valid AdamW settings object: \(json)",
                hint: "regenerate the golden file with scripts/make_golden.py")
        }
        return AdamWSettings(
            lr: Float(lr), beta1: Float(b1), beta2: Float(b2), eps: Float(eps), weightDecay: Float(wd),
            steps: steps, decay1D: o["decay_1d_params"] as? Bool ?? true)
    }
}
