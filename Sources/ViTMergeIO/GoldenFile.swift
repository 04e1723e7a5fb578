import Foundation
import ViTMergeCore
import ViTMergeModel

/// A golden file (FORMATS.md "Golden files", written by scripts/make_golden.py), read and
/// validated: the model's config and parameters, the batch, and the tensors PyTorch computed.
/// Running it through the model is `Golden.verify` in ViTMergeTraining.
public struct GoldenFile {
    public let file: SafeTensorsFile
    public var path: String { file.path }
    public let config: ViTConfig
    /// The parameters the golden run started from (`param.<name>`).
    public let parameters: ViTParameters
    /// Images [batch, C, H, W].
    public let input: [Float]
    public let batch: Int
    /// Labels [batch] (each in 0..<num_classes when the model has a head).
    public let labels: [Int32]
    /// Without a head: the loss is mean(features · lossWeight), lossWeight [batch, D].
    public let lossWeight: [Float]?
    /// The recorded tangent (`jvp.tangent.<name>`), when the file has a JVP.
    public let jvpTangent: ViTParameters?
    /// The recorded AdamW run, when the file has one.
    public let adamw: GoldenAdamW?

    /// "logits", or "features" for a model without a head.
    public var outputName: String { config.numClasses > 0 ? "logits" : "features" }
    public var jvpName: String { "jvp." + outputName }
    /// Recorded activations ("act.<name>").
    public var activationNames: [String] { file.names.filter { $0.hasPrefix("act.") } }

    /// Reads and validates `path`.
    public init(path: String) throws {
        try self.init(file: SafeTensorsFile.read(path: path))
    }

    /// Validates a golden file already read (`file.path` names it in errors).
    public init(file: SafeTensorsFile) throws {
        self.file = file
        let path = file.path
        guard file.metadata["format"] == "vitmerge-golden" else {
            throw IOError.invalidFile(
                path: path,
                reason: "metadata format is \(file.metadata["format"].map { "'\($0)'" } ?? "missing"), "
                    + "expected 'vitmerge-golden'",
                hint: "produce golden files with scripts/make_golden.py")
        }
        guard let configJSON = file.metadata["config"] else {
            throw IOError.invalidFile(
                path: path, reason: "metadata has no 'config'", hint: "produce golden files with scripts/make_golden.py"
            )
        }
        config = try ViTConfig.parse(json: Data(configJSON.utf8))
        // Checked before allocating: a config in the header cannot make us allocate more than the file holds.
        let table = ParameterTable(config: config)
        try Checkpoint.requireParameters(table, in: file, prefix: "param.")
        parameters = ViTParameters(table: table)
        try Self.loadParameters(parameters, from: file, prefix: "param.")
        let inputInfo = try Self.require(file, "input")
        guard inputInfo.shape.count == 4, inputInfo.shape[1] == config.inChannels,
            inputInfo.shape[2] == config.imageHeight,
            inputInfo.shape[3] == config.imageWidth
        else {
            throw IOError.shapeMismatch(
                path: path, tensor: "input",
                expected: [-1, config.inChannels, config.imageHeight, config.imageWidth], found: inputInfo.shape)
        }
        batch = inputInfo.shape[0]
        input = try file.floats("input")
        labels = try file.int64s("labels", shape: [batch]).map { Int32(truncatingIfNeeded: $0) }
        let d = config.embedDim, k = config.numClasses
        if k > 0, let bad = labels.first(where: { $0 < 0 || Int($0) >= k }) {
            throw IOError.invalidFile(
                path: path, reason: "label \(bad) outside 0..<\(k)", hint: "regenerate the golden file")
        }
        lossWeight = k == 0 ? try file.floats("loss_weight", shape: [batch, d]) : nil
        if file.contains((k > 0 ? "jvp.logits" : "jvp.features")) {
            try Checkpoint.requireParameters(table, in: file, prefix: "jvp.tangent.")
            let tangent = ViTParameters(table: table)
            try Self.loadParameters(tangent, from: file, prefix: "jvp.tangent.")
            jvpTangent = tangent
        } else {
            jvpTangent = nil
        }
        if let adamwJSON = file.metadata["adamw"], file.contains("adamw.loss") {
            adamw = try GoldenAdamW.parse(adamwJSON, path: path)
        } else {
            adamw = nil
        }
    }

    public func contains(_ name: String) -> Bool { file.contains(name) }

    /// Elements of the recorded tensor `name` (`file.info(name)!.count`).
    public func count(_ name: String) -> Int { file.info(name)?.count ?? 0 }

    /// PyTorch's values of `name` ("loss" is the recorded scalar).
    public func expected(_ name: String) throws -> [Float] {
        name == "loss" ? [try file.scalar("loss")] : try file.floats(name)
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
}

/// The AdamW hyper-parameters recorded in a golden file's metadata ("adamw").
public struct GoldenAdamW: Sendable {
    public var lr: Float, beta1: Float, beta2: Float, eps: Float, weightDecay: Float, steps: Int
    /// Weight decay on 1-D tensors too (torch's default param group).
    public var decay1D: Bool

    static func parse(_ json: String, path: String) throws -> GoldenAdamW {
        guard let o = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
            let lr = o["lr"] as? Double, let b1 = o["beta1"] as? Double, let b2 = o["beta2"] as? Double,
            let eps = o["eps"] as? Double, let wd = o["weight_decay"] as? Double, let steps = o["steps"] as? Int,
            steps >= 1
        else {
            throw IOError.invalidFile(
                path: path, reason: "metadata 'adamw' is not a valid AdamW settings object: \(json)",
                hint: "regenerate the golden file with scripts/make_golden.py")
        }
        return GoldenAdamW(
            lr: Float(lr), beta1: Float(b1), beta2: Float(b2), eps: Float(eps), weightDecay: Float(wd),
            steps: steps, decay1D: o["decay_1d_params"] as? Bool ?? true)
    }
}
